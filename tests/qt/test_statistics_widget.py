"""The Statistics dock on synthetic latents with a known answer: dimension 2 separates the groups."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

from napari_morphospace._qt.statistics_widget import SESSION_TABLE, StatisticsWidget
from napari_morphospace.viewer.session import session_for


def synthetic_latents(n=40, shift=2.5, seed=0):
    """Control and treated cells in 5 dimensions; treated is shifted by ``shift`` in dimension 2 only."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((2 * n, 5))
    mu[n:, 2] += shift
    table = pd.DataFrame(mu, columns=[f"mu_{i}" for i in range(5)])
    for i in range(5):
        table[f"logvar_{i}"] = -1.0 if i != 4 else 0.0
    table.insert(0, "crop_id", np.arange(2 * n))
    table["group"] = ["control"] * n + ["treated"] * n
    return table


def hand_cohens_d(x, y):
    n1, n2 = len(x), len(y)
    pooled = np.sqrt(((n1 - 1) * np.var(x, ddof=1) + (n2 - 1) * np.var(y, ddof=1)) / (n1 + n2 - 2))
    return (np.mean(x) - np.mean(y)) / pooled


def _compute(qtbot, widget):
    worker = widget.compute()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=60000)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def test_dimension_two_ranks_first_with_the_hand_computed_d(viewer, qtbot, tmp_path):
    table = synthetic_latents()
    session_for(viewer).latents = table
    widget = StatisticsWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.table_combo.currentText() == SESSION_TABLE
    widget.set_groups("treated", "control")
    _compute(qtbot, widget)
    summary = widget.summary
    expected = hand_cohens_d(table["mu_2"][40:], table["mu_2"][:40])
    assert summary.ranking[0] == 2 and expected > 1.0
    assert summary.effects.d[2] == pytest.approx(expected, rel=1e-9)
    assert summary.effects.ci_low[2] < expected < summary.effects.ci_high[2]
    assert f"mu_2: d = {expected:+.3f}" in widget.tab_pages["forest"].itemAt(1).widget().text()  # below the plot
    assert isinstance(widget.tab_pages["forest"].itemAt(0).widget(), FigureCanvasQTAgg)  # the forest plot first
    assert "Active units (Var of μ > 0.01): 5 of 5" in widget.overview.text()
    assert summary.probe["balanced_accuracy"] > 0.75 and "balanced accuracy" in widget.probe_text.text()

    paths = widget.export_figures(tmp_path / "figures", overwrite=True)
    assert sorted(p.name for p in paths) == sorted(
        f"{k}.{e}" for k in ("kl", "forest", "kde", "violin") for e in ("png", "svg")
    )
    assert all(p.stat().st_size > 1000 for p in paths)
    assert (tmp_path / "figures" / "forest.png").read_bytes()[:4] == b"\x89PNG"
    assert widget.export_figures(tmp_path / "figures") == [] and "already exist" in widget.status.text()


def test_a_single_group_asks_for_two_different_groups(viewer, qtbot):
    session_for(viewer).latents = synthetic_latents().assign(group="control")
    widget = StatisticsWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.compute() is None and "choose two different groups" in widget.status.text()
    session_for(viewer).latents = synthetic_latents()
    widget.set_groups("control", "control")
    assert widget.compute() is None and "choose two different groups" in widget.status.text()


def test_layer_features_with_nan_are_refused_naming_the_columns(viewer, qtbot):
    features = synthetic_latents().rename(columns={"crop_id": "index"})
    features.loc[3, "mu_1"] = np.nan
    features.loc[5, "logvar_3"] = np.nan
    features.loc[7, [f"mu_{i}" for i in range(5)]] = np.nan  # a label that was never embedded: left out, not refused
    viewer.add_labels(np.zeros((4, 4), np.int32), name="cells", features=features)
    widget = StatisticsWidget(viewer)
    qtbot.addWidget(widget)
    widget.set_table_source("cells")
    _compute(qtbot, widget)
    assert "NaN or infinite values in mu_1, logvar_3 (2 of 79 rows)" in widget.status.text()
    assert widget.summary is None


def test_constant_dimension_is_flagged_and_layer_without_latents_explained(viewer, qtbot):
    table = synthetic_latents().drop(columns=[f"logvar_{i}" for i in range(5)]).assign(mu_3=0.25)
    viewer.add_labels(np.zeros((4, 4), np.int32), name="cells", features=table)
    viewer.add_labels(np.zeros((4, 4), np.int32), name="plain", features=pd.DataFrame({"index": [1]}))
    widget = StatisticsWidget(viewer)
    qtbot.addWidget(widget)
    widget.set_table_source("plain")
    assert widget.compute() is None and "layer 'plain' has no mu_* features" in widget.status.text()
    widget.set_table_source("cells")
    _compute(qtbot, widget)
    assert 3 not in widget.summary.ranking and widget.summary.ranking[0] == 2
    forest_text = widget.tab_pages["forest"].itemAt(1).widget().text()  # the plot, then its numbers
    assert "d undefined (zero variance in both groups), left out: mu_3" in forest_text
    assert "needs logvar_* columns" in widget.tab_pages["kl"].itemAt(0).widget().text()


def test_panel_and_report_compare_the_same_way_by_default(viewer, qtbot, tmp_path):
    """Untouched, the panel compares treated (second in the table) against control (first), as the report does."""
    from napari_morphospace.core.project.report import check_known_answer

    table = synthetic_latents()
    session_for(viewer).latents = table
    widget = StatisticsWidget(viewer)
    qtbot.addWidget(widget)
    assert (widget.a_combo.currentText(), widget.b_combo.currentText()) == ("treated", "control")
    _compute(qtbot, widget)
    expected = hand_cohens_d(table["mu_2"][40:], table["mu_2"][:40])  # treated − control: positive
    assert expected > 1.0 and widget.summary.effects.d[2] == pytest.approx(expected, rel=1e-9)
    factors = table[["group"]].assign(label_id=table["crop_id"], size=table["mu_2"])
    answer = check_known_answer(table.assign(label_id=table["crop_id"]), factors, ["size"])
    assert answer["groups"] == ["control", "treated"] and answer["cohens_d"] == pytest.approx(expected, rel=1e-9)
