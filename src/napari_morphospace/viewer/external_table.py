"""Open a table of features measured elsewhere (CellProfiler, DINO, another model) as the session's cells.

The core (:mod:`core.analysis.external_table`) matches the table's rows to Labels
layers described as :class:`~napari_morphospace.core.analysis.external_table.LabelsObjects`;
this module describes the open layers and the session's crops. The Analysis
widget reads the table in a worker and hands the rows to the session
(:meth:`Session.open_table`), whose features writer puts them into the
layers' ``features``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Labels

from ..core.analysis.external_table import LabelsObjects
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


def match_targets(viewer: Any) -> tuple[list[LabelsObjects], pd.DataFrame | None]:
    """What a table's rows are matched to: the Labels layers, and the session's cells when they come from a crop set."""
    session = session_for(viewer)
    return labels_objects(viewer), session.cells if session.crop_set is not None else None
