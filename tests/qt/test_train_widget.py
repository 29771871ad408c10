"""The Train widget in a real viewer: learn, plot, preview, save, stop, resume, close mid-training, bad input."""

from __future__ import annotations

import threading
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from skimage.draw import ellipse

from napari_morphospace._qt import tasks as tasks_module
from napari_morphospace._qt import training_display
from napari_morphospace._qt.train_widget import (
    PREVIEW_LAYER,
    TrainWidget,
    default_checkpoint_dir,
)
from napari_morphospace.core.cells.crop_set import CropSet, save_crop_set
from napari_morphospace.core.config import load_config
from napari_morphospace.core.figures.gallery import crop_montage
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.bundle import Bundle
from napari_morphospace.core.training.engine import (
    ReconstructionPreview,
    TrainConfig,
    TrainUpdate,
    split_crops,
)
from napari_morphospace.viewer.session import session_for

N_CROPS, SIZE, BATCH = 40, 16, 8


@pytest.fixture
def notifications(monkeypatch):
    """Error notifications the widget shows, as text."""
    shown: list[str] = []
    monkeypatch.setattr(tasks_module, "show_error", shown.append)
    return shown


def ellipse_crop_set(n: int = N_CROPS, size: int = SIZE, n_sources: int = 4, seed: int = 0) -> CropSet:
    """Two groups, small and large bright ellipses at random angles, spread over ``n_sources`` images."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), np.float32)
    rows = []
    for i in range(n):
        large = i % 2 == 1
        radii = (size * 0.4, size * 0.28) if large else (size * 0.2, size * 0.14)
        rr, cc = ellipse(
            size / 2 + rng.uniform(-1, 1),
            size / 2 + rng.uniform(-1, 1),
            *radii,
            shape=(size, size),
            rotation=rng.uniform(0, np.pi),
        )
        images[i, 0][rr, cc] = 0.9
        rows.append(
            {
                "crop_id": i,
                "source": f"image{i % n_sources}.tif",
                "label_id": i + 1,
                "t": 0,
                "group": "large" if large else "small",
                "annotation": "",
                "y_start": 0,
                "y_stop": size,
                "x_start": 0,
                "x_stop": size,
            }
        )
    return CropSet(images, pd.DataFrame(rows), ["membrane"], (1.0, 1.0), {"steps": []})


@pytest.fixture
def crop_set():
    return ellipse_crop_set()


def make_widget(viewer, qtbot, *, epochs=3, checkpoint_dir=None, docked=False, **train_values) -> TrainWidget:
    """A widget with tiny-model settings; a docked widget belongs to the viewer, which deletes it on close."""
    widget = TrainWidget(viewer)
    if docked:
        viewer.window.add_dock_widget(widget, name="Train")
    else:
        qtbot.addWidget(widget)
    return tiny_settings(widget, epochs=epochs, checkpoint_dir=checkpoint_dir, **train_values)


def set_optional(box, value):
    """Switch an optional setting of a form on (its check box) and give it ``value``."""
    box["enabled"].value = True
    box["value"].value = value


def tiny_settings(widget: TrainWidget, *, epochs=3, checkpoint_dir=None, **train_values) -> TrainWidget:
    """Fill ``widget``'s forms with tiny-model settings."""
    model = widget.model_form
    model.latent_dim.value = 4
    model.base_channels["enabled"].value, model.base_channels["value"].value = True, 8
    form = widget.train_form
    for name, value in (("epochs", epochs), ("batch_size", BATCH)):  # empty (automatic) by default
        set_optional(form[name], value)
    form.learning_rate.value = 3e-3
    form.accelerator.value, form.preview_every_n_epochs.value = "cpu", 1
    for name in ("augment_flips", "augment_rot90"):  # empty (the model's default) by default
        set_optional(form[name], False)
    if checkpoint_dir is not None:
        set_optional(form.checkpoint_dir, str(checkpoint_dir))
    for name, value in train_values.items():
        field = form[name]
        (field["value"] if name in ("epochs", "batch_size") else field).value = value
    return widget


def wait_until_done(qtbot, widget, timeout=60000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def wait_for_first_step(qtbot, widget):
    qtbot.waitUntil(lambda: widget.progress_label.text() != "", timeout=30000)


def loadable_model(checkpoint: Path, settings: ModelSettings) -> torch.nn.Module:
    """The weights of a checkpoint in a freshly built model (strict: every tensor must fit)."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model = build_model(settings, (1, SIZE, SIZE))
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()}, strict=True)
    return model


def training_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "morphospace-task" and t.is_alive()]


# ---------------------------------------------------------------- learning, plot, preview, bundle


def test_training_learns_and_the_saved_bundle_is_the_trained_model(
    make_napari_viewer, qtbot, crop_set, tmp_path, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    viewer = make_napari_viewer()
    widget = make_widget(viewer, qtbot, epochs=3)
    session_for(viewer).crop_set = crop_set  # handed over by the Cells widget
    assert widget.crop_set is crop_set and "40 crops of 1×16×16" in widget.crop_info.text()
    assert "large 20, small 20" in widget.crop_info.text()

    widget.start()
    assert widget.running and not widget.start_button.enabled and widget.stop_button.enabled
    wait_until_done(qtbot, widget)
    result = widget.result
    assert result is not None and not result.stopped_by_user and widget.start_button.enabled
    # What the model learned is shown when training ends, warnings included (3 epochs learn little).
    assert "active units" in widget.status.text() and "held-out reconstruction SSIM" in widget.status.text()
    assert all(w in widget.status.text() for w in result.diagnostics.warnings)

    # Checkpoints went to a visible run folder under the home folder (no crop-set folder to sit next to).
    assert Path(result.checkpoint_dir).parent == tmp_path / "home" / "morphospace-checkpoints"
    assert (Path(result.checkpoint_dir) / "last.ckpt").is_file()

    # The plot shows exactly the engine's per-epoch history, and validation improved.
    series = widget.plot.series
    for name in ("train rec", "val rec", "train kl", "val kl"):
        split, term = name.split()
        np.testing.assert_allclose(series[name], [row[f"{split}_{term}"] for row in result.history], rtol=1e-6)
    val_rec = series["val rec"]
    assert len(val_rec) == 3 and val_rec[-1] < val_rec[0]
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert widget.plot.losses.lines["val rec"].dashed and not widget.plot.losses.lines["train rec"].dashed
    # One KL bar per latent dimension: the last epoch's KL per dimension, largest first.
    assert widget.plot.kl.values == sorted(widget.plot.kl_per_dim, reverse=True) and len(widget.plot.kl.values) == 4

    # One preview layer, replaced in place every epoch: validation crops on top, reconstructions below.
    previews = [layer for layer in viewer.layers if layer.name.startswith(PREVIEW_LAYER)]
    assert [layer.name for layer in previews] == [PREVIEW_LAYER]
    cell = SIZE + 4  # a 2-pixel white frame around every crop
    assert previews[0].data.shape == (2 * cell, 4 * cell, 3)
    val = split_crops(crop_set.table, val_fraction=0.2, method="source", seed=0).val[:4]
    np.testing.assert_array_equal(previews[0].data[:cell], crop_montage(crop_set.images[val], n_columns=4))
    assert "epoch 3" in previews[0].metadata["description"]

    # The saved bundle reloads into the session and computes what the widget's model computes.
    assert widget.save_bundle_button.enabled
    written = widget.save_bundle_to(tmp_path / "bundle")
    bundle = session_for(viewer).bundle
    assert written == tmp_path / "bundle" and isinstance(bundle, Bundle)
    assert bundle.input_shape == (1, SIZE, SIZE) and bundle.channel_names == ["membrane"]
    assert bundle.config["train_settings"]["checkpoint_dir"] == result.checkpoint_dir
    assert bundle.diagnostics == result.diagnostics
    x = torch.from_numpy(crop_set.images[:6])
    with torch.no_grad():
        mu, logvar = result.model.encode(x)
        mu_b, logvar_b = bundle.model.encode(x)
        torch.testing.assert_close(mu_b, mu, rtol=0, atol=0)
        torch.testing.assert_close(logvar_b, logvar, rtol=0, atol=0)
        torch.testing.assert_close(bundle.model.decode(mu), result.model.decode(mu), rtol=0, atol=0)


# ---------------------------------------------------------------- stop, resume


def test_stop_ends_training_within_steps_and_resume_continues_the_run(make_napari_viewer, qtbot, crop_set, tmp_path):
    viewer = make_napari_viewer()
    widget = make_widget(viewer, qtbot, epochs=500, checkpoint_dir=tmp_path / "run")
    widget.set_crop_set(crop_set)
    widget.start()
    wait_for_first_step(qtbot, widget)
    widget.stop()
    wait_until_done(qtbot, widget, timeout=20000)
    assert widget.result.stopped_by_user and widget.display.last_finished.stopped_by_user
    assert "Stopped" in widget.status.text()
    last = tmp_path / "run" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    steps_per_epoch = 30 // BATCH  # 30 training crops (3 of 4 sources), last short batch dropped
    assert 0 < checkpoint["global_step"] < 50 * steps_per_epoch  # stopped long before 500 epochs
    assert not training_threads()

    # Resume continues that run up to the (edited) number of epochs, keeping its history.
    epochs = checkpoint["epoch"] + 2
    widget.train_form.epochs["value"].value = epochs
    widget.resume()
    assert widget.running
    wait_until_done(qtbot, widget)
    result = widget.result
    assert not result.stopped_by_user and result.checkpoint_dir == str(tmp_path / "run")
    assert [row["epoch"] for row in result.history] == list(range(epochs))
    final_step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    # Lightning resumes a stopped epoch at the next epoch, so at most one epoch's batches are skipped
    # (none when the stop fell on an epoch boundary).
    remaining = (epochs - checkpoint["epoch"]) * steps_per_epoch
    assert (
        checkpoint["global_step"] + remaining - steps_per_epoch <= final_step <= checkpoint["global_step"] + remaining
    )
    assert len(widget.plot.history()) == epochs


# ---------------------------------------------------------------- closing while training


@pytest.mark.parametrize("how", ["close widget", "remove dock", "close viewer"])
def test_closing_during_training_stops_it_and_keeps_a_loadable_checkpoint(
    make_napari_viewer, qtbot, crop_set, tmp_path, how
):
    viewer = make_napari_viewer()
    widget = make_widget(viewer, qtbot, epochs=500, checkpoint_dir=tmp_path / "run", docked=True)
    widget.set_crop_set(crop_set)
    settings = widget.model_settings()
    widget.start()
    wait_for_first_step(qtbot, widget)
    if how == "close widget":
        widget.close()
    elif how == "remove dock":
        viewer.window.remove_dock_widget(widget)
    else:
        viewer.close()
    # No waiting here: closing returns only once the engine has stopped and written its checkpoint.
    assert not widget.running and not training_threads()
    checkpoint = tmp_path / "run" / "last.ckpt"
    assert torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"] > 0
    model = loadable_model(checkpoint, settings)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())


def test_training_in_a_docked_widget_is_a_napari_task_closing_the_viewer_stops(
    make_napari_viewer, dock, qtbot, crop_set, tmp_path
):
    """Docked from the Plugins menu (a proxy viewer): no private napari attribute, and closing still stops it."""
    viewer = make_napari_viewer()
    widget = tiny_settings(dock(viewer, "Train"), epochs=500, checkpoint_dir=tmp_path / "run")
    widget.set_crop_set(crop_set)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        widget.start()
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    wait_for_first_step(qtbot, widget)
    assert viewer.window._qt_window._window._task_status_manager.is_busy()  # closing asks first
    viewer.close()
    assert not widget.running and not training_threads()
    assert torch.load(tmp_path / "run" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] > 0


# ---------------------------------------------------------------- bad input


BAD_INPUT = [
    ("batch size 2", lambda w: setattr(w.train_form.batch_size["value"], "value", 2), "start", "batch_size is 2"),
    (
        "latent dim 1",
        lambda w: setattr(w.model_form.latent_dim, "value", 1),
        "start",
        "latent_dim must be between 2 and 512",
    ),
    ("devices", lambda w: setattr(w.train_form.devices, "value", "many"), "start", "devices is 'many'"),
    ("no crop set", lambda w: setattr(w, "crop_set", None), "start", "Cells widget"),
    ("nothing to resume", lambda w: None, "resume", "no checkpoint to resume from"),
]


def test_bad_input_is_explained_and_nothing_starts(make_napari_viewer, qtbot, crop_set, tmp_path, notifications):
    viewer = make_napari_viewer()
    for name, edit, action, words in BAD_INPUT:
        notifications.clear()
        widget = make_widget(viewer, qtbot, checkpoint_dir=tmp_path / "empty")
        widget.set_crop_set(crop_set)
        edit(widget)
        getattr(widget, action)()
        assert not widget.running and not training_threads(), name
        assert len(notifications) == 1 and words in notifications[0], name
        assert words in widget.status.text() and widget.start_button.enabled, name


def test_too_large_batch_fails_in_the_engine_with_a_notification(
    make_napari_viewer, qtbot, crop_set, tmp_path, notifications
):
    widget = make_widget(make_napari_viewer(), qtbot, checkpoint_dir=tmp_path / "run", batch_size=64)
    widget.set_crop_set(crop_set)
    widget.start()
    wait_until_done(qtbot, widget)
    assert "fewer than one batch" in notifications[0] and widget.start_button.enabled and widget.result is None


# ---------------------------------------------------------------- crop set folder, config


def test_crop_set_loads_from_a_folder_and_checkpoints_go_next_to_it(make_napari_viewer, qtbot, crop_set, tmp_path):
    save_crop_set(crop_set, tmp_path / "crops")
    widget = make_widget(make_napari_viewer(), qtbot)
    widget.crop_folder_edit.value = tmp_path / "crops"
    assert len(widget.crop_set) == N_CROPS and widget.crop_folder == tmp_path / "crops"
    assert str(tmp_path / "crops") in widget.crop_info.text()
    now = datetime(2024, 5, 6, 7, 8, 9)
    assert default_checkpoint_dir(widget.crop_folder, now=now) == tmp_path / "crops-checkpoints" / "run-20240506-070809"


def test_config_saved_by_the_widget_loads_back_into_the_same_settings(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = make_widget(viewer, qtbot, epochs=7, checkpoint_dir=tmp_path / "ckpt")
    widget.model_form.model.value = "beta-tcvae"
    widget.model_form.tc_beta.value = 3.5
    widget.train_form.learning_rate.value = 2.5e-4
    widget.train_form.early_stopping_patience["enabled"].value = True
    widget.train_form.early_stopping_patience["value"].value = 4
    widget.advanced_form.strategy.value = "ddp"
    widget.advanced_form.seed.value = 11
    widget.train_form.devices.value = "0, 2"
    expected = widget.config()
    assert (expected.model.model, expected.model.tc_beta, expected.training.devices) == ("beta-tcvae", 3.5, [0, 2])
    assert (expected.training.learning_rate, expected.training.early_stopping_patience) == (2.5e-4, 4)

    path = widget.save_config_to(tmp_path / "train.yaml")
    assert load_config(path, TrainConfig) == expected  # what `morphospace train --config` reads

    other = TrainWidget(viewer)
    qtbot.addWidget(other)
    assert other.config() == TrainConfig()
    other.load_config_from(path)
    assert other.config() == expected
    # Only the chosen model's own settings are shown.
    assert not other.model_form.tc_beta.native.isHidden() and other.model_form.me_views.native.isHidden()
    assert other.model_form.beta.native.isHidden()  # beta-tcvae's β is tc_beta


def test_hidden_settings_of_another_model_do_not_block_training(make_napari_viewer, qtbot):
    widget = make_widget(make_napari_viewer(), qtbot)
    widget.model_form.beta.value = 4.0
    widget.model_form.model.value = "beta-tcvae"  # beta is now hidden: beta-tcvae does not use it
    assert widget.model_form.beta.native.isHidden() and not widget.model_form.tc_beta.native.isHidden()
    assert (widget.model_settings().beta, widget.model_settings().tc_beta) == (1.0, 6.0)
    widget.model_form.model.value = "beta-vae"
    assert widget.model_settings().beta == 4.0


# ---------------------------------------------------------------- showing messages without stalling the viewer


def epoch_update(epoch: int, step: int, val_rec: float | None = None) -> TrainUpdate:
    val = {"rec": val_rec, "kl": 1.0} if val_rec is not None else None
    train = {"rec": 2 * val_rec, "kl": 2.0} if val_rec is not None else {"loss": 5.0}
    return TrainUpdate(epoch, step, 100, train, val, [0.5, 2.0] if val else None, 1.0, 9.0)


def test_a_negative_reconstruction_term_is_drawn_on_a_linear_axis(make_napari_viewer, qtbot):
    """The calibrated Gaussian's reconstruction term is a density's NLL and goes negative: a log axis hid it."""
    widget = make_widget(make_napari_viewer(), qtbot)
    widget.display.record(epoch_update(0, 4, val_rec=10.0))
    widget.display.refresh()
    assert widget.plot.losses.log_y
    widget.display.record(epoch_update(1, 9, val_rec=-300.0))
    widget.display.refresh()
    assert widget.plot.series["val rec"] == [10.0, -300.0]
    assert not widget.plot.losses.log_y
    assert all(widget.plot.losses._drawable(v) for values in widget.plot.series.values() for v in values)


def preview(value: float) -> ReconstructionPreview:
    crops = np.full((2, 1, SIZE, SIZE), value, np.float32)
    return ReconstructionPreview(0, crops, crops)


def test_messages_are_recorded_and_shown_together_in_the_next_refresh(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    widget = make_widget(viewer, qtbot)
    monkeypatch.setattr(training_display, "PREVIEW_INTERVAL_S", 3600.0)
    for message in (epoch_update(0, 3), epoch_update(0, 4, val_rec=10.0), epoch_update(1, 9), preview(0.2)):
        widget.display.record(message)
    # Nothing is painted while messages arrive ...
    assert widget.progress_label.text() == "" and widget.plot.series == {} and PREVIEW_LAYER not in viewer.layers
    # ... one refresh shows the latest progress, the recorded epoch and the preview.
    qtbot.waitUntil(lambda: PREVIEW_LAYER in viewer.layers, timeout=5000)
    assert "epoch 2, step 9/100" in widget.progress_label.text() and widget.progress_bar.value() == 9
    assert widget.plot.series == {"train rec": [20.0], "val rec": [10.0], "train kl": [2.0], "val kl": [1.0]}
    assert widget.plot.kl.values == [2.0, 0.5]
    layer = viewer.layers[PREVIEW_LAYER]
    shown = layer.data
    assert shown[SIZE // 2 + 2, SIZE // 2 + 2, 0] == round(0.2 * 255)

    # A newer preview within PREVIEW_INTERVAL_S is held back, then shown when the run ends, in the same array.
    widget.display.record(preview(0.6))
    widget.display.refresh()
    assert layer.data[SIZE // 2 + 2, SIZE // 2 + 2, 0] == round(0.2 * 255)
    widget.display.refresh(final=True)
    assert layer.data is shown and layer.data[SIZE // 2 + 2, SIZE // 2 + 2, 0] == round(0.6 * 255)
