"""The sources of a crop set read from a viewer's layers, without Qt: pairing, stacks with their pixel size, jobs."""

import numpy as np
import pytest
import tifffile
from napari.components import ViewerModel

from napari_morphospace._sample_data import sample_layer_data
from napari_morphospace.core.cells.crops import (
    CropSettings,
    PatchSettings,
    build_crop_set,
    crops_from_labels,
)
from napari_morphospace.core.cells.preprocess import PreprocessPipeline
from napari_morphospace.core.cells.sample_data import SampleSettings, make_sample_data
from napari_morphospace.core.errors import InputError
from napari_morphospace.viewer.sources import (
    convert_label_images,
    crop_job,
    crop_sources,
    find_sources,
    source_stack,
)


@pytest.fixture
def sample():
    return make_sample_data(SampleSettings(n_cells=6, seed=3))


@pytest.fixture
def viewer(sample):
    viewer = ViewerModel()
    for data, kwargs, kind in sample_layer_data(sample):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer


def test_layers_pair_into_sources_whose_crops_equal_the_core_builders(viewer, sample):
    sources = find_sources(viewer.layers, "labels")
    assert [(s.objects, s.group, s.axes) for s in sources] == [
        ("control cells", "control", "YX"),
        ("treated cells", "treated", "YX"),
    ]
    viewer.layers["control membrane"].scale = (0.5, 0.5)
    for name in ("control nucleus", "control granules", "control cells"):
        viewer.layers[name].scale = (0.5, 0.5)
    settings = CropSettings(size=24)
    crop_set = build_crop_set(crop_sources(viewer.layers, sources, "labels", settings))
    control = crop_set.table["group"] == "control"
    layers = viewer.layers
    image = np.stack([np.asarray(layers[f"control {c}"].data) for c in ("membrane", "nucleus", "granules")])
    expected = crops_from_labels(image, np.asarray(layers["control cells"].data), settings, axes="CYX")
    np.testing.assert_array_equal(crop_set.images[np.flatnonzero(control)], expected.images)
    stack = source_stack(viewer.layers, sources[0])
    assert stack.scale == {"Y": 0.5, "X": 0.5} and stack.channel_names == ["membrane", "nucleus", "granules"]
    sources[1].use = False
    assert set(build_crop_set(crop_sources(viewer.layers, sources, "labels", settings)).table["group"]) == {"control"}


def test_sources_refuse_what_cannot_be_cropped_with_a_reason(viewer):
    sources = find_sources(viewer.layers, "labels")
    sources[0].axes = "ZYX"
    with pytest.raises(InputError, match="axes 'ZYX' do not fit image layers with 2 dimensions"):
        crop_sources(viewer.layers, sources, "labels", CropSettings())
    for source in sources:
        source.use = False
    with pytest.raises(InputError, match="no source is checked"):
        crop_sources(viewer.layers, sources, "labels", CropSettings())
    with pytest.raises(InputError, match="not all come from one file"):
        crop_job(
            viewer.layers,
            find_sources(viewer.layers, "labels"),
            "labels",
            CropSettings(),
            PatchSettings(),
            PreprocessPipeline(),
        )


def test_a_label_image_opened_as_an_image_becomes_a_labels_layer_in_its_place(tmp_path):
    labels = np.zeros((8, 8), np.uint16)
    labels[2:5, 2:5] = 7
    path = tmp_path / "field_labels.tif"
    tifffile.imwrite(path, labels)
    viewer = ViewerModel()
    viewer.add_image(np.zeros((8, 8), np.float32), name="field")
    viewer.add_image(labels, name="field_labels", metadata={"source": str(path)}, scale=(2, 2))
    viewer.add_image(np.zeros((8, 8), np.float32), name="other")
    assert convert_label_images(viewer) == ["field_labels"]
    layer = viewer.layers["field_labels"]
    assert layer._type_string == "labels" and list(viewer.layers).index(layer) == 1
    assert tuple(layer.scale) == (2, 2) and layer.metadata["source"] == str(path)
    np.testing.assert_array_equal(layer.data, labels)
