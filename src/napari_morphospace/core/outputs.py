"""Outputs: checked before any work starts, replaced only when they are ours.

Every command and widget that writes a file or a folder goes through
:func:`check_output` before its first slow step, so a read-only or full disk,
a file where a folder is expected or an existing target is refused in one
line before hours of work, not after. ``--overwrite`` replaces only what is
recognisably an output of napari-morphospace of the same kind (a crop set, a
model bundle, an analysis folder, a report...): a mistyped ``--out ~/data``
is refused, never deleted.

Writing itself (scratch beside the target, then a rename) is
:mod:`napari_morphospace.core.files`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from .errors import InputError
from .files import remove_stale_scratch

#: Free space below which a disk counts as full, whatever the output's size.
MIN_FREE_BYTES = 1 << 20


def check_output(
    path: str | os.PathLike,
    *,
    what: str,
    kind: Literal["file", "folder"],
    overwrite: bool,
    is_ours: Callable[[Path], bool] | None = None,
    needed_bytes: int = 0,
) -> Path:
    """Refuse an output before any work starts; return it as a Path.

    Parameters
    ----------
    path
        The file or folder to write.
    what
        What it is, for messages ("crop set", "model bundle", "report").
    kind
        ``"folder"`` or ``"file"``: the other one at ``path`` is refused.
    overwrite
        Whether an existing (non-empty) output may be replaced.
    is_ours
        Recognises an output of this kind; with it, ``overwrite`` replaces
        only what it accepts. Without it any existing file may be replaced.
    needed_bytes
        Refuse when the disk has less free space (at least
        :data:`MIN_FREE_BYTES` is always needed).

    Raises
    ------
    InputError
        The target exists (without ``overwrite``), is not ours, is of the
        other kind, or its folder cannot be written (read-only, full, a file).

    Stale scratch of killed runs next to ``path`` is removed on the way.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise InputError(f"{path} is a broken link; remove it or choose another {what} name")
    if path.exists():
        if kind == "folder" and not path.is_dir():
            raise InputError(
                f"{path} is a file, but the {what} is a folder; choose a folder name (a new or empty folder)"
            )
        if kind == "file" and path.is_dir():
            raise InputError(f"{path} is a folder, but the {what} is a file; give it a file name inside that folder")
        if kind == "file" and not path.is_file():  # a device, pipe or socket would be replaced by a plain file
            raise InputError(f"{path} is not a regular file (a device, pipe or socket); give the {what} a file name")
        empty_folder = path.is_dir() and not any(path.iterdir())
        if not empty_folder:
            if not overwrite:
                raise InputError(f"{path} already exists; choose another name or pass --overwrite to replace it")
            if is_ours is not None and not is_ours(path):
                article = "an" if what[0] in "aeiou" else "a"
                raise InputError(
                    f"{path} is not {article} {what} written by napari-morphospace, so it is not replaced even with "
                    f"--overwrite; choose a new {kind} for the {what}"
                )
    check_writable(path.parent, what=what, needed_bytes=needed_bytes)
    if kind == "folder" and path.is_dir():
        check_writable(path, what=what, needed_bytes=needed_bytes)
    remove_stale_scratch(path.parent)
    return path


def check_writable(folder: str | os.PathLike, *, what: str, needed_bytes: int = 0) -> None:
    """Refuse a folder (or, when it does not exist yet, its nearest existing parent) that cannot take the output."""
    folder = Path(folder).absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{existing} is a file, so the {what} cannot be written under {folder}; choose another folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise InputError(
            f"cannot write the {what} in {existing} ({err.strerror or err}); the folder or disk is read-only or "
            "not yours: choose a writable folder"
        ) from err
    free = shutil.disk_usage(existing).free
    needed = max(int(needed_bytes), MIN_FREE_BYTES)
    if free < needed:
        raise InputError(
            f"the disk holding {existing} is full ({_size(free)} free, the {what} needs {_size(needed)}); "
            "free some space or choose a folder on another disk"
        )


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


def names_format(json_file: str | os.PathLike, format_name: str) -> bool:
    """True when ``json_file`` is a JSON object whose ``"format"`` is ``format_name``:
    how an output is recognised as ours."""
    try:
        data = json.loads(Path(json_file).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == format_name


__all__ = [
    "MIN_FREE_BYTES",
    "check_output",
    "check_writable",
    "names_format",
]
