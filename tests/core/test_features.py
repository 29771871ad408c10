"""Latent tables onto per-layer features: exact rows, kept columns, unmatched crops, saved tables."""

import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.analysis.cell_table import (
    LabelsInfo,
    add_cluster_column,
    add_embedding_columns,
    cell_table,
    join_latents,
    left_out_note,
    merge_latents,
    rows_with_latents,
    set_annotations,
    set_columns,
)
from napari_morphospace.core.errors import InputError


def latent_table():
    """Two sources: a 2D image 'ctrl.tif' (labels 1, 2, 5) and a time-lapse layer 'movie' (frames 0 and 1)."""
    rows = [
        # crop_id, source, label_id, t, group
        (10, "ctrl.tif", 5, 0, "control"),
        (11, "ctrl.tif", 1, 0, "control"),
        (20, "movie", 1, 0, "treated"),
        (21, "movie", 1, 1, "treated"),
        (22, "movie", 3, 1, "treated"),
        (30, "other.tif", 1, 0, "control"),  # no layer
        (12, "ctrl.tif", 1, 1, "control"),  # a frame the still layer does not have
    ]
    table = pd.DataFrame(rows, columns=["crop_id", "source", "label_id", "t", "group"])
    table.insert(1, "mu_0", table["crop_id"] * 1.0)
    table.insert(2, "mu_1", table["crop_id"] * -1.0)
    table.insert(3, "logvar_0", 0.5)
    table.insert(4, "logvar_1", 0.25)
    table["annotation"] = ["", "odd", "", "", "", "", ""]
    table[["y_start", "y_stop", "x_start", "x_stop"]] = 0
    return table


def layers():
    """'control cells' (a still layer whose features another tool wrote for labels 1, 2, 5) and 'movie' (2 frames)."""
    existing = pd.DataFrame({"index": [1, 2, 5], "area": [10.0, 20.0, 50.0], "mu_7": 1.0, "group": "old"})
    return [
        LabelsInfo("control cells", existing, False, aliases=("ctrl.tif",)),
        LabelsInfo("movie", pd.DataFrame(), True),
    ]


def test_latents_land_on_exactly_the_rows_of_their_layer_and_frame():
    join = join_latents(latent_table(), layers())
    still, movie = join.tables["control cells"], join.tables["movie"]
    assert still["index"].tolist() == [1, 2, 5]  # label 2 has no crop but keeps the other tool's row
    assert still["mu_0"].tolist()[0::2] == [11.0, 10.0] and np.isnan(still["mu_0"][1])
    assert still["mu_1"].tolist()[2] == -10.0 and still["logvar_1"].tolist()[0] == 0.25
    assert still["area"].tolist() == [10.0, 20.0, 50.0]  # kept
    assert "mu_7" not in still  # a previous embedding's column is replaced, not mixed with the new one
    assert still["group"].tolist()[0] == "control" and pd.isna(still["group"][1])  # latent table's group wins
    assert still["annotation"].tolist()[0] == "odd" and "frame" not in still
    assert movie[["frame", "index"]].values.tolist() == [[0, 1], [1, 1], [1, 3]]  # one row per cell, no NaN row
    assert movie["t"].tolist() == [0, 1, 1] and movie["crop_id"].tolist() == [20, 21, 22]
    assert movie["mu_0"].tolist() == [20.0, 21.0, 22.0]
    assert not any(c.endswith(("_start", "_stop")) or c in ("source", "label_id") for c in movie.columns)


def test_objects_without_a_crop_get_no_row_and_our_old_rows_go():
    """A skipped object never becomes a NaN row; rows only an earlier embedding wrote do not linger."""
    earlier = pd.DataFrame({"index": [1, 2, 3], "crop_id": [0, 1, 2], "mu_0": [0.0, 1.0, 2.0], "group": "a"})
    table = pd.DataFrame({"crop_id": [7], "source": ["a"], "label_id": [3], "t": [0], "mu_0": [5.0], "group": ["a"]})
    features = join_latents(table, [LabelsInfo("a", earlier)]).tables["a"]
    assert features.to_dict("list") == {"index": [3], "crop_id": [7], "mu_0": [5.0], "group": ["a"]}


def test_crops_without_a_row_are_reported_with_the_reason():
    join = join_latents(latent_table(), layers())
    assert join.unmatched["crop_id"].tolist() == [30, 12]
    message = join.describe_unmatched()
    assert "'other.tif' come from a source that is no Labels layer" in message
    assert "'ctrl.tif' come from a later frame than the still layer has" in message and "label ids 1" in message


def test_repeated_crops_and_logvar_left_out():
    table = pd.concat([latent_table().iloc[:2], latent_table().iloc[:1].assign(crop_id=99)], ignore_index=True)
    join = join_latents(table, layers()[:1], include_logvar=False)
    assert join.unmatched["crop_id"].tolist() == [99]
    assert "repeat" in join.describe_unmatched()
    assert not any(c.startswith("logvar_") for c in join.tables["control cells"].columns)


def test_features_without_index_column_follow_napari_row_equals_label():
    info = LabelsInfo("a", pd.DataFrame({"size": [0.0, 1.0, 2.0]}))
    table = pd.DataFrame({"crop_id": [0], "source": ["a"], "label_id": [2], "t": [0], "mu_0": [3.0]})
    features = join_latents(table, [info]).tables["a"]
    assert features[["index", "size"]].values.tolist() == [[0, 0.0], [1, 1.0], [2, 2.0]]
    assert features["mu_0"].tolist()[2] == 3.0


def test_missing_key_columns_are_refused():
    with pytest.raises(InputError, match="no column.*label_id"):
        join_latents(pd.DataFrame({"crop_id": [1], "source": ["a"], "t": [0]}), layers())


def test_embedding_and_cluster_columns_from_mu():
    rng = np.random.default_rng(0)
    mu = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(5, 0.1, (20, 3))])
    table = pd.DataFrame(mu, columns=["mu_0", "mu_1", "mu_2"]).assign(crop_id=np.arange(40))
    table = add_cluster_column(add_embedding_columns(table, "PCA"), "kmeans", n_clusters=2)
    assert np.abs(table["PCA_0"].to_numpy()).min() > 1.0  # the separating axis is the first component
    assert table["cluster"].nunique() == 2 and (table["cluster"][:20] == table["cluster"][0]).all()
    with pytest.raises(InputError, match="unknown embedding"):
        add_embedding_columns(table, "MDS")


def _cells():
    crops = pd.DataFrame({"crop_id": [3, 4, 5], "source": "a", "label_id": [1, 2, 3], "t": 0, "group": ["x", "x", "y"]})
    return cell_table(crops)


def test_the_cell_table_takes_latents_embeddings_clusters_and_annotations_by_crop_id():
    cells = _cells()
    assert cells["annotation"].tolist() == ["", "", ""]
    latents = pd.DataFrame({"crop_id": [5, 3], "mu_0": [1.0, 2.0], "mu_1": [0.5, 0.0], "cluster": [1, 0]})
    cells = merge_latents(cells, latents)
    assert cells["mu_0"].tolist()[0::2] == [2.0, 1.0] and np.isnan(cells["mu_0"][1])  # crop 4 not embedded
    cells = set_columns(cells, [3, 5], {"PCA_0": [9.0, 8.0], "PCA_1": [7.0, 6.0], "cluster": [2, 2]})
    assert cells["PCA_1"].tolist()[0::2] == [7.0, 6.0] and cells["cluster"].tolist()[0::2] == [2, 2]
    cells = set_columns(cells, [5], {"PCA_0": [1.0]})  # a new PCA replaces every PCA column
    assert "PCA_1" not in cells and np.isnan(cells["PCA_0"][0])
    cells = set_annotations(cells, pd.Series({4: "round"}))
    assert cells["annotation"].tolist() == ["", "round", ""]
    # a new embedding replaces every result of the last one, and keeps the annotations
    cells = merge_latents(cells, pd.DataFrame({"crop_id": [4], "mu_0": [3.0]}))
    assert [c for c in cells.columns if c.startswith(("mu_", "PCA_", "cluster"))] == ["mu_0"]
    assert cells["annotation"].tolist() == ["", "round", ""]
    with pytest.raises(InputError, match="not cells of this session"):
        set_columns(cells, [99], {"cluster": [1]})


def test_rows_without_a_latent_are_counted_and_left_out():
    latents = pd.DataFrame({"crop_id": [5, 3], "mu_0": [1.0, np.nan], "mu_1": [2.0, np.nan]})
    kept, left_out = rows_with_latents(merge_latents(_cells(), latents))
    assert kept["crop_id"].tolist() == [5] and left_out == 2
    latents.loc[1, "mu_0"] = 0.5  # a damaged latent is still a latent: plots and statistics refuse it, naming it
    assert rows_with_latents(merge_latents(_cells(), latents))[1] == 1
    assert left_out_note(2, "'a'") == (
        "2 cells of 'a' have no latent (not cropped, e.g. under the minimum area, or not embedded) and are left out"
    )
    assert left_out_note(0) == "" and left_out_note(1).startswith("1 cell has no latent")
