"""The Cells widget in a real viewer: sources found, live preview, build, cancel, bad input."""

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_morphospace._qt.cells_widget import CellsWidget
from napari_morphospace.viewer.session import session_for
from napari_morphospace._sample_data import sample_layer_data
from napari_morphospace.core.crops import CropSettings, crops_from_labels
from napari_morphospace.core.sample_data import SampleSettings, make_sample_data


@pytest.fixture
def sample():
    return make_sample_data(SampleSettings(n_cells=8, seed=1))


@pytest.fixture
def viewer_with_cells(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    for data, kwargs, kind in sample_layer_data(sample):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer


def _wait_for_build(qtbot, widget):
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)


def test_sources_pair_each_labels_layer_with_its_channels(viewer_with_cells, qtbot):
    widget = CellsWidget(viewer_with_cells)
    qtbot.addWidget(widget)
    sources = widget.sources()
    assert [s.objects for s in sources] == ["control cells", "treated cells"]
    assert sources[0].channels == ["control membrane", "control nucleus", "control granules"]
    assert [s.group for s in sources] == ["control", "treated"] and sources[0].axes == "YX"


def test_preview_follows_the_object_and_the_steps(viewer_with_cells, qtbot):
    widget = CellsWidget(viewer_with_cells)
    qtbot.addWidget(widget)
    widget.object_index.setValue(2)
    widget.update_preview()
    assert "object 3 of 8" in widget.preview_info.text()
    assert not widget.before.pixmap().isNull()
    before = widget.after.pixmap().toImage()
    widget.preset.value = "macrophage study"
    widget.update_preview()
    assert widget.after.pixmap().toImage() != before  # grayscale + CLAHE change the picture


def test_build_gives_the_crops_of_the_core_builder(viewer_with_cells, sample, qtbot, tmp_path):
    widget = CellsWidget(viewer_with_cells)
    qtbot.addWidget(widget)
    widget.set_group(1, "drug")
    widget.output.value = tmp_path / "crops"
    widget.build()
    _wait_for_build(qtbot, widget)
    crop_set = session_for(viewer_with_cells).crop_set
    assert crop_set is widget.crop_set and len(crop_set) == 16
    assert crop_set.table["group"].tolist() == ["control"] * 8 + ["drug"] * 8
    # Channel names come from the layer names without the group, pixel sizes from the layer scale.
    assert crop_set.channel_names == ["membrane", "nucleus", "granules"]
    assert crop_set.spacing == tuple(sample.images[0].scale[a] for a in "YX")
    expected = crops_from_labels(sample.images[0], sample.labels[0], CropSettings())
    np.testing.assert_array_equal(crop_set.images[:8], expected.images)
    assert (tmp_path / "crops" / "crop_set.json").exists()
    assert "16 crops" in widget.status.text() and not widget.gallery.pixmap().isNull()


def test_cancel_stops_the_build_and_keeps_nothing(viewer_with_cells, qtbot):
    widget = CellsWidget(viewer_with_cells)
    qtbot.addWidget(widget)
    widget.build()
    widget.cancel()
    _wait_for_build(qtbot, widget)
    assert widget.crop_set is None and session_for(viewer_with_cells).crop_set is None
    assert "Cancelled" in widget.status.text()
    assert widget.build_button.enabled


def test_points_layer_crops_around_each_point(viewer_with_cells, qtbot):
    viewer_with_cells.add_points(np.array([[100.0, 100.0], [200.0, 150.0]]), name="control points",
                                 scale=viewer_with_cells.layers["control cells"].scale)  # fmt: skip
    widget = CellsWidget(viewer_with_cells)
    qtbot.addWidget(widget)
    widget.kind.value = "points"
    assert [s.channels[0] for s in widget.sources()] == ["control membrane"]
    widget.build()
    _wait_for_build(qtbot, widget)
    table = widget.crop_set.table
    assert len(table) == 2 and table["y_start"].tolist() == [100 - 32, 200 - 32]


def test_bad_axes_are_explained_not_crashed(viewer_with_cells, qtbot):
    widget = CellsWidget(viewer_with_cells)
    qtbot.addWidget(widget)
    widget.table.item(0, 3).setText("ZYX")
    widget.update_preview()
    assert "axes 'ZYX' do not fit" in widget.preview_info.text()
    widget.table.item(1, 0).setCheckState(Qt.CheckState.Unchecked)
    widget.build()  # refused on the GUI thread with a notification; nothing runs
    assert widget._worker is None and widget.crop_set is None


def test_saved_job_rebuilds_the_same_crop_set_from_the_command_line(make_napari_viewer, sample, qtbot, tmp_path):
    """Layers opened from files give a job file; ``morphospace crops --config`` makes the same crops."""
    from napari_morphospace.cli import main
    from napari_morphospace.core.data import load_crop_set
    from napari_morphospace.core.demo import write_sample_files

    images, labels = write_sample_files(sample, tmp_path / "data")
    viewer = make_napari_viewer()
    for path in [*images, *labels]:
        viewer.open(str(path), plugin="napari-morphospace")
    widget = CellsWidget(viewer)
    qtbot.addWidget(widget)
    sources = widget.sources()
    assert [s.objects for s in sources] == ["control_labels", "treated_labels"]
    assert [s.group for s in sources] == ["control", "treated"]  # from the file names
    assert sources[1].channels == ["treated membrane", "treated nucleus", "treated granules"]
    job = widget.save_job(tmp_path / "job.yaml")
    assert job is not None
    widget.build()
    _wait_for_build(qtbot, widget)

    assert main(["crops", "--config", str(job), "--out", str(tmp_path / "cli")]) == 0
    from_cli = load_crop_set(tmp_path / "cli", in_memory=True)
    np.testing.assert_array_equal(from_cli.images, widget.crop_set.images)
    assert from_cli.table["group"].tolist() == widget.crop_set.table["group"].tolist()


def test_layers_not_from_files_cannot_make_a_job(viewer_with_cells, qtbot, tmp_path):
    widget = CellsWidget(viewer_with_cells)
    qtbot.addWidget(widget)
    assert widget.save_job(tmp_path / "job.yaml") is None
    assert "do not all come from one file" in widget.status.text()
    assert not (tmp_path / "job.yaml").exists()
