"""Cell annotations: user-defined classes with colours, assignments per crop, undo/redo, autosave.

An :class:`AnnotationStore` holds one class name (or ``""``) per crop id and
writes two files into the analysis folder after every change::

    annotations.csv            crop_id,annotation   one row per crop ("" = not annotated)
    annotation_classes.json    {"format", "version", "classes": [{"name", "colour"}, ...]}

Both are written atomically (temporary file in the same folder, fsync,
rename), so a crash or ``kill -9`` leaves either the previous or the new
file, and loses at most the action that was being saved. A lock file
``annotations.lock`` (pid, host, time) keeps a second viewer from writing the
same folder; a lock whose process is dead (same host) is taken over.

Use :func:`read_annotations` to read the files without taking the lock
(exports, reports).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..config import atomic_write_text
from ..errors import InputError

ANNOTATIONS_CSV = "annotations.csv"
CLASSES_JSON = "annotation_classes.json"
LOCK_NAME = "annotations.lock"
FORMAT_NAME = "napari-morphospace annotation classes"
FORMAT_VERSION = 1

# Colours given to new classes in turn (colour-blind friendly, Okabe-Ito).
PALETTE = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#999999")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}([0-9a-fA-F]{2})?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class AnnotationClass:
    """A class the user defined: its ``name`` and ``colour`` as ``"#rrggbb"`` (or ``"#rrggbbaa"``)."""

    name: str
    colour: str

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        """The colour as RGBA floats in [0, 1]."""
        return colour_to_rgba(self.colour)


def colour_to_rgba(colour: str) -> tuple[float, float, float, float]:
    """``"#rrggbb"`` or ``"#rrggbbaa"`` -> RGBA floats in [0, 1] (alpha 1 when not given)."""
    text = _check_colour(colour)
    values = [int(text[i : i + 2], 16) / 255 for i in range(1, len(text), 2)]
    return (values[0], values[1], values[2], values[3] if len(values) == 4 else 1.0)


def _check_colour(colour: str) -> str:
    if not isinstance(colour, str) or not _COLOUR.match(colour):
        raise InputError(f"colour {colour!r} is not a hex colour; write it as '#rrggbb', e.g. '#e69f00'")
    return colour.lower()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError("a class name cannot be empty; type a name such as 'mitotic'")
    name = name.strip()
    if _CONTROL.search(name):
        raise InputError(f"class name {name!r} contains control characters (tabs, newlines); use plain text")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError(f"class name {name[:20]!r}... is longer than {MAX_NAME_LENGTH} characters; shorten it")
    return name


@dataclass(frozen=True)
class _Action:
    """One undoable change: the class list before/after and the crops whose class changed."""

    description: str
    classes_before: tuple[AnnotationClass, ...]
    classes_after: tuple[AnnotationClass, ...]
    positions: np.ndarray
    old: np.ndarray
    new: np.ndarray


class AnnotationStore:
    """One class name (or ``""``) per crop id, with classes, undo/redo and autosave.

    Parameters
    ----------
    crop_ids : sequence of int
        The crops that can be annotated (the crop table's ``crop_id``), unique.
    folder : path, optional
        Analysis folder to autosave into after every change; ``None`` keeps
        the annotations in memory only. The folder must not hold annotation
        files yet: to continue saved annotations use :meth:`open`.
    classes : iterable of AnnotationClass, optional
        Classes to start with.
    take_over : bool
        Take the folder's lock even when another live process holds it (only
        when you know that viewer is gone, e.g. it ran on another machine).

    Raises
    ------
    InputError
        Duplicate crop ids, bad class names or colours, annotation files
        already in ``folder``, or another viewer writing to ``folder``.
    """

    def __init__(
        self,
        crop_ids: Sequence[int] | np.ndarray,
        folder: str | os.PathLike | None = None,
        *,
        classes: Iterable[AnnotationClass] = (),
        take_over: bool = False,
    ) -> None:
        ids = np.asarray(crop_ids, dtype=np.int64).reshape(-1)
        if len(np.unique(ids)) != len(ids):
            raise InputError("crop ids given to the annotation store are not unique; use the crop table's crop_id")
        self._crop_ids = ids
        self._position = pd.Index(ids)
        self._labels = np.full(len(ids), "", dtype=object)
        self._classes: list[AnnotationClass] = []
        for cls in classes:
            self._classes.append(AnnotationClass(_check_name(cls.name), _check_colour(cls.colour)))
        if len({c.name for c in self._classes}) != len(self._classes):
            raise InputError("two classes have the same name; give every class its own name")
        self._undo: list[_Action] = []
        self._redo: list[_Action] = []
        # Rows of the file whose crop id is not in ``crop_ids``: reported, kept in the file.
        self._orphans: dict[int, str] = {}
        self.unknown_crop_ids: list[int] = []
        self.unsaved = False
        self.folder: Path | None = None
        self._lock: Path | None = None
        if folder is not None:
            self._attach(Path(folder), take_over=take_over, existing_ok=False)
            self.save()

    def _attach(self, folder: Path, *, take_over: bool, existing_ok: bool) -> None:
        """Make ``folder`` the autosave folder: create it, refuse to clobber saved files, take its lock."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(
                f"cannot create the analysis folder {folder} ({err.strerror or err}); choose another"
            ) from err
        existing = [n for n in (ANNOTATIONS_CSV, CLASSES_JSON) if (folder / n).exists()]
        if existing and not existing_ok:
            raise InputError(
                f"{folder} already holds {', '.join(existing)}; open it with AnnotationStore.open "
                "to continue those annotations, or choose another analysis folder"
            )
        self._lock = _acquire_lock(folder / LOCK_NAME, take_over=take_over)
        self.folder = folder

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike,
        crop_ids: Sequence[int] | np.ndarray,
        *,
        on_damaged: Literal["raise", "backup"] = "raise",
        take_over: bool = False,
    ) -> AnnotationStore:
        """Continue the annotations saved in ``folder`` (or start empty there when it has none).

        Crop ids in the file that are not in ``crop_ids`` are listed in
        :attr:`unknown_crop_ids` and kept in the file, never dropped. Class
        names used in ``annotations.csv`` but missing from the classes file
        are added with a palette colour.

        Parameters
        ----------
        on_damaged : {"raise", "backup"}
            What to do with a file that cannot be read (edited by hand, or
            not written by this program): ``"raise"`` an :class:`InputError`
            naming the file and line and leave it untouched; ``"backup"``
            rename it to ``<name>.damaged-<time>`` and start from the other
            file (or empty). Nothing is ever overwritten without this choice.
        """
        folder = Path(folder)
        store = cls(crop_ids)
        store._attach(folder, take_over=take_over, existing_ok=True)
        try:
            classes, labels = _read_files(folder, on_damaged)
            store._restore(classes, labels)
        except BaseException:
            store.close()
            raise
        return store

    def _restore(self, classes: list[AnnotationClass], labels: dict[int, str]) -> None:
        self._classes = list(classes)
        known = {c.name for c in classes}
        for name in dict.fromkeys(v for v in labels.values() if v):
            if name not in known:
                self._classes.append(AnnotationClass(name, self._next_colour()))
                known.add(name)
        if not labels:
            return
        ids = np.fromiter(labels.keys(), dtype=np.int64, count=len(labels))
        values = np.array(list(labels.values()), dtype=object)
        positions = self._position.get_indexer(ids)
        found = positions >= 0
        self._labels[positions[found]] = values[found]
        self._orphans = {int(i): str(v) for i, v in zip(ids[~found], values[~found], strict=True)}
        self.unknown_crop_ids = sorted(self._orphans)

    # ------------------------------------------------------------------ reading

    @property
    def crop_ids(self) -> np.ndarray:
        return self._crop_ids.copy()

    @property
    def classes(self) -> list[AnnotationClass]:
        return list(self._classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self._classes]

    def colour_of(self, name: str) -> str:
        return self._class(name).colour

    @property
    def annotations(self) -> pd.Series:
        """Class name per crop id (``""`` where not annotated), indexed by ``crop_id``."""
        return pd.Series(self._labels.copy(), index=pd.Index(self._crop_ids, name="crop_id"), name="annotation")

    def count(self, name: str) -> int:
        """How many crops have class ``name``."""
        return int(np.count_nonzero(self._labels == name))

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def apply_to_table(self, table: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``table`` (with a ``crop_id`` column) whose ``annotation`` column holds these annotations.

        Rows whose crop id this store does not know get ``""``.
        """
        if "crop_id" not in table.columns:
            raise InputError("the table has no crop_id column, so annotations cannot be matched to its rows")
        out = table.copy()
        positions = self._position.get_indexer(table["crop_id"].to_numpy(dtype=np.int64))
        values = self._labels[np.maximum(positions, 0)] if len(self._labels) else np.full(len(positions), "", object)
        values = np.where(positions >= 0, values, "")
        out["annotation"] = pd.Series(values, index=out.index, dtype=object).astype(str)
        return out

    # ------------------------------------------------------------------ classes

    def add_class(self, name: str, colour: str | None = None) -> AnnotationClass:
        """Add a class (colour from :data:`PALETTE` when not given); autosaves."""
        name = _check_name(name)
        if name in self.class_names:
            raise InputError(f"a class named {name!r} already exists; choose another name")
        new = AnnotationClass(name, _check_colour(colour) if colour is not None else self._next_colour())
        self._do(f"add class {name}", [*self._classes, new], np.zeros(0, np.int64), "")
        return new

    def rename_class(self, old_name: str, new_name: str) -> None:
        """Rename a class; every crop of that class follows. Autosaves."""
        cls = self._class(old_name)
        new_name = _check_name(new_name)
        if new_name == old_name:
            return
        if new_name in self.class_names:
            raise InputError(f"a class named {new_name!r} already exists; choose another name")
        classes = [AnnotationClass(new_name, c.colour) if c is cls else c for c in self._classes]
        self._do(f"rename {old_name} to {new_name}", classes, np.flatnonzero(self._labels == old_name), new_name)

    def set_colour(self, name: str, colour: str) -> None:
        """Change the colour of class ``name``; autosaves."""
        cls = self._class(name)
        classes = [AnnotationClass(name, _check_colour(colour)) if c is cls else c for c in self._classes]
        self._do(f"recolour {name}", classes, np.zeros(0, np.int64), "")

    def remove_class(self, name: str, *, reassign_to: str | None = None) -> None:
        """Remove class ``name``; crops of that class move to ``reassign_to`` (``""`` = not annotated).

        Raises
        ------
        InputError
            The class is in use and ``reassign_to`` was not given (say where
            those crops go), or ``reassign_to`` is not another existing class.
        """
        self._class(name)
        in_use = np.flatnonzero(self._labels == name)
        if len(in_use) and reassign_to is None:
            raise InputError(
                f"{len(in_use)} crop(s) are annotated {name!r}; say where they go: "
                f"reassign_to='' to clear them or the name of another class"
            )
        target = reassign_to or ""
        if target and (target == name or target not in self.class_names):
            raise InputError(f"cannot move the crops of {name!r} to {target!r}: choose another existing class or ''")
        classes = [c for c in self._classes if c.name != name]
        self._do(f"remove class {name}", classes, in_use, target)

    # -------------------------------------------------------------- assignments

    def assign(self, crop_ids: Iterable[int], class_name: str) -> int:
        """Give the crops ``crop_ids`` class ``class_name``; autosaves. Returns how many changed."""
        self._class(class_name)
        return self._set(crop_ids, class_name, f"assign {class_name}")

    def clear(self, crop_ids: Iterable[int]) -> int:
        """Remove the annotation of ``crop_ids``; autosaves. Returns how many changed."""
        return self._set(crop_ids, "", "clear")

    def _set(self, crop_ids: Iterable[int], value: str, description: str) -> int:
        ids = np.asarray(list(crop_ids) if not isinstance(crop_ids, np.ndarray) else crop_ids, dtype=np.int64)
        positions = self._position.get_indexer(ids.reshape(-1))
        if (positions < 0).any():
            unknown = ids.reshape(-1)[positions < 0]
            raise InputError(
                f"crop id(s) {', '.join(map(str, unknown[:5]))}{' ...' if len(unknown) > 5 else ''} are not in "
                "this crop set; select cells of the crop set the annotations belong to"
            )
        positions = np.unique(positions)
        positions = positions[self._labels[positions] != value]
        if len(positions):
            self._do(description, self._classes, positions, value)
        return int(len(positions))

    # ---------------------------------------------------------------- undo/redo

    def _do(self, description: str, classes: list[AnnotationClass], positions: np.ndarray, value: str) -> None:
        old = self._labels[positions].copy()
        new = np.full(len(positions), value, dtype=object)
        action = _Action(description, tuple(self._classes), tuple(classes), positions, old, new)
        self._apply(action.classes_after, positions, new)
        self._undo.append(action)
        self._redo.clear()
        self._autosave()

    def undo(self) -> str | None:
        """Undo the last change (autosaves); returns its description, or ``None`` when there is none."""
        if not self._undo:
            return None
        action = self._undo.pop()
        self._apply(action.classes_before, action.positions, action.old)
        self._redo.append(action)
        self._autosave()
        return action.description

    def redo(self) -> str | None:
        """Redo the last undone change (autosaves); returns its description, or ``None``."""
        if not self._redo:
            return None
        action = self._redo.pop()
        self._apply(action.classes_after, action.positions, action.new)
        self._undo.append(action)
        self._autosave()
        return action.description

    def _apply(self, classes: Sequence[AnnotationClass], positions: np.ndarray, values: np.ndarray) -> None:
        self._classes = list(classes)
        self._labels[positions] = values

    def _class(self, name: str) -> AnnotationClass:
        for cls in self._classes:
            if cls.name == name:
                return cls
        raise InputError(
            f"there is no class named {name!r}; add it first or choose one of: "
            f"{', '.join(self.class_names) or 'none yet'}"
        )

    def _next_colour(self) -> str:
        used = {c.colour for c in self._classes}
        free = [c for c in PALETTE if c not in used]
        return free[0] if free else PALETTE[len(self._classes) % len(PALETTE)]

    # ------------------------------------------------------------------ saving

    def save(self) -> None:
        """Write both files now (done after every change; call it to retry after a failed autosave)."""
        if self.folder is None:
            return
        classes = classes_document(self._classes)
        ids = np.concatenate([self._crop_ids, np.fromiter(self._orphans, np.int64, len(self._orphans))])
        values = np.concatenate([self._labels, np.array(list(self._orphans.values()), dtype=object)])
        table = pd.DataFrame({"crop_id": ids, "annotation": values})
        # Classes first: a crash between the two writes leaves a class that is defined but unused.
        for name, text in (
            (CLASSES_JSON, json.dumps(classes, indent=2, ensure_ascii=False) + "\n"),
            (ANNOTATIONS_CSV, table.to_csv(index=False, lineterminator="\n")),
        ):
            path = self.folder / name
            try:
                atomic_write_text(path, text)
            except OSError as err:
                self.unsaved = True
                raise InputError(
                    f"could not save annotations to {path} ({err.strerror or err}); the change is kept in memory. "
                    "Free disk space or make the folder writable, then annotate again or choose another analysis folder"
                ) from err
        self.unsaved = False

    def _autosave(self) -> None:
        self.save()

    def close(self) -> None:
        """Release the folder's lock. Nothing else is needed: every change is already saved."""
        if self._lock is not None:
            _release_lock(self._lock)
            self._lock = None

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------- overlay


def class_codes(labels: Sequence[str] | np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """uint16 code per crop: ``i + 1`` for ``class_names[i]``, 0 for ``""`` or an unknown name."""
    lookup = {name: i + 1 for i, name in enumerate(class_names)}
    return np.fromiter((lookup.get(v, 0) for v in labels), dtype=np.uint16, count=len(labels))


def annotation_overlay(
    labels: np.ndarray, label_ids: np.ndarray, codes: np.ndarray, max_label: int | None = None
) -> np.ndarray:
    """uint16 image: the class code of each pixel's label (0 = background or not annotated).

    One lookup table of size ``max_label + 1`` applied with ``np.take``: one
    pass over the pixels, whatever the number of cells or classes.

    Parameters
    ----------
    labels : integer array, any shape
        A Labels image (one time frame for time-lapses).
    label_ids, codes : 1-D arrays of equal length
        The label id of each annotated cell and its class code (:func:`class_codes`).
    max_label : int, optional
        The largest id in ``labels`` (never less), to skip a pass that finds it.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        labels = labels.astype(np.int64)
    if max_label is None:
        max_label = int(labels.max(initial=0))
    lut = np.zeros(int(max_label) + 1, dtype=np.uint16)
    ids = np.asarray(label_ids, dtype=np.int64)
    keep = (ids > 0) & (ids <= max_label)
    lut[ids[keep]] = np.asarray(codes, dtype=np.uint16)[keep]
    return np.take(lut, labels, mode="clip")


# ---------------------------------------------------------------------- files


def read_annotations(folder: str | os.PathLike) -> tuple[pd.Series, list[AnnotationClass]]:
    """Read ``annotations.csv`` and ``annotation_classes.json`` of an analysis folder, without locking it.

    Returns
    -------
    annotations : pandas.Series
        Class name per crop id (``""`` = not annotated), indexed by ``crop_id``;
        empty when the folder has no annotations.
    classes : list of AnnotationClass

    Raises
    ------
    InputError
        A file is damaged (names the file and line).
    """
    classes, labels = _read_files(Path(folder), "raise")
    series = pd.Series(
        list(labels.values()),
        index=pd.Index(list(labels.keys()), dtype=np.int64, name="crop_id"),
        name="annotation",
        dtype=object,
    )
    return series, classes


def _read_files(folder: Path, on_damaged: str) -> tuple[list[AnnotationClass], dict[int, str]]:
    if on_damaged not in ("raise", "backup"):
        raise InputError(f"on_damaged must be 'raise' or 'backup'; got {on_damaged!r}")
    results: dict[str, object] = {}
    for name, reader in ((CLASSES_JSON, _read_classes), (ANNOTATIONS_CSV, _read_labels)):
        path = folder / name
        if not path.exists():
            results[name] = [] if name == CLASSES_JSON else {}
            continue
        try:
            results[name] = reader(path)
        except InputError:
            if on_damaged == "raise":
                raise
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            os.replace(path, path.with_name(f"{path.name}.damaged-{stamp}"))
            results[name] = [] if name == CLASSES_JSON else {}
    return results[CLASSES_JSON], results[ANNOTATIONS_CSV]  # type: ignore[return-value]


def _damaged(path: Path, where: str, what: str) -> InputError:
    return InputError(
        f"{path} is damaged at {where}: {what}. It was not changed. Fix it by hand, or reopen with "
        f"on_damaged='backup' to keep it as {path.name}.damaged-<time> and continue without it"
    )


def classes_document(classes: Sequence[AnnotationClass]) -> dict:
    """The ``annotation_classes.json`` document of ``classes`` (what :func:`classes_from_document` reads)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "classes": [{"name": c.name, "colour": c.colour} for c in classes],
    }


def classes_from_document(data: object, path: str | os.PathLike = CLASSES_JSON) -> list[AnnotationClass]:
    """The classes of an ``annotation_classes.json`` document already parsed (``path`` names it in errors)."""
    return _classes_of(data, Path(path))


def _read_classes(path: Path) -> list[AnnotationClass]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise _damaged(path, f"line {err.lineno}", err.msg) from err
    except (OSError, UnicodeDecodeError) as err:
        raise _damaged(path, "line 1", str(err)) from err
    return _classes_of(data, path)


def _classes_of(data: object, path: Path) -> list[AnnotationClass]:
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise _damaged(path, "line 1", f"it is not a {FORMAT_NAME} file")
    if data.get("version") != FORMAT_VERSION:
        raise InputError(
            f"{path} has version {data.get('version')!r} but this napari-morphospace reads version {FORMAT_VERSION}; "
            "update napari-morphospace"
        )
    entries = data.get("classes")
    if not isinstance(entries, list):
        raise _damaged(path, "'classes'", "it must be a list of {name, colour}")
    classes: list[AnnotationClass] = []
    for i, entry in enumerate(entries):
        try:
            classes.append(AnnotationClass(_check_name(entry["name"]), _check_colour(entry["colour"])))
        except (TypeError, KeyError, InputError) as err:
            raise _damaged(path, f"class {i}", f"bad entry {entry!r} ({err})") from err
    if len({c.name for c in classes}) != len(classes):
        raise _damaged(path, "'classes'", "two classes have the same name")
    return classes


def _read_labels(path: Path) -> dict[int, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise _damaged(path, "line 1", str(err)) from err
    reader = csv.reader(io.StringIO(text, newline=""))
    labels: dict[int, str] = {}
    try:
        header = next(reader, None)
        if header != ["crop_id", "annotation"]:
            raise _damaged(path, "line 1", f"the header must be 'crop_id,annotation', found {','.join(header or [])!r}")
        for row in reader:
            line = f"line {reader.line_num}"
            if len(row) != 2:
                raise _damaged(path, line, f"expected 2 fields (crop_id,annotation), found {len(row)}")
            try:
                crop_id = int(row[0])
            except ValueError:
                raise _damaged(path, line, f"crop id {row[0]!r} is not an integer") from None
            if crop_id in labels:
                raise _damaged(path, line, f"crop id {crop_id} appears twice")
            name = row[1]
            if name and name != name.strip():
                raise _damaged(path, line, f"class name {name!r} has leading or trailing spaces")
            labels[crop_id] = name
    except csv.Error as err:
        raise _damaged(path, f"line {reader.line_num}", str(err)) from err
    return labels


# ----------------------------------------------------------------------- lock


def _acquire_lock(path: Path, *, take_over: bool) -> Path:
    """Create ``path`` holding our pid and host, atomically; take over a stale one.

    The lock's content is written to a temporary file first and hard-linked
    into place, so the lock never exists half-written.
    """
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    for _attempt in range(3):
        if _link_new(path, json.dumps(me)):
            return path
        owner = _lock_owner(path)
        if owner is None:  # vanished between our attempts
            continue
        stale = owner.get("host") == me["host"] and not _pid_alive(owner.get("pid"))
        if not (stale or take_over):
            raise InputError(
                f"the annotations in {path.parent} are being written by another viewer (process {owner.get('pid')} "
                f"on {owner.get('host')}, since {owner.get('since')}); close it first, or choose another analysis "
                f"folder. If that viewer is gone, delete {path} or open with take_over=True"
            )
        _replace_lock(path, owner)
    raise InputError(f"could not take the lock {path}: other processes keep changing it; try again")


def _link_new(path: Path, text: str) -> bool:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    except OSError as err:
        raise InputError(
            f"cannot write the lock file {path} ({err.strerror or err}); make the folder writable"
        ) from err
    finally:
        Path(tmp).unlink(missing_ok=True)


def _replace_lock(path: Path, owner: dict) -> None:
    """Remove a stale lock, but only if it is still the one we judged stale."""
    if _lock_owner(path) == owner:
        path.unlink(missing_ok=True)


def _lock_owner(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        data = None
    # Our locks appear complete (hard link); anything else was written by hand: held by no live process here.
    return data if isinstance(data, dict) else {"pid": None, "host": socket.gethostname(), "since": "unknown"}


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release_lock(path: Path) -> None:
    owner = _lock_owner(path)
    if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


__all__ = [
    "ANNOTATIONS_CSV",
    "CLASSES_JSON",
    "LOCK_NAME",
    "PALETTE",
    "AnnotationClass",
    "AnnotationStore",
    "annotation_overlay",
    "class_codes",
    "colour_to_rgba",
    "read_annotations",
]
