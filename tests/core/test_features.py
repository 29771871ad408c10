"""Latent tables onto per-layer features: exact rows, kept columns, unmatched crops, saved tables."""

import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.errors import InputError
from napari_morphospace.core.features import (
    LabelsInfo,
    add_cluster_column,
    add_embedding_columns,
    join_latents,
    label_keys,
)


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
        (23, "movie", 9, 1, "treated"),      # label 9 is not in the layer
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
    still = np.zeros((8, 8), np.int32)
    still[0, 0], still[1, 1], still[2, 2] = 1, 2, 5
    movie = np.zeros((2, 8, 8), np.int32)
    movie[0, 0, 0] = 1
    movie[1, 0, 0], movie[1, 3, 3] = 1, 3
    existing = pd.DataFrame({"index": [1, 2, 5], "area": [10.0, 20.0, 50.0], "mu_7": 1.0, "group": "old"})
    return [
        LabelsInfo("control cells", label_keys(still, has_time=False), existing, False, aliases=("ctrl.tif",)),
        LabelsInfo("movie", label_keys(movie, has_time=True), pd.DataFrame(), True),
    ]


def test_label_keys_per_frame_leave_out_background():
    movie = np.zeros((2, 4, 4), np.int32)
    movie[0, 0, 0], movie[1, 0, 0], movie[1, 1, 1] = 4, 4, 2
    keys = label_keys(movie, has_time=True)
    assert keys.to_dict("list") == {"frame": [0, 1, 1], "index": [4, 2, 4]}
    assert label_keys(movie[1], has_time=False)["index"].tolist() == [2, 4]


def test_latents_land_on_exactly_the_rows_of_their_layer_and_frame():
    join = join_latents(latent_table(), layers())
    still, movie = join.tables["control cells"], join.tables["movie"]
    assert still["index"].tolist() == [1, 2, 5]
    assert still["mu_0"].tolist()[0::2] == [11.0, 10.0] and np.isnan(still["mu_0"][1])  # label 2 has no crop
    assert still["mu_1"].tolist()[2] == -10.0 and still["logvar_1"].tolist()[0] == 0.25
    assert still["area"].tolist() == [10.0, 20.0, 50.0]  # kept
    assert "mu_7" not in still  # a previous embedding's column is replaced, not mixed with the new one
    assert still["group"].tolist()[0] == "control" and pd.isna(still["group"][1])  # latent table's group wins
    assert still["annotation"].tolist()[0] == "odd" and "frame" not in still
    assert movie[["frame", "index"]].values.tolist() == [[0, 1], [1, 1], [1, 3]]
    assert movie["t"].tolist() == [0, 1, 1] and movie["crop_id"].tolist() == [20, 21, 22]
    assert movie["mu_0"].tolist() == [20.0, 21.0, 22.0]
    assert not any(c.endswith(("_start", "_stop")) or c in ("source", "label_id") for c in movie.columns)


def test_crops_without_a_row_are_reported_with_the_reason():
    join = join_latents(latent_table(), layers())
    assert join.unmatched["crop_id"].tolist() == [30, 23]
    message = join.describe_unmatched()
    assert "'other.tif' come from a source that is no Labels layer" in message
    assert "'movie' have a label id not in the layer" in message and "label ids 9" in message


def test_repeated_crops_and_logvar_left_out():
    table = pd.concat([latent_table().iloc[:2], latent_table().iloc[:1].assign(crop_id=99)], ignore_index=True)
    join = join_latents(table, layers()[:1], include_logvar=False)
    assert join.unmatched["crop_id"].tolist() == [99]
    assert "repeat" in join.describe_unmatched()
    assert not any(c.startswith("logvar_") for c in join.tables["control cells"].columns)


def test_features_without_index_column_follow_napari_row_equals_label():
    info = LabelsInfo("a", pd.DataFrame({"index": [1, 2]}), pd.DataFrame({"size": [0.0, 1.0, 2.0]}))
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
