"""Files and folders written whole or not at all, with no scratch left behind.

Every writer of napari-morphospace writes to a hidden scratch file or folder
beside its target and renames it into place: a rename within one folder is
atomic, so a crash, a full disk or ``kill -9`` leaves the previous file (or
none), never half of the new one under the final name.

* :func:`atomic_write_text` and :func:`atomic_path` (for writers that need a
  path: tifffile, pandas, torch) write one file.
* :func:`atomic_folder` and :func:`replace_folder` write one folder, keeping
  the old one until the new one is complete.
* Scratch names carry the host and process id of the writer
  (:func:`scratch_prefix`), so the next run can tell the scratch of a run
  that was killed (same host, process gone) from that of a run still going,
  and removes it (:func:`remove_stale_scratch`).
* Scratch is private while it is written; :func:`set_default_permissions`
  gives the finished output the permissions of any file the user saves.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from .errors import InputError

_SCRATCH = re.compile(r"^\..*\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.(tmp|old)$")


def write_failed(path: str | os.PathLike, err: OSError) -> InputError:
    """The one-line message for a write that failed part way (full disk, folder made read-only)."""
    return InputError(
        f"cannot write {path} ({err.strerror or err}); the disk may be full or the folder read-only. "
        "Nothing half-written was left; free space or choose a writable folder"
    )


# ---------------------------------------------------------------- scratch


def _host() -> str:
    """This machine's short host name, reduced to letters, digits and ``-`` (it is parsed back from file names)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def scratch_prefix(target: str | os.PathLike) -> str:
    """Prefix of a scratch sibling of ``target``: ``.<name>.<host>-<pid>.`` (give it ``suffix=".tmp"``)."""
    return f".{Path(target).name}.{_host()}-{os.getpid()}."


def scratch_folder(target: str | os.PathLike) -> Path:
    """Create an empty scratch folder beside ``target`` (and ``target``'s parent folder if needed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=scratch_prefix(target), suffix=".tmp"))


def _is_stale(name: str) -> bool:
    """True for scratch of a process of this host that no longer runs."""
    match = _SCRATCH.match(name)
    if match is None or match["host"] != _host():
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not psutil.pid_exists(pid)


def remove_stale_scratch(folder: str | os.PathLike) -> list[Path]:
    """Delete the scratch files and folders that killed runs left in ``folder``; return what was removed."""
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


# ---------------------------------------------------------------- files


@contextmanager
def atomic_path(
    path: str | os.PathLike, *, failed: Callable[[Path, OSError], Exception] = write_failed
) -> Iterator[Path]:
    """Yield a scratch path beside ``path`` to write; on success fsync it and rename it to ``path``.

    On any error the scratch file is deleted and ``path`` is untouched; an
    ``OSError`` (read-only folder, full disk) is raised as ``failed(path,
    error)``, by default an :class:`InputError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=scratch_prefix(path), suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise failed(path, err) from err
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        set_default_permissions(tmp)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise failed(path, err) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(
    path: str | os.PathLike, text: str, *, failed: Callable[[Path, OSError], Exception] = write_failed
) -> None:
    """Write a UTF-8 text file so that readers see either the old or the new file, never half of one."""
    with atomic_path(path, failed=failed) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- folders


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty scratch folder to fill; on success it replaces ``target`` (:func:`replace_folder`).

    On any error the scratch folder is deleted and ``target`` is untouched;
    an ``OSError`` is raised as :func:`write_failed`. A caller that replaces
    an existing ``target`` checks it is ours first (``core.outputs.check_output``).
    """
    target = Path(target)
    try:
        scratch = scratch_folder(target)
    except OSError as err:
        raise write_failed(target, err) from err
    try:
        yield scratch
        replace_folder(scratch, target)
    except OSError as err:
        raise write_failed(target, err) from err
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def replace_folder(finished: Path, target: Path) -> None:
    """Rename the finished scratch folder to ``target``, replacing an old one (already checked to be ours).

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


# ---------------------------------------------------------------- permissions


def set_default_permissions(path: str | os.PathLike) -> None:
    """Give a file or folder made by ``tempfile`` (private, 0600/0700) the permissions of a normal one.

    Scratch files are private so no one reads them half-written; once
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


__all__ = [
    "atomic_folder",
    "atomic_path",
    "atomic_write_text",
    "current_umask",
    "remove_stale_scratch",
    "replace_folder",
    "scratch_folder",
    "scratch_prefix",
    "set_default_permissions",
    "write_failed",
]
