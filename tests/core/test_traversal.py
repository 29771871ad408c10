"""Latent traversal, group means and the coalescing decoder, checked with small recording toy models."""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from napari_morphospace.core.analysis.traversal import (
    LatentDecoder,
    find_cell,
    group_means,
    group_traversals,
    latent_from_sliders,
    slider_values,
    start_vector,
    traversal_grid,
    traverse,
)
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.figures.traversal import traversal_figure


class RecordingDecoder(nn.Module):
    """Decoder whose image brightness is sigmoid(z0 + 2·z1); records every z it is given."""

    def __init__(self, latent_dim: int = 4, spatial: tuple[int, ...] = (8, 8), delay: float = 0.0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.spatial = spatial
        self.delay = delay
        self.register_buffer("latent_scale", torch.ones(latent_dim))
        self.calls: list[torch.Tensor] = []
        self.modes: list[bool] = []

    def decode(self, z: torch.Tensor, cond=None) -> torch.Tensor:
        self.calls.append(z.clone())
        self.modes.append(self.training)
        time.sleep(self.delay)
        level = torch.sigmoid(z[:, 0] + 2 * z[:, 1])
        return level.reshape(-1, 1, *[1] * len(self.spatial)).expand(-1, 2, *self.spatial).contiguous()


def test_traverse_includes_both_endpoints_and_keeps_other_dims_fixed():
    model = RecordingDecoder().train()
    start = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32)
    images = traverse(model, 2, start=start, n_steps=7)
    (z,) = model.calls
    assert images.shape == (7, 2, 8, 8)
    np.testing.assert_allclose(z[:, 2].numpy(), [-3, -2, -1, 0, 1, 2, 3], atol=1e-6)
    for other in (0, 1, 3):
        np.testing.assert_array_equal(z[:, other].numpy(), np.full(7, start[other]))
    assert model.modes == [False] and model.training  # decoded in eval mode, mode restored after


def test_traverse_defaults_to_origin_and_decodes_the_values():
    model = RecordingDecoder()
    images = traverse(model, 0, n_steps=3)
    np.testing.assert_array_equal(model.calls[0].numpy()[:, 1:], 0.0)
    expected = 1 / (1 + np.exp(-np.array([-3.0, 0.0, 3.0])))
    np.testing.assert_allclose(images[:, 0, 0, 0], expected, rtol=1e-6)


def test_latent_scale_multiplies_the_traversal_values():
    model = RecordingDecoder()
    model.latent_scale[1] = 2.5
    traverse(model, 1, values=[-3.0, 1.0, 3.0])
    np.testing.assert_allclose(model.calls[0][:, 1].numpy(), [-7.5, 2.5, 7.5])


def test_traversal_grid_stacks_one_traversal_per_dimension():
    model = RecordingDecoder(spatial=(4, 6, 6))
    grid = traversal_grid(model, [1, 3], n_steps=5)
    assert grid.shape == (2, 5, 2, 4, 6, 6)
    np.testing.assert_allclose(model.calls[0][:, 1].numpy(), np.linspace(-3, 3, 5), atol=1e-6)
    np.testing.assert_allclose(model.calls[1][:, 3].numpy(), np.linspace(-3, 3, 5), atol=1e-6)


def test_bad_traversal_requests_are_refused_with_a_reason():
    model = RecordingDecoder()
    with pytest.raises(InputError, match="dimensions 0 to 3"):
        traverse(model, 4)
    with pytest.raises(InputError, match="4 dimensions"):
        traverse(model, 0, start=[0.0, 1.0])
    with pytest.raises(InputError, match="at least 2 steps"):
        traverse(model, 0, n_steps=1)


def test_group_means_and_matched_traversals_from_each_group():
    table = pd.DataFrame(
        {
            "crop_id": range(4),
            "group": ["treated", "control", "treated", "control"],
            "mu_1": [1.0, 3.0, 3.0, 5.0],
            "mu_0": [0.0, 2.0, 2.0, 4.0],
            "logvar_0": 0.0,
        }
    )
    means = group_means(table)
    assert list(means) == ["treated", "control"]
    np.testing.assert_allclose(means["treated"], [1.0, 2.0])
    np.testing.assert_allclose(means["control"], [3.0, 4.0])

    model = RecordingDecoder(latent_dim=2)
    side_by_side = group_traversals(model, means, 0, n_steps=3)
    assert list(side_by_side) == ["treated", "control"]
    treated_z, control_z = model.calls
    np.testing.assert_array_equal(treated_z[:, 0], control_z[:, 0])  # matched values of the walked dimension
    np.testing.assert_array_equal(treated_z[:, 1], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(control_z[:, 1], [4.0, 4.0, 4.0])


def test_group_means_needs_the_group_and_mu_columns():
    with pytest.raises(InputError, match="no column 'condition'"):
        group_means(pd.DataFrame({"mu_0": [1.0]}), group_column="condition")
    with pytest.raises(InputError, match="no mu_0"):
        group_means(pd.DataFrame({"group": ["a"], "x": [1.0]}))


def test_traversal_figure_shows_max_projection_of_volumes(tmp_path):
    grid = np.zeros((2, 3, 1, 4, 5, 5), dtype=np.float32)
    grid[1, 2, 0, 3, 2, 4] = 0.8  # a bright voxel deep in the stack
    figure = traversal_figure(grid, dims=[5, 9])
    axes = figure.axes
    assert len(axes) == 6
    shown = np.asarray(axes[5].images[0].get_array())
    assert shown.shape == (5, 5) and shown[2, 4] == pytest.approx(0.8)
    assert axes[3].get_ylabel() == "dim 9" and axes[2].get_title() == "+3.0"
    path = tmp_path / "grid.png"
    figure.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latent_decoder_coalesces_a_burst_and_ends_with_the_last_request():
    model = RecordingDecoder(latent_dim=2, delay=0.05)
    results: list[np.ndarray] = []
    last = np.array([3.0, -1.0], dtype=np.float32)
    done = threading.Event()

    def on_result(z: np.ndarray, image: np.ndarray) -> None:
        results.append(z)
        assert image.shape == (2, 8, 8)
        if np.array_equal(z, last):
            done.set()

    with LatentDecoder(model, on_result) as decoder:
        for value in np.linspace(-3, 3, 100):
            decoder.request([value, 0.0])
        decoder.request(last)
        assert done.wait(5.0)
    assert len(results) <= 5  # 101 requests, a handful of decodes
    np.testing.assert_array_equal(results[-1], last)
    assert len(model.calls) == len(results)


def test_latent_decoder_reports_decode_errors():
    class Broken(RecordingDecoder):
        def decode(self, z, cond=None):
            raise RuntimeError("out of memory")

    errors: list[BaseException] = []
    got_error = threading.Event()
    with LatentDecoder(
        Broken(), lambda z, image: None, on_error=lambda e: (errors.append(e), got_error.set())
    ) as decoder:
        decoder.request(np.zeros(4))
        assert got_error.wait(5.0)
    assert "out of memory" in str(errors[0])

    silent = LatentDecoder(Broken(), lambda z, image: None)
    silent.request(np.zeros(4))
    silent._thread.join(5.0)
    with pytest.raises(RuntimeError, match="stopped after an error"):
        silent.request(np.zeros(4))
    silent.close()


def test_real_models_traverse_in_2d_and_3d_and_decode_live():
    from napari_morphospace.core.models import ModelSettings, build_model

    torch.manual_seed(0)
    for shape in [(2, 24, 24), (1, 12, 16, 16)]:
        model = build_model(ModelSettings(latent_dim=4, base_channels=4, depth=2), shape)
        grid = traversal_grid(model, [0, 3], n_steps=3)
        assert grid.shape == (2, 3, *shape)
        assert 0.0 <= grid.min() and grid.max() <= 1.0
        assert not np.allclose(grid[0, 0], grid[0, 2])  # the walked dimension changes the decode

    received = threading.Event()
    with LatentDecoder(model, lambda z, image: received.set() if image.shape == shape else None) as decoder:
        decoder.request(np.ones(4))
        assert received.wait(10.0)


def test_conditional_target_model_reuses_one_cells_condition_for_every_step():
    from napari_morphospace.core.models import Condition, ModelSettings, build_model

    torch.manual_seed(0)
    settings = ModelSettings(model="cond-vae", latent_dim=3, base_channels=4, depth=2, cond_reference_channels=[0])
    stacked = build_model(settings, (2, 16, 16))
    reference = torch.rand(1, 1, 16, 16)
    images = traverse(stacked.target, 1, n_steps=4, cond=Condition(reference))
    assert images.shape == (4, 1, 16, 16)
    single = traverse(stacked.target, 1, values=[1.0], cond=Condition(reference))
    np.testing.assert_allclose(single[0], images[2], atol=1e-6)  # linspace(-3, 3, 4)[2] == 1


def test_start_points_and_cell_lookup():
    table = pd.DataFrame(
        {
            "mu_0": [0.0, 0.0, 0.0, 0.0],
            "mu_1": [2.0, -2.0, 2.0, -2.0],
            "mu_2": [1.0, -1.0, 1.0, -1.0],
            "source": ["a", "a", "b", "b"],
            "label_id": [1, 2, 1, 2],
            "t": [0, 0, 0, 1],
            "group": ["ctrl", "ctrl", "drug", "drug"],
        }
    )
    assert find_cell(table, "b", 2, t=1) == 3
    assert find_cell(table, "b", 1) == 2
    with pytest.raises(InputError, match="label 2 of 'b' at t=0"):
        find_cell(table, "b", 2, t=0)
    np.testing.assert_array_equal(start_vector(table, 3), [0, 0, 0])
    np.testing.assert_array_equal(start_vector(table, 3, kind="group mean", group="ctrl"), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(start_vector(table, 3, kind="cell", row=2), [0.0, 2.0, 1.0])
    with pytest.raises(InputError, match="model has 4"):
        start_vector(table, 4, kind="cell", row=0)


def test_slider_values_are_in_units_of_the_latent_scale():
    start = np.array([0.5, -1.0, 2.0], np.float32)
    scale = np.array([1.0, 2.0, 0.5], np.float32)
    z = latent_from_sliders(start, [1, 2], [3.0, -3.0], scale)
    np.testing.assert_array_equal(z, [0.5, 6.0, -1.5])
    np.testing.assert_array_equal(start, [0.5, -1.0, 2.0])  # the start is not modified
    np.testing.assert_array_equal(slider_values(z, [0, 1, 2], scale), [0.5, 3.0, -3.0])
