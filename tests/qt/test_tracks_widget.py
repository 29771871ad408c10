"""Tracks in the viewer, docked as a user docks them: track ids from tracked labels or a Tracks layer, per-track
statistics, paths in the scatter plot linked both ways to the image and the time slider."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from qtpy.QtWidgets import QPushButton
from tracked_movie import CELLS, FIRST_FRAME, movie, radius, track_points

from napari_morphospace._qt.tracks_widget import FROM_LABELS
from napari_morphospace.core.analysis import tracks as core_tracks
from napari_morphospace.core.cells.crop_set import TRACK_ID
from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels
from napari_morphospace.core.errors import InputError
from napari_morphospace.viewer.session import session_for
from napari_morphospace.viewer.tracks import cell_track_ids

LABELS = "movie_labels"


@pytest.fixture
def tracked_viewer(make_napari_viewer):
    """A viewer with the movie, its labels, a tracker's Tracks layer, and the cells' latents (mu_0 = radius)."""
    viewer = make_napari_viewer()
    image, labels = movie()
    viewer.add_image(image, name="movie")
    viewer.add_labels(labels, name=LABELS)
    viewer.add_tracks(track_points(), name="tracker")
    crop_set = crops_from_labels(image, labels, CropSettings(size=32), axes="TYX", source=LABELS)
    table = crop_set.table
    session = session_for(viewer)
    session.crop_set = crop_set
    session.latents = table[["crop_id"]].assign(mu_0=radius(table["label_id"], table["t"]), mu_1=table["t"] * 0.1)
    return viewer


def test_track_ids_from_a_tracks_layer_or_from_label_ids_reach_the_features(tracked_viewer, dock):
    widget = dock(tracked_viewer, "Tracks")
    labels = tracked_viewer.layers[LABELS]
    assert [widget.source_combo.itemText(i) for i in range(widget.source_combo.count())] == [FROM_LABELS, "tracker"]
    assert widget.give_track_ids("tracker") == 4
    features = labels.features
    assert (features[TRACK_ID] == 10 * features["index"]).all() and len(features) == 22
    assert widget.give_track_ids(FROM_LABELS) == 4
    assert (labels.features[TRACK_ID] == labels.features["index"]).all()
    assert "22 of 22 crops lie on 4 tracks" in widget.status.text()


def test_track_ids_from_a_trackers_column_of_the_cells(tracked_viewer, dock):
    session = session_for(tracked_viewer)
    cells = session.cells
    session.set_columns(cells["crop_id"], {"TRACK_ID": (100 + cells["label_id"]).to_numpy()})  # e.g. from a table
    widget = dock(tracked_viewer, "Tracks")
    assert "column: TRACK_ID" in [widget.source_combo.itemText(i) for i in range(widget.source_combo.count())]
    assert widget.give_track_ids("column: TRACK_ID") == 4
    assert (session.cells[TRACK_ID] == 100 + session.cells["label_id"]).all()


def compute(qtbot, widget):
    """Press "Track statistics" and wait until its task has ended; the statistics shown."""
    assert widget.compute() is not None
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=30000)
    return widget.statistics


def test_track_statistics_table_and_a_clicked_row_selects_the_track_at_its_first_frame(tracked_viewer, dock, qtbot):
    widget = dock(tracked_viewer, "Tracks")
    widget.give_track_ids(FROM_LABELS)
    statistics = compute(qtbot, widget).set_index(TRACK_ID)
    steps = np.hypot([CELLS[k][3] for k in CELLS], 0.1)  # each frame: radius grows, mu_1 grows by 0.1
    np.testing.assert_allclose(statistics["mean_speed"], steps)
    np.testing.assert_allclose(statistics["straightness"], 1.0)
    assert widget.table.rowCount() == 4 and "ratio" in widget.status.text()
    tracked_viewer.dims.set_current_step(0, 5)
    widget.table.cellClicked.emit(3, 0)  # track 4, which starts at frame 2
    session = session_for(tracked_viewer)
    cells = session.cells.set_index("crop_id").loc[session.selection]
    assert set(cells["label_id"]) == {4} and len(cells) == 4
    assert tracked_viewer.dims.current_step[0] == FIRST_FRAME[4]


def test_scatter_draws_paths_and_a_click_on_a_path_selects_its_track_and_frame(tracked_viewer, dock):
    tracks = dock(tracked_viewer, "Tracks")
    tracks.give_track_ids(FROM_LABELS)
    scatter = dock(tracked_viewer, "Scatter")
    scatter.set_sources([LABELS])
    scatter.set_axes("mu_0", "mu_1")
    scatter.form.track_combo.setCurrentText("by time")
    overlay = scatter.view.tracks
    assert len(overlay.segments) == 22 - 4 and overlay.lines.visible  # one segment per step of each track
    # the cells of the shown frame (0: tracks 1-3) are ringed; at frame 3 all four
    tracked_viewer.dims.set_current_step(0, 0)
    assert overlay.current.visible and len(overlay.ringed) == 3
    tracked_viewer.dims.set_current_step(0, 3)
    assert len(overlay.ringed) == 4
    # a click half-way along track 1's step from frame 4 to 5 (mu_0 8 -> 9, mu_1 0.4 -> 0.5), nearer frame 5
    rows = scatter.select_track_at(8.7, 0.47, radius=(0.2, 0.05))
    cells = session_for(tracked_viewer).cells.set_index("crop_id").loc[session_for(tracked_viewer).selection]
    assert len(rows) == 6 and set(cells["label_id"]) == {1}
    assert tracked_viewer.dims.current_step[0] == 5
    assert scatter.select_track_at(8.7, 0.2, radius=(0.2, 0.05)) is None  # below every path
    scatter.form.track_combo.setCurrentText("off")
    assert not overlay.lines.visible
    # the choice is saved with the analysis (plot settings) and restored
    scatter.apply_settings({**scatter.settings(), "tracks": "by colour"})
    assert scatter.settings()["tracks"] == "by colour" and overlay.lines.visible


def test_a_mouse_click_on_a_path_in_the_canvas_selects_the_track(tracked_viewer, dock):
    dock(tracked_viewer, "Tracks").give_track_ids(FROM_LABELS)
    scatter = dock(tracked_viewer, "Scatter")
    scatter.set_sources([LABELS])
    scatter.set_axes("mu_0", "mu_1")
    scatter.form.track_combo.setCurrentText("by colour")
    canvas = scatter.plot.canvas
    canvas.size = (400, 400)  # the test viewer is never shown: give the canvas a real size
    canvas.render()
    scatter.plot.fit(scatter._positions)
    transform = canvas.scene.node_transform(scatter.plot.view.scene)
    pixel = tuple(transform.imap([8.7, 0.47, 0, 1])[:2])  # on track 1's step from frame 4 to 5, nearer 5
    canvas.events.mouse_press(pos=pixel, button=1, modifiers=())
    canvas.events.mouse_release(pos=pixel, button=1, modifiers=())
    session = session_for(tracked_viewer)
    assert set(session.cells.set_index("crop_id").loc[session.selection, "label_id"]) == {1}
    assert len(session.selection) == 6 and tracked_viewer.dims.current_step[0] == 5


def test_a_tracks_layer_in_world_units_matches_a_scaled_labels_layer(tracked_viewer):
    """Tracks drawn in micrometres on labels shown at 2 µm per pixel: matched through world coordinates."""
    labels = tracked_viewer.layers[LABELS]
    labels.scale = (1.0, 2.0, 2.0)
    in_microns = track_points()
    in_microns[:, 2:] *= 2.0
    world = tracked_viewer.add_tracks(in_microns, name="in microns")
    cells = session_for(tracked_viewer).cells
    np.testing.assert_array_equal(cell_track_ids(cells, tracked_viewer.layers, world), 10 * cells["label_id"])
    points = track_points()
    in_3d = tracked_viewer.add_tracks(np.insert(points, 2, 0.0, axis=1), name="3D")  # id, t, z, y, x
    with pytest.raises(InputError, match="has 4 axes .* 'movie_labels' has 3"):
        cell_track_ids(cells, tracked_viewer.layers, in_3d)


def test_statistics_before_track_ids_say_what_to_do(tracked_viewer, dock, napari_hooks, qtbot):
    widget = dock(tracked_viewer, "Tracks")
    buttons = {button.text(): button for button in widget.findChildren(QPushButton)}
    buttons["Track statistics"].click()
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=30000)
    errors = napari_hooks.take_errors()
    assert len(errors) == 1 and "no track_id column; give their track ids first" in errors[0]
    buttons["Give track ids"].click()  # from the label ids, the first choice
    buttons["Track statistics"].click()
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=30000)
    assert napari_hooks.take_errors() == [] and widget.table.rowCount() == 4


def test_track_statistics_are_computed_off_the_gui_thread(tracked_viewer, dock, qtbot, monkeypatch):
    computed_on = []
    real = core_tracks.track_statistics

    def recording(*args, **kwargs):
        computed_on.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(core_tracks, "track_statistics", recording)
    widget = dock(tracked_viewer, "Tracks")
    widget.give_track_ids(FROM_LABELS)
    assert len(compute(qtbot, widget)) == 4 and widget.table.rowCount() == 4
    assert computed_on and threading.main_thread() not in computed_on


def test_track_ids_given_in_the_widget_survive_saving_and_reopening_the_analysis(
    tracked_viewer, dock, make_napari_viewer, qtbot, tmp_path
):
    widget = dock(tracked_viewer, "Tracks")
    widget.give_track_ids("tracker")  # the tracker's ids (10 × label id), which no crop table holds
    given = session_for(tracked_viewer).cells.set_index("crop_id")[TRACK_ID]
    analysis = dock(tracked_viewer, "Analysis")
    analysis.save(tmp_path / "analysis")
    qtbot.waitUntil(lambda: not analysis.tasks.busy, timeout=60000)
    assert "Analysis saved" in analysis.status.text(), analysis.status.text()

    viewer = make_napari_viewer()
    reopened = dock(viewer, "Analysis")
    reopened.open(tmp_path / "analysis")
    qtbot.waitUntil(lambda: not reopened.tasks.busy, timeout=60000)
    cells = session_for(viewer).cells.set_index("crop_id")
    assert (given == 10 * cells["label_id"]).all()
    np.testing.assert_array_equal(cells.loc[given.index, TRACK_ID].to_numpy(np.int64), given.to_numpy(np.int64))
