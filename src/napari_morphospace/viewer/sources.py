"""The sources of a crop set in the viewer: which layers pair into images with their objects, read as stacks.

napari-aware, Qt-free (the Cells widget shows these; a script calls them
with ``viewer.layers``): :func:`find_sources` pairs each objects layer
(Labels, Points, Shapes) with its image's channel layers
(:mod:`core.cells.pairing`), :func:`crop_sources` reads the checked ones as what
:func:`core.cells.crops.build_crop_set` crops, and :func:`crop_job` writes them as
the job ``morphospace crops --config`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import dask.array as da
import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from napari.utils.notifications import show_info

from ..core.cells.crop_job import CropJob
from ..core.cells.crops import CropSettings, CropSource, PatchSettings
from ..core.cells.pairing import (
    LayerInfo,
    LayerKind,
    Pairing,
    folder_name,
    looks_like_labels,
    pair_layers,
    pair_patches,
    source_stem,
)
from ..core.cells.pairing import (
    channel_names as named_channels,
)
from ..core.cells.preprocess import PreprocessPipeline
from ..core.errors import InputError
from ..core.io.stacks import Stack
from .layers import layer_file

ObjectKind = Literal["labels", "points", "shapes", "patches"]
#: What ``CropSource`` builds the crops from.
BuilderKind = Literal["labels", "points", "boxes", "patches"]


@dataclass
class Source:
    """One row of the sources table: objects layer, its channel layers, their axes, a group."""

    objects: str
    channels: list[str]
    axes: str
    group: str
    use: bool = True


def layer_axes(layer: Image) -> str:
    """Axes of an image layer without channels: the reader's metadata, else guessed from ndim."""
    axes = layer.metadata.get("axes") if isinstance(layer.metadata, dict) else None
    if isinstance(axes, str) and len(axes.replace("C", "")) == layer.ndim:
        return axes.replace("C", "")
    return {2: "YX", 3: "ZYX", 4: "TZYX"}.get(layer.ndim, "")


def layer_info(layer: Any) -> LayerInfo | None:
    """What :mod:`core.cells.pairing` needs of a layer; ``None`` for layers that are no source (RGB, multiscale images).

    The origin is the reader's ``metadata["source"]`` (our readers, samples,
    analysis folders), else napari's source path, together with the sample
    dataset the layer came from (samples share group names and shapes).
    """
    metadata = layer.metadata if isinstance(layer.metadata, dict) else {}
    kind: LayerKind
    if isinstance(layer, Image):
        if layer.rgb or layer.multiscale:
            return None
        kind, shape = "image", tuple(layer.data.shape)
    elif isinstance(layer, Labels):
        kind, shape = "labels", tuple((layer.data[0] if layer.multiscale else layer.data).shape)
    elif isinstance(layer, (Points, Shapes)):
        kind, shape = ("points" if isinstance(layer, Points) else "shapes"), (0,) * layer.ndim  # only ndim counts
    else:
        return None
    where, sample = metadata.get("source") or layer.source.path, layer.source.sample
    origin = None if where is None and sample is None else f"{':'.join(sample or ())}|{where or ''}"
    integer = kind == "image" and np.issubdtype(layer.data.dtype, np.integer)
    group = metadata.get("group")
    return LayerInfo(
        layer.name,
        kind,
        shape,
        origin=origin,
        group=str(group) if group else None,
        folder=folder_name(layer_file(layer)),
        integer=integer,
    )


def layer_pairing(layers: Any, kind: ObjectKind) -> Pairing:
    """Pair the objects layers of ``kind`` with their image layers (see :mod:`core.cells.pairing`)."""
    infos = [info for info in map(layer_info, layers) if info is not None]
    return pair_patches(infos) if kind == "patches" else pair_layers(infos, kind)


def find_sources(layers: Any, kind: ObjectKind, pairing: Pairing | None = None) -> list[Source]:
    """The sources table's rows: every objects layer of ``kind`` with its image's channel layers.

    Objects layers that could not be paired come with no channels (``pairing.problems`` says why).
    For a patch grid every image is a source.
    """
    pairing = pairing or layer_pairing(layers, kind)
    found = []
    for paired in pairing.sources:
        axes = layer_axes(layers[paired.channels[0]]) if paired.channels else ""
        found.append(Source(paired.objects, list(paired.channels), axes, paired.group))
    return found


def row_key(source: Source) -> str:
    """What identifies a row of the sources table across refreshes: its objects layer, else its channels."""
    return source.objects or ", ".join(source.channels)


def channel_names(source: Source) -> list[str]:
    """Channel names from the layer names without the source's stem: "control membrane" -> "membrane"."""
    return named_channels(source.channels, source_stem(source.objects, source.channels))


def source_stack(layers: Any, source: Source, names: list[str] | None = None) -> Stack:
    """The channel layers of ``source`` stacked as one :class:`Stack` (lazily when any is dask).

    The layers' ``scale`` becomes the physical pixel size, so crops record it.
    ``names`` overrides the channel names (all sources of one crop set must
    share them: channels are matched by their order in the Channels column).
    """
    if not source.channels:
        raise InputError(
            f"source {source.objects or source.group!r} has no image layers; name them in the Channels column"
        )
    missing = [name for name in source.channels if name not in layers]
    if missing:
        raise InputError(f"no image layer named {', '.join(map(repr, missing))}; check the Channels column")
    arrays = [layers[name].data for name in source.channels]
    shapes = {tuple(a.shape) for a in arrays}
    if len(shapes) > 1:
        raise InputError(
            f"the channel layers of {source.group!r} have different shapes {sorted(shapes)}; choose layers of one image"
        )
    if (
        len(source.axes) != arrays[0].ndim
        or set(source.axes) - set("TZYX")
        or len(set(source.axes)) != len(source.axes)
    ):
        raise InputError(
            f"axes {source.axes!r} do not fit image layers with {arrays[0].ndim} dimensions; "
            "write one letter from TZYX per dimension in the Axes column"
        )
    names = names or channel_names(source)
    if len(names) != len(arrays):
        raise InputError(
            f"source {source.group!r} has {len(arrays)} channel layers but the first source has {len(names)}; "
            "give every source the same channels, in the same order"
        )
    stack = da.stack if any(isinstance(a, da.Array) for a in arrays) else np.stack
    scale = {axis: float(step) for axis, step in zip(source.axes, layers[source.channels[0]].scale, strict=True)}
    return Stack(stack(arrays), "C" + source.axes, scale=scale, channel_names=list(names), source=source.objects)


def _to_image_coordinates(coords: np.ndarray, objects_layer: Any, image_layer: Image) -> np.ndarray:
    """Map coordinates from an objects layer's data space to an image layer's (scale and translate)."""
    world = coords * np.asarray(objects_layer.scale) + np.asarray(objects_layer.translate)
    return (world - np.asarray(image_layer.translate)) / np.asarray(image_layer.scale)


def source_objects(layers: Any, source: Source, kind: ObjectKind) -> tuple[Any, BuilderKind]:
    """The objects of ``source`` in the image's pixel coordinates, and the builder kind to use."""
    layer = layers[source.objects]
    if kind == "labels":
        return np.asarray(layer.data), "labels"
    image_layer = layers[source.channels[0]]
    if kind == "points":
        return _to_image_coordinates(np.asarray(layer.data, dtype=float), layer, image_layer), "points"
    if len(layer.data) == 0:
        raise InputError(f"the Shapes layer {layer.name!r} has no shapes; draw rectangles around cells first")
    boxes = [np.stack([np.min(s, axis=0), np.max(s, axis=0)]) for s in layer.data]
    return _to_image_coordinates(np.asarray(boxes, dtype=float), layer, image_layer), "boxes"


def crop_sources(
    layers: Any, sources: list[Source], kind: ObjectKind, settings: CropSettings | PatchSettings
) -> list[CropSource]:
    """What :func:`core.cells.crops.build_crop_set` needs of each checked source: its stack and objects, read now.

    Read on the GUI thread (layers are the viewer's); the build then only
    computes. Channels are matched by their order: every source gets the
    first source's channel names.
    """
    sources = [s for s in sources if s.use]
    if not sources:
        raise InputError("no source is checked; add an image with a Labels layer (or points/boxes) and check it")
    plan = []
    names = channel_names(sources[0])
    for source in sources:
        image = source_stack(layers, source, names)
        builder: BuilderKind
        objects, builder = (None, "patches") if kind == "patches" else source_objects(layers, source, kind)
        plan.append(
            CropSource(
                image, objects, builder, settings, group=source.group, source=source.objects or source.channels[0]
            )
        )
    return plan


def crop_job(
    layers: Any,
    sources: list[Source],
    kind: ObjectKind,
    crop: CropSettings,
    patches: PatchSettings,
    preprocess: PreprocessPipeline,
) -> CropJob:
    """The checked ``sources`` and the settings as a :class:`CropJob` that ``morphospace crops --config`` runs.

    Every layer must come from a file, and each source's channel layers
    from one file (all its channels, as the reader splits them).
    """
    if kind not in ("labels", "patches"):
        raise InputError(
            "the command line crops from Labels files or a patch grid; points and boxes stay in the viewer"
        )
    images, labels, groups = [], [], []
    for source in (s for s in sources if s.use):
        files = {layer_file(layers[name]) for name in source.channels}
        if len(files) != 1 or None in files:
            raise InputError(
                f"the channel layers of {source.group!r} do not all come from one file; open the image "
                "file in napari (or save the layers as one OME-TIFF) to make a job the command line can run"
            )
        images.append(str(files.pop()))
        groups.append(source.group)
        if kind == "labels":
            label_file = layer_file(layers[source.objects])
            if label_file is None:
                raise InputError(
                    f"the Labels layer {source.objects!r} was not opened from a file; save it "
                    "(File > Save Selected Layers) and open that file, then save the job"
                )
            labels.append(str(label_file))
    if not images:
        raise InputError("no source is checked; check at least one row of the sources table")
    return CropJob(
        images=images,
        labels=labels,
        groups=groups,
        objects=kind,
        crop=crop,
        patches=patches,
        preprocess=preprocess,
    )


def label_images(layers: Any) -> list[Image]:
    """Integer image layers named like label images (``X_labels``): label files opened by a plain image reader."""
    return [
        layer
        for layer in layers
        if isinstance(layer, Image) and (info := layer_info(layer)) is not None and looks_like_labels(info)
    ]


def convert_label_images(viewer: Any) -> list[str]:
    """Turn integer image layers named like label images into Labels layers, with a note; returns their names.

    napari's built-in reader opens ``X_labels.tif`` as an image; the
    Cells widget (and Embed, Scatter, which write and read
    ``layer.features``) need a Labels layer. Name, data, scale, translate
    and place in the layer list are kept; the file is remembered in
    ``metadata["source"]`` so a crop job can still name it.
    """
    converted = []
    for image in label_images(viewer.layers):
        index = list(viewer.layers).index(image)
        metadata = dict(image.metadata) if isinstance(image.metadata, dict) else {}
        file = layer_file(image)
        if file is not None:
            metadata.setdefault("source", str(file))
        name = image.name
        viewer.layers.remove(image)
        labels = viewer.add_labels(
            image.data, name=name, scale=image.scale, translate=image.translate, metadata=metadata
        )
        viewer.layers.move(list(viewer.layers).index(labels), index)
        converted.append(name)
    if converted:
        show_info(
            f"{', '.join(map(repr, converted))} held object ids but came in as image layers (napari's built-in "
            "reader); Morphospace turned them into Labels layers. Open label files with the Morphospace reader "
            "(File > Open with Plugin > Morphospace) to get Labels layers directly."
        )
    return converted
