"""The Cells widget in a real viewer: sources found, live preview, build, cancel, bad input."""

import sys
import time

import numpy as np
import pytest
import tifffile
from qtpy.QtCore import Qt, QTimer
from real_data import bbbc007_fields, dataset, stardist_3d

from napari_morphospace._qt.cells_widget import CellsWidget
from napari_morphospace._qt.sources_table import COLUMNS
from napari_morphospace._sample_data import sample_layer_data
from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels
from napari_morphospace.core.cells.sample_data import SampleSettings, make_sample_data
from napari_morphospace.viewer.session import session_for


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
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=60000)


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
    widget.update_preview()
    assert (widget.object_index.minimum(), widget.object_index.maximum()) == (1, 8)  # counted from 1, as the text
    widget.object_index.setValue(3)
    widget.update_preview()
    assert "object 3 of 8 (label 3," in widget.preview_info.text()
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
    viewer_with_cells.add_points(
        np.array([[100.0, 100.0], [200.0, 150.0]]),
        name="control points",
        scale=viewer_with_cells.layers["control cells"].scale,
    )
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
    widget.table.item(0, COLUMNS.index("axes")).setText("ZYX")
    widget.update_preview()
    assert "axes 'ZYX' do not fit" in widget.preview_info.text()
    widget.table.item(1, 0).setCheckState(Qt.CheckState.Unchecked)
    widget.build()  # refused on the GUI thread with a notification; nothing runs
    assert not widget.tasks.busy and widget.crop_set is None


def test_saved_job_rebuilds_the_same_crop_set_from_the_command_line(make_napari_viewer, sample, qtbot, tmp_path):
    """Layers opened from files give a job file; ``morphospace crops --config`` makes the same crops."""
    from napari_morphospace.cli import main
    from napari_morphospace.core.cells.crop_set import load_crop_set
    from napari_morphospace.core.project.demo import write_sample_files

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


# --------------------------------------------------------------------------- the way users arrive


def test_real_fields_opened_by_a_user_pair_each_labels_file_with_its_own_image(make_napari_viewer, dock, qtbot):
    """All of BBBC007 opened file by file: names with spaces sharing their first word, a labels file without image."""
    viewer = make_napari_viewer()
    files = sorted(dataset("bbbc007").glob("*/*.tif"))
    for path in files:
        viewer.open(str(path), plugin="napari-morphospace")
    widget = dock(viewer, "Cells")
    rows = {s.objects: s for s in widget.sources()}
    for condition, image, labels in bbbc007_fields():
        row = rows[labels.stem]
        assert (row.channels, row.group, row.use) == ([image.stem], condition, True)
    lonely = rows["20P1_POS0002_D_1UL_labels"]
    assert lonely.channels == [] and not lonely.use  # listed, unchecked, with the reason under the table
    assert widget.pairing_info.isVisibleTo(widget)
    assert (
        "not paired: '20P1_POS0002_D_1UL_labels': no image is named '20P1_POS0002_D_1UL'" in widget.pairing_info.text()
    )
    # Every cell shows its whole text: columns sized to their contents, the full text again as a tooltip.
    channels = COLUMNS.index("image channels")
    row = next(r for r in range(widget.table.rowCount()) if widget.table.item(r, 1).text() == "A9 p10d_labels")
    item = widget.table.item(row, channels)
    metrics = widget.table.fontMetrics()
    assert widget.table.columnWidth(channels) >= metrics.horizontalAdvance(item.text())
    assert widget.table.columnWidth(1) >= metrics.horizontalAdvance("17P1_POS0006_D_1UL_labels")
    assert item.toolTip() == "A9 p10d"


def test_the_three_samples_opened_from_the_menu_keep_their_own_channels(make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer()
    for key in ("cells-2d-fluorescence", "cells-2d-phase", "cells-3d-fluorescence"):
        viewer.open_sample("napari-morphospace", key)
    widget = dock(viewer, "Cells")
    rows = {s.objects: s for s in widget.sources()}
    assert rows["control cells"].channels == ["control membrane", "control nucleus", "control granules"]
    assert rows["control cells [1]"].channels == ["control phase"]  # the phase sample stays on its own
    assert rows["treated cells [2]"].channels == ["treated membrane [1]", "treated nucleus [1]", "treated granules [1]"]
    assert all(s.use for s in rows.values()) and not widget.pairing_info.isVisibleTo(widget)


def test_a_label_file_opened_with_napari_builtin_reader_becomes_a_labels_layer(
    make_napari_viewer, dock, napari_hooks, qtbot
):
    from napari.layers import Labels

    _, image, labels = bbbc007_fields()[0]
    viewer = make_napari_viewer()
    viewer.open(str(image), plugin="napari")
    viewer.open(str(labels), plugin="napari")  # napari's reader gives an integer *image* layer
    widget = dock(viewer, "Cells")
    qtbot.waitUntil(lambda: isinstance(viewer.layers[labels.stem], Labels), timeout=5000)
    converted = viewer.layers[labels.stem]
    assert [layer.name for layer in viewer.layers] == [image.stem, labels.stem]  # same name, same place
    np.testing.assert_array_equal(converted.data, tifffile.imread(labels))
    assert converted.metadata["source"] == str(labels.resolve())
    assert any("turned them into Labels layers" in str(n.message) for n in napari_hooks.notifications("info"))
    qtbot.waitUntil(lambda: [(s.objects, s.channels) for s in widget.sources()] == [(labels.stem, [image.stem])])


def test_a_build_of_a_real_field_finishes_while_the_main_thread_is_busy(make_napari_viewer, dock, napari_hooks, qtbot):
    """Slow software-GL redraws block the GUI thread for 50-100 ms at a time; progress once nested until
    RecursionError, and the status line kept a stale "1/107"."""
    _, image, labels = bbbc007_fields()[0]
    viewer = make_napari_viewer()
    viewer.open(str(image), plugin="napari-morphospace")
    viewer.open(str(labels), plugin="napari-morphospace")
    widget = dock(viewer, "Cells")
    caught = []
    hook = sys.excepthook
    sys.excepthook = lambda kind, error, trace: (caught.append(kind), hook(kind, error, trace))
    busy = QTimer()
    busy.setInterval(20)
    busy.timeout.connect(lambda: time.sleep(0.08))
    busy.start()
    try:
        widget.build()
        _wait_for_build(qtbot, widget)
    finally:
        busy.stop()
        sys.excepthook = hook
    assert caught == []
    n_objects = len(np.unique(tifffile.imread(labels))) - 1
    crop_set = widget.crop_set
    assert crop_set is not None and 0.9 * n_objects <= len(crop_set) <= n_objects  # a few tiny nuclei are skipped
    assert widget.status.text().startswith(f"{len(crop_set)} crops (1×64×64)")


def test_a_3d_crop_size_gives_the_resize_step_three_values(make_napari_viewer, dock, napari_hooks, qtbot):
    """Typing "16, 32, 32" for a real 3D stack raised "Length of tuple does not match" from the 2-value resize box."""
    image, mask = stardist_3d()
    viewer = make_napari_viewer()
    viewer.open(str(image), plugin="napari-morphospace")
    viewer.open(str(mask), plugin="napari-morphospace")
    widget = dock(viewer, "Cells")
    assert [(s.objects, s.channels, s.axes) for s in widget.sources()] == [("mask3d", ["img3d"], "ZYX")]
    widget.crop_form.size.value = "16, 32, 32"
    assert widget.steps._params["resize"]["shape"].value == (16, 32, 32)
    widget.steps.set_steps(("resize",))
    widget.update_preview()
    assert "16×32×32" in widget.preview_info.text()
    widget.crop_form.size.value = "24"  # one number: a cube
    assert widget.steps._params["resize"]["shape"].value == (24, 24, 24)


def test_renaming_a_layer_after_its_image_pairs_it(make_napari_viewer, dock, qtbot):
    """The refusal says "name it after its image": doing so must update the table at once."""
    fields = [f for f in bbbc007_fields() if f[0] == "A9"][:2]
    viewer = make_napari_viewer()
    for _, image, _ in fields:
        viewer.open(str(image), plugin="napari-morphospace")
    viewer.open(str(fields[0][2]), plugin="napari-morphospace")
    viewer.layers[fields[0][2].stem].name = "segmentation"
    widget = dock(viewer, "Cells")
    assert widget.sources()[0].channels == [] and "'segmentation': no image is named" in widget.pairing_info.text()
    viewer.layers["segmentation"].name = f"{fields[0][1].stem}_mask"
    assert [(s.objects, s.channels) for s in widget.sources()] == [(f"{fields[0][1].stem}_mask", [fields[0][1].stem])]
    assert not widget.pairing_info.isVisibleTo(widget)


def test_skipped_objects_of_every_source_are_told_in_one_summed_note(viewer_with_cells, napari_hooks, qtbot):
    """As ``morphospace crops`` says it: one line per reason for the whole build, counts summed over the sources."""
    widget = CellsWidget(viewer_with_cells)
    qtbot.addWidget(widget)
    areas = [np.bincount(np.asarray(viewer_with_cells.layers[s.objects].data).ravel())[1:] for s in widget.sources()]
    threshold = int(np.median(np.concatenate(areas)))
    skipped = sum(int(((a > 0) & (a < threshold)).sum()) for a in areas)
    assert all(((a > 0) & (a < threshold)).any() for a in areas)  # each source skips some
    widget.crop_form.min_area.value = threshold
    widget.build()
    _wait_for_build(qtbot, widget)
    notes = [
        line
        for n in napari_hooks.notifications("warning")
        for line in str(n.message).splitlines()
        if "min_area" in line
    ]
    assert notes == [f"{skipped} objects were smaller than min_area and skipped (lower min_area to keep them)"]
