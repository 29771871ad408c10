"""What the Classifier widget shows and writes: label summaries, fold checks, tables, figures, overlays, export."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from napari_morphospace.core.analysis.gradcam import overlay_on_layer, source_overlay
from napari_morphospace.core.classifier.fusion import (
    ChannelRanking,
    ClassificationMetrics,
    ClassifierResult,
    ClassifierSettings,
    classification_metrics,
)
from napari_morphospace.core.classifier.report import (
    average_precision,
    check_folds,
    evidence_table,
    fold_mean_sd,
    metrics_document,
    metrics_table,
    ranking_table,
    summarise_labels,
    train_with_evidence,
    write_metrics,
)
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.figures.classifier import evidence_figure, results_figure


def crop_table() -> pd.DataFrame:
    """7 crops: 'a' from sources s1, s2, s2; 'b' from s3, s3; two without a group (None and blank)."""
    return pd.DataFrame(
        {
            "source": ["s1", "s2", "s2", "s3", "s3", "s1", "s4"],
            "group": ["a", "a", "a", "b", "b", None, "  "],
            "annotation": ["", "", "", "", "", "", ""],
        }
    )


def test_label_summary_counts_classes_sources_and_left_out_crops():
    summary = summarise_labels(crop_table(), "group")
    np.testing.assert_array_equal(summary.positions, [0, 1, 2, 3, 4])
    assert list(summary.labels) == ["a", "a", "a", "b", "b"]
    assert summary.n_left_out == 2
    assert summary.crops_per_class == {"a": 3, "b": 2}
    assert summary.sources_per_class == {"a": 2, "b": 1}
    assert (
        "a: 3 crops from 2 source(s)" in summary.text() and "2 crop(s) with an empty group left out" in summary.text()
    )
    empty = summarise_labels(crop_table(), "annotation")
    assert empty.classes == [] and empty.n_left_out == 7


def test_check_folds_names_the_short_class_and_the_folds_that_would_work():
    table = pd.DataFrame({"source": ["s1", "s2", "s3", "s4", "s5"], "group": ["a", "a", "a", "b", "b"]})
    summary = summarise_labels(table, "group")
    check_folds(summary, 2)  # both classes have 2 or more sources
    with pytest.raises(InputError, match=r"3-fold.*class 'b' from 2 source image\(s\)\. Set folds to 2 or fewer"):
        check_folds(summary, 3)
    with pytest.raises(InputError, match="Add at least one more source image"):
        check_folds(summarise_labels(crop_table(), "group"), 2)  # class b has a single source
    with pytest.raises(InputError, match="at least 2 classes in column 'annotation'; found none"):
        check_folds(summarise_labels(crop_table(), "annotation"), 2)


def known_result(stopped: bool = False) -> ClassifierResult:
    """Two folds with hand-checkable predictions; class 1 is missing from fold 2's test set (AUROC undefined)."""
    y = np.array([0, 0, 1, 1, 0, 0])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8], [0.8, 0.2], [0.6, 0.4]])
    fold_of = np.array([0, 0, 0, 0, 1, 1])
    folds = [classification_metrics(y[fold_of == k], probabilities[fold_of == k]) for k in (0, 1)]
    return ClassifierResult(
        classes=np.array(["control", "treated"]),
        folds=folds,
        pooled=classification_metrics(y, probabilities),
        probabilities=probabilities,
        fold_of=fold_of,
        model=None,
        settings=ClassifierSettings(folds=2),
        stopped=stopped,
    )


def test_metrics_table_has_folds_their_mean_and_sd_and_pooled_with_known_values():
    table = metrics_table(known_result())
    assert list(table.index) == ["fold 1", "fold 2", "mean", "SD", "pooled"]
    assert table.loc["fold 1", "balanced_accuracy"] == pytest.approx(0.75)
    assert table.loc["fold 1", "mcc"] == pytest.approx(1 / np.sqrt(3))
    assert table.loc["fold 2", "balanced_accuracy"] == pytest.approx(1.0) and np.isnan(table.loc["fold 2", "auroc"])
    assert table.loc["fold 2", "mcc"] == 0.0  # every crop of fold 2 is a control, all called control
    # mean and sample SD (ddof=1) of two folds: mean (a + b)/2, SD |a − b|/√2
    assert table.loc["mean", "balanced_accuracy"] == pytest.approx(0.875)
    assert table.loc["SD", "balanced_accuracy"] == pytest.approx(0.25 / np.sqrt(2))
    assert table.loc["mean", "mcc"] == pytest.approx(1 / np.sqrt(3) / 2)
    assert table.loc["SD", "mcc"] == pytest.approx(1 / np.sqrt(3) / np.sqrt(2))
    # AUROC is undefined in fold 2 (no treated crop): the mean is fold 1's alone, and one fold has no SD
    assert table.loc["mean", "auroc"] == pytest.approx(1.0) and np.isnan(table.loc["SD", "auroc"])
    # pooled: 5 of 6 right (one control called treated): balanced accuracy (3/4 + 2/2) / 2
    assert table.loc["pooled", "balanced_accuracy"] == pytest.approx(0.875)
    assert list(table["n_crops"].astype(object).where(table["n_crops"].notna(), None)) == [4, 2, None, None, 6]


def test_fold_mean_sd_of_three_folds_by_hand():
    def metrics(value: float) -> ClassificationMetrics:
        return ClassificationMetrics(value, value / 2, value - 1, 0.9, np.eye(2, dtype=int), {})

    summary = fold_mean_sd([metrics(0.6), metrics(0.8), metrics(1.0)])
    # mean 0.8; sample SD sqrt((0.2² + 0 + 0.2²) / 2) = 0.2
    assert summary.loc["mean", "balanced_accuracy"] == pytest.approx(0.8)
    assert summary.loc["SD", "balanced_accuracy"] == pytest.approx(0.2)
    assert summary.loc["mean", "macro_f1"] == pytest.approx(0.4) and summary.loc["SD", "macro_f1"] == pytest.approx(0.1)
    assert summary.loc["mean", "mcc"] == pytest.approx(-0.2)
    assert summary.loc["mean", "auroc"] == pytest.approx(0.9) and summary.loc["SD", "auroc"] == pytest.approx(0.0)


def test_average_precision_matches_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    score = rng.random(40) + 0.5 * y
    metrics = classification_metrics(y, np.column_stack([1 - score, score]))
    precision, recall = metrics.pr_curves[1]
    assert average_precision(precision, recall) == pytest.approx(average_precision_score(y, score))


def test_figures_show_the_confusion_counts_and_evidence_shares():
    result = known_result()
    figure = results_figure(result.pooled, result.classes)
    confusion_ax, pr_ax = figure.axes[:2]
    assert sorted(t.get_text() for t in confusion_ax.texts) == sorted(map(str, result.pooled.confusion.ravel()))
    assert len(pr_ax.get_lines()) == 2 and "AP" in pr_ax.get_legend().get_texts()[0].get_text()
    table = evidence_table(np.array([[0.7, 0.3], [0.1, 0.9]]), result.classes, ["ER", "mito"])
    bars = evidence_figure(table).axes[0].patches
    assert [round(b.get_height(), 3) for b in bars] == [0.7, 0.1, 0.3, 0.9]  # channel ER for both classes, then mito
    with pytest.raises(InputError, match="does not match 2 classes × 3 channels"):
        evidence_table(np.zeros((2, 2)), result.classes, ["a", "b", "c"])


def test_ranking_table_keeps_the_ranking_order():
    good = classification_metrics(np.array([0, 1]), np.array([[0.9, 0.1], [0.1, 0.9]]))
    bad = classification_metrics(np.array([0, 1]), np.array([[0.1, 0.9], [0.9, 0.1]]))
    table = ranking_table([ChannelRanking(1, "mito", good), ChannelRanking(0, "ER", bad)])
    assert list(table["channel"]) == ["mito", "ER"] and list(table["rank"]) == [1, 2]
    assert list(table["balanced_accuracy"]) == [1.0, 0.0]


def test_write_metrics_csv_and_json_hold_the_result_numbers(tmp_path):
    result = known_result()
    csv = write_metrics(result, tmp_path / "metrics.csv")
    pd.testing.assert_frame_equal(pd.read_csv(csv, index_col="fold"), metrics_table(result), check_dtype=False)
    evidence = np.array([[0.6, 0.4], [0.2, 0.8]])
    path = write_metrics(
        result, tmp_path / "metrics.json", evidence=evidence, channel_names=["ER", "mito"], label_column="group"
    )
    document = json.loads(path.read_text())  # strict JSON: NaN became null
    assert document["classes"] == ["control", "treated"] and document["label_column"] == "group"
    assert document["pooled"]["balanced_accuracy"] == pytest.approx(0.875)
    assert document["fold_mean"]["balanced_accuracy"] == pytest.approx(0.875)
    assert document["fold_sd"]["balanced_accuracy"] == pytest.approx(0.25 / np.sqrt(2))
    assert document["fold_sd"]["auroc"] is None
    assert document["pooled"]["confusion"] == [[3, 1], [0, 2]]
    assert document["folds"][1]["auroc"] is None
    assert document["channel_evidence"]["treated"] == {"ER": 0.2, "mito": 0.8}
    assert document["settings"]["folds"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.json"]  # no temporary files left
    with pytest.raises(InputError, match="name the file .csv or .json"):
        write_metrics(result, tmp_path / "metrics.txt")


def test_source_overlay_places_one_cell_on_its_box_and_pastes_several():
    rows = pd.DataFrame({"y_start": [4, 20], "y_stop": [12, 28], "x_start": [6, 30], "x_stop": [14, 38]})
    maps = [np.full((8, 8), 0.5, np.float32), np.arange(64, dtype=np.float32).reshape(8, 8) / 64]
    data, translate, scale = source_overlay(
        maps[:1],
        rows.iloc[:1],
        layer_shape=(3, 40, 50),
        layer_scale=(1, 0.5, 0.5),
        layer_translate=(0, 10, 20),
        leading_index=(2,),
    )
    expected = overlay_on_layer(
        maps[0], rows.iloc[0], layer_scale=(1, 0.5, 0.5), layer_translate=(0, 10, 20), leading_index=(2,)
    )
    np.testing.assert_array_equal(data, expected[0])
    assert (translate, scale) == (expected[1], expected[2])
    assert translate == (2.0, 10 + 0.5 * 4, 20 + 0.5 * 6)  # box start, crop pixels the size of source pixels

    data, translate, scale = source_overlay(
        maps, rows, layer_shape=(3, 40, 50), layer_scale=(1, 0.5, 0.5), layer_translate=(0, 10, 20), leading_index=(2,)
    )
    assert data.shape == (1, 40, 50) and translate == (2.0, 10.0, 20.0) and scale == (1.0, 0.5, 0.5)
    np.testing.assert_allclose(data[0, 4:12, 6:14], maps[0])
    np.testing.assert_allclose(data[0, 20:28, 30:38], maps[1])
    assert data.sum() == pytest.approx(maps[0].sum() + maps[1].sum())  # zero outside the boxes
    with pytest.raises(InputError, match="one index for each"):
        source_overlay(maps, rows, layer_shape=(3, 40, 50), layer_scale=(1, 1, 1), layer_translate=(0, 0, 0))


def test_train_with_evidence_gives_no_evidence_when_stopped():
    rng = np.random.default_rng(0)
    images = rng.random((8, 2, 8, 8)).astype(np.float32)
    stop = threading.Event()
    stop.set()
    labels = np.array(["a", "b"] * 4)
    result, evidence = train_with_evidence(
        images, labels, np.repeat(["s1", "s2", "s3", "s4"], 2), ClassifierSettings(folds=2), stop_event=stop
    )
    assert result.stopped and result.model is None and evidence is None


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_early_fusion_has_no_channel_evidence_and_late_fusion_reports_its_channel_weights(fusion):
    rng = np.random.default_rng(0)
    images = rng.random((16, 2, 8, 8)).astype(np.float32)
    labels = np.array(["a", "b"] * 8)
    sources = np.array([f"s{i % 4}" for i in range(16)])  # s0, s2 hold class a; s1, s3 class b
    settings = ClassifierSettings(fusion=fusion, folds=2, epochs=1, batch_size=8, depth=1, base_channels=2)
    result, evidence = train_with_evidence(images, labels, sources, settings)
    document = metrics_document(result, evidence=evidence, channel_names=["ER", "mito"])
    if fusion == "early":  # one encoder for all channels: no per-channel Grad-CAM
        assert evidence is None and "channel_evidence" not in document and "channel_weights" not in document
    else:
        assert evidence.shape == (2, 2) and set(document["channel_weights"]) == {"ER", "mito"}
        assert sum(document["channel_weights"].values()) == pytest.approx(1.0)
        assert document["settings"]["fusion"] == "late"
