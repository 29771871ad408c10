"""The Train widget, docked from the Plugins menu, with a checkpoint folder that already holds a training."""

from __future__ import annotations

import torch
from test_train_widget import BATCH, ellipse_crop_set, set_optional, wait_until_done


def test_start_into_a_used_checkpoint_dir_is_refused_and_resume_continues_that_run(
    make_napari_viewer, qtbot, tmp_path, dock, napari_hooks
):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Train")
    form, model = widget.train_form, widget.model_form
    model.latent_dim.value = 4
    model.base_channels["enabled"].value, model.base_channels["value"].value = True, 8
    set_optional(form.epochs, 2)
    set_optional(form.batch_size, BATCH)
    form.accelerator.value = "cpu"
    form.checkpoint_dir["enabled"].value, form.checkpoint_dir["value"].value = True, str(tmp_path / "run")
    widget.set_crop_set(ellipse_crop_set())
    widget.start()
    wait_until_done(qtbot, widget)
    last = tmp_path / "run" / "last.ckpt"
    first = last.read_bytes()
    assert torch.load(last, weights_only=True)["epoch"] == 1

    # Start again into the same folder: a second training would overwrite the first one's last.ckpt.
    widget.start()
    wait_until_done(qtbot, widget)
    errors = napari_hooks.take_errors()
    assert len(errors) == 1 and "already holds another training's checkpoints" in errors[0]
    assert "another training" in widget.status.text() and widget.start_button.enabled
    assert last.read_bytes() == first

    # Resume continues that training instead.
    set_optional(form.epochs, 3)
    widget.resume()
    wait_until_done(qtbot, widget)
    assert [row["epoch"] for row in widget.result.history] == [0, 1, 2]
    assert torch.load(last, weights_only=True)["epoch"] == 2
