"""Pairing objects layers with their images, on layer descriptions alone (no viewer)."""

from pathlib import Path

import pytest
import tifffile
from real_data import bbbc007_fields, dataset

from napari_morphospace.core.cells.pairing import (
    LayerInfo,
    channel_names,
    looks_like_labels,
    name_stem,
    pair_layers,
    pair_patches,
)


def _file_layer(path: Path, kind: str) -> LayerInfo:
    """A layer as napari gives it for one single-channel file: named after the file, its path as origin."""
    with tifffile.TiffFile(path) as tif:
        shape = tif.series[0].shape
    return LayerInfo(path.name.split(".")[0], kind, tuple(shape), origin=str(path), folder=path.parent.name)


@pytest.fixture(scope="module")
def bbbc007_layers():
    """Every BBBC007 file, images and labels, in the order a user opening them folder by folder gets them."""
    files = sorted(p for p in dataset("bbbc007").glob("*/*.tif"))
    return [_file_layer(p, "labels" if p.stem.endswith("_labels") else "image") for p in files]


@pytest.mark.parametrize(
    "name, stem",
    [
        ("A9 p10d_labels", "A9 p10d"),
        ("17P1_POS0006_D_1UL_labels", "17P1_POS0006_D_1UL"),
        ("control cells", "control"),
        ("control cells [1]", "control"),
        ("X_mask", "X"),
        ("X-masks", "X"),
        ("X.seg", "X"),
        ("X_segmentation", "X"),
        ("X_cp_masks", "X"),
        ("X_label", "X"),
        ("mask2d", "mask2d"),
        ("cells", "cells"),
    ],
)
def test_name_stem_removes_one_objects_suffix_and_napari_duplicate_marks(name, stem):
    assert name_stem(name) == stem


def test_every_real_bbbc007_field_pairs_with_its_own_image_only(bbbc007_layers):
    pairing = pair_layers(bbbc007_layers, "labels")
    paired = {s.objects: s.channels for s in pairing.sources if s.channels}
    expected = {labels.stem: [image.stem] for _, image, labels in bbbc007_fields()}
    assert paired == expected and len(paired) == 14
    # Names share their first word ("A9 p10d", "A9 p5d"): the first-word grouping gave each labels layer four images.
    assert paired["A9 p10d_labels"] == ["A9 p10d"]
    # Conditions are the folders (the fields come from three folders).
    groups = {s.objects: s.group for s in pairing.sources}
    assert groups["A9 p10d_labels"] == "A9" and groups["17P1_POS0006_D_1UL_labels"] == "f96 (17)"
    assert groups["20P1_POS0005_D_1UL_labels"] == "f9620"


def test_labels_without_their_image_are_refused_naming_the_layers(bbbc007_layers):
    pairing = pair_layers(bbbc007_layers, "labels")
    assert pairing.unpaired == ["20P1_POS0002_D_1UL_labels"]
    [lonely] = [s for s in pairing.sources if not s.channels]
    assert lonely.group == "f9620"  # its folder, like the paired fields
    (problem,) = pairing.problems
    assert problem.startswith("'20P1_POS0002_D_1UL_labels': no image is named '20P1_POS0002_D_1UL'")
    assert "'20P1_POS0005_D_1UL'" in problem and "400×400" in problem  # names the candidates of its shape


def test_two_images_with_one_stem_are_refused():
    layers = [
        LayerInfo("X", "image", (50, 50), origin="/a/X.tif"),
        LayerInfo("X [1]", "image", (50, 50), origin="/b/X.tif"),
        LayerInfo("X_labels", "labels", (50, 50), origin="/c/X_labels.tif"),
    ]
    pairing = pair_layers(layers, "labels")
    assert pairing.unpaired == ["X_labels"]
    assert "several images are named 'X'" in pairing.problems[0] and "'X [1]'" in pairing.problems[0]


def test_one_file_name_in_several_folders_pairs_within_the_folder():
    layers = [
        LayerInfo("field", "image", (50, 50), origin="/data/control/field.tif", folder="control"),
        LayerInfo("field [1]", "image", (50, 50), origin="/data/treated/field.tif", folder="treated"),
        LayerInfo("field_labels", "labels", (50, 50), origin="/data/control/field_labels.tif", folder="control"),
        LayerInfo("field_labels [1]", "labels", (50, 50), origin="/data/treated/field_labels.tif", folder="treated"),
    ]
    pairing = pair_layers(layers, "labels")
    assert [(s.objects, s.channels, s.group) for s in pairing.sources] == [
        ("field_labels", ["field"], "control"),
        ("field_labels [1]", ["field [1]"], "treated"),
    ]


def test_channels_of_one_file_are_one_source():
    """Our reader names the channels of ``X.tif`` ``X membrane``, ``X nucleus``;
    napari's channel_axis ``Y``, ``Y [1]``."""
    layers = [
        LayerInfo("X membrane", "image", (30, 40), origin="/d/X.tif"),
        LayerInfo("X nucleus", "image", (30, 40), origin="/d/X.tif"),
        LayerInfo("Y", "image", (30, 40)),
        LayerInfo("Y [1]", "image", (30, 40)),
        LayerInfo("X_labels", "labels", (30, 40), origin="/d/X_labels.tif"),
        LayerInfo("Y_labels", "labels", (30, 40)),
    ]
    sources = pair_layers(layers, "labels").sources
    assert [(s.objects, s.channels) for s in sources] == [
        ("X_labels", ["X membrane", "X nucleus"]),
        ("Y_labels", ["Y", "Y [1]"]),
    ]
    assert channel_names(sources[0].channels, sources[0].stem) == ["membrane", "nucleus"]
    assert channel_names(sources[1].channels, sources[1].stem) == ["ch0", "ch1"]


def test_the_three_samples_together_keep_their_own_channels():
    """The layers napari makes for File > Open Sample of all three: same group names, same 2D shape."""
    layers = []
    for sample, channels, shape in (
        ("cells-2d-fluorescence", ["membrane", "nucleus", "granules"], (736, 736)),
        ("cells-2d-phase", ["phase"], (736, 736)),
        ("cells-3d-fluorescence", ["membrane", "nucleus", "granules"], (24, 340, 340)),
    ):
        for group in ("control", "treated"):
            origin = f"{sample}|synthetic-{group}"
            taken = {layer.name for layer in layers}
            for name in [f"{group} {c}" for c in channels] + [f"{group} cells"]:
                unique, n = name, 0
                while unique in taken:
                    n += 1
                    unique = f"{name} [{n}]"
                kind = "labels" if name.endswith("cells") else "image"
                layers.append(LayerInfo(unique, kind, shape, origin=origin, group=group))
    sources = {s.objects: s for s in pair_layers(layers, "labels").sources}
    assert sources["control cells"].channels == ["control membrane", "control nucleus", "control granules"]
    assert sources["control cells [1]"].channels == ["control phase"]  # the phase sample, on its own
    assert sources["treated cells [1]"].channels == ["treated phase"]
    assert sources["control cells [2]"].channels == [
        "control membrane [1]",
        "control nucleus [1]",
        "control granules [1]",
    ]
    assert channel_names(sources["control cells [1]"].channels, sources["control cells [1]"].stem) == ["phase"]
    assert channel_names(sources["treated cells [2]"].channels, sources["treated cells [2]"].stem) == [
        "membrane",
        "nucleus",
        "granules",
    ]
    assert {s.group for s in sources.values()} == {"control", "treated"}


def test_layers_added_from_a_script_pair_by_their_name_prefix():
    layers = [
        LayerInfo("control membrane", "image", (20, 20)),
        LayerInfo("control nucleus", "image", (20, 20)),
        LayerInfo("treated membrane", "image", (20, 20)),
        LayerInfo("control cells", "labels", (20, 20)),
        LayerInfo("control points", "points", (5, 2)),
    ]
    assert pair_layers(layers, "labels").sources[0].channels == ["control membrane", "control nucleus"]
    assert pair_layers(layers, "points").sources[0].channels == ["control membrane", "control nucleus"]


def test_the_only_image_of_a_shape_pairs_with_any_name():
    layers = [
        LayerInfo("img2d", "image", (512, 512)),
        LayerInfo("img3d", "image", (31, 61, 57)),
        LayerInfo("mask2d", "labels", (512, 512)),
        LayerInfo("mask3d", "labels", (31, 61, 57)),
    ]
    assert [(s.objects, s.channels) for s in pair_layers(layers, "labels").sources] == [
        ("mask2d", ["img2d"]),
        ("mask3d", ["img3d"]),
    ]


def test_a_label_image_opened_as_an_image_is_recognised_and_not_a_channel():
    labels_as_image = LayerInfo("A9 p10d_labels", "image", (450, 450), origin="/A9/A9 p10d_labels.tif", integer=True)
    image = LayerInfo("A9 p10d", "image", (450, 450), origin="/A9/A9 p10d.tif", integer=True)
    assert looks_like_labels(labels_as_image) and not looks_like_labels(image)
    assert [s.channels for s in pair_patches([image, labels_as_image]).sources] == [["A9 p10d"]]


def test_an_integer_image_named_after_cells_stays_an_image():
    """A 16-bit fluorescence image called "HeLa cells" is intensities; only label-file names mark a label image."""
    for name in ("HeLa cells", "control cells", "nuclei objects", "HeLa cells [1]"):
        assert not looks_like_labels(LayerInfo(name, "image", (64, 64), integer=True)), name
    for name in ("HeLa_labels", "HeLa_cp_masks", "HeLa-seg", "HeLa mask", "HeLa_segmentation [1]"):
        assert looks_like_labels(LayerInfo(name, "image", (64, 64), integer=True)), name


def test_patch_grid_sources_are_the_image_files(bbbc007_layers):
    sources = pair_patches(bbbc007_layers).sources
    assert len(sources) == 14 and all(len(s.channels) == 1 for s in sources)
    assert {s.group for s in sources} == {"A9", "f96 (17)", "f9620"}
