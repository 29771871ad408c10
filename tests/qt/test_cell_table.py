"""The per-cell table on real fields: Embed, Scatter, Annotate and Analysis docked from the Plugins menu.

The BBBC007 nuclei fields are opened as files, cropped with the default
settings (which skip the smallest nuclei) and embedded; every step goes
through widgets docked as a user docks them, with napari's notification
hooks failing the test on any error a user would see.
"""

import numpy as np
import pandas as pd
import pytest
from bbbc007_cells import ONE_PER_CONDITION, crop_set, object_count, open_fields, small_bundle
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QPushButton

from napari_morphospace.viewer.session import session_for


@pytest.fixture
def embedded(make_napari_viewer, dock, qtbot, tmp_path):
    """All 14 fields opened from files, their default crops in the session, embedded through the Embed dock."""
    viewer = make_napari_viewer()
    names = open_fields(viewer)
    session_for(viewer).crop_set = crop_set()
    embed = dock(viewer, "Embed")
    embed.bundle_folder.value = small_bundle(tmp_path / "model")
    embed.embed()
    qtbot.waitUntil(lambda: not embed.tasks.busy, timeout=120000)
    return viewer, names


def _tick_all(scatter):
    """Tick every cell layer in the Scatter dock's list, one after the other, as a user does."""
    for row in range(scatter.form.source_list.count()):
        scatter.form.source_list.item(row).setCheckState(Qt.CheckState.Checked)


def test_default_crops_of_real_fields_are_all_plotted(embedded, dock):
    viewer, names = embedded
    crops = session_for(viewer).crop_set
    assert len(crops) == 1233 < object_count()  # 16 nuclei under min_area were not cropped
    for name in names:
        features = viewer.layers[name].features
        mine = crops.table[crops.table["source"] == name]
        # one row per cropped nucleus: a skipped nucleus has no row, so no NaN latent anywhere
        assert sorted(features["index"]) == sorted(mine["label_id"])
        assert not features.filter(like="mu_").isna().any().any()
    scatter = dock(viewer, "Scatter")
    _tick_all(scatter)
    assert scatter.form.source_list.count() == 14 and len(scatter._positions) == 1233
    assert np.isfinite(scatter._positions).all()


def test_rows_without_a_latent_are_left_out_of_plot_and_statistics_with_a_note(embedded, dock, napari_hooks):
    viewer, names = embedded
    # another tool measured every nucleus (cropped or not) before the embedding: rows without a latent
    layer = viewer.layers[names[0]]
    ids = np.unique(np.asarray(layer.data))
    ids = ids[ids > 0]
    layer.features = layer.features.merge(
        pd.DataFrame({"index": ids, "measured_area": np.arange(len(ids), dtype=float)}), on="index", how="outer"
    )
    without = int(layer.features["mu_0"].isna().sum())
    assert without == 2  # 'A9 p10d' has two nuclei under min_area
    scatter = dock(viewer, "Scatter")
    scatter.form.source_list.item(0).setCheckState(Qt.CheckState.Checked)
    assert len(scatter._positions) == len(layer.features) - without
    assert f"2 cells of {names[0]!r} have no latent" in scatter.note.text()
    statistics = dock(viewer, "Statistics")
    statistics.set_table_source(names[0])
    assert len(statistics.table()) == len(layer.features) - without
    assert "2 cells have no latent" in statistics.status.text()


def test_keep_names_the_selection_from_the_button(embedded, dock, qtbot):
    viewer, names = embedded
    scatter = dock(viewer, "Scatter")
    _tick_all(scatter)
    scatter.select_rows([0, 5, 7])
    scatter.selections.selection_name.setText("three")
    keep = next(b for b in scatter.findChildren(QPushButton) if b.text() == "Keep")
    qtbot.mouseClick(keep, Qt.MouseButton.LeftButton)
    crop_ids = session_for(viewer).crop_set.table["crop_id"].to_numpy()
    assert session_for(viewer).named_selections == {"three": tuple(crop_ids[[0, 5, 7]])}


def test_removing_a_plotted_layer_and_closing_the_viewer_raise_nothing(embedded, dock):
    viewer, names = embedded
    scatter = dock(viewer, "Scatter")
    _tick_all(scatter)
    scatter.select_rows(np.arange(20))
    first = len(viewer.layers[names[0]].features)
    viewer.layers.remove(names[0])
    assert list(scatter.sources.layers) == names[1:] and len(scatter._positions) == 1233 - first
    assert scatter.form.source_list.count() == 13
    viewer.close()


def test_clusters_annotations_and_docks_survive_save_and_reopen(make_napari_viewer, dock, qtbot, tmp_path):
    viewer = make_napari_viewer()
    names = open_fields(viewer, ONE_PER_CONDITION)
    session = session_for(viewer)
    session.crop_set = crop_set(ONE_PER_CONDITION)
    embed = dock(viewer, "Embed")
    embed.bundle_folder.value = small_bundle(tmp_path / "model")
    embed.embed()
    qtbot.waitUntil(lambda: not embed.tasks.busy, timeout=120000)
    scatter = dock(viewer, "Scatter")
    _tick_all(scatter)
    scatter.compute_row.compute_clusters("kmeans", 3)
    qtbot.waitUntil(lambda: scatter._color_by == "cluster", timeout=60000)
    annotate = dock(viewer, "Annotate")
    annotate.set_analysis_folder(tmp_path / "autosaved")  # annotations autosave elsewhere than the analysis
    annotate.add_class("bright", "#ff00ff")
    scatter.select_rows([0, 1, 2])
    assert annotate.assign_selected() == 3
    cells = session.cells.copy()
    assert cells["cluster"].notna().all() and (cells["annotation"] == "bright").sum() == 3
    analysis = dock(viewer, "Analysis")
    analysis.save(tmp_path / "saved")
    qtbot.waitUntil(lambda: not analysis.tasks.busy, timeout=60000)

    reopened = make_napari_viewer()
    again = dock(reopened, "Analysis")
    questions = []
    again._ask = lambda question: questions.append(question) or True  # the fields lie outside the folder: "Yes"
    again.open(tmp_path / "saved")
    assert len(questions) == 1 and "outside itself" in questions[0]
    qtbot.waitUntil(lambda: not again.tasks.busy and len(reopened.layers) >= 6, timeout=60000)
    labels = [layer.name for layer in reopened.layers if layer.name.endswith("_labels")]
    assert labels == names  # named as when they were opened: no 'A9 cells [1]'
    restored = session_for(reopened).cells
    pd.testing.assert_frame_equal(
        restored[["crop_id", "cluster", "annotation"]], cells[["crop_id", "cluster", "annotation"]], check_dtype=False
    )
    first = reopened.layers[names[0]].features
    assert first["annotation"].tolist()[:3] == ["bright"] * 3 and first["cluster"].notna().all()
    docked = set(reopened.window.dock_widgets)
    assert {"Scatter (napari-morphospace)", "Annotate (napari-morphospace)", "Embed (napari-morphospace)"} <= docked
    scatter_again = reopened.window.dock_widgets["Scatter (napari-morphospace)"]
    assert list(scatter_again.sources.layers) == names and scatter_again._color_by == "cluster"
    assert len(scatter_again._positions) == len(cells)
