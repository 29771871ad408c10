"""Hover latency of the scatter plot at a million points: cursor position → nearest point → its crop shown at the
cursor.

For ``--n`` plotted cells (a Points layer with ``mu_0``/``mu_1`` and a
``crop_id`` per row) whose crops are in a zarr array on disk (chunks of 64
whole crops, as a crop set stores them), in the same run:

* ``ours``: ``ScatterWidget.hover(pixel)`` — what the throttled mouse-move
  handler calls: pixel → data coordinates, the k-d tree's nearest point
  within a few pixels, the crop read from disk, its RGB composite, the
  thumbnail label moved to the cursor and shown. Cursors rest on random
  points; each hover reads a crop not read before (no cached picture).
* ``bare``: the same steps without the widget — ``cKDTree.query`` of one
  position on a prebuilt tree, one crop read from the zarr array,
  ``composite_rgb`` — the floor the widget cannot beat.
* ``brute``: the nearest point by ``argmin`` over all distances (no tree) plus
  the same crop read: what each hover would cost without a tree.
* ``first hover``: the first ``hover`` after the plot was drawn: the k-d tree
  and the rows matched to the crop set by crop id are prepared beside the GUI
  thread once per plot, so it only waits if they are not ready yet.
* ``pick``: pixel → data coordinates → nearest row alone (informational: the
  part of ``ours`` that is not reading and showing the crop).

Writing a million 32² crops would take ~4 GB; the zarr array holds
``--crops`` distinct crops (default 20 000) and row ``i`` shows crop
``i mod --crops`` (the crop table still has one row per cell, so matching
rows to crops works on the full million). Run under a display::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_hover.py --n 1000000

Prints median and p95 in milliseconds and the ratio ours/bare of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
import pandas as pd
import zarr
from qtpy.QtWidgets import QApplication
from scipy.spatial import cKDTree

from napari_morphospace._qt.scatter_widget import ScatterWidget
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.figures.gallery import composite_rgb
from napari_morphospace.viewer.session import session_for

FRAME_S = 0.016  # one frame at 60 Hz


class RepeatedCrops:
    """``n`` crops backed by ``len(store)`` distinct ones on disk: crop ``i`` is ``store[i % len(store)]``."""

    def __init__(self, store: zarr.Array, n: int):
        self.store = store
        self.shape = (n, *store.shape[1:])
        self.ndim, self.dtype = store.ndim, store.dtype

    def __getitem__(self, index: int) -> np.ndarray:
        return self.store[int(index) % self.store.shape[0]]


def make_crops(folder: Path, count: int, rng: np.random.Generator) -> zarr.Array:
    store = zarr.create_array(folder / "images.zarr", shape=(count, 2, 32, 32), chunks=(64, 2, 32, 32), dtype="float32")
    for start in range(0, count, 4096):
        stop = min(start + 4096, count)
        store[start:stop] = rng.random((stop - start, 2, 32, 32), dtype=np.float32)
    return store


def summary(times: list[float]) -> tuple[float, float]:
    return statistics.median(times), float(np.percentile(times, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--crops", type=int, default=20_000)
    parser.add_argument("--hovers", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        store = make_crops(Path(folder), args.crops, rng)
        crop_ids = rng.permutation(args.n).astype(np.int64) + 1000  # table order differs from plot order
        table = pd.DataFrame({"crop_id": crop_ids, "source": "cells", "label_id": np.arange(1, args.n + 1), "t": 0})
        crop_set = CropSet(RepeatedCrops(store, args.n), table, ["c0", "c1"])
        features = pd.DataFrame(rng.standard_normal((args.n, 2)).astype(np.float32), columns=["mu_0", "mu_1"])
        features["crop_id"] = crop_ids[rng.permutation(args.n)]

        viewer = napari.Viewer(show=False)
        session_for(viewer).crop_set = crop_set
        viewer.add_points(rng.uniform(0, 1000, size=(args.n, 2)), features=features, size=2, name="cells")
        widget = ScatterWidget(viewer)
        viewer.window.add_dock_widget(widget, area="right")
        widget.set_sources(["cells"])
        widget.form.density_check.setChecked(False)  # points, as the user hovering them sees them
        widget.plot.canvas.size = (500, 400)
        widget.plot.canvas.render()
        widget.plot.fit(widget._positions)
        app.processEvents()
        transform = widget.plot.canvas.scene.node_transform(widget.plot.view.scene)
        positions = widget._positions
        targets = rng.choice(args.n, size=args.hovers + 1, replace=False)
        pixels = [tuple(transform.imap([*positions[row], 0, 1])[:2]) for row in targets]

        tree = cKDTree(positions)
        positions_table = pd.Index(crop_set.table["crop_id"]).get_indexer(features["crop_id"].to_numpy())

        def bare_hover(row: int) -> float:
            start = time.perf_counter()
            _, nearest = tree.query(positions[row])
            composite_rgb(np.asarray(crop_set.images[positions_table[nearest]]))
            return time.perf_counter() - start

        def our_hover(pixel: tuple[float, float]) -> float:
            start = time.perf_counter()
            row = widget.hover(pixel)
            elapsed = time.perf_counter() - start
            assert row is not None and not widget.crops.hover_thumbnail.isHidden()
            return elapsed

        start = time.perf_counter()
        widget.hover(pixels[0])
        first = time.perf_counter() - start
        ours, bare, brute, picks = [], [], [], []
        for i, (row, pixel) in enumerate(
            zip(targets[1:], pixels[1:], strict=True)
        ):  # alternating who reads a crop first
            if i % 2:
                bare.append(bare_hover(row))
                ours.append(our_hover(pixel))
            else:
                ours.append(our_hover(pixel))
                bare.append(bare_hover(row))
        found = len(ours)
        for pixel in pixels[1:]:
            start = time.perf_counter()
            widget.pick(*widget.plot.canvas_to_data(pixel))
            picks.append(time.perf_counter() - start)
        for row in targets[1 : 1 + min(50, args.hovers)]:
            start = time.perf_counter()
            nearest = int(np.argmin(((positions - positions[row]) ** 2).sum(axis=1)))
            composite_rgb(np.asarray(crop_set.images[positions_table[nearest]]))
            brute.append(time.perf_counter() - start)

    (ours_median, ours_p95), (bare_median, bare_p95), (brute_median, brute_p95), (pick_median, pick_p95) = map(
        summary, (ours, bare, brute, picks)
    )
    print(f"{args.n} points, crops 2 x 32 x 32 from a zarr array on disk, {args.hovers} hovers on random points")
    print(f"  first hover after the plot               : {1000 * first:8.1f} ms (once per plot)")
    print(
        f"  ours  widget.hover(pixel)                : median {1000 * ours_median:6.2f} ms, "
        f"p95 {1000 * ours_p95:6.2f} ms,"
        f" thumbnail shown {found}/{args.hovers}"
    )
    print(
        f"    of which pick (pixel -> nearest row)   : median {1000 * pick_median:6.2f} ms, "
        f"p95 {1000 * pick_p95:6.2f} ms"
    )
    print(
        f"  bare  tree query + crop read + composite : median {1000 * bare_median:6.2f} ms, "
        f"p95 {1000 * bare_p95:6.2f} ms"
    )
    print(
        f"  brute argmin over all points + crop read : median {1000 * brute_median:6.2f} ms, "
        f"p95 {1000 * brute_p95:6.2f} ms"
    )
    print(
        f"  ratio ours/bare (medians): {ours_median / bare_median:.2f}; brute/ours: {brute_median / ours_median:.0f}x;"
        f" one frame = {1000 * FRAME_S:.0f} ms: {'met' if ours_p95 <= FRAME_S else 'MISSED'} (p95)"
    )


if __name__ == "__main__":
    main()
