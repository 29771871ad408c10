"""Pair each objects layer (labels, points, boxes) with the image layers it was drawn on.

Works on plain descriptions of layers (:class:`LayerInfo`: name, kind, shape,
where it came from), so it is tested without napari. The Cells widget
describes the viewer's layers and shows the result.

How an objects layer finds its image, strongest evidence first:

1. **Same origin**: the layers came from one place (one sample dataset, one
   analysis folder entry), e.g. a sample's ``control cells`` and
   ``control membrane``.
2. **Same name stem**: ``X`` ↔ ``X_labels``, ``X_label``, ``X_mask(s)``,
   ``X_seg``, ``X_segmentation``, ``X_cp_masks``, ``X cells`` (any of
   ``_ - . space`` before the suffix; napari's duplicate suffix `` [1]`` is
   ignored). An image *source* is all channel layers of one file (our reader
   names them ``"<file> <channel>"``; napari's ``channel_axis`` names them
   ``X``, ``X [1]``, …), so its stem is the file's. When one file name occurs
   in several folders, the image in the objects file's folder is chosen.
3. **Stem as a word prefix**: ``control cells`` ↔ ``control membrane`` +
   ``control nucleus`` when those layers have no origin at all (added from a
   script); layers from different files are never merged into one source.
4. **The only image of that shape**: ``mask2d`` ↔ ``img2d`` when no other
   image layer has the shape.

Labels need the image's exact shape; points and boxes its dimensionality.
Whatever is still ambiguous (two image sources with one stem, no stem match
while several images of the shape exist) is refused with a message naming
the layers, never guessed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

LayerKind = Literal["image", "labels", "points", "shapes"]

#: Words that end the name of a label image saved as a file: ``X_labels.tif``, ``X_cp_masks.png``, ``X_seg.tif``.
_LABEL_FILE_WORDS = r"labels?|masks?|seg(mentation)?"
#: Suffixes that mark an objects layer (or file) of image ``X``: ``X_labels``, ``X cells``, ``X_cp_masks``...
OBJECTS_SUFFIX = re.compile(
    rf"[_\-. ](cp[_\-. ]?)?({_LABEL_FILE_WORDS}|cells|objects|points|boxes|shapes)$", re.IGNORECASE
)
#: Suffixes of a label image saved as a file. Narrower than :data:`OBJECTS_SUFFIX`: an integer image named
#: ``HeLa cells`` is a fluorescence image, not objects.
LABEL_IMAGE_SUFFIX = re.compile(rf"[_\-. ](cp[_\-. ]?)?({_LABEL_FILE_WORDS})$", re.IGNORECASE)
#: napari appends `` [1]``, `` [2]``... to a layer name that is already taken.
DUPLICATE_SUFFIX = re.compile(r" \[\d+\]$")


@dataclass(frozen=True)
class LayerInfo:
    """What pairing needs to know of one layer.

    ``shape`` is the layer's data shape (one channel); ``origin`` says where
    it came from (a file path, or a sample dataset and its part), ``None``
    when unknown; ``folder`` is the name of the folder of its file;
    ``integer`` is True for integer pixel types.
    """

    name: str
    kind: LayerKind
    shape: tuple[int, ...]
    origin: str | None = None
    group: str | None = None
    folder: str | None = None
    integer: bool = False


@dataclass
class PairedSource:
    """One row of the sources table: an objects layer and the channel layers of its image."""

    objects: str
    channels: list[str]
    group: str
    stem: str


@dataclass
class Pairing:
    """The sources found, and one message per objects layer that could not be paired (naming the layers)."""

    sources: list[PairedSource] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def unpaired(self) -> list[str]:
        """Objects layers without an image (their sources have no channels)."""
        return [s.objects for s in self.sources if not s.channels]


@dataclass
class _ImageSource:
    """The channel layers of one image (one file, one sample part, or one name)."""

    layers: list[LayerInfo]

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.layers[0].shape

    @property
    def origin(self) -> str | None:
        return self.layers[0].origin

    @property
    def stem(self) -> str:
        return common_stem([base_name(n) for n in self.names])


# --------------------------------------------------------------------------- names


def base_name(name: str) -> str:
    """The layer name without napari's duplicate suffix: ``control cells [1]`` -> ``control cells``."""
    return DUPLICATE_SUFFIX.sub("", name)


def name_stem(name: str) -> str:
    """The image name an objects layer refers to: ``A9 p10d_labels`` -> ``A9 p10d``;
    ``control cells [1]`` -> ``control``."""
    return OBJECTS_SUFFIX.sub("", base_name(name))


def looks_like_labels(layer: LayerInfo) -> bool:
    """An integer image named like objects (``X_labels``, ``X_mask``): a label image opened as an image."""
    return layer.kind == "image" and layer.integer and bool(LABEL_IMAGE_SUFFIX.search(base_name(layer.name)))


def common_stem(names: Sequence[str]) -> str:
    """The words all ``names`` start with (``control membrane``, ``control nucleus`` -> ``control``),
    else the first name."""
    if len(set(names)) <= 1:
        return names[0] if names else ""
    words = [n.split(" ") for n in names]
    shared = []
    for column in zip(*words, strict=False):  # names differ in word count: compare up to the shortest
        if len(set(column)) > 1:
            break
        shared.append(column[0])
    return " ".join(shared) or names[0]


def channel_names(channels: Sequence[str], stem: str) -> list[str]:
    """Channel names from layer names: ``stem`` removed (``control membrane`` -> ``membrane``).

    A layer named just ``stem`` (one-channel files, napari's ``channel_axis``
    layers ``X``, ``X [1]``) gives ``ch0``, ``ch1``..., as files without channel
    names do, so crops of several files share their channel names.
    """
    names = []
    for index, layer in enumerate(channels):
        base = base_name(layer)
        if base == stem:
            names.append(f"ch{index}")
        elif stem and base.startswith(stem + " "):
            names.append(base[len(stem) + 1 :])
        else:
            names.append(base)
    return names


# --------------------------------------------------------------------------- pairing


def image_sources(layers: Sequence[LayerInfo]) -> list[_ImageSource]:
    """Image layers grouped into sources: same origin and shape, or (no origin) same base name."""
    groups: dict[tuple, list[LayerInfo]] = {}
    for layer in layers:
        if layer.kind != "image" or looks_like_labels(layer):
            continue
        key = ("origin", layer.origin, layer.shape) if layer.origin else ("name", base_name(layer.name), layer.shape)
        groups.setdefault(key, []).append(layer)
    return [_ImageSource(members) for members in groups.values()]


def pair_layers(layers: Sequence[LayerInfo], kind: Literal["labels", "points", "shapes"]) -> Pairing:
    """Pair every objects layer of ``kind`` with its image source (see the module docstring)."""
    images = image_sources(layers)
    pairing = Pairing()
    found: list[tuple[LayerInfo, _ImageSource | None]] = []
    for layer in layers:
        if layer.kind != kind:
            continue
        image, problem = _image_of(layer, images, kind)
        if problem:
            pairing.problems.append(problem)
        found.append((layer, image))
    folders = {i.layers[0].folder for _, i in found if i is not None}
    for layer, image in found:
        if image is None:
            group = _group(layer, name_stem(layer.name), folders)
            pairing.sources.append(PairedSource(layer.name, [], group, name_stem(layer.name)))
        else:
            group = layer.group or _group(image.layers[0], image.stem, folders)
            pairing.sources.append(PairedSource(layer.name, image.names, group, source_stem(layer.name, image.names)))
    return pairing


def pair_patches(layers: Sequence[LayerInfo]) -> Pairing:
    """For a patch grid every image source is a source of its own (no objects layer)."""
    images = image_sources(layers)
    folders = {i.layers[0].folder for i in images}
    return Pairing([PairedSource("", i.names, _group(i.layers[0], i.stem, folders), i.stem) for i in images])


def _group(layer: LayerInfo, stem: str, folders: set[str | None]) -> str:
    """The condition: the layer's own group, else its folder when the sources come from several, else its stem."""
    return layer.group or (layer.folder if len(folders) > 1 and layer.folder else stem)


def source_stem(objects: str, channels: Sequence[str]) -> str:
    """The stem channel names are cut from: the objects' stem when the channels are named ``<stem> <channel>``,
    else the words the channel names share."""
    bases = [base_name(n) for n in channels]
    stem = name_stem(objects) if objects else ""
    if stem and all(b == stem or b.startswith(stem + " ") for b in bases):
        return stem
    return common_stem(bases)


def _image_of(layer: LayerInfo, images: list[_ImageSource], kind: str) -> tuple[_ImageSource | None, str]:
    """The image source of objects ``layer`` and, when there is none, why (naming the layers)."""
    if kind == "labels":
        fitting = [i for i in images if i.shape == layer.shape]
        fit_text = f"its shape {_shape_text(layer.shape)}"
    else:
        fitting = [i for i in images if len(i.shape) == len(layer.shape)]
        fit_text = f"{len(layer.shape)} dimensions"
    if not fitting:
        return None, f"{layer.name!r}: no image layer has {fit_text}; open its image"
    if layer.origin:
        same_origin = [i for i in fitting if i.origin == layer.origin]
        if len(same_origin) == 1:
            return same_origin[0], ""
    stem = name_stem(layer.name)
    by_stem = [i for i in fitting if i.stem == stem]
    if len(by_stem) > 1 and layer.folder:  # one file name in several folders (a plate per condition)
        by_stem = [i for i in by_stem if i.layers[0].folder == layer.folder] or by_stem
    if len(by_stem) == 1:
        return by_stem[0], ""
    if len(by_stem) > 1:
        return None, (
            f"{layer.name!r}: several images are named {stem!r} ({_names_text(by_stem)}); "
            "rename one of them, or type the channel layers of this row in the table"
        )
    by_prefix = [i for i in fitting if all(base_name(n).startswith(stem + " ") for n in i.names)]
    if len(by_prefix) == 1:
        return by_prefix[0], ""
    if by_prefix and all(i.origin is None for i in by_prefix):
        return _ImageSource([lay for i in by_prefix for lay in i.layers]), ""  # "X membrane", "X nucleus" of "X cells"
    if by_prefix:
        return None, (
            f"{layer.name!r}: the images {_names_text(by_prefix)} all start with {stem!r} and come from "
            "different files; name the objects layer after its image ('X_labels' for image 'X')"
        )
    if len(fitting) == 1:
        return fitting[0], ""
    return None, (
        f"{layer.name!r}: no image is named {stem!r} and several have {fit_text} "
        f"({_names_text(fitting)}); name it after its image ('X_labels' for image 'X'), "
        "or type the channel layers of this row in the table"
    )


def _names_text(sources: list[_ImageSource], limit: int = 6) -> str:
    names = [", ".join(map(repr, s.names)) for s in sources]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return "; ".join(names[:limit]) + more


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def folder_name(path: str | os.PathLike | None) -> str | None:
    """The name of the folder holding file ``path`` (``None`` without a path)."""
    if not path:
        return None
    return os.path.basename(os.path.dirname(os.fspath(path))) or None


__all__ = [
    "LayerInfo",
    "PairedSource",
    "Pairing",
    "base_name",
    "channel_names",
    "common_stem",
    "folder_name",
    "image_sources",
    "looks_like_labels",
    "name_stem",
    "pair_layers",
    "pair_patches",
    "source_stem",
]
