"""One mapping from settings fields to command-line flags, for parsing and for messages.

A :class:`Flag` names an option (``--batch-size``) and the settings field it
sets (``training.batch_size``). The same table adds the options to a parser,
writes the given values over the settings of ``--config`` (or the defaults),
shows every field's default and choices in ``--help``, and rewrites a
refusal that names a field (``training.batch_size is 2``) so that it names
the flag the user typed (``--batch-size is 2``).

Parsing never imports the settings' modules, which pull in torch, Lightning
or scikit-image and take seconds to load: defaults and choices are looked up
only when help is printed, and values are checked when the settings are built.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

SettingsDefaults = Callable[[], Any]


@dataclass(frozen=True)
class Flag:
    """A command-line option that sets one or more fields of a settings dataclass.

    Attributes
    ----------
    option : str
        The flag, e.g. ``"--batch-size"``.
    fields : tuple of str
        Dotted paths of the fields it sets (``"training.batch_size"``); the
        first gives the default shown in ``--help``.
    help : str
        What the option does (the default and choices are added to it).
    type : callable
        Turns the typed text into the value (``int``, ``float``, ``str``...).
    kind : {"value", "list", "append", "switch"}
        One value; one or more values after the flag; the flag repeated; or a
        yes/no field set with ``--name`` / ``--no-name``.
    metavar : str, optional
        Name of the value in the usage line.
    """

    option: str
    fields: tuple[str, ...]
    help: str
    type: Callable[[str], Any] = str
    kind: Literal["value", "list", "append", "switch"] = "value"
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.option.lstrip("-").replace("-", "_")


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default and, for a settings flag, the field's choices."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default, choices = action.default, ()
        settings_field = getattr(action, "settings_field", None)
        if settings_field is not None:
            defaults, path = settings_field
            default, choices = field_default(defaults(), path)
        notes = [f"one of: {', '.join(map(str, choices))}"] if choices else []
        if action.option_strings and _shown(default):
            notes.append(f"default: {_shown(default)}")
        text = (action.help or "") + (f" ({'; '.join(notes)})" if notes else "")
        return text.replace("%", "%%")  # argparse fills %(...)s fields in help; ours has none


def _shown(value: Any) -> str:
    """How a default reads in help; empty for no default (None, False, an empty list)."""
    if value is None or value is False or value is argparse.SUPPRESS or value == [] or value == ():
        return ""
    if value is True:
        return "yes"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def field_default(settings: Any, path: str) -> tuple[Any, tuple[Any, ...]]:
    """The value of the field ``path`` (``"training.batch_size"``) in ``settings`` and its Literal choices."""
    *sections, name = path.split(".")
    for section in sections:
        settings = getattr(settings, section)
    hint = get_type_hints(type(settings)).get(name)
    choices = get_args(hint) if get_origin(hint) is Literal else ()
    return getattr(settings, name), choices


def add_flags(parser: argparse.ArgumentParser, flags: Iterable[Flag], defaults: SettingsDefaults) -> None:
    """Add every flag to ``parser``; ``defaults()`` returns the default settings (called only for help)."""
    for flag in flags:
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": None, "help": flag.help}
        if flag.kind == "switch":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=flag.type, metavar=flag.metavar)
            if flag.kind == "list":
                kwargs["nargs"] = "+"
            elif flag.kind == "append":
                kwargs["action"] = "append"
        action = parser.add_argument(flag.option, **kwargs)
        action.settings_field = (defaults, flag.fields[0])  # type: ignore[attr-defined]


def apply_flags(data: dict[str, Any], args: argparse.Namespace, flags: Iterable[Flag]) -> None:
    """Write the value of every flag given on the command line into the settings dict ``data``."""
    for flag in flags:
        value = getattr(args, flag.dest)
        if value is None:
            continue
        for path in flag.fields:
            *sections, name = path.split(".")
            target = data
            for section in sections:
                target = target[section]
            target[name] = value


def name_flags(message: str, flags: Iterable[Flag]) -> str:
    """``message`` with each settings field of ``flags`` written as its flag.

    Replaced: dotted paths (``training.batch_size``), snake_case names
    (``min_area``), one-word names where a message refers to the setting
    (``beta must``, ``ndim: 4 is not one of`` at the start, ``mode='fit'``),
    and ``name=True/False`` of a switch (``exclude_border=False`` becomes
    ``--no-exclude-border``). A name after a dot is left alone, so
    ``train.yaml.training.batch_size`` (a value from a config file) keeps its key.
    """
    for flag in flags:
        for path in flag.fields:
            leaf = path.rsplit(".", 1)[-1]
            for name in dict.fromkeys((path, leaf)):
                escaped = re.escape(name)
                message = re.sub(
                    rf"(?<![\w.-]){escaped}=(True|False|'[^']*'|[\w.-]+)",
                    lambda m, flag=flag: _flag_with_value(flag, m.group(1)),
                    message,
                )
                if "." in name or "_" in name:
                    message = re.sub(rf"(?<![\w.-]){escaped}(?![\w-])", flag.option, message)
                else:  # a plain word only where it names the setting: "beta must ...", a leading "ndim: ..."
                    message = re.sub(rf"(?<![\w.-]){escaped}(?=\s+(?:must|is)\b)|^{escaped}(?=:)", flag.option, message)
    return message


def _flag_with_value(flag: Flag, value: str) -> str:
    if flag.kind == "switch" and value in ("True", "False"):
        return flag.option if value == "True" else flag.option.replace("--", "--no-", 1)
    return f"{flag.option} {value.strip(chr(39))}"


def size_value(text: str) -> int | list[int]:
    """``--size``: one side for every spatial axis (``64``) or one per axis (``64,64`` or ``16,64,64``)."""
    try:
        sides = [int(part) for part in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give pixels, e.g. 64, or one per axis, e.g. 16,64,64"
        ) from None
    return sides[0] if len(sides) == 1 else sides


__all__ = ["Flag", "HelpFormatter", "add_flags", "apply_flags", "field_default", "name_flags", "size_value"]
