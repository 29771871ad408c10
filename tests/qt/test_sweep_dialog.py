"""The Train widget's Sweep… dialog, docked as from the Plugins menu: edit a grid, save/load it, run it, stop it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.draw import ellipse
from test_train_widget import set_optional

from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.project.sweep import load_sweep_settings
from napari_morphospace.viewer.session import session_for

SIZE = 16


def ellipse_crop_set(n: int = 48, n_sources: int = 6) -> CropSet:
    """Small and large bright ellipses (groups) at random angles over ``n_sources`` images, with their area."""
    rng = np.random.default_rng(0)
    images = np.zeros((n, 1, SIZE, SIZE), np.float32)
    rows = []
    for i in range(n):
        large = i % 2 == 1
        radii = (SIZE * 0.4, SIZE * 0.28) if large else (SIZE * 0.2, SIZE * 0.14)
        rr, cc = ellipse(SIZE / 2, SIZE / 2, *radii, shape=(SIZE, SIZE), rotation=rng.uniform(0, np.pi))
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
                "y_stop": SIZE,
                "x_start": 0,
                "x_stop": SIZE,
                "area": len(rr),
            }
        )
    return CropSet(images, pd.DataFrame(rows), ["membrane"], (1.0, 1.0), {"steps": []})


@pytest.fixture
def train_widget(make_napari_viewer, dock):
    viewer = make_napari_viewer()
    session_for(viewer).crop_set = ellipse_crop_set()
    widget = dock(viewer, "Train")
    model = widget.model_form
    model.latent_dim.value = 4
    model.base_channels["enabled"].value, model.base_channels["value"].value = True, 8
    form = widget.train_form
    set_optional(form.epochs, 2)
    set_optional(form.batch_size, 8)
    form.accelerator.value = "cpu"
    set_optional(form.augment_flips, False)
    set_optional(form.augment_rot90, False)
    return widget


def open_dialog(widget, qtbot):
    widget.sweep_button.native.click()
    dialog = widget.sweep_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=5000)
    return dialog


def test_sweep_button_runs_a_grid_of_the_train_widgets_settings_in_the_background(train_widget, qtbot, tmp_path):
    dialog = open_dialog(train_widget, qtbot)
    dialog.axis_edits["beta"].setText("0.5, 4")
    dialog.axis_edits["depth"].setText("auto, 2")
    assert dialog.grid_info.text().startswith("4 run(s): 000_beta0.5_depthauto, 001_beta0.5_depth2")
    settings = dialog.settings()
    assert settings.model.latent_dim == 4 and settings.training.epochs == 2  # the Train widget's forms are the base
    assert settings.grid.depth == [None, 2]

    worker = dialog.run(tmp_path / "sweep")
    assert dialog.running and not dialog.run_button.isEnabled() and dialog.stop_button.isEnabled()
    assert worker is not None
    qtbot.waitUntil(lambda: not dialog.running, timeout=180000)  # not worker.finished: it may come before a blocker
    table = dialog.table
    assert list(table["status"]) == ["ok"] * 4 and list(table["depth"].astype(object).fillna(-1)) == [-1, 2, -1, 2]
    assert dialog.progress_bar.value() == dialog.progress_bar.maximum() == 4 * 2
    assert "4 of 4 runs finished" in dialog.status.text() and (tmp_path / "sweep" / "report.html").is_file()
    for row in table[
        table["warnings"] != ""
    ].itertuples():  # the diagnostics' problems of each run (2 epochs learn little)
        assert f"{row.name}: {row.warnings}" in dialog.status.text()
    assert not dialog.running and dialog.run_button.isEnabled()


def test_save_and_load_a_sweep_config_as_the_command_line_reads_it(train_widget, qtbot, tmp_path):
    dialog = open_dialog(train_widget, qtbot)
    dialog.axis_edits["model"].setText("beta-vae, beta-tcvae")
    dialog.axis_edits["latent_dim"].setText("2, 20")
    dialog.test_fraction.setValue(0.25)
    path = dialog.save_to(tmp_path / "sweep.yaml")
    saved = load_sweep_settings(path)
    assert saved.grid.model == ["beta-vae", "beta-tcvae"] and saved.grid.latent_dim == [2, 20]
    assert saved.test_fraction == 0.25 and saved.training.epochs == 2 and saved.model.base_channels == 8
    assert "morphospace sweep --config" in dialog.status.text()

    set_optional(train_widget.train_form.epochs, 7)
    dialog.axis_edits["model"].setText("")
    dialog.load_from(path)
    assert (
        dialog.axis_edits["model"].text() == "beta-vae, beta-tcvae"
        and dialog.axis_edits["latent_dim"].text() == "2, 20"
    )
    assert (
        train_widget.train_form.epochs["value"].value == 2
    )  # the sweep's base went back into the Train widget's forms


def test_bad_grid_values_are_explained_and_nothing_starts(train_widget, qtbot, tmp_path, napari_hooks):
    dialog = open_dialog(train_widget, qtbot)
    dialog.axis_edits["latent_dim"].setText("2, many")
    assert "grid.latent_dim[1]: expected an integer, got 'many'" in dialog.grid_info.text()
    assert dialog.run(tmp_path / "sweep") is None and not dialog.running
    assert "expected an integer" in napari_hooks.take_errors()[0]
    dialog.axis_edits["latent_dim"].setText("2")
    assert dialog.run("") is None
    assert "choose an output folder" in napari_hooks.take_errors()[0]
    assert not (tmp_path / "sweep").exists()


def test_stop_ends_the_sweep_and_a_second_run_finishes_it(train_widget, qtbot, tmp_path):
    set_optional(train_widget.train_form.epochs, 300)
    dialog = open_dialog(train_widget, qtbot)
    dialog.axis_edits["beta"].setText("1, 2")
    worker = dialog.run(tmp_path / "sweep")
    qtbot.waitUntil(lambda: "epoch 1/300" in dialog.progress_label.text() or dialog.updates_seen > 2, timeout=60000)
    with qtbot.waitSignal(worker.finished, timeout=60000):
        dialog.stop()
    assert list(dialog.table["status"]) == ["stopped", "not run"]
    assert dialog.status.text().startswith("Stopped.")
