"""The Statistics dock's Inference tab, docked as from the Plugins menu:
per cell, per image, and a refused per-image test."""

import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.analysis.inference import simulate_conditions


def latent_table(images: int, seed: int = 0) -> pd.DataFrame:
    """Treated cells shifted by 1.2 SD in mu_1 of 3 dimensions; ``images`` fields of 30 cells per condition."""
    rng = np.random.default_rng(seed)
    a, b, images_a, images_b = simulate_conditions(rng, images=images, cells_per_image=30, dims=3, shift=[0.0, 1.2])
    table = pd.DataFrame(np.concatenate([a, b]), columns=["mu_0", "mu_1", "mu_2"])
    table.insert(0, "crop_id", np.arange(len(table)))
    table["group"] = ["treated"] * len(a) + ["control"] * len(b)
    table["source"] = np.concatenate([images_a, images_b])
    return table


def _rows(widget):
    table = widget.inference_table
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


@pytest.fixture
def statistics(make_napari_viewer, dock, qtbot):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Statistics")
    return widget


def _compute_and_wait(qtbot, widget):
    assert widget.compute() is not None
    qtbot.waitUntil(lambda: not widget.tasks.busy, timeout=120000)


def test_inference_tab_shows_the_shifted_dimension_per_cell_then_per_image(statistics, qtbot):
    widget = statistics
    widget.session.latents = latent_table(images=5)
    widget.set_groups("treated", "control")
    _compute_and_wait(qtbot, widget)
    rows = _rows(widget)
    assert [r[0] for r in rows][0] == "mu_1" and rows[0][5] == "yes"
    assert [r[5] for r in rows[1:]] == ["", ""]
    d, low, high = float(rows[0][1]), *map(float, rows[0][2].strip("[]").split(","))
    assert low < d < high and d > 0.8
    text = widget.inference_text.text()
    assert "per cell: 150 vs 150 cells" in text and "Whole latent space: energy distance" in text
    assert "5 image(s) of 'treated' and 5 of 'control': test per image" in text

    widget.per_image.setChecked(True)  # results exist: the box recomputes per image by itself
    qtbot.waitUntil(lambda: widget.inference.unit == "image" and not widget.tasks.busy, timeout=120000)
    text = widget.inference_text.text()
    assert "per image: 5 vs 5 images (150 vs 150 cells)" in text and "252 all relabellings of the images" in text
    assert _rows(widget)[0][3] == f"{2 / 252:.3g}"  # the most extreme of the 252 relabellings and its mirror


def test_per_image_with_too_few_images_is_refused_in_the_tab_and_the_rest_still_shows(statistics, qtbot):
    widget = statistics
    widget.session.latents = latent_table(images=3)
    widget.set_groups("treated", "control")
    widget.per_image.setChecked(True)  # no results yet: nothing is computed until Compute
    assert not widget.tasks.busy
    _compute_and_wait(qtbot, widget)
    assert widget.summary is not None and widget.summary.ranking[0] == 1
    assert "only 20 ways to assign the condition labels" in widget.inference_text.text()
    assert widget.inference_table.rowCount() == 0
