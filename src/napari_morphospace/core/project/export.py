"""Export crops, tables, AnnData and figures so other tools (Fiji, pandas, scanpy) can open them.

Every file is written to a temporary file in its target folder and renamed
into place, so a crash, a full disk or ``kill -9`` never leaves a half file
under a final name. Nothing existing is replaced unless ``overwrite=True``,
and all targets are checked before the first file is written. Class names
become folder names only after :func:`safe_name`, and every target is checked
to lie inside the chosen folder.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import tifffile

from ..cells.crop_set import CropSet
from ..errors import InputError
from ..files import atomic_path, remove_stale_scratch, write_failed
from ..io.stacks import Stack, write_stack
from ..outputs import check_output

MANIFEST_NAME = "manifest.csv"
UNANNOTATED = ""
# Latent-table column prefixes that become AnnData obsm matrices.
EMBEDDING_PREFIXES = {"PCA_": "X_pca", "UMAP_": "X_umap", "TSNE_": "X_tsne"}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
MAX_NAME_BYTES = 100


def safe_name(name: str) -> str:
    """A file or folder name for ``name`` that cannot leave its folder and works on every OS.

    Path separators, control and reserved characters become ``_``, runs of
    white space become one ``_``, leading dots and trailing dots are removed
    (so ``".."`` cannot climb up), Windows device names get a ``_`` suffix.
    Letters of any script are kept (NFC-normalised): ``"ünïcødé"`` stays.
    """
    text = unicodedata.normalize("NFC", str(name))
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"\s+", "_", text.strip())
    text = text.lstrip(".").rstrip(". ")
    while len(text.encode("utf-8")) > MAX_NAME_BYTES:
        text = text[:-1]
    if not text:
        text = "_"
    if text.split(".")[0].lower() in _WINDOWS_RESERVED:
        text = f"{text}_"
    return text


def crop_file_name(crop_id: int, file_format: str = "ome-tiff") -> str:
    """``crop_000123.ome.tif`` (OME-TIFF) or ``crop_000123.tif`` (ImageJ TIFF)."""
    return f"crop_{int(crop_id):06d}{'.ome.tif' if file_format == 'ome-tiff' else '.tif'}"


def _inside(folder: Path, target: Path) -> Path:
    """``target`` resolved, after checking it lies inside ``folder``."""
    resolved = target.resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise InputError(f"{target} would be written outside the export folder {folder}; choose another name")
    return resolved


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise InputError(
            f"{existing[0]}{more} already exist(s); choose another folder or name, or allow overwriting "
            "(--overwrite on the command line)"
        )
    folders = [p for p in existing if p.is_dir()]
    if folders:
        raise InputError(
            f"{folders[0]} is a folder where a file would be written; move it away or choose another folder"
        )


_EXPORT_FILE = re.compile(r"^crop_\d+(\.ome)?\.tif$")


def is_export_folder(folder: str | os.PathLike) -> bool:
    """True for a folder holding only what :func:`export_crops` writes (crop files, class folders, manifest).

    That is what ``overwrite`` may write into: a finished export, or one that
    was interrupted before its manifest. A folder with any other file is not.
    """
    folder = Path(folder)
    if (folder / MANIFEST_NAME).is_file():
        return True

    def ours(entry: Path, depth: int) -> bool:
        if entry.is_symlink():
            return False
        if entry.is_dir():
            return depth == 0 and all(ours(child, 1) for child in entry.iterdir())
        return bool(_EXPORT_FILE.match(entry.name)) or entry.name.endswith(".tmp")

    return all(ours(entry, 0) for entry in folder.iterdir())


def check_export_folder(folder: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an export folder before anything is written: another kind of folder, a file, or not writable."""
    folder = check_output(folder, what="export folder", kind="folder", overwrite=overwrite, is_ours=is_export_folder)
    if folder.is_dir():  # interrupted exports leave temporary files beside their crop files
        for sub in [folder, *(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())]:
            remove_stale_scratch(sub)
    return folder


def check_table_target(
    path: str | os.PathLike, overwrite: bool, *, suffixes: Sequence[str] = (".csv", ".parquet"), what: str = "table"
) -> Path:
    """Refuse a table (or other single-file) target before any work: wrong suffix, a folder, existing, not writable."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{path.name}: the {what} is written as {' or '.join(suffixes)}; change the file name")
    return check_output(path, what=what, kind="file", overwrite=overwrite)


# ---------------------------------------------------------------------- crops


def export_crops(
    crop_set: CropSet,
    folder: str | os.PathLike,
    *,
    which: Literal["all", "selected", "per-class"] = "all",
    crop_ids: Iterable[int] | None = None,
    annotations: pd.Series | None = None,
    format: Literal["ome-tiff", "tiff"] = "ome-tiff",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write one TIFF per crop with physical pixel sizes and channel names, plus ``manifest.csv``.

    Parameters
    ----------
    crop_set : CropSet
        Crops ``(N, C, [Z,] Y, X)`` float32 in [0, 1]; written as float32
        unchanged, with ``crop_set.spacing`` (micrometres) as pixel size.
    folder : path
        Export folder (created if missing). Files are named
        ``crop_000123.ome.tif`` after the crop id.
    which : {"all", "selected", "per-class"}
        All crops; only ``crop_ids``; or the annotated crops, each in a
        sub-folder named after its class (:func:`safe_name`; unannotated crops
        are not written).
    annotations : pandas.Series, optional
        Class name per crop id (e.g. ``AnnotationStore.annotations``); by
        default the crop table's ``annotation`` column.
    format : {"ome-tiff", "tiff"}
        OME-TIFF (OME-XML metadata, any reader) or ImageJ TIFF (Fiji
        hyperstack with calibration and channel labels).
    overwrite : bool
        Replace existing files; otherwise refuse before writing anything.
    progress : callable, optional
        Called with ``(done, total)`` after each file.

    Returns
    -------
    list of Path
        The crop files, in crop-set order. ``manifest.csv`` (crop id, file
        relative to ``folder``, annotation and the crop table's columns) is
        written last, so its presence means the export finished.
    """
    if format not in ("ome-tiff", "tiff"):
        raise InputError(f"format must be 'ome-tiff' or 'tiff'; got {format!r}")
    folder = Path(folder)
    table = crop_set.table.reset_index(drop=True)
    labels = _annotation_per_row(table, annotations)
    positions = _chosen_rows(table, which, crop_ids, labels)
    relative = _relative_paths(table, positions, which, labels, format)
    check_export_folder(folder, overwrite)
    targets = [_inside(folder, folder / r) for r in relative]
    manifest_path = _inside(folder, folder / MANIFEST_NAME)
    _refuse_existing([*targets, manifest_path], overwrite)
    replaced = _previous_export(folder) - set(relative)
    axes = "C" + "ZYX"[3 - crop_set.spatial_ndim :]
    spatial = axes[1:]
    scale = {a: float(s) for a, s in zip(spatial, crop_set.spacing, strict=True)} if crop_set.spacing else {}
    units = {a: "µm" for a in scale}
    written = []
    for done, (position, target) in enumerate(zip(positions, targets, strict=True), start=1):
        data = np.asarray(crop_set.images[int(position)], dtype=np.float32)
        stack = Stack(data, axes, scale, list(crop_set.channel_names), source=str(target), units=units)
        try:
            if format == "ome-tiff":
                write_stack(target, stack, overwrite=True)
            else:
                _write_imagej(target, stack)
        except OSError as err:
            raise write_failed(target, err) from err
        written.append(target)
        if progress is not None:
            progress(done, len(positions))
    manifest = table.iloc[positions].copy()
    manifest.insert(1, "file", relative)
    manifest["annotation"] = labels[positions]
    with atomic_path(manifest_path) as tmp:
        manifest.to_csv(tmp, index=False)
    _remove_previous(folder, replaced)
    return written


def _previous_export(folder: Path) -> set[str]:
    """The crop files the export already in ``folder`` lists in its manifest (empty when there is none)."""
    try:
        files = pd.read_csv(folder / MANIFEST_NAME, usecols=["file"], dtype=str)["file"]
    except (OSError, ValueError):
        return set()
    return {f for f in files.dropna() if _EXPORT_FILE.match(Path(f).name)}


def _remove_previous(folder: Path, relative: set[str]) -> None:
    """Delete the files of the replaced export that the new one did not write, and class folders left empty."""
    for name in relative:
        path = folder / name
        if path.resolve().is_relative_to(folder.resolve()) and path.is_file():
            path.unlink()
            if path.parent != folder and not any(path.parent.iterdir()):
                path.parent.rmdir()


def _annotation_per_row(table: pd.DataFrame, annotations: pd.Series | None) -> np.ndarray:
    """Class name (or ``""``) of every table row, from ``annotations`` or the table's own column."""
    if annotations is None:
        column = table["annotation"] if "annotation" in table.columns else pd.Series("", index=table.index)
        return column.fillna("").astype(str).to_numpy(dtype=object)
    mapped = table["crop_id"].map(annotations)
    return mapped.fillna("").astype(str).to_numpy(dtype=object)


def _chosen_rows(table: pd.DataFrame, which: str, crop_ids: Iterable[int] | None, labels: np.ndarray) -> np.ndarray:
    if which == "all":
        if table.empty:
            raise InputError("the crop set holds no crops, so there is nothing to export; make crops first")
        return np.arange(len(table))
    if which == "per-class":
        positions = np.flatnonzero(labels != UNANNOTATED)
        if positions.size == 0:
            raise InputError(
                "no crop is annotated, so a per-class export would write nothing; annotate cells first "
                "(Annotate widget; on the command line pass --annotations ANALYSIS_DIR) or export all crops"
            )
        return positions
    if which != "selected":
        raise InputError(f"which must be 'all', 'selected' or 'per-class'; got {which!r}")
    if crop_ids is None:
        raise InputError("exporting the selected crops needs their crop ids; select cells first (or pass --ids)")
    wanted = np.asarray(list(crop_ids), dtype=np.int64)
    positions = pd.Index(table["crop_id"].to_numpy(dtype=np.int64)).get_indexer(wanted)
    if (positions < 0).any():
        missing = wanted[positions < 0]
        raise InputError(
            f"crop id(s) {', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''} are "
            "not in the crop set; "
            "check the ids belong to this crop set"
        )
    return np.unique(positions)


def _relative_paths(
    table: pd.DataFrame, positions: np.ndarray, which: str, labels: np.ndarray, file_format: str
) -> list[str]:
    ids = table["crop_id"].to_numpy(dtype=np.int64)
    names = [crop_file_name(ids[p], file_format) for p in positions]
    if which != "per-class":
        return names
    folders = class_folder_names(labels[positions])
    return [f"{folders[labels[p]]}/{n}" for p, n in zip(positions, names, strict=True)]


def class_folder_names(class_names: Iterable[str]) -> dict[str, str]:
    """One distinct safe folder name per class name (``"a/b"`` and ``"a_b"`` get ``a_b`` and ``a_b_2``)."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for name in dict.fromkeys(class_names):
        base = safe_name(name)
        candidate, n = base, 2
        while candidate.lower() in taken:
            candidate, n = f"{base}_{n}", n + 1
        folders[name] = candidate
        taken.add(candidate.lower())
    return folders


def _write_imagej(path: Path, stack: Stack) -> None:
    """ImageJ hyperstack TIFF with calibration (µm) and channel labels, written atomically."""
    data = stack.data if "Z" in stack.axes else stack.data[:, np.newaxis]  # ImageJ order: (Z, C, Y, X)
    data = np.ascontiguousarray(np.moveaxis(data, 0, 1))
    metadata: dict[str, Any] = {"axes": "ZCYX", "Labels": list(stack.channel_names) * data.shape[0]}
    resolution = None
    if stack.scale:
        metadata["unit"] = "um"
        if "Z" in stack.scale:
            metadata["spacing"] = stack.scale["Z"]
        resolution = (1 / stack.scale["X"], 1 / stack.scale["Y"])
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, resolution=resolution, metadata=metadata)


# ---------------------------------------------------------------------- tables


def analysis_table(
    crop_table: pd.DataFrame,
    latent_table: pd.DataFrame | None = None,
    annotations: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per crop: the crop table, then latents/embeddings/clusters, with the current annotations.

    ``latent_table`` (from :func:`core.analysis.embed.embed`, keyed by ``crop_id``)
    contributes the columns the crop table lacks (``mu_*``, ``logvar_*``,
    ``PCA_*``, ``UMAP_*``, cluster ids, ...); crops without latents get NaN.
    ``annotations`` (class name per crop id) replaces the ``annotation`` column.
    """
    table = crop_table.reset_index(drop=True)
    if latent_table is not None:
        if "crop_id" not in latent_table.columns:
            raise InputError("the latent table has no crop_id column; write it with 'morphospace embed'")
        extra = [c for c in latent_table.columns if c not in table.columns]
        table = table.merge(latent_table[["crop_id", *extra]], on="crop_id", how="left", validate="one_to_one")
    if annotations is not None:
        table["annotation"] = table["crop_id"].map(annotations).fillna("").astype(str)
    return table


def export_table(table: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``table`` as CSV or Parquet (chosen by the suffix of ``path``), atomically.

    CSV holds text (``""`` stays empty, NaN is written ``NaN``); Parquet keeps
    dtypes exactly. The index is not written.
    """
    path = check_table_target(path, overwrite)
    suffix = path.suffix.lower()
    table = table.reset_index(drop=True)
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            table.to_csv(tmp, index=False, na_rep="NaN")
        else:
            table.to_parquet(tmp, index=False)
    return path


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`export_table`; text columns come back as text (``""`` not NaN).

    A missing, unreadable or damaged file is refused in one line naming it.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"the table {path} {what}; give the .csv or .parquet file written by 'morphospace embed'")
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise InputError(f"{path.name} is not a .csv or .parquet table; give the file written by 'morphospace embed'")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, keep_default_na=False, na_values=["NaN"])
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(
            f"cannot read the table {path} ({type(err).__name__}: {err}); it is damaged or not a "
            f"{path.suffix.lower()[1:]} file: write it again"
        ) from err


def check_latent_table(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Refuse a latent table whose rows cannot be trusted to name their crops; return it with integer crop ids.

    It needs a ``crop_id`` column of unique whole numbers and ``mu_*`` (or
    measured ``feature:*``) columns of finite numbers: anything else was edited
    by hand or mixed with another file, and would put latents on the wrong cells.
    """
    from ..analysis.cell_table import latent_columns

    columns = latent_columns(table)
    if "crop_id" not in table.columns or not columns:
        raise InputError(
            f"{name} has no crop_id and mu_0, mu_1, ... columns, so it is not a latent table; "
            "give the table written by 'morphospace embed' (or by 'morphospace table')"
        )
    ids = pd.to_numeric(table["crop_id"], errors="coerce")
    whole = ids.notna() & np.isfinite(ids) & (ids == ids.round())
    if not whole.all():
        bad = table["crop_id"][~whole].iloc[0]
        shown = repr(bad) if isinstance(bad, str) else str(bad)
        raise InputError(
            f"{name}: crop_id {shown} is not a whole number; the table was edited by hand, embed the crops again"
        )
    if not ids.is_unique:
        raise InputError(
            f"{name} has repeated crop_id values (e.g. {int(ids[ids.duplicated()].iloc[0])}); embed the crops again"
        )
    mu = table[columns].apply(pd.to_numeric, errors="coerce")
    finite = np.isfinite(mu.to_numpy(dtype=np.float64)).all(axis=1)
    if not finite.all():
        raise InputError(
            f"{name}: the mu_* values of crop_id {int(ids[~finite].iloc[0])} are missing, NaN, infinite "
            "or not numbers; the table was edited by hand or damaged, embed the crops again"
        )
    table = table.copy()
    table["crop_id"] = ids.astype(np.int64)
    return table


def export_anndata(latent_table: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a latent table as AnnData ``.h5ad`` for scanpy (needs the optional ``anndata`` package).

    Layout: one observation per crop, ``obs_names`` = crop ids (as text);
    ``X`` = the latent means ``mu_*`` (float32, ``var_names`` ``mu_0`` ...),
    so scanpy's neighbours/UMAP run on the latent space directly; for a
    table of measured features, ``X`` holds the ``feature:*`` columns with
    the user's names as ``var_names`` (``AreaShape_Area``);
    ``obsm["X_latent"]`` = the same means, ``obsm["X_logvar"]`` = ``logvar_*``
    when present, ``obsm["X_pca"]``/``["X_umap"]``/``["X_tsne"]`` from
    ``PCA_*``/``UMAP_*``/``TSNE_*`` columns; ``obs`` = every other column
    (crop id, source, label id, t, group, annotation, bounding box, clusters).
    """
    path = check_anndata_target(path, overwrite)
    anndata = require_anndata()
    from ..analysis.cell_table import latent_columns, original_name

    mu = latent_columns(latent_table)  # a model's mu_*, or measured feature:* columns (var_names: the user's names)
    if not mu:
        raise InputError("the table has no mu_* columns; export the latent table written by 'morphospace embed'")
    obsm_columns = {"X_latent": mu}
    if logvar := _prefixed(latent_table, "logvar_"):
        obsm_columns["X_logvar"] = logvar
    for prefix, key in EMBEDDING_PREFIXES.items():
        if columns := _prefixed(latent_table, prefix):
            obsm_columns[key] = columns
    used = {c for columns in obsm_columns.values() for c in columns}
    obs = latent_table[[c for c in latent_table.columns if c not in used]].reset_index(drop=True)
    obs.index = latent_table["crop_id"].astype(str).to_numpy() if "crop_id" in latent_table else obs.index.astype(str)
    obs.index = obs.index.astype(str)
    adata = anndata.AnnData(
        X=latent_table[mu].to_numpy(dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=pd.Index([original_name(c) for c in mu]).astype(str)),
        obsm={key: latent_table[columns].to_numpy(dtype=np.float32) for key, columns in obsm_columns.items()},
    )
    with atomic_path(path) as tmp:
        with _nullable_strings(anndata):
            adata.write_h5ad(tmp)
    return path


def check_anndata_target(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse an ``.h5ad`` target before any work (suffix, existing, not writable) and check anndata is installed."""
    path = check_table_target(path, overwrite, suffixes=(".h5ad",), what="AnnData file")
    require_anndata()
    return path


def require_anndata() -> Any:
    """The optional ``anndata`` module, or a one-line message saying how to install it."""
    try:
        import anndata
    except ImportError as err:
        raise InputError(
            "writing .h5ad needs the optional package anndata: install it with "
            "pip install 'napari-morphospace[anndata]', or export the table as .csv/.parquet instead"
        ) from err
    return anndata


@contextmanager
def _nullable_strings(anndata: Any) -> Iterator[None]:
    """pandas 3 stores text as string arrays, which anndata writes only when allowed to."""
    settings = getattr(anndata, "settings", None)
    if settings is not None and hasattr(settings, "allow_write_nullable_strings"):
        with settings.override(allow_write_nullable_strings=True):
            yield
    else:
        yield


def _prefixed(table: pd.DataFrame, prefix: str) -> list[str]:
    """Columns ``prefix0, prefix1, ...`` in numeric order."""
    columns = [c for c in table.columns if isinstance(c, str) and c.startswith(prefix) and c[len(prefix) :].isdigit()]
    return sorted(columns, key=lambda c: int(c[len(prefix) :]))


# --------------------------------------------------------------------- figures


def export_figures(
    figures: Mapping[str, Any],
    folder: str | os.PathLike,
    *,
    formats: Sequence[str] = ("png", "svg"),
    dpi: int = 150,
    overwrite: bool = False,
) -> list[Path]:
    """Save matplotlib Figures as ``<safe name>.png`` / ``.svg`` in ``folder``, atomically.

    ``figures`` maps a name (e.g. ``"kde top dimensions"``) to a Figure; text
    values (the messages that stand in for a figure that could not be drawn)
    are skipped. Existing files are refused unless ``overwrite``, before
    anything is written.
    """
    from ..figures.render import FORMATS, render_figure

    folder = Path(folder)
    for fmt in formats:
        if fmt not in FORMATS:
            raise InputError(f"figure format {fmt!r} is not supported; use {', '.join(FORMATS)}")
    figures = {name: figure for name, figure in figures.items() if not isinstance(figure, str)}
    if not figures:
        raise InputError("there are no figures to export; compute them first")
    names = class_folder_names(figures)
    targets = [
        (figure, _inside(folder, folder / f"{names[name]}.{fmt}"), fmt)
        for name, figure in figures.items()
        for fmt in formats
    ]
    _refuse_existing([t for _, t, _ in targets], overwrite)
    written = []
    for figure, target, fmt in targets:
        content = render_figure(figure, format=fmt, dpi=dpi, tight=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(content)
        written.append(target)
    return written


__all__ = [
    "EMBEDDING_PREFIXES",
    "MANIFEST_NAME",
    "analysis_table",
    "check_anndata_target",
    "check_export_folder",
    "check_latent_table",
    "check_table_target",
    "class_folder_names",
    "crop_file_name",
    "export_anndata",
    "export_crops",
    "export_figures",
    "export_table",
    "is_export_folder",
    "read_table",
    "safe_name",
]
