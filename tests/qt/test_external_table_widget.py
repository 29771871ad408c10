"""A CellProfiler table of the real BBBC007 nuclei, opened from the Analysis dock and explored as a user does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from bbbc007_cells import ONE_PER_CONDITION, open_fields
from cellprofiler_table import FEATURES, write_cellprofiler_tables

from napari_morphospace._qt.statistics_widget import SESSION_TABLE
from napari_morphospace.core.analysis.cell_table import FEATURE_PREFIX
from napari_morphospace.viewer.session import session_for


@pytest.fixture
def explorer(make_napari_viewer, dock, tmp_path):
    """Three real fields (one per condition) opened with File > Open, and the docks a user opens."""
    viewer = make_napari_viewer()
    names = open_fields(viewer, ONE_PER_CONDITION)
    nuclei, _image_table = write_cellprofiler_tables(tmp_path / "cellprofiler", ONE_PER_CONDITION)
    return viewer, names, nuclei, dock(viewer, "Analysis")


def _open(analysis, qtbot, path, settings=None):
    worker = analysis.open_table(path, settings)
    assert worker is not None
    qtbot.waitUntil(lambda: not analysis.tasks.busy, timeout=30000)


def test_cellprofiler_table_lands_in_the_layers_features_and_the_explorer(explorer, dock, qtbot):
    viewer, names, nuclei, analysis = explorer
    table = pd.read_csv(nuclei)
    _open(analysis, qtbot, nuclei)
    session = session_for(viewer)
    assert len(session.latents) == len(table)
    assert f"{len(table)} cells of 3 Labels layer(s) with {len(FEATURES)} features" in analysis.status.text()
    # each Labels layer's features: its own nuclei, by label id, with the table's values
    for number, name in enumerate(names, start=1):
        rows = table[table["ImageNumber"] == number]
        features = viewer.layers[name].features
        np.testing.assert_array_equal(features["index"], rows["ObjectNumber"])
        for column in FEATURES:
            np.testing.assert_array_equal(features[FEATURE_PREFIX + column], rows[column])
        assert set(features["group"]) == set(rows["Metadata_Condition"])

    scatter = dock(viewer, "Scatter")
    scatter.set_sources(names)
    assert len(scatter._positions) == len(table)
    axes = scatter.axis_columns()
    assert set(axes[: len(FEATURES)]) == {FEATURE_PREFIX + c for c in FEATURES}  # the measurements first
    scatter.set_axes("feature:AreaShape_Area", "feature:Intensity_MeanIntensity_DNA")
    order = np.concatenate([viewer.layers[n].features["feature:AreaShape_Area"].to_numpy() for n in names])
    np.testing.assert_array_equal(scatter._positions[:, 0], order.astype(np.float32))

    statistics = dock(viewer, "Statistics")
    statistics.set_table_source(SESSION_TABLE)
    statistics.set_groups("A9", "f9620")
    statistics.compute()
    qtbot.waitUntil(lambda: statistics.summary is not None, timeout=60000)
    a = table.loc[table["Metadata_Condition"] == "A9", "AreaShape_Area"].to_numpy(float)
    b = table.loc[table["Metadata_Condition"] == "f9620", "AreaShape_Area"].to_numpy(float)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    index = statistics.summary.names.index("AreaShape_Area")
    assert statistics.summary.effects.d[index] == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-12)
    assert "measured features" in statistics.overview.text()


def test_pca_of_measured_features_is_computed_on_standardised_values(explorer, dock, qtbot):
    viewer, names, nuclei, analysis = explorer
    _open(analysis, qtbot, nuclei)
    scatter = dock(viewer, "Scatter")
    scatter.set_sources(names)
    buttons = scatter.compute_row
    assert (buttons.embed_button.text(), buttons.cluster_button.text()) == ("Embed features", "Cluster features")
    assert "measured features" in buttons.embed_button.toolTip()  # no model: nothing says μ
    scatter.compute_row.compute_embedding("PCA")
    qtbot.waitUntil(lambda: "PCA_0" in viewer.layers[names[0]].features.columns, timeout=30000)
    latents = session_for(viewer).latents
    values = latents[[FEATURE_PREFIX + c for c in FEATURES]].to_numpy(float)
    standard = (values - values.mean(axis=0)) / values.std(axis=0)
    first = np.linalg.svd(standard - standard.mean(axis=0), full_matrices=False)[2][0]
    np.testing.assert_allclose(np.abs(latents["PCA_0"].to_numpy()), np.abs(standard @ first), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("make_table", "message"),
    [
        (lambda t: t.drop(columns=["ObjectNumber"]), "the table has no label id column"),
        (lambda t: t.assign(ObjectNumber=t["ObjectNumber"] + 5000), "name label ids that layer"),
        (lambda t: pd.concat([t, t.head(2)]), "rows repeat an object"),
        (
            lambda t: t.assign(ImageNumber=t["ImageNumber"] + 10),
            "the image table has no row for ImageNumber 11, 12, 13",
        ),
    ],
    ids=["no-key", "unknown-labels", "duplicates", "unknown-images"],
)
def test_a_table_that_does_not_match_gives_one_message_and_changes_nothing(
    explorer, qtbot, napari_hooks, make_table, message
):
    viewer, names, nuclei, analysis = explorer
    make_table(pd.read_csv(nuclei)).to_csv(nuclei, index=False)
    _open(analysis, qtbot, nuclei)
    errors = napari_hooks.take_errors()
    assert len(errors) == 1 and message in errors[0]
    assert message in analysis.status.text()
    assert session_for(viewer).cells is None
    assert all(len(viewer.layers[name].features) == 0 for name in names)


def test_cells_of_a_table_are_annotated_and_exported_with_the_users_names(explorer, dock, qtbot, tmp_path):
    anndata = pytest.importorskip("anndata")
    viewer, names, nuclei, analysis = explorer
    _open(analysis, qtbot, nuclei)
    annotate = dock(viewer, "Annotate")
    annotate.set_analysis_folder(tmp_path / "analysis")
    annotate.add_class("round")
    cells = session_for(viewer).cells
    round_ids = cells.loc[cells["feature:AreaShape_Eccentricity"] < 0.5, "crop_id"].to_numpy()
    assert annotate.assign(round_ids, "round") == len(round_ids) > 10
    features = viewer.layers[names[0]].features
    expected = np.where(features["feature:AreaShape_Eccentricity"] < 0.5, "round", "")
    np.testing.assert_array_equal(features["annotation"], expected)
    # one click on a nucleus of the first field annotates that nucleus (the layer's own label ids)
    first = annotate.crop_ids_of(names[0], [int(features["index"].iloc[0])])
    assert list(first) == [int(features["crop_id"].iloc[0])]

    path = annotate.export_table(tmp_path / "cells.h5ad")
    adata = anndata.read_h5ad(path)
    assert list(adata.var_names) == FEATURES  # the user's column names, not feature:...
    np.testing.assert_allclose(adata.X[:, FEATURES.index("AreaShape_Area")], cells["feature:AreaShape_Area"])
    assert int((adata.obs["annotation"] == "round").sum()) == len(round_ids)
    with pytest.raises(Exception, match="no crops to export"):
        annotate.export_crops(tmp_path / "crops")


def test_the_table_is_saved_with_the_analysis_and_comes_back(explorer, make_napari_viewer, dock, qtbot, tmp_path):
    viewer, names, nuclei, analysis = explorer
    _open(analysis, qtbot, nuclei)
    before = session_for(viewer).cells.copy()
    analysis.save(tmp_path / "analysis")
    qtbot.waitUntil(lambda: not analysis.tasks.busy, timeout=30000)
    assert "Analysis saved" in analysis.status.text(), analysis.status.text()

    viewer2 = make_napari_viewer()
    reopened = dock(viewer2, "Analysis")
    reopened._ask = lambda question: "outside itself" in question  # the fields lie outside the folder: consent
    reopened.open(tmp_path / "analysis")
    qtbot.waitUntil(lambda: not reopened.tasks.busy, timeout=30000)
    cells = session_for(viewer2).cells
    assert cells is not None, reopened.status.text()
    pd.testing.assert_frame_equal(cells[before.columns].reset_index(drop=True), before, check_dtype=False)


def test_latent_space_dock_says_measured_features_have_nothing_to_decode(explorer, dock, qtbot, napari_hooks):
    viewer, names, nuclei, analysis = explorer
    latent = dock(viewer, "Latent space")
    _open(analysis, qtbot, nuclei)
    assert "features measured elsewhere" in latent.status.text()
    assert latent.latents is None
    warnings = [str(n.message) for n in napari_hooks.notifications("warning")]
    assert not [w for w in warnings if "mu_" in w], warnings
