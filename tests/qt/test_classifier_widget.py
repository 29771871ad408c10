"""The Classifier widget in a real viewer: training, metrics shown, channel evidence and ranking, stop,
Grad-CAM overlays, export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_morphospace._qt import tasks as module  # where the widget shows its errors
from napari_morphospace._qt.classifier_widget import ClassifierWidget
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.classifier.fusion import channel_gradcam
from napari_morphospace.core.classifier.report import metrics_table
from napari_morphospace.viewer.classifier import gradcam_layer_name
from napari_morphospace.viewer.session import session_for

CROP = 16
SOURCE_SHAPE = (40, 80)
SOURCE_SCALE = (0.5, 0.5)
SOURCE_TRANSLATE = (10.0, 20.0)
FAST = {"epochs": 15, "batch_size": 16, "learning_rate": 1e-2, "folds": 3, "base_channels": 6, "depth": 2}


def _blob(centre: np.ndarray, radius: float = 2.0) -> np.ndarray:
    yy, xx = np.mgrid[:CROP, :CROP]
    return np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * radius**2))


def synthetic_crop_set(per_source: int = 8, seed: int = 0, n_sources: int = 6) -> CropSet:
    """6 source images, 3 per group; 'treated' crops have a bright blob in channel 1 ("mito") where 'control' has a dim
    one.

    Channel 0 ("ER") is identically distributed in both groups. Crops of one
    source sit in a 2 × 4 grid of 16-pixel boxes (one source pixel per crop
    pixel) at an offset of (4, 6), so a map pasted at its box is the map itself.
    Two extra crops have an empty group and must be left out.
    """
    rng = np.random.default_rng(seed)
    images, rows = [], []
    for source in range(n_sources):
        group = ["control", "treated"][source % 2]
        for k in range(per_source):
            crop = 0.15 * rng.random((2, CROP, CROP))
            crop[0] += 0.6 * _blob(rng.uniform(4, CROP - 4, 2))
            crop[1] += (0.7 if group == "treated" else 0.2) * _blob(rng.uniform(4, CROP - 4, 2))
            images.append(np.clip(crop, 0, 1))
            y0, x0 = 4 + CROP * (k // 4), 6 + CROP * (k % 4)
            rows.append(
                {
                    "source": f"image {source}",
                    "label_id": k + 1,
                    "t": 0,
                    "group": group,
                    "annotation": "",
                    "y_start": y0,
                    "y_stop": y0 + CROP,
                    "x_start": x0,
                    "x_stop": x0 + CROP,
                }
            )
    for extra in range(2):
        images.append(rng.random((2, CROP, CROP)))
        rows.append(
            {
                "source": "image 0",
                "label_id": 100 + extra,
                "t": 0,
                "group": "",
                "annotation": "",
                "y_start": 0,
                "y_stop": CROP,
                "x_start": 0,
                "x_stop": CROP,
            }
        )
    table = pd.DataFrame(rows)
    table.insert(0, "crop_id", np.arange(len(table)))
    return CropSet(images=np.asarray(images, np.float32), table=table, channel_names=["ER", "mito"])


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    for source in range(6):
        viewer.add_image(
            np.zeros(SOURCE_SHAPE, np.float32), name=f"image {source}", scale=SOURCE_SCALE, translate=SOURCE_TRANSLATE
        )
    return viewer


@pytest.fixture
def widget(viewer, qtbot):
    session_for(viewer).crop_set = synthetic_crop_set()
    widget = ClassifierWidget(viewer)
    qtbot.addWidget(widget)
    set_settings(widget, **FAST)
    return widget


def set_settings(widget: ClassifierWidget, **values) -> None:
    for name, value in values.items():
        widget.settings_form[name].value = value


def run(qtbot, widget, worker) -> None:
    """Wait until the widget's job has finished and its result is shown.

    Waits on the widget's state, not on ``worker.finished``: a worker starts at
    once outside an event loop, and a fast one (Grad-CAM of a few crops) can
    emit ``finished`` before a signal blocker is connected, which then waits
    forever. Generous, because cross-validated training is slow on a busy CPU.
    """
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=300000)


def shown_table(view) -> pd.DataFrame:
    """The cells of a QTableWidget as text, with its row and column headers."""
    return pd.DataFrame(
        [[view.item(r, c).text() for c in range(view.columnCount())] for r in range(view.rowCount())],
        index=[view.verticalHeaderItem(r).text() for r in range(view.rowCount())],
        columns=[view.horizontalHeaderItem(c).text() for c in range(view.columnCount())],
    )


def trained(qtbot, widget) -> ClassifierWidget:
    if widget.result is None:
        run(qtbot, widget, widget.train())
    return widget


def test_label_summary_shows_sources_per_class_and_left_out_crops(widget):
    assert widget.label_column.currentText() == "group"
    text = widget.label_info.text()
    assert "control: 24 crops from 3 source(s)" in text and "treated: 24 crops from 3 source(s)" in text
    assert "2 crop(s) with an empty group left out" in text


def test_training_separates_groups_that_differ_in_channel_1(widget, qtbot):
    trained(qtbot, widget)
    result = widget.result
    assert not result.stopped and list(result.classes) == ["control", "treated"]
    assert result.pooled.confusion.sum() == 48  # the two unlabelled crops were left out
    shown = shown_table(widget.results.metrics_view)
    assert list(shown.index) == ["fold 1", "fold 2", "fold 3", "mean", "SD", "pooled"]
    assert float(shown.loc["pooled", "balanced accuracy"]) > 0.9
    balanced = [m.balanced_accuracy for m in result.folds]
    assert float(shown.loc["mean", "balanced accuracy"]) == pytest.approx(np.mean(balanced), abs=5e-4)
    assert float(shown.loc["SD", "balanced accuracy"]) == pytest.approx(np.std(balanced, ddof=1), abs=5e-4)
    assert shown.loc["mean", "n_crops"] == "" and shown.loc["fold 1", "n_crops"] == str(result.folds[0].confusion.sum())
    assert "Fold mean ± SD of balanced accuracy" in widget.status.text()
    assert float(shown.loc["pooled", "balanced accuracy"]) == pytest.approx(result.pooled.balanced_accuracy, abs=5e-4)
    assert widget.progress.updates_seen == FAST["epochs"] * (FAST["folds"] + 1) == widget.progress.bar.value()
    assert widget.results.figure_page.count() == 1  # confusion matrix and PR curves
    evidence = shown_table(widget.results.evidence_view)  # percentages, one row per class
    treated = evidence.loc["treated"].str.rstrip(" %").astype(float)
    assert treated.idxmax() == "mito" and treated["mito"] > 90
    assert [widget.gradcam_class.itemText(i) for i in range(widget.gradcam_class.count())] == ["control", "treated"]
    # The metrics reach the session, so saving the analysis puts them in its report.
    saved = widget.session.classifier_metrics
    assert saved["pooled"]["balanced_accuracy"] == pytest.approx(result.pooled.balanced_accuracy)
    assert saved["label_column"] == "group" and saved["channel_evidence"]["treated"]["mito"] > 0.9


def test_rank_channels_puts_channel_1_first(widget, qtbot):
    run(qtbot, widget, widget.rank())
    mito, er = widget.ranking
    assert (mito.name, er.name) == ("mito", "ER")
    assert mito.metrics.balanced_accuracy > 0.75 and er.metrics.balanced_accuracy < 0.7  # ER alone is near chance
    shown = shown_table(widget.results.ranking_view)
    assert list(shown["channel"]) == ["mito", "ER"]
    assert float(shown.iloc[0]["balanced accuracy"]) == pytest.approx(mito.metrics.balanced_accuracy, abs=5e-4)


@pytest.mark.parametrize(("n_sources", "offered"), [(6, 3), (8, 4), (12, 5)])
def test_folds_offered_are_what_the_sources_allow(viewer, qtbot, n_sources, offered):
    """With 4 source images per class, 5 folds (the default) cannot keep every class in every test fold:
    4 are offered."""
    session_for(viewer).crop_set = synthetic_crop_set(per_source=2, n_sources=n_sources)
    widget = ClassifierWidget(viewer)
    qtbot.addWidget(widget)
    folds = widget.settings_form["folds"]
    assert folds.value == offered == widget.settings().folds  # the default 5, lowered to what the data allow
    assert folds.max == n_sources // 2  # the fewest source images of any class
    with pytest.raises(ValueError):
        folds.value = n_sources // 2 + 1


def test_a_class_from_one_source_is_refused_without_a_worker(viewer, qtbot, monkeypatch):
    crop_set = synthetic_crop_set(per_source=4)
    crop_set.table.loc[crop_set.table["source"].isin(["image 3", "image 5"]), "group"] = (
        "control"  # treated: image 1 only
    )
    session_for(viewer).crop_set = crop_set
    widget = ClassifierWidget(viewer)
    qtbot.addWidget(widget)
    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    assert widget.settings_form["folds"].value == 2
    assert widget.train() is None and widget.rank() is None
    assert not widget.running and widget.result is None
    assert len(errors) == 2 and "needs at least 2 source images per class; class 'treated' from 1" in errors[0]
    assert "Add at least one more source image" in widget.status.text()


def test_fusion_options_are_the_studys_and_early_fusion_has_no_per_channel_gradcam(widget, qtbot, monkeypatch):
    fusion = widget.settings_form["fusion"]
    assert fusion.value == "intermediate" and list(fusion.choices) == ["early", "intermediate", "late"]
    set_settings(widget, fusion="early")
    trained(qtbot, widget)
    assert widget.result.settings.fusion == "early" and widget.result.pooled.balanced_accuracy > 0.9
    assert widget.evidence is None and not widget.gradcam_button.isEnabled()
    assert "no per-channel evidence" in widget.status.text()
    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    assert widget.show_gradcam("treated") is None
    assert "early fusion has one encoder for all channels" in errors[0]


def test_stop_ends_training_early(widget, qtbot):
    set_settings(widget, epochs=500)
    worker = widget.train()
    qtbot.waitUntil(lambda: widget.progress.updates_seen >= 1, timeout=60000)
    assert widget.stop_button.isEnabled()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        widget.stop()
    assert widget.result.stopped and widget.result.model is None and widget.evidence is None
    assert widget.progress.updates_seen < 500 * 4
    assert "Stopped" in widget.status.text()
    assert not widget.gradcam_button.isEnabled() and widget.train_button.isEnabled()


def test_gradcam_overlays_land_on_the_crops_boxes_in_source_coordinates(widget, viewer, qtbot):
    trained(qtbot, widget)
    run(qtbot, widget, widget.show_gradcam("treated"))
    crop_set = widget.run_crop_set
    treated = np.flatnonzero(crop_set.table["group"] == "treated")
    expected = channel_gradcam(widget.result.model, crop_set.images[treated], 1)  # (C, N, Y, X)
    rows = crop_set.table.iloc[treated].reset_index(drop=True)
    for c, channel in enumerate(["ER", "mito"]):
        for source in ("image 1", "image 3", "image 5"):
            layer = viewer.layers[gradcam_layer_name(channel, "treated", source)]
            assert layer.name == f"{channel} Grad-CAM (treated) · {source}"
            assert tuple(layer.scale) == SOURCE_SCALE and tuple(layer.translate) == SOURCE_TRANSLATE
            assert layer.data.shape == SOURCE_SHAPE
            inside = np.zeros(SOURCE_SHAPE, bool)
            for i in np.flatnonzero(rows["source"] == source):
                box = rows.iloc[i]
                region = (slice(box.y_start, box.y_stop), slice(box.x_start, box.x_stop))
                np.testing.assert_allclose(layer.data[region], expected[c, i], atol=1e-5)
                inside[region] = True
            assert not layer.data[~inside].any()  # nothing outside the crops' boxes
    mito = viewer.layers["mito Grad-CAM (treated) · image 1"].data.sum()
    assert mito > viewer.layers["ER Grad-CAM (treated) · image 1"].data.sum()  # channel 1 drives "treated"


def test_gradcam_needs_the_source_layers(widget, viewer, qtbot, monkeypatch):
    trained(qtbot, widget)
    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    viewer.layers.remove("image 3")
    assert widget.show_gradcam("treated") is None
    assert "no layer named 'image 3'" in errors[0]


def test_export_writes_the_result_numbers(widget, qtbot, tmp_path):
    trained(qtbot, widget)
    result = widget.result
    csv = widget.export_metrics(tmp_path / "metrics.csv")
    pd.testing.assert_frame_equal(pd.read_csv(csv, index_col="fold"), metrics_table(result), check_dtype=False)
    document = json.loads(widget.export_metrics(tmp_path / "metrics.json").read_text())
    assert document["pooled"]["balanced_accuracy"] == pytest.approx(result.pooled.balanced_accuracy)
    assert document["pooled"]["confusion"] == result.pooled.confusion.tolist()
    assert [f["mcc"] for f in document["folds"]] == pytest.approx([m.mcc for m in result.folds])
    assert document["channel_evidence"]["treated"]["mito"] == pytest.approx(widget.evidence[1, 1])
    assert document["label_column"] == "group" and document["settings"]["folds"] == FAST["folds"]
