"""napari reader for analysis folders: source images, and Labels layers whose features hold the latents.

Pure functions returning napari LayerData tuples ``(data, kwargs, layer_type)``;
nothing here imports napari. Problems found when opening the folder (missing
source images, damaged parts) are issued as warnings, which napari shows as
notifications, and the rest of the folder still opens.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ._reader import LayerData, stack_to_layer_data
from .core.analysis import CONSENT_HINT, Analysis, external_references, is_analysis_folder, open_analysis
from .core.crop_job import read_labels
from .core.errors import InputError
from .core.io import read_stack

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


def get_analysis_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return :func:`read_analysis_folder` for one folder holding an ``analysis.json``, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if len(paths) != 1 or not is_analysis_folder(paths[0]):
        return None
    return read_analysis_folder


def read_analysis_folder(path: PathOrPaths) -> list[LayerData]:
    """napari's reader (``File > Open Folder``): :func:`analysis_layers` without reading outside the folder.

    napari cannot ask for consent here, so references outside the folder are
    skipped with a warning; when nothing is left to show, the error says how
    to open the folder with them.
    """
    layers = analysis_layers(path)
    folder = Path(path if isinstance(path, (str, os.PathLike)) else list(path)[0])
    if not layers and external_references(folder):
        raise InputError(f"{folder}: every image it shows lies outside the analysis folder, and nothing outside it "
                         f"is read without your consent; {CONSENT_HINT}")  # fmt: skip
    return layers


SOURCE_GAP_PX = 20  # empty pixels between two sources' fields in the viewer


def analysis_layers(path: PathOrPaths, *, allow_external: bool = False) -> list[LayerData]:
    """Layers of an analysis folder: each source image, and its Labels with one features row per cell.

    Images outside the folder are read only with ``allow_external`` (the
    Analysis widget asks the user); napari's File > Open Folder cannot ask,
    so there they are skipped with a warning saying how to allow them.

    The Labels ``features`` hold ``index`` and ``label_id`` (the label value),
    ``crop_id``, ``t``, ``group``, ``annotation`` and the latent columns
    (``mu_*``, ``logvar_*``), so the scatter widget and other plugins can plot
    them. Every layer's ``metadata`` has ``morphospace_analysis`` (the folder).
    Sources are placed side by side along X (``translate``), each image with
    its labels.
    """
    folder = Path(path if isinstance(path, (str, os.PathLike)) else list(path)[0])
    analysis = open_analysis(folder, load_model=False, allow_external=allow_external)
    for message in [*analysis.problems, *analysis.notes]:
        warnings.warn(message, UserWarning, stacklevel=2)
    table = cell_table(analysis)
    layers: list[LayerData] = []
    offset_x = 0.0  # sources side by side along X, so several fields do not cover each other
    for source, image_path in zip(analysis.manifest.sources, analysis.source_images):
        if image_path is None:
            continue  # already reported as a problem
        stack = read_stack(image_path)
        scale = [stack.scale.get(a, 1.0) for a in stack.axes.replace("C", "")]
        translate = [0.0] * (len(scale) - 1) + [offset_x]
        for data, kwargs, kind in stack_to_layer_data(stack):
            kwargs["metadata"] = {**kwargs.get("metadata", {}), "morphospace_analysis": str(folder), "group": source.group}
            kwargs["translate"] = translate
            layers.append((data, kwargs, kind))
        offset_x += (stack.data.shape[-1] + SOURCE_GAP_PX) * scale[-1]
        labels_path = analysis.labels_path(source)
        if labels_path is None:
            continue
        features = rows_of_source(table, source.image.absolute, image_path)
        name = f"{source.group or Path(image_path).name.split('.')[0]} cells"
        layers.append((read_labels(labels_path), {
            "name": name, "scale": scale, "translate": translate, "features": features,
            "metadata": {"morphospace_analysis": str(folder), "source": str(image_path), "group": source.group},
        }, "labels"))  # fmt: skip
    return layers


def cell_table(analysis: Analysis) -> pd.DataFrame:
    """One row per crop: the crop table joined with the latents and the saved annotations."""
    if analysis.crop_set is not None:
        table = analysis.crop_set.table.copy()
    elif analysis.latents is not None:
        table = analysis.latents.copy()
    else:
        return pd.DataFrame()
    if analysis.latents is not None and analysis.crop_set is not None:
        latent_columns = [c for c in analysis.latents.columns if c not in table.columns or c == "crop_id"]
        table = table.merge(analysis.latents[latent_columns], on="crop_id", how="left")
    if analysis.annotations is not None and "crop_id" in table:
        saved = analysis.annotations.set_index("crop_id")["annotation"]
        current = table["annotation"] if "annotation" in table else pd.Series("", index=table.index)
        table["annotation"] = table["crop_id"].map(saved).fillna(current).astype(str)
    if "label_id" in table:
        table.insert(0, "index", table["label_id"].astype(int))
    return table


def rows_of_source(table: pd.DataFrame, recorded: str, found: Path) -> pd.DataFrame:
    """The rows of one source image: by the path recorded at crop time, else (folder moved) by file name."""
    if table.empty or "source" not in table:
        return pd.DataFrame()
    sources = table["source"].astype(str)
    rows = table[(sources == recorded) | (sources == str(found))]
    if rows.empty:
        rows = table[sources.map(lambda s: Path(s).name) == found.name]
    return rows.reset_index(drop=True)


__all__ = ["analysis_layers", "cell_table", "get_analysis_reader", "read_analysis_folder", "rows_of_source"]
