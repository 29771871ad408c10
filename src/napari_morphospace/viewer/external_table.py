"""Open a table of features measured elsewhere (CellProfiler, DINO, another model) as the session's cells.

The core (:mod:`core.external_table`) matches the table's rows to Labels
layers described as :class:`~napari_morphospace.core.external_table.LabelsObjects`;
this module describes the open layers, reads the table and hands the rows to
the session (:meth:`Session.open_table`), whose features writer puts them
into the layers' ``features``. :func:`read_for_viewer` only reads (safe in a
worker thread); :func:`open_table` also changes the session (GUI thread).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Labels

from ..core.external_table import (
    IMAGE_NUMBER,
    ExternalCells,
    LabelsObjects,
    TableSettings,
    external_cells,
    find_image_table,
    read_external_table,
    read_image_table,
)
from .features import is_overlay, source_names
from .session import session_for


def labels_objects(viewer: Any) -> list[LabelsObjects]:
    """The Labels layers of ``viewer`` that hold cells (not the plugin's overlays), with their label ids."""
    found = []
    for layer in viewer.layers:
        if isinstance(layer, Labels) and not is_overlay(layer):
            data = layer.data[0] if layer.multiscale else layer.data
            ids = np.unique(np.asarray(data))
            found.append(LabelsObjects(layer.name, ids[ids > 0], source_names(layer)[1:]))
    return found


def read_for_viewer(viewer: Any, path: str | os.PathLike, settings: TableSettings | None = None) -> ExternalCells:
    """Read the table in ``path`` and match its rows to the viewer's Labels layers (and crop set, when there is one)."""
    settings = settings or TableSettings()
    table = read_external_table(path)
    images = None
    if IMAGE_NUMBER in table.columns:
        image_table = Path(settings.image_table) if settings.image_table else find_image_table(path)
        images = read_image_table(image_table) if image_table is not None else None
    session = session_for(viewer)
    cells = session.cells if session.crop_set is not None else None
    return external_cells(table, settings, layers=labels_objects(viewer), cells=cells, images=images)


def open_table(viewer: Any, path: str | os.PathLike, settings: TableSettings | None = None) -> ExternalCells:
    """Read the table and make its rows the session's cells (or its crop set's features); returns what was read."""
    cells = read_for_viewer(viewer, path, settings)
    session_for(viewer).open_table(cells.table)
    return cells
