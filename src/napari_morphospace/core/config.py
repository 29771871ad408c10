"""Typed settings dataclasses <-> plain dicts, JSON and YAML.

Every group of settings is one dataclass. The same definition becomes a widget
form, a command-line/YAML config and core function arguments; this module is
the dict/file side of that. Unknown keys and wrongly typed values are refused
with a message naming the field, instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import reprlib
import tempfile
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import InputError
from .outputs import scratch_prefix, set_default_permissions

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def to_dict(settings: Any) -> dict[str, Any]:
    """Turn a settings dataclass (possibly nested) into JSON-ready builtins."""
    if not dataclasses.is_dataclass(settings):
        raise TypeError(f"expected a dataclass instance, got {type(settings).__name__}")
    return {f.name: _to_builtin(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def _to_builtin(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
    """Build the dataclass ``cls`` from ``data``, checking keys and types.

    Missing keys take the dataclass defaults, so configs written by an older
    version still load. Unknown keys raise :class:`InputError`.
    """
    if not isinstance(data, dict):
        raise InputError(f"{where or cls.__name__}: expected a mapping of settings, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(
            f"{where or cls.__name__}: unknown setting(s) {', '.join(unknown)}; "
            f"valid settings are: {', '.join(sorted(names))}"
        )
    values = {}
    for name, raw in data.items():
        values[name] = _coerce(hints[name], raw, f"{where + '.' if where else ''}{name}")
    try:
        return cls(**values)
    except InputError:
        raise  # a settings check: its message already names the field
    except (TypeError, ValueError) as err:
        raise InputError(f"{where or cls.__name__}: {err}") from err


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def shown(value: Any) -> str:
    """A value from a config file for a one-line message: short even for huge or deeply nested values."""
    return _REPR.repr(value)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert where it is lossless."""
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except InputError as err:
                errors.append(str(err))
        raise InputError(errors[0] if len(errors) == 1 else f"{where}: {shown(value)} fits none of {tp}")
    if origin is Literal:
        if value not in args:
            raise InputError(f"{where}: {shown(value)} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {shown(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise InputError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"{where}: expected a mapping, got {shown(value)}")
        return dict(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=where)
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true or false, got {shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise InputError(f"{where}: expected an integer, got {shown(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: expected a number, got {shown(value)}")
        if not math.isfinite(value):
            raise InputError(f"{where}: expected a finite number, got {shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InputError(f"{where}: expected text, got {shown(value)}")
        return value
    if tp is Path:
        if not isinstance(value, (str, os.PathLike)):
            raise InputError(f"{where}: expected a path, got {shown(value)}")
        return Path(value)
    return value


def load_config(path: str | os.PathLike, cls: type[T]) -> T:
    """Read a YAML or JSON file into the settings dataclass ``cls``."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"config file {path} is a folder; give the .yaml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read config file {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise InputError(f"config file {path} is not text (UTF-8); give a YAML or JSON file") from err
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as err:
        if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
            message = f"{err.problem} at line {err.problem_mark.line + 1}"
        else:
            message = " ".join(str(err).split()) or type(err).__name__
        raise InputError(f"config file {path} is not valid {kind} ({message}); fix it or save it again") from err
    return from_dict(cls, data or {}, where=path.name)


def save_config(settings: Any, path: str | os.PathLike) -> Path:
    """Write settings as YAML (or JSON for a .json suffix), atomically."""
    path = Path(path)
    data = to_dict(settings)
    text = json.dumps(data, indent=2) if path.suffix.lower() == ".json" else yaml.safe_dump(data, sort_keys=False)
    atomic_write_text(path, text)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file so that readers see either the old or the new file, never a half one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=scratch_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        set_default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["to_dict", "from_dict", "load_config", "save_config", "atomic_write_text"]
