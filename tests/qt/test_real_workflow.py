"""The whole path a new user takes, on real microscopy no one here wrote, through napari's real plugin mechanism.

Files opened with ``viewer.open`` (names with spaces, a labels file without
its image), every widget docked as from the Plugins menu (each gets napari's
proxy of the viewer), napari's exception and notification hooks installed
(any error a user would see fails the test), the GUI thread kept busy during
the build as slow software-GL redraws keep it, then Cells → Train (a few
epochs) → Embed → Scatter with points → Keep → remove a layer → close.
"""

import time

import numpy as np
import tifffile
from napari.layers import Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QPushButton
from real_data import bbbc007_fields, dataset, stardist_3d

WIDGETS = ("Cells", "Train", "Embed", "Scatter", "Statistics", "Latent space", "Classifier", "Annotate", "Analysis")
WAIT_MS = 240_000


def _busy_gui_thread(block_s: float = 0.08, every_ms: int = 20) -> QTimer:
    """A timer that blocks the GUI thread for ``block_s`` again and again, as slow canvas redraws do."""
    timer = QTimer()
    timer.setInterval(every_ms)
    timer.timeout.connect(lambda: time.sleep(block_s))
    return timer


def _walk_the_user_path(
    viewer, dock, napari_hooks, qtbot, tmp_path, *, labels_layers, crop_size=None, until_latents=False
):
    """Cells → Train → Embed → Scatter → Keep → remove a layer → close (or Cells → Embed with ``until_latents``);
    any error notification fails it."""
    closed = False
    try:
        _walk(viewer, dock, napari_hooks, qtbot, tmp_path, labels_layers, crop_size, until_latents)
        viewer.close()  # as the user does; what closing raises belongs to this test
        closed = True
    finally:
        if not closed:  # a step failed: close without the layer events, so no half-closed viewer leaks
            with viewer.layers.events.removed.blocker():
                viewer.close()
        qtbot.wait(100)
        errors = napari_hooks.take_errors()
    assert errors == [], "error notifications a user would have seen:\n" + "\n".join(errors)


def _walk(viewer, dock, napari_hooks, qtbot, tmp_path, labels_layers, crop_size, until_latents):
    widgets = {name: dock(viewer, name) for name in WIDGETS}
    cells, train, embed, scatter = (widgets[n] for n in ("Cells", "Train", "Embed", "Scatter"))

    # Cells: every field paired with its own image; built while the GUI thread is busy.
    if crop_size is not None:
        cells.crop_form.size.value = crop_size
    busy = _busy_gui_thread()
    busy.start()
    try:
        cells.build_button.native.click()
        qtbot.waitUntil(lambda: not cells.tasks.busy, timeout=WAIT_MS)
    finally:
        busy.stop()
    crop_set = cells.crop_set
    assert crop_set is not None and cells.status.text().startswith(f"{len(crop_set)} crops")
    assert set(crop_set.table["source"]) == set(labels_layers)

    # Train: a few epochs on what Cells built (shared through the session, whatever proxy each widget got).
    assert train.crop_set is crop_set
    config = train.config()
    config.training.epochs, config.training.batch_size = 2, 16  # 51 nuclei: the 3D split has 41 training crops
    config.training.checkpoint_dir = str(tmp_path / "checkpoints")
    config.training.accelerator, config.training.devices = "cpu", 1
    train.set_config(config)
    train.start_button.native.click()
    qtbot.waitUntil(lambda: not train.running, timeout=WAIT_MS)
    assert train.result is not None, train.status.text()
    assert train.session.bundle is not None and train.session.bundle.folder is None  # usable before it is saved

    # Embed: latents of the model just trained (not saved yet) written into the Labels layers' features.
    embed.embed_button.native.click()
    qtbot.waitUntil(lambda: not embed.tasks.busy, timeout=WAIT_MS)
    assert "crops embedded" in embed.status.text(), embed.status.text()
    assert train.save_bundle_to(tmp_path / "model") is not None
    assert all(viewer.layers[name].features.filter(like="mu_").shape[1] > 0 for name in labels_layers)
    if until_latents:
        return

    # Scatter: one point per embedded cell, a selection kept under a name.
    scatter.set_sources(labels_layers)
    x, y = scatter.axis_columns()[:2]
    scatter.set_axes(x, y)
    n_points = len(scatter._positions)
    assert n_points == len(crop_set)
    scatter.select_rows(np.arange(5))
    scatter.selections.selection_name.setText("first five")
    [keep] = [b for b in scatter.findChildren(QPushButton) if b.text() == "Keep"]
    keep.click()
    assert "first five" in scatter.session.named_selections
    assert napari_hooks.errors() == []

    # Remove a plotted layer (the viewer is closed next): nothing may raise.
    viewer.layers.remove(labels_layers[0])
    qtbot.wait(100)
    assert napari_hooks.errors() == []


def test_real_2d_fields_from_files_to_a_kept_selection(make_napari_viewer, dock, napari_hooks, qtbot, tmp_path):
    """Four BBBC007 fields of two conditions (A9, f9620) and a labels file without its image."""
    fields = [f for f in bbbc007_fields() if f[0] == "A9"][:2] + [f for f in bbbc007_fields() if f[0] == "f9620"][:2]
    viewer = make_napari_viewer()
    for _, image, labels in fields:
        viewer.open(str(image), plugin="napari-morphospace")
        viewer.open(str(labels), plugin="napari-morphospace")
    viewer.open(str(dataset("bbbc007") / "f9620" / "20P1_POS0002_D_1UL_labels.tif"), plugin="napari-morphospace")
    labels_layers = [labels.stem for _, _, labels in fields]
    _walk_the_user_path(viewer, dock, napari_hooks, qtbot, tmp_path, labels_layers=labels_layers)


def test_real_3d_nuclei_from_files_to_a_kept_selection(make_napari_viewer, dock, napari_hooks, qtbot, tmp_path):
    """stardist's 3D nuclei stack and its mask (names that share no stem: the only image of that shape)."""
    image, mask = stardist_3d()
    viewer = make_napari_viewer()
    viewer.open(str(image), plugin="napari-morphospace")
    viewer.open(str(mask), plugin="napari-morphospace")
    assert isinstance(viewer.layers["mask3d"], Labels)
    assert len(np.unique(tifffile.imread(mask))) - 1 == 51
    _walk_the_user_path(viewer, dock, napari_hooks, qtbot, tmp_path, labels_layers=["mask3d"], crop_size="16, 32, 32")
