"""Do real tracks move more smoothly through an embedding of their crops than the same cells in shuffled frame order?

Two real tracked time-lapses that no one here wrote (``tests/real_data.py``):
``tgmm`` (a 3D+t tracked label image, 212 tracks; crops of each cell's 3D
mask, 8×16×16, track id = label id) and ``bio_sample`` (a 2D nuclei
time-lapse with a napari Tracks layer, 16 tracks; 32×32 crops at the track
points, track ids read from the Tracks data with ``track_ids_from_tracks``).
The embedding is the first 10 principal components of the crops. The
baseline, measured in the same run, is the mean step length of the same
tracks with their frames shuffled within each track (``--shuffles`` seeds).

Run from the repository root::

    nice -n 10 .venv/bin/python benchmarks/bench_track_smoothness.py
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import tifffile
from sklearn.decomposition import PCA

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_data import dataset  # noqa: E402
from real_tracks import movie_path, track_points  # noqa: E402

from napari_morphospace.core.analysis import tracks  # noqa: E402
from napari_morphospace.core.cells import track_ids  # noqa: E402
from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels, crops_from_points  # noqa: E402


def tgmm_cells(dims: int):
    labels = tifffile.imread(dataset("tgmm") / "tgmm-mini.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crop_set = crops_from_labels(
            (labels > 0).astype(np.float32),
            labels,
            CropSettings(size=(8, 16, 16), mode="fit", normalise="dtype"),
            axes="TZYX",
        )
    return embedded(crop_set, track_ids.track_ids_from_labels(crop_set.table), dims)


def bio_sample_cells(dims: int):
    image = tifffile.imread(movie_path())
    points = track_points()
    crop_set = crops_from_points(image, points[:, 1:], CropSettings(size=32), axes="TYX")
    return embedded(crop_set, track_ids.track_ids_from_tracks(crop_set.table, points), dims)


def embedded(crop_set, ids, dims: int):
    pcs = PCA(dims, random_state=0).fit_transform(np.asarray(crop_set.images).reshape(len(crop_set), -1))
    return track_ids.with_track_ids(crop_set.table, ids).assign(**{f"mu_{i}": pcs[:, i] for i in range(dims)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=10, help="principal components of the crops")
    parser.add_argument("--shuffles", type=int, default=20, help="frame-shuffled copies for the baseline")
    args = parser.parse_args()
    columns = [f"mu_{i}" for i in range(args.dims)]
    print(f"{'data':<12} {'crops':>6} {'tracks':>6} {'real step':>10} {'shuffled':>10} {'ratio':>6} {'s':>5}")
    for name, make in (("tgmm 3D+t", tgmm_cells), ("bio 2D+t", bio_sample_cells)):
        start = time.perf_counter()
        cells = make(args.dims)
        real, shuffled = tracks.smoothness(cells, columns, shuffles=args.shuffles)
        on = track_ids.on_tracks(cells)
        print(
            f"{name:<12} {len(cells):>6} {on['track_id'].nunique():>6} {real:>10.4g} {shuffled:>10.4g} "
            f"{real / shuffled:>6.3f} {time.perf_counter() - start:>5.1f}"
        )


if __name__ == "__main__":
    main()
