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

from ._reader import LayerData, file_stem, stack_to_layer_data
from .core.analysis.cell_table import (
    LabelsInfo,
    cell_table,
    join_latents,
    latent_columns,
    merge_latents,
    set_annotations,
)
from .core.cells.crop_job import read_labels
from .core.cells.crop_set import CropSet
from .core.cells.selection import spatial_ndim
from .core.errors import InputError
from .core.io.stacks import read_stack
from .core.project.analysis_folder import (
    CONSENT_HINT,
    Analysis,
    external_references,
    is_analysis_folder,
    open_analysis,
)

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
        raise InputError(
            f"{folder}: every image it shows lies outside the analysis folder, and nothing outside it "
            f"is read without your consent; {CONSENT_HINT}"
        )
    return layers


SOURCE_GAP_PX = 20  # empty pixels between two sources' fields in the viewer


def analysis_layers(path: PathOrPaths, *, allow_external: bool = False) -> list[LayerData]:
    """Layers of an analysis folder: each source image, and its Labels with one features row per embedded cell.

    Images outside the folder are read only with ``allow_external`` (the
    Analysis widget asks the user); napari's File > Open Folder cannot ask,
    so there they are skipped with a warning saying how to allow them.

    Layers are named as File > Open names them (the file names), which are
    the names the Cells widget gave the crops' sources, so the reopened cells
    find their layers again. The Labels ``features`` are those the session
    writes (:func:`core.analysis.cell_table.join_latents`): ``index`` (the label id),
    ``crop_id``, ``group``, ``annotation``, the latents and any embedding or
    cluster columns. Every layer's ``metadata`` has ``morphospace_analysis``
    (the folder). Sources are placed side by side along X (``translate``),
    each image with its labels.
    """
    folder = Path(path if isinstance(path, (str, os.PathLike)) else list(path)[0])
    analysis = open_analysis(folder, load_model=False, allow_external=allow_external)
    for message in [*analysis.problems, *analysis.notes]:
        warnings.warn(message, UserWarning, stacklevel=2)
    table = analysis_cells(analysis)
    layers: list[LayerData] = []
    offset_x = 0.0  # sources side by side along X, so several fields do not cover each other
    for source, image_path in zip(analysis.manifest.sources, analysis.source_images, strict=True):
        if image_path is None:
            continue  # already reported as a problem
        stack = read_stack(image_path)
        scale = [stack.scale.get(a, 1.0) for a in stack.axes.replace("C", "")]
        translate = [0.0] * (len(scale) - 1) + [offset_x]
        for data, kwargs, kind in stack_to_layer_data(stack):
            kwargs["metadata"] = {
                **kwargs.get("metadata", {}),
                "morphospace_analysis": str(folder),
                "group": source.group,
            }
            kwargs["translate"] = translate
            layers.append((data, kwargs, kind))
        offset_x += (stack.data.shape[-1] + SOURCE_GAP_PX) * scale[-1]
        labels_path = analysis.labels_path(source)
        if labels_path is None:
            continue
        labels = read_labels(labels_path)
        name = file_stem(labels_path)
        aliases = (source.image.absolute, str(image_path))  # what crops cut with the command line name as source
        features = layer_features(
            table, LabelsInfo(name, has_time=labels.ndim > spatial_ndim(table, labels.ndim), aliases=aliases)
        )
        layers.append(
            (
                labels,
                {
                    "name": name,
                    "scale": scale,
                    "translate": translate,
                    "features": features,
                    "metadata": {"morphospace_analysis": str(folder), "source": str(image_path), "group": source.group},
                },
                "labels",
            )
        )
    return layers


def analysis_cells(analysis: Analysis) -> pd.DataFrame:
    """The analysis's per-cell table: its crops with their latents and the saved annotations
    (empty without crops or latents)."""
    cells = cell_table(analysis.crop_set.table) if isinstance(analysis.crop_set, CropSet) else None
    cells = merge_latents(cells, analysis.latents)
    if cells is None:
        return pd.DataFrame()
    if analysis.annotations is not None:
        cells = set_annotations(cells, analysis.annotations.set_index("crop_id")["annotation"])
    return cells


def layer_features(cells: pd.DataFrame, layer: LabelsInfo) -> pd.DataFrame:
    """The features of one source's Labels layer: its embedded cells, as the session's writer puts them."""
    if cells.empty or not latent_columns(cells):
        return pd.DataFrame()
    return join_latents(cells, [layer]).tables.get(layer.name, pd.DataFrame())


__all__ = ["analysis_cells", "analysis_layers", "get_analysis_reader", "layer_features", "read_analysis_folder"]
