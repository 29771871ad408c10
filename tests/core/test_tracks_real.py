"""Tracks of real time-lapses that no one here wrote: the three ways of reading track ids agree, and real tracks
move more smoothly through an embedding of their crops than the same cells in shuffled frame order."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
from real_data import dataset
from real_tracks import movie_path, track_points
from sklearn.decomposition import PCA

from napari_morphospace.core.analysis import tracks
from napari_morphospace.core.cells import track_ids
from napari_morphospace.core.cells.crop_set import NO_TRACK, TRACK_ID
from napari_morphospace.core.cells.crops import (
    CropSettings,
    crops_from_labels,
    crops_from_points,
)

MU = [f"mu_{i}" for i in range(10)]


def _embedded(crop_set, ids):
    """The crop table with its track ids and the first 10 principal components of the crops as ``mu_*``."""
    pcs = PCA(len(MU), random_state=0).fit_transform(np.asarray(crop_set.images).reshape(len(crop_set), -1))
    return track_ids.with_track_ids(crop_set.table, ids).assign(**{c: pcs[:, i] for i, c in enumerate(MU)})


def _smoothness(cells) -> float:
    """Mean step length of the real tracks over that of the same tracks in shuffled frame order (5 shuffles)."""
    real, shuffled = tracks.smoothness(cells, MU)
    return real / shuffled


@pytest.fixture(scope="module")
def tgmm():
    """The tracked 3D+t label image (31 frames, 212 tracks; LZW-compressed, read with imagecodecs), its crops."""
    root = dataset("tgmm")
    labels = tifffile.imread(root / "tgmm-mini.tif")
    mask = (labels > 0).astype(np.float32)  # labels only: each crop shows its cell's 3D shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few objects under min_area
        crop_set = crops_from_labels(
            mask, labels, CropSettings(size=(8, 16, 16), mode="fit", normalise="dtype"), axes="TZYX", source="tgmm-mini"
        )
    return root, labels, crop_set


def test_tracked_label_ids_and_the_trackers_table_give_the_same_tracks(tgmm):
    root, labels, crop_set = tgmm
    from_labels = track_ids.track_ids_from_labels(crop_set.table)
    assert len(np.unique(from_labels)) == 212 and len(crop_set) > 3000
    # the tracks layer data shipped with the labels: label (= track), frame, centroid z, y, x
    points = track_ids.read_tracks(root / "tgmm-mini-tracks-layer-data.csv")
    inside_labels = track_ids.track_ids_from_tracks(crop_set.table, points, labels_at=lambda t: labels[t])
    inside_boxes = track_ids.track_ids_from_tracks(crop_set.table, points)
    assert np.mean(inside_boxes == from_labels) == 1.0
    # a centroid can fall outside a curved cell: then the crop finds no track, never a wrong one
    matched = inside_labels != NO_TRACK
    assert matched.mean() > 0.99 and np.all(inside_labels[matched] == from_labels[matched])


def test_real_3d_tracks_are_smoother_than_shuffled_ones(tgmm):
    _, _, crop_set = tgmm
    cells = _embedded(crop_set, track_ids.track_ids_from_labels(crop_set.table))
    assert _smoothness(cells) < 0.85
    statistics = tracks.track_statistics(cells, MU)
    assert len(statistics) == 212 and statistics["n_frames"].sum() == len(cells)
    assert statistics["straightness"].dropna().between(0, 1).all()


def test_real_2d_timelapse_tracks_layer_gives_each_crop_its_track_and_smooth_paths():
    image = tifffile.imread(movie_path())  # (30, 511, 511) nuclei
    points = track_points()  # napari Tracks data: track_id, t, y, x; 16 tracks
    crop_set = crops_from_points(image, points[:, 1:], CropSettings(size=32), axes="TYX", source="2D_timelapse")
    ids = track_ids.track_ids_from_tracks(crop_set.table, points)
    expected = points[crop_set.table["label_id"].to_numpy() - 1, 0]  # label id = 1-based point index
    np.testing.assert_array_equal(ids, expected)
    cells = _embedded(crop_set, ids)
    assert cells[TRACK_ID].nunique() == 16
    assert _smoothness(cells) < 0.6
