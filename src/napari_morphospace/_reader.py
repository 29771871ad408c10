"""npe2 reader: open microscopy stacks as napari layers, one image layer per channel.

A thin shell over :func:`napari_morphospace.core.io.stacks.read_stack`: layers get
the file's physical pixel size as ``scale`` (time interval for T), the file
and channel names as layer names, and ``metadata`` with the source, axes and units.
Large files arrive as dask arrays and are passed through untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .core.io.stacks import Stack, can_read, read_stack

LayerData = tuple[Any, dict[str, Any], str]
PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return :func:`read_layers` when every path is a file this plugin reads, else None.

    Only the file names are checked here (napari calls this for every file
    it opens); reading problems surface as an ``InputError`` from the reader.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(can_read(p) for p in paths):
        return None
    return read_layers


def read_layers(path: PathOrPaths) -> list[LayerData]:
    """Read each path and return napari layer data tuples, in path order."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [layer for p in paths for layer in stack_to_layer_data(read_stack(p))]


def stack_to_layer_data(stack: Stack) -> list[LayerData]:
    """Layer data for a stack: labels for integer label/mask files, one RGB layer, or one image per channel.

    ``scale`` follows the layer's axes (the stack's axes without C); the time
    axis gets the frame interval (1.0 when unknown).
    """
    layer_axes = stack.axes.replace("C", "")
    scale = [stack.scale.get(a, 1.0) for a in layer_axes]
    metadata = {"source": stack.source, "axes": layer_axes, "units": dict(stack.units)}
    names = _layer_names(stack)
    common = {"scale": scale, "metadata": metadata}
    if _is_label_file(stack):
        return [(data, {**common, "name": name}, "labels") for data, name in zip(_channels(stack), names, strict=True)]
    if stack.rgb:
        rgb_data = np.moveaxis(stack.data, stack.axes.index("C"), -1)
        return [(rgb_data, {**common, "name": _file_stem(stack), "rgb": True}, "image")]
    if "C" in stack.axes:
        return [(stack.data, {**common, "name": names, "channel_axis": stack.axes.index("C")}, "image")]
    return [(stack.data, {**common, "name": names[0]}, "image")]


def _layer_names(stack: Stack) -> list[str]:
    """``"<file> <channel>"`` per channel, or ``"<file>"`` for one channel.

    The file name keeps layers of several files apart (``control membrane``,
    ``treated membrane``) and lets the Cells widget pair each Labels file with
    its image (``control_labels`` with ``control``).
    """
    stem = _file_stem(stack)
    if stack.n_channels == 1:
        return [stem]
    return [f"{stem} {name}" for name in stack.channel_names]


def _file_stem(stack: Stack) -> str:
    return file_stem(stack.source)


def file_stem(path: str | os.PathLike) -> str:
    """The file name without any suffix (``cells.ome.tif`` -> ``cells``): the layer name File > Open gives it."""
    return Path(path).name.split(".")[0] or "image"


def _is_label_file(stack: Stack) -> bool:
    """Integer images named like ``*label*`` / ``*mask*`` hold object ids, not intensities."""
    name = Path(stack.source).name.lower()
    return np.issubdtype(stack.data.dtype, np.integer) and ("label" in name or "mask" in name) and not stack.rgb


def _channels(stack: Stack) -> list[Any]:
    """The stack split along C (labels layers have no channel axis); the whole stack when there is no C."""
    if "C" not in stack.axes:
        return [stack.data]
    channel = stack.axes.index("C")
    return [stack.data[(slice(None),) * channel + (c,)] for c in range(stack.n_channels)]
