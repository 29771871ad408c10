"""Outputs: checked before any work starts, replaced only when they are ours, no scratch left behind.

Every command and widget that writes a file or a folder goes through
:func:`check_output` before its first slow step, so a read-only or full disk,
a file where a folder is expected or an existing target is refused in one
line before hours of work, not after. ``--overwrite`` replaces only what is
recognisably an output of napari-morphospace of the same kind (a crop set, a
model bundle, an analysis folder, a report...): a mistyped ``--out ~/data``
is refused, never deleted.

Temporary files and folders are written next to their target and renamed
into place. Their names carry the host and process id of the writer
(:func:`scratch_prefix`), so the next run can tell the scratch of a run that
was killed (same host, process gone) from that of a run still going, and
removes it (:func:`remove_stale_scratch`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from .errors import InputError

#: Free space below which a disk counts as full, whatever the output's size.
MIN_FREE_BYTES = 1 << 20
_SCRATCH = re.compile(r"^\..*\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.(tmp|old)$")


def _host() -> str:
    """This machine's short host name, reduced to letters, digits and ``-`` (it is parsed back from file names)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def scratch_prefix(target: str | os.PathLike) -> str:
    """Prefix of a temporary sibling of ``target``: ``.<name>.<host>-<pid>.`` (give it ``suffix=".tmp"``)."""
    return f".{Path(target).name}.{_host()}-{os.getpid()}."


def _is_stale(name: str) -> bool:
    """True for scratch of a process of this host that no longer runs."""
    match = _SCRATCH.match(name)
    if match is None or match["host"] != _host():
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it runs under another user
        return False
    return False


def remove_stale_scratch(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders that killed runs left in ``folder``; return what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if entry.name.startswith(".") and _is_stale(entry.name):
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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


def set_default_permissions(path: str | os.PathLike) -> None:
    """Give a file or folder made by ``tempfile`` (private, 0600/0700) the permissions of a normal one.

    Temporary files are private so no one reads them half-written; once
    complete they should be as readable as any file the user saves (the
    umask decides: colleagues on shared storage read them with 022). A
    folder gets the same for everything inside it, since some writers
    (safetensors) also create private files.
    """
    umask = current_umask()
    path = Path(path)
    if path.is_dir():
        for inner in path.rglob("*"):
            if not inner.is_symlink():
                os.chmod(inner, (0o777 if inner.is_dir() else 0o666) & ~umask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (``os.umask`` sets it briefly)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)  # no file is created in between; 077 keeps any that is private
    os.umask(umask)
    return umask


def replace_folder(finished: Path, target: Path) -> None:
    """Rename the finished temporary folder to ``target``, replacing an old one (already checked to be ours).

    The old folder is moved aside first, so ``target`` never holds a mix of
    old and new files, and deleted last.
    """
    set_default_permissions(finished)
    if not target.exists():
        os.replace(finished, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=scratch_prefix(target), suffix=".old"))
    os.replace(target, old / target.name)
    os.replace(finished, target)
    shutil.rmtree(old, ignore_errors=True)


def write_failed(path: str | os.PathLike, err: OSError) -> InputError:
    """The one-line message for a write that failed part way (full disk, folder made read-only)."""
    return InputError(
        f"cannot write {path} ({err.strerror or err}); the disk may be full or the folder read-only. "
        "Nothing half-written was left; free space or choose a writable folder"
    )


__all__ = [
    "MIN_FREE_BYTES",
    "check_output",
    "check_writable",
    "names_format",
    "remove_stale_scratch",
    "replace_folder",
    "set_default_permissions",
    "scratch_prefix",
    "write_failed",
]
