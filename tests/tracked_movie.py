"""A synthetic 2D+t time-lapse of four tracked cells that grow at known rates (label id = track id).

Shared by the command-line and widget tests of tracks: the known answers
(speed of a path whose ``mu_0`` is the cell radius = its growth per frame)
come from :data:`CELLS`.
"""

from __future__ import annotations

import numpy as np

FRAMES, SIZE = 6, 96
#: label id -> (centre y at frame 0, centre x, radius at frame 0, growth per frame); cell 4 appears at frame 2,
#: every cell moves down one pixel per frame.
CELLS = {1: (20, 20, 4.0, 1.0), 2: (20, 70, 5.0, 0.5), 3: (70, 20, 6.0, 0.0), 4: (70, 70, 4.0, 1.5)}
FIRST_FRAME = {1: 0, 2: 0, 3: 0, 4: 2}


def movie() -> tuple[np.ndarray, np.ndarray]:
    """``(image, labels)``, both (T, Y, X): bright disks on a dark background, and their labels."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    labels = np.zeros((FRAMES, SIZE, SIZE), np.uint16)
    for t in range(FRAMES):
        for label, (y, x, r0, growth) in CELLS.items():
            if t >= FIRST_FRAME[label]:
                labels[t][(yy - y - t) ** 2 + (xx - x) ** 2 <= (r0 + growth * t) ** 2] = label
    image = np.where(labels > 0, 200, 10).astype(np.uint8)
    return image, labels


def track_points(id_of_label=lambda label: 10 * label) -> np.ndarray:
    """A tracker's points of the cells (napari Tracks data: track id, t, y, x), track ids renumbered."""
    return np.array(
        [
            (id_of_label(label), t, y + t, x)
            for t in range(FRAMES)
            for label, (y, x, _, _) in CELLS.items()
            if t >= FIRST_FRAME[label]
        ],
        dtype=float,
    )


def radius(label_ids: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The radius of each (label, frame) cell: a latent coordinate with known paths."""
    return np.array(
        [CELLS[int(label)][2] + CELLS[int(label)][3] * t for label, t in zip(label_ids, frames, strict=True)]
    )
