"""The analysis folder: one folder that holds a whole analysis, saved part by part and reopened.

Layout::

    analysis.json             format name and version, created/modified, napari-morphospace
                              version, references to every part below and to the source
                              images, plot settings
    crops/                    the crop set (or analysis.json points at an external one)
    model/                    the model bundle (weights.safetensors + model.json)
    latents.parquet (+ .csv)  the latent table, keyed by crop_id
    annotations.csv           crop_id -> annotation (written by core.project.annotations)
    annotation_classes.json   the annotation classes and their colours
    selections.json           selection name -> list of crop ids
    classifier.json           classifier metrics, when a classifier was trained
    figures/                  PNG/SVG figures
    report.html               the self-contained report (core.project.report)

Every part is written atomically (temporary file or folder, then rename), and
``analysis.json`` is written last, so a crash leaves the previous consistent
state. Opening reads only JSON, CSV, Parquet, zarr and safetensors through
their own parsers and only at the names the format defines or that
``analysis.json`` references with an allowed suffix: nothing in the folder
can run code (no pickle, no Python files, no ``eval``). What is missing or
damaged does not stop the rest from opening; :attr:`Analysis.problems` lists
it, naming the file and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ... import __version__
from ..cells.crop_job import CropJob
from ..cells.crop_set import CropSet, load_crop_set, save_crop_set
from ..config import load_config, shown
from ..errors import InputError
from ..files import atomic_folder, atomic_path, atomic_write_text
from ..outputs import check_writable, names_format
from .annotations import ANNOTATIONS_CSV, CLASSES_JSON, HOLDER_NAME, LOCK_NAME
from .export import check_latent_table

FORMAT_NAME = "napari-morphospace analysis"
FORMAT_VERSION = 1

ANALYSIS_JSON = "analysis.json"
CROPS_DIR = "crops"
MODEL_DIR = "model"
LATENTS_PARQUET = "latents.parquet"
LATENTS_CSV = "latents.csv"
SELECTIONS_JSON = "selections.json"
CLASSIFIER_JSON = "classifier.json"
FIGURES_DIR = "figures"
REPORT_HTML = "report.html"

# The only file types a reference in analysis.json may point at, per part.
_ALLOWED_SUFFIXES = {
    "latents": (".parquet", ".csv"),
    "annotations": (".csv",),
    "annotation_classes": (".json",),
    "selections": (".json",),
    "classifier": (".json",),
    "factors": (".csv",),
    "crop_job": (".yaml", ".yml", ".json"),
}
_TEXT_COLUMNS = {"source": str, "group": str, "annotation": str}
# Each part of analysis.json and how messages name it.
_PART_NAMES = {
    "crop_set": "crop set",
    "model": "model bundle",
    "latents": "latent table",
    "annotations": "annotation table",
    "annotation_classes": "annotation classes",
    "selections": "selections",
    "classifier": "classifier metrics",
    "factors": "factor table",
    "crop_job": "crop job",
}
CONSENT_HINT = (
    "open it with --allow-external (command line) or answer Yes when the Analysis widget asks, if you trust "
    "this folder; or copy the data into the folder"
)


@dataclass
class FileRef:
    """Where a file or folder is: relative to the analysis folder, and the absolute path when it was saved.

    The relative path is the reference: it keeps a folder usable after it is
    moved or copied. The absolute path is only a hint for data that stayed
    behind, and is read only with the user's consent (see :meth:`locate`).
    """

    path: str
    absolute: str

    @classmethod
    def to(cls, target: str | os.PathLike, folder: Path) -> FileRef:
        target = Path(target).resolve()
        try:
            relative = Path(os.path.relpath(target, folder.resolve())).as_posix()
        except ValueError:  # another drive on Windows
            relative = target.as_posix()
        return cls(path=relative, absolute=target.as_posix())

    def locate(self, folder: Path) -> Location:
        """Where the reference leads from ``folder``, and whether that is outside it.

        The relative path is tried first, the absolute path only when nothing
        is there. A path counts as external when it resolves outside the
        analysis folder, or when it is a folder holding a link that does.
        """
        root = folder.resolve()
        relative = Path(os.path.normpath(folder / self.path))
        if relative.exists():
            return Location(relative, outside=_outside(relative, root), fallback=False)
        absolute = Path(self.absolute)
        if absolute.is_absolute() and absolute.exists():
            return Location(absolute, outside=_outside(absolute, root), fallback=True)
        return Location(None, outside=None, fallback=False)

    def resolve(self, folder: Path, *, allow_external: bool = False) -> Path | None:
        """The path the reference leads to, or None when it is missing or outside ``folder`` without consent."""
        location = self.locate(folder)
        return location.path if location.path is not None and (allow_external or not location.external) else None


@dataclass(frozen=True)
class Location:
    """Where a :class:`FileRef` leads: ``path`` (None when missing); ``outside``, the place outside the
    analysis folder it reaches (itself, or through a link), or None; ``fallback``: found only at the
    absolute path recorded when the folder was saved."""

    path: Path | None
    outside: Path | None
    fallback: bool

    @property
    def external(self) -> bool:
        return self.outside is not None


def _outside(path: Path, root: Path) -> Path | None:
    """Where ``path``, or a link anywhere inside it (a folder part), leads outside ``root``;
    None when it stays inside."""
    target = path.resolve()
    if not target.is_relative_to(root):
        return target
    folders = [str(path)] if path.is_dir() else []
    while folders:  # scandir knows links and folders without a stat per file (a crop set has one file per crop)
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_symlink():
                    target = Path(entry.path).resolve()
                    if not target.is_relative_to(root):
                        return target
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(entry.path)
    return None


@dataclass
class SourceRef:
    """One source image, its label image (optional) and its group."""

    image: FileRef
    labels: FileRef | None = None
    group: str = ""


@dataclass
class AnalysisFolder:
    """The contents of ``analysis.json``: what the analysis folder holds and where its data are."""

    folder: Path
    created: str = ""
    modified: str = ""
    written_by: str = __version__
    format_version: int = FORMAT_VERSION
    sources: list[SourceRef] = field(default_factory=list)
    crop_set: FileRef | None = None
    model: FileRef | None = None
    latents: FileRef | None = None
    annotations: FileRef | None = None
    annotation_classes: FileRef | None = None
    selections: FileRef | None = None
    classifier: FileRef | None = None
    factors: FileRef | None = None
    crop_job: FileRef | None = None
    plot_settings: dict[str, Any] = field(default_factory=dict)
    #: Whether the user agreed to read references outside the folder (never saved in analysis.json).
    allow_external: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created": self.created,
            "modified": self.modified,
            "napari_morphospace_version": __version__,
        }
        for name in (
            "sources",
            "crop_set",
            "model",
            "latents",
            "annotations",
            "annotation_classes",
            "selections",
            "classifier",
            "factors",
            "crop_job",
            "plot_settings",
        ):
            value = getattr(self, name)
            data[name] = (
                [asdict(s) for s in value]
                if name == "sources"
                else (asdict(value) if isinstance(value, FileRef) else value)
            )
        return data

    def path_of(self, part: str) -> Path | None:
        """The existing path of a part (``"latents"``, ``"model"``...), or None when absent, missing or
        outside the folder without :attr:`allow_external`."""
        ref = getattr(self, part)
        return ref.resolve(self.folder, allow_external=self.allow_external) if ref is not None else None

    def references(self) -> list[tuple[str, FileRef]]:
        """Every reference of ``analysis.json``: (what it is, where), parts first, then source and label images."""
        refs = [(_PART_NAMES[part], getattr(self, part)) for part in _PART_NAMES if getattr(self, part) is not None]
        for i, source in enumerate(self.sources):
            refs.append((f"source image {i}", source.image))
            if source.labels is not None:
                refs.append((f"label image {i}", source.labels))
        return refs


@dataclass
class Analysis:
    """An opened analysis folder: every part that could be loaded, and what could not.

    ``problems`` are messages about missing or damaged parts (each names the
    file and says what to do); ``notes`` are informational (an older format).
    Parts that could not be loaded are None (or empty).
    """

    manifest: AnalysisFolder
    crop_set: CropSet | None = None
    bundle: Any = None
    latents: pd.DataFrame | None = None
    annotations: pd.DataFrame | None = None
    annotation_classes: Any = None
    selections: dict[str, list[int]] = field(default_factory=dict)
    classifier: dict[str, Any] | None = None
    factors: pd.DataFrame | None = None
    crop_job: CropJob | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.manifest.folder

    @property
    def source_images(self) -> list[Path | None]:
        """Each source image's path where it was found, None where it is missing (or outside without consent)."""
        return [
            s.image.resolve(self.folder, allow_external=self.manifest.allow_external) for s in self.manifest.sources
        ]

    def labels_path(self, source: SourceRef) -> Path | None:
        """The label image of ``source`` where it was found, None where it is missing (or outside without consent)."""
        if source.labels is None:
            return None
        return source.labels.resolve(self.folder, allow_external=self.manifest.allow_external)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- writing


def create_analysis(
    folder: str | os.PathLike,
    *,
    images: Sequence[str | os.PathLike] = (),
    labels: Sequence[str | os.PathLike | None] = (),
    groups: Sequence[str] = (),
    overwrite: bool = False,
) -> AnalysisFolder:
    """Start an analysis folder that refers to the source ``images`` (and their ``labels`` and ``groups``).

    The folder may not exist yet or be empty. An existing analysis folder is
    refused unless ``overwrite`` (then its ``analysis.json`` starts afresh;
    parts are replaced as they are saved again). A non-empty folder that is
    not an analysis folder is always refused, so a mistyped path cannot
    mix an analysis into other data.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; choose a folder for the analysis")
    if (folder / ANALYSIS_JSON).exists():
        if not overwrite:
            raise InputError(f"{folder} already holds an analysis; open it, choose another folder or pass overwrite")
        if not names_format(folder / ANALYSIS_JSON, FORMAT_NAME):  # overwrite replaces only an analysis of ours
            raise InputError(
                f"{folder / ANALYSIS_JSON} is not a {FORMAT_NAME}, so it is not replaced; choose another folder"
            )
    elif folder.exists() and not _only_annotations(folder):
        raise InputError(f"{folder} holds other files and is not an analysis folder; choose an empty or new folder")
    check_writable(folder, what="analysis folder")
    sources = source_refs(folder, images, labels, groups)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = AnalysisFolder(folder=folder, created=_now(), sources=sources)
    _write_manifest(manifest)
    return manifest


def _only_annotations(folder: Path) -> bool:
    """True when ``folder`` holds nothing but what the Annotate widget autosaves: it may become an analysis."""
    return all(path.name in (ANNOTATIONS_CSV, CLASSES_JSON, LOCK_NAME, HOLDER_NAME) for path in folder.iterdir())


def source_refs(
    folder: Path,
    images: Sequence[str | os.PathLike],
    labels: Sequence[str | os.PathLike | None] = (),
    groups: Sequence[str] = (),
) -> list[SourceRef]:
    """References from ``folder`` to each source image, its label image and group (lists of equal length)."""
    if labels and len(labels) != len(images):
        raise InputError(f"{len(images)} image(s) but {len(labels)} label image(s); give one label image per image")
    if groups and len(groups) != len(images):
        raise InputError(f"{len(images)} image(s) but {len(groups)} group name(s); give one group per image")
    refs = []
    for i, image in enumerate(images):
        label = labels[i] if labels else None
        refs.append(
            SourceRef(
                image=FileRef.to(image, folder),
                labels=None if label is None else FileRef.to(label, folder),
                group=str(groups[i]) if groups else "",
            )
        )
    return refs


def save_analysis(
    folder: str | os.PathLike | AnalysisFolder,
    *,
    images: Sequence[str | os.PathLike] | None = None,
    labels: Sequence[str | os.PathLike | None] = (),
    groups: Sequence[str] = (),
    crop_set: CropSet | str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    latents: pd.DataFrame | None = None,
    annotations: pd.DataFrame | None = None,
    annotation_classes: Any = None,
    selections: Mapping[str, Sequence[int]] | None = None,
    classifier: Mapping[str, Any] | None = None,
    factors: str | os.PathLike | None = None,
    crop_job: str | os.PathLike | None = None,
    plot_settings: Mapping[str, Any] | None = None,
) -> AnalysisFolder:
    """Save the given parts into an existing analysis folder; parts not given stay as they are.

    Parameters
    ----------
    images, labels, groups : sequences
        Replace the source references (as in :func:`create_analysis`).
    crop_set : CropSet or path
        A crop set is written to ``crops/``; a path to a saved crop set
        elsewhere is only referenced (large sets are not copied).
    model : path
        A model bundle folder. One outside the analysis folder is copied to
        ``model/``; one already inside is referenced.
    latents : DataFrame
        The latent table (``crop_id``, ``mu_*``, ``logvar_*``...), written as
        Parquet (authoritative) and CSV.
    annotations, annotation_classes
        The annotation table (``crop_id``, ``annotation``) and the classes
        (any JSON value, e.g. name -> colour), as ``core.project.annotations`` keeps them.
    selections : mapping
        Selection name -> crop ids.
    classifier : mapping
        Classifier metrics (JSON values), shown in the report.
    factors, crop_job : path
        Ground-truth factor table (CSV) and the crop job config, referenced.
    plot_settings : mapping
        Plot axes, colours... (JSON values), stored in ``analysis.json``.

    Every part is written atomically and ``analysis.json`` last.
    """
    manifest = folder if isinstance(folder, AnalysisFolder) else read_manifest(folder)[0]
    root = manifest.folder
    if images is not None:
        manifest.sources = source_refs(root, images, labels, groups)
    if crop_set is not None:
        if isinstance(crop_set, CropSet):
            save_crop_set(crop_set, root / CROPS_DIR, overwrite=True)
            manifest.crop_set = FileRef.to(root / CROPS_DIR, root)
        else:
            load_crop_set(crop_set)  # refuse a path that is not a crop set now, not at the next open
            manifest.crop_set = FileRef.to(crop_set, root)
    if model is not None:
        manifest.model = FileRef.to(_place_model(Path(model), root), root)
    if latents is not None:
        _write_latents(latents, root)
        manifest.latents = FileRef.to(root / LATENTS_PARQUET, root)
    if annotations is not None:
        missing = [c for c in ("crop_id", "annotation") if c not in annotations.columns]
        if missing:
            raise InputError(f"the annotation table lacks column(s) {', '.join(missing)}")
        atomic_write_text(root / ANNOTATIONS_CSV, annotations.to_csv(index=False))
        manifest.annotations = FileRef.to(root / ANNOTATIONS_CSV, root)
    if annotation_classes is not None:
        atomic_write_text(root / CLASSES_JSON, json.dumps(annotation_classes, indent=2))
        manifest.annotation_classes = FileRef.to(root / CLASSES_JSON, root)
    if selections is not None:
        data = {str(name): sorted(int(i) for i in ids) for name, ids in selections.items()}
        atomic_write_text(root / SELECTIONS_JSON, json.dumps(data, indent=2))
        manifest.selections = FileRef.to(root / SELECTIONS_JSON, root)
    if classifier is not None:
        atomic_write_text(root / CLASSIFIER_JSON, json.dumps(dict(classifier), indent=2, allow_nan=True))
        manifest.classifier = FileRef.to(root / CLASSIFIER_JSON, root)
    if factors is not None:
        manifest.factors = FileRef.to(factors, root)
    if crop_job is not None:
        manifest.crop_job = FileRef.to(crop_job, root)
    if plot_settings is not None:
        manifest.plot_settings = json.loads(json.dumps(dict(plot_settings)))  # refuse what JSON cannot hold now
    _write_manifest(manifest)
    return manifest


def _write_manifest(manifest: AnalysisFolder) -> None:
    """Pick up part files other writers (e.g. the annotation autosave) put in the folder, then write analysis.json."""
    root = manifest.folder
    for part, name in (
        ("annotations", ANNOTATIONS_CSV),
        ("annotation_classes", CLASSES_JSON),
        ("selections", SELECTIONS_JSON),
        ("classifier", CLASSIFIER_JSON),
    ):
        if getattr(manifest, part) is None and (root / name).is_file():
            setattr(manifest, part, FileRef.to(root / name, root))
    manifest.modified = _now()
    manifest.created = manifest.created or manifest.modified
    atomic_write_text(root / ANALYSIS_JSON, json.dumps(manifest.to_json(), indent=2))


def _write_latents(latents: pd.DataFrame, root: Path) -> None:
    if "crop_id" not in latents.columns:
        raise InputError("the latent table has no crop_id column; embed the crops with core.analysis.embed.embed")
    for name, writer in (
        (LATENTS_PARQUET, lambda p: latents.to_parquet(p, index=False)),
        (LATENTS_CSV, lambda p: latents.to_csv(p, index=False, na_rep="NaN")),
    ):
        with atomic_path(root / name) as tmp:
            writer(tmp)


def _place_model(bundle: Path, root: Path) -> Path:
    """Copy a bundle folder from outside the analysis to ``model/`` (atomically); keep one already inside."""
    from ..training.bundle import CONFIG_NAME, WEIGHTS_NAME

    if not (bundle / CONFIG_NAME).is_file() or not (bundle / WEIGHTS_NAME).is_file():
        raise InputError(f"{bundle} is not a model bundle (it needs {CONFIG_NAME} and {WEIGHTS_NAME})")
    if bundle.resolve().is_relative_to(root.resolve()):
        return bundle
    target = root / MODEL_DIR
    with atomic_folder(target) as scratch:
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            shutil.copy2(bundle / name, scratch / name)
    return target


# ---------------------------------------------------------------- reading


def is_analysis_folder(path: str | os.PathLike) -> bool:
    """True for a folder with an ``analysis.json`` (used by the napari reader to claim a folder)."""
    return Path(path).is_dir() and (Path(path) / ANALYSIS_JSON).is_file()


def read_manifest(folder: str | os.PathLike) -> tuple[AnalysisFolder, list[str], list[str]]:
    """Read ``analysis.json``: the manifest, problems (unusable entries) and notes (older format).

    Raises
    ------
    InputError
        When the folder has no readable ``analysis.json``, it is not an
        analysis, or it was written in a newer format than this version reads.
    """
    folder = Path(folder)
    path = folder / ANALYSIS_JSON
    if not path.is_file():
        raise InputError(
            f"{folder} is not an analysis folder: it has no {ANALYSIS_JSON}; "
            "choose a folder saved by napari-morphospace"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise InputError(
            f"{path} cannot be read ({type(err).__name__}: {err}); it was edited by hand or damaged: "
            "restore it from a copy"
        ) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise InputError(f"{path} does not describe a {FORMAT_NAME}; choose a folder saved by napari-morphospace")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(f"{path}: format_version is {shown(version)}, not a whole number; the file was edited by hand")
    writer = data.get("napari_morphospace_version", "an unknown version")
    if version > FORMAT_VERSION:
        raise InputError(
            f"{folder} was saved by napari-morphospace {writer} in analysis format version {version}; this "
            f"napari-morphospace ({__version__}) reads up to version {FORMAT_VERSION}. Update "
            "napari-morphospace to open it"
        )
    problems: list[str] = []
    notes: list[str] = []
    if version < FORMAT_VERSION:
        notes.append(
            f"{folder} was saved by napari-morphospace {writer} (analysis format {version}); opened with this "
            f"version ({__version__}, format {FORMAT_VERSION}). Parts the older format lacks are left empty; "
            "saving writes the current format"
        )
    manifest = AnalysisFolder(
        folder=folder,
        created=str(data.get("created", "")),
        modified=str(data.get("modified", "")),
        written_by=str(writer),
        format_version=version,
    )
    for part in ("crop_set", "model", *_ALLOWED_SUFFIXES):
        entry = data.get(part)
        if entry is None:
            continue
        ref = _file_ref(entry, f"{ANALYSIS_JSON} entry {part!r}", problems)
        if ref is not None and part in _ALLOWED_SUFFIXES and not ref.path.lower().endswith(_ALLOWED_SUFFIXES[part]):
            problems.append(
                f"{ANALYSIS_JSON} points {part!r} at {ref.path}, which is not a {' or '.join(_ALLOWED_SUFFIXES[part])} "
                "file; it was not loaded (analysis folders never load other file types). Fix the entry by hand"
            )
            ref = None
        setattr(manifest, part, ref)
    sources = data.get("sources") or []
    if not isinstance(sources, list):
        problems.append(
            f"{ANALYSIS_JSON}: sources is {shown(sources)}, not a list of source images; they were "
            "ignored. Fix the entry by hand or save the analysis again"
        )
        sources = []
    for i, entry in enumerate(sources):
        where = f"{ANALYSIS_JSON} source {i}"
        image = _file_ref(entry.get("image") if isinstance(entry, dict) else None, where, problems)
        if image is None:
            continue
        labels = _file_ref(entry["labels"], f"{where} labels", problems) if entry.get("labels") else None
        group = entry.get("group", "")
        if not isinstance(group, (str, int, float)) or isinstance(group, bool):
            problems.append(f"{where}: group is {shown(group)}, not a name; the group was left empty")
            group = ""
        manifest.sources.append(SourceRef(image=image, labels=labels, group=str(group)))
    plot_settings = data.get("plot_settings") or {}
    if isinstance(plot_settings, dict):
        manifest.plot_settings = plot_settings
    else:
        problems.append(f"{ANALYSIS_JSON}: plot_settings is not a mapping; the plot settings were reset")
    return manifest, problems, notes


def _file_ref(entry: Any, where: str, problems: list[str]) -> FileRef | None:
    if (
        isinstance(entry, dict)
        and isinstance(entry.get("path"), str)
        and entry["path"]
        and isinstance(entry.get("absolute", ""), str)
        and "\0" not in entry["path"] + entry.get("absolute", "")
    ):
        return FileRef(path=entry["path"], absolute=entry.get("absolute") or entry["path"])
    problems.append(f"{where} is not a path entry ({{'path': ..., 'absolute': ...}}); it was ignored. Fix it by hand")
    return None


def external_references(folder: str | os.PathLike) -> list[str]:
    """What ``analysis.json`` refers to outside the folder, one ``"what: path"`` per reference.

    Read before opening, so the user can be asked whether to allow it
    (:func:`open_analysis` with ``allow_external``). Raises :class:`InputError`
    like :func:`read_manifest` when the folder is not an analysis.
    """
    manifest = read_manifest(folder)[0]
    found = []
    for what, ref in manifest.references():
        location = ref.locate(manifest.folder)
        if location.path is not None and location.external:
            found.append(f"{what}: {location.outside}")
    return found


def open_analysis(folder: str | os.PathLike, *, load_model: bool = True, allow_external: bool = False) -> Analysis:
    """Open an analysis folder: load every part that is there and list what is missing or damaged.

    Never executes code from the folder: ``analysis.json`` is parsed as
    JSON, tables are read as Parquet/CSV, the crop set as zarr + Parquet, the
    model from safetensors. A source image that is missing, a part that is
    referenced but gone, or a file that cannot be parsed becomes a message
    in :attr:`Analysis.problems` (naming the file) and the rest still opens.

    An analysis folder refers only to its own contents: a reference that
    leads outside it (``../``, an absolute path, a link, or the absolute path
    recorded when a now-missing part was saved) is read only with
    ``allow_external`` (the user's consent: ``--allow-external``, or Yes in
    the Analysis widget); otherwise it is listed as a problem and not read.
    A part found only at its recorded absolute path is a problem either way.

    Raises
    ------
    InputError
        Only when ``analysis.json`` itself is missing, unreadable or from a
        newer format version.
    """
    manifest, problems, notes = read_manifest(folder)
    manifest.allow_external = allow_external
    analysis = Analysis(manifest=manifest, problems=problems, notes=notes)
    root = manifest.folder
    outside: list[str] = []
    for i, source in enumerate(manifest.sources):
        for kind, ref in (("source image", source.image), ("label image", source.labels)):
            if ref is None:
                continue
            location = ref.locate(root)
            if location.path is None:
                problems.append(
                    f"{kind} {ref.path} (source {i}, group {source.group or '?'}) is missing from {root}; move it back "
                    f"or edit {ANALYSIS_JSON}. Crops, latents and annotations still open"
                )
            elif location.external and not allow_external:
                outside.append(str(location.outside))
    if outside:
        problems.append(
            f"{len(outside)} source or label image(s) lie outside the analysis folder (e.g. {outside[0]}) "
            f"and were not read; {CONSENT_HINT}"
        )
    analysis.crop_set = _load_part(manifest, "crop_set", load_crop_set, problems)
    if load_model:
        from ..training.bundle import load_bundle

        analysis.bundle = _load_part(manifest, "model", load_bundle, problems)
    analysis.latents = _load_part(manifest, "latents", lambda p: _read_latents(p, problems), problems)
    analysis.annotations = _load_part(manifest, "annotations", _read_annotations, problems)
    analysis.annotation_classes = _load_part(manifest, "annotation_classes", _read_json, problems)
    analysis.selections = _load_part(manifest, "selections", _read_selections, problems) or {}
    analysis.classifier = _load_part(manifest, "classifier", _read_json, problems)
    analysis.factors = _load_part(manifest, "factors", _read_factors, problems)
    analysis.crop_job = _load_part(manifest, "crop_job", lambda path: load_config(path, CropJob), problems)
    _check_crop_ids(analysis)
    _check_preprocessing(analysis)
    return analysis


def _load_part(manifest: AnalysisFolder, part: str, loader: Any, problems: list[str]) -> Any:
    """Load one part where its reference leads, or add a problem saying why it was not loaded."""
    ref, what = getattr(manifest, part), _PART_NAMES[part]
    if ref is None:
        return None
    location = ref.locate(manifest.folder)
    if location.path is None:
        problems.append(
            f"the {what} {ref.path} is missing from {manifest.folder}; it was not loaded. "
            "Restore it, or save that part again"
        )
        return None
    if location.external and not manifest.allow_external:
        if location.fallback:
            where = f"is missing; its copy was recorded at {location.outside}"
        elif location.outside == Path(os.path.abspath(location.path)):
            where = f"lies at {location.outside}"
        else:
            where = f"leads through a link to {location.outside}"
        problems.append(f"the {what} {ref.path} {where}, outside the analysis folder, and was not read; {CONSENT_HINT}")
        return None
    if location.fallback:
        problems.append(
            f"the {what} {ref.path} is missing from {manifest.folder}; {location.path} (where it was "
            "when the folder was saved) was read instead. Copy it into the folder or save that part again"
        )
    try:
        return loader(location.path)
    except (InputError, OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        # What a file outside the folder holds is not repeated, not even in an error message.
        detail = f" ({err})" if not location.external else ""
        problems.append(
            f"the {what} {location.path} cannot be read{detail}; it was edited by hand or damaged. "
            "Restore it, or save that part again"
        )
        return None


def _read_latents(path: Path, problems: list[str]) -> pd.DataFrame:
    """The latent table from Parquet; the CSV next to it must agree (a hand edit shows up here)."""
    if path.suffix.lower() == ".csv":
        return check_latent_table(_read_latents_csv(path), path.name)
    try:
        table = check_latent_table(pd.read_parquet(path), path.name)
    except (OSError, ValueError) as err:
        csv = path.with_suffix(".csv")
        if not csv.is_file():
            raise
        problems.append(
            f"the latent table {path} cannot be read ({err}); using {csv.name} instead. "
            "Save the latents again to repair it"
        )
        return check_latent_table(_read_latents_csv(csv), csv.name)
    csv = path.with_suffix(".csv")
    if csv.is_file():
        try:
            from_csv = check_latent_table(_read_latents_csv(csv), csv.name)
            pd.testing.assert_frame_equal(table, from_csv, check_dtype=False, check_column_type=False)
        except (AssertionError, OSError, ValueError):
            problems.append(
                f"{csv} differs from {path.name} (one of them was edited by hand); "
                f"{path.name} was used. Delete the out-of-date file or save the latents again"
            )
    return table


def _read_latents_csv(path: Path) -> pd.DataFrame:
    """A latent CSV as written by :func:`save_analysis` (empty text stays empty, ``NaN`` is missing)."""
    return pd.read_csv(path, keep_default_na=False, na_values=["NaN"], dtype=_TEXT_COLUMNS)


def _read_annotations(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, keep_default_na=False, dtype={"annotation": str})
    missing = [c for c in ("crop_id", "annotation") if c not in table.columns]
    if missing:
        raise InputError(f"{path.name} lacks column(s) {', '.join(missing)}")
    ids = pd.to_numeric(table["crop_id"], errors="coerce")
    if not (ids.notna() & np.isfinite(ids) & (ids == ids.round())).all():
        raise InputError(f"{path.name}: every crop_id must be a whole number")
    if not ids.is_unique:
        raise InputError(f"{path.name} gives some crop_id more than one annotation")
    return table.assign(crop_id=ids.astype(np.int64))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_factors(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    if "crop_id" in table.columns and not pd.api.types.is_integer_dtype(table["crop_id"]):
        raise InputError(f"{path.name}: every crop_id must be a whole number")
    return table


def _read_selections(path: Path) -> dict[str, list[int]]:
    data = _read_json(path)
    if not isinstance(data, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        for ids in data.values()
    ):
        raise InputError(f"{path.name} must map each selection name to a list of crop ids (whole numbers)")
    return {str(name): list(ids) for name, ids in data.items()}


def _check_crop_ids(analysis: Analysis) -> None:
    """Flag tables that name crops the crop set does not have (a mix of two analyses, or a hand edit)."""
    if analysis.crop_set is None:
        return
    known = set(analysis.crop_set.table["crop_id"].astype(int))
    checks = [(analysis.manifest.latents, analysis.latents), (analysis.manifest.annotations, analysis.annotations)]
    for ref, table in checks:
        if ref is not None and table is not None:
            unknown = sorted(set(table["crop_id"].astype(int)) - known)
            if unknown:
                analysis.problems.append(
                    f"{ref.path} names {len(unknown)} crop id(s) the crop set does not have "
                    f"(e.g. {unknown[:5]}); those rows belong to another crop set. Embed or annotate again"
                )
    for name, ids in analysis.selections.items():
        unknown = sorted(set(ids) - known)
        if unknown:
            analysis.problems.append(f"selection {name!r} in {SELECTIONS_JSON} names unknown crop id(s) {unknown[:5]}")


def _check_preprocessing(analysis: Analysis) -> None:
    """Flag a model whose training crops were made differently from the folder's crop set."""
    from ..training.bundle import preprocessing_differences

    if analysis.bundle is None or analysis.crop_set is None:
        return
    differences = preprocessing_differences(analysis.bundle.preprocess, analysis.crop_set.preprocess)
    if differences:
        analysis.problems.append(
            "the model was trained on crops made differently from this folder's crop set ("
            + "; ".join(differences)
            + "); its latents of these crops are not comparable. Make the crops again with "
            "the model's settings (its model.json) or train on these crops"
        )


__all__ = [
    "ANALYSIS_JSON",
    "FORMAT_VERSION",
    "Analysis",
    "AnalysisFolder",
    "FileRef",
    "SourceRef",
    "create_analysis",
    "external_references",
    "is_analysis_folder",
    "open_analysis",
    "read_manifest",
    "save_analysis",
    "source_refs",
]
