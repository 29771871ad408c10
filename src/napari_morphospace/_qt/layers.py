"""Small lookups on napari layers that several widgets need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import InputError


def layer_file(layer: Any) -> Path | None:
    """The file a layer was read from: napari's source path or our readers' ``metadata["source"]``."""
    metadata = layer.metadata if isinstance(layer.metadata, dict) else {}
    for candidate in (layer.source.path, metadata.get("source")):
        if candidate and Path(str(candidate)).is_file():
            return Path(str(candidate)).resolve()
    return None


def source_layers(layers: Any, rows: pd.DataFrame) -> dict[str, Any]:
    """The layer of each crop's ``source`` (the crop table names the layer it was cut from), refusing missing ones."""
    if "source" not in rows.columns:
        raise InputError("the crop table has no source column: it cannot say which layer a crop came from")
    names = [str(s) for s in pd.unique(rows["source"].astype(str))]
    missing = [name for name in names if name not in layers]
    if missing:
        raise InputError(
            f"no layer named {', '.join(map(repr, missing))}: open the image the crops were cut from "
            "(the crop table's source column names the layer)"
        )
    return {name: layers[name] for name in names}
