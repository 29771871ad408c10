"""The Latent space widget in a real viewer: live decodes, coalescing, grids, differences, Grad-CAM overlays, 3D."""

import numpy as np
import pandas as pd
import pytest
import torch

from napari_morphospace._qt.latent_widget import LatentWidget
from napari_morphospace.core.analysis.gradcam import gradcam_encoder, paste_maps
from napari_morphospace.core.analysis.traversal import decode_latents
from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.bundle import load_bundle, new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings
from napari_morphospace.viewer.decoded import ABS_DIFFERENCE, DECODED, GRID, SSIM_DIFFERENCE
from napari_morphospace.viewer.layers import view_box
from napari_morphospace.viewer.overlays import SCATTER_SELECTION
from napari_morphospace.viewer.session import session_for

LATENT_SCALE = [1.0, 0.5, 2.0, 1.5]
SOURCE_SCALE = (0.5, 0.5)
SOURCE_TRANSLATE = (10.0, 20.0)


def make_bundle(tmp_path, input_shape):
    settings = ModelSettings(latent_dim=4, base_channels=4)
    torch.manual_seed(0)
    model = build_model(settings, input_shape)
    model.latent_scale.copy_(torch.tensor(LATENT_SCALE))
    directory = save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=input_shape,
            channel_names=["membrane"],
            preprocess=None,
            train_settings=TrainSettings(epochs=1),
            provenance={},
            history=[],
        ),
        tmp_path / f"bundle{len(input_shape)}",
    )
    return load_bundle(directory)


@pytest.fixture(scope="module")
def bundle_2d(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("b2"), (1, 32, 32))


def cell_table(n=8):
    """Cells 1..n of 'control cells' (first half, group ctrl) and the rest (group drug), 20-pixel boxes."""
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": "control cells",
            "label_id": np.arange(1, n + 1),
            "t": 0,
            "group": ["ctrl"] * (n // 2) + ["drug"] * (n - n // 2),
            "annotation": "",
            "y_start": 20 * np.arange(n),
            "y_stop": 20 * np.arange(n) + 20,
            "x_start": 10 + 5 * np.arange(n),
            "x_stop": 10 + 5 * np.arange(n) + 20,
        }
    )
    mu = rng.normal(size=(n, 4)).astype(np.float32)
    mu[:, 0] *= 3.0  # dim 0 has the largest KL
    latents = pd.concat(
        [
            table[["crop_id"]],
            pd.DataFrame(mu, columns=[f"mu_{i}" for i in range(4)]),
            pd.DataFrame(np.zeros((n, 4)), columns=[f"logvar_{i}" for i in range(4)]),
            table.drop(columns="crop_id"),
        ],
        axis=1,
    )
    return table, latents


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    labels = np.zeros((200, 200), np.int32)
    table, _ = cell_table()
    for _, row in table.iterrows():
        labels[row.y_start + 5 : row.y_stop - 5, row.x_start + 5 : row.x_stop - 5] = row.label_id
    viewer.add_labels(labels, name="control cells", scale=SOURCE_SCALE, translate=SOURCE_TRANSLATE)
    return viewer


@pytest.fixture
def widget(viewer, bundle_2d, qtbot):
    table, latents = cell_table()
    images = np.random.default_rng(2).random((len(table), 1, 32, 32)).astype(np.float32)
    session = session_for(viewer)
    session.crop_set = CropSet(images=images, table=table, channel_names=["membrane"])
    session.latents = latents
    session.bundle = bundle_2d
    widget = LatentWidget(viewer)
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: widget.decoding.frames_shown >= 1, timeout=20000)  # the start point is decoded
    return widget


def decode(bundle, z):
    return decode_latents(bundle.model, np.asarray(z, np.float32)[None])[0]


def wait_for_z(qtbot, widget, z):
    qtbot.waitUntil(
        lambda: widget.decoding.shown_z is not None and np.array_equal(widget.decoding.shown_z, z), timeout=20000
    )


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)


def test_sliders_are_the_top_dimensions_by_kl(widget):
    assert widget.dims[0] == 0  # mu_0 was scaled up: largest KL
    assert widget.views.dim_combo.currentData() == widget.dims[0]  # maps and Grad-CAM start on the top dimension
    assert len(widget.dims) == 4 and sorted(widget.dims) == [0, 1, 2, 3]
    widget.slider_panel.top_k.setValue(2)
    assert len(widget.dims) == 2 and widget.dims[0] == 0
    assert "latent_scale[0]" in widget.slider(0).toolTip() and "multi-encoder" in widget.slider(0).toolTip()
    # A new embedding where mu_2 carries most: the dimension choice follows the new ranking...
    swapped = widget.latents.rename(
        columns={"mu_0": "mu_2", "mu_2": "mu_0", "logvar_0": "logvar_2", "logvar_2": "logvar_0"}
    )
    widget.set_latents(swapped)
    assert widget.dims[0] == 2 and widget.views.dim_combo.currentData() == 2
    # ...unless the user picked one.
    widget.views.dim_combo.setCurrentIndex(widget.views.dim_combo.findData(1))
    widget.views.dim_combo.activated.emit(widget.views.dim_combo.currentIndex())
    widget.set_latents(widget.latents.copy())
    assert widget.views.dim_combo.currentData() == 1


def test_cohens_d_ranking_says_condition_minus_reference_with_the_statistics_sign(widget, viewer, qtbot):
    """Same words, defaults and sign as the Statistics dock and the report: d = condition − reference."""
    from napari_morphospace.core.analysis.latent_summary import summarise_latents

    latents = session_for(viewer).latents
    summary = summarise_latents(latents, "group")  # defaults: condition drug (second group), reference ctrl
    sliders = widget.slider_panel
    assert (sliders.condition.currentText(), sliders.reference.currentText()) == (summary.condition, summary.reference)
    sliders.rank_combo.setCurrentText("|Cohen's d| (condition − reference)")
    for dim in widget.dims:
        label = sliders.slider_layout.labelForField(sliders.sliders[dim]).text()
        d = summary.effects.d[dim]
        assert label == f"dim {dim} (d {d:.2f})"
    assert widget.views.group_difference_button.text() == "condition − reference"
    widget.show_group_difference()
    wait_idle(qtbot, widget)
    assert widget.status.text().startswith("Difference drug − ctrl")


def test_slider_at_plus_3_shows_the_decode_of_that_latent(widget, viewer, bundle_2d, qtbot):
    widget.set_slider(2, 3.0)
    expected_z = np.array([0, 0, 3.0 * LATENT_SCALE[2], 0], np.float32)  # start: origin
    wait_for_z(qtbot, widget, expected_z)
    layer = viewer.layers[DECODED]
    assert layer.data.shape == (32, 32)
    np.testing.assert_allclose(layer.data, decode(bundle_2d, expected_z)[0], atol=1e-6)
    assert [lay.name for lay in viewer.layers].count(DECODED) == 1
    # It sits where the user looks: inside the view of the camera
    low, high = view_box(viewer)
    assert (layer.extent.world[0][-2:] >= low).all() and (layer.extent.world[1][-2:] <= high).all()


def test_a_burst_of_slider_moves_decodes_far_fewer_times_and_ends_on_the_last(widget, viewer, bundle_2d, qtbot):
    before = widget.decoding.frames_shown
    values = np.linspace(-3, 3, 50)
    for value in values:
        widget.set_slider(1, value)
    expected_z = np.array([0, values[-1] * LATENT_SCALE[1], 0, 0], np.float32)
    wait_for_z(qtbot, widget, expected_z)
    shown = widget.decoding.frames_shown - before
    assert 1 <= shown <= 10, f"{shown} frames shown for 50 slider moves"
    np.testing.assert_allclose(viewer.layers[DECODED].data, decode(bundle_2d, expected_z)[0], atol=1e-6)


def test_use_selected_cell_starts_from_its_mu(widget, viewer, bundle_2d, qtbot):
    viewer.layers["control cells"].selected_label = 3
    widget.use_selected_cell()
    mu = session_for(viewer).latents.loc[2, [f"mu_{i}" for i in range(4)]].to_numpy(np.float32).copy()
    np.testing.assert_array_equal(widget.z, mu)
    wait_for_z(qtbot, widget, mu)
    np.testing.assert_allclose(viewer.layers[DECODED].data, decode(bundle_2d, mu)[0], atol=1e-6)
    expected_slider = np.clip(mu[1] / LATENT_SCALE[1], -3, 3)
    assert widget.slider(1).value() == pytest.approx(expected_slider, abs=0.01)
    # the decoded cell sits right next to the cell it starts from, top-aligned (label 3: y 40..59, x 20..39)
    cell_top_left = viewer.layers["control cells"].data_to_world([40 - 0.5, 20 - 0.5])
    cell_right = viewer.layers["control cells"].data_to_world([0, 40 - 0.5])[1]
    decoded = viewer.layers[DECODED]
    assert (
        decoded.translate[0] == pytest.approx(cell_top_left[0]) and cell_right < decoded.translate[1] < cell_right + 10
    )


def test_start_cell_waits_for_a_cell_without_an_error_and_follows_the_selection(
    widget, viewer, bundle_2d, qtbot, napari_hooks
):
    widget.slider_panel.start_combo.setCurrentText("cell")  # nothing chosen yet: a hint, not an error toast
    assert "until a cell is chosen" in widget.status.text()
    np.testing.assert_array_equal(widget.z, np.zeros(4, np.float32))
    session_for(viewer).selection = [5]  # a cell clicked in the scatter plot
    mu = session_for(viewer).latents.loc[5, [f"mu_{i}" for i in range(4)]].to_numpy(np.float32)
    np.testing.assert_array_equal(widget.z, mu)
    wait_for_z(qtbot, widget, mu)


def test_traversal_grid_layer_and_figure(widget, viewer, bundle_2d, qtbot, tmp_path):
    widget.slider_panel.top_k.setValue(3)
    widget.show_traversal_grid(n_steps=5)
    wait_idle(qtbot, widget)
    grid = viewer.layers[GRID].data
    assert grid.shape == (3, 5, 1, 32, 32)
    assert tuple(viewer.layers[GRID].axis_labels) == ("dimension", "step", "channel", "y", "x")
    for row, dim in enumerate(widget.dims):
        for column, value in ((0, -3.0), (-1, 3.0)):
            z = np.zeros(4, np.float32)
            z[dim] = value * LATENT_SCALE[dim]
            np.testing.assert_allclose(grid[row, column], decode(bundle_2d, z), atol=1e-6)
    path = widget.save_figure(tmp_path / "grid.png")
    assert path.stat().st_size > 1000


def test_difference_overlays_follow_the_threshold_and_vanish_for_identical_decodes(widget, viewer, bundle_2d, qtbot):
    widget.views.quantile.setValue(0.0)
    widget.show_difference(dim=1)
    wait_idle(qtbot, widget)
    z_low, z_high = np.zeros(4, np.float32), np.zeros(4, np.float32)
    z_low[1], z_high[1] = -3 * LATENT_SCALE[1], 3 * LATENT_SCALE[1]
    expected = np.abs(decode(bundle_2d, z_high) - decode(bundle_2d, z_low))[0]
    np.testing.assert_allclose(viewer.layers[ABS_DIFFERENCE].data, expected, atol=1e-6)
    assert viewer.layers[ABS_DIFFERENCE].colormap.name == "inferno" and SSIM_DIFFERENCE in viewer.layers
    widget.views.quantile.setValue(0.9)  # the threshold keeps the top 10 %
    kept = np.count_nonzero(viewer.layers[ABS_DIFFERENCE].data)
    assert 0 < kept <= 0.11 * expected.size
    # two groups with the same mean decode identically: both overlays are all zero
    latents = session_for(viewer).latents.copy()
    mu = [f"mu_{i}" for i in range(4)]
    latents.loc[latents["group"] == "drug", mu] = latents.loc[latents["group"] == "ctrl", mu].to_numpy()  # same means
    session_for(viewer).latents = latents
    widget.show_group_difference("ctrl", "drug")
    wait_idle(qtbot, widget)
    assert not viewer.layers[ABS_DIFFERENCE].data.any()
    np.testing.assert_allclose(viewer.layers[SSIM_DIFFERENCE].data, 0.0, atol=1e-6)


def test_gradcam_overlay_sits_on_the_selected_cell(widget, viewer, bundle_2d, qtbot):
    viewer.layers["control cells"].selected_label = 4
    widget.show_gradcam(dim=0, sign=-1, cells="selected cell")
    wait_idle(qtbot, widget)
    layer = viewer.layers["Grad-CAM"]
    assert (layer.metadata["dim"], layer.metadata["sign"], layer.metadata["label_ids"]) == (0, -1, [4])
    crop = session_for(viewer).crop_set.images[3:4]
    np.testing.assert_allclose(layer.data, gradcam_encoder(bundle_2d.model, crop, 0, sign=-1)[0], atol=1e-6)
    # the crop of label 4 showed source pixels y 60..79, x 25..44: 20 source pixels over 32 map pixels
    step = 20 / 32
    np.testing.assert_allclose(layer.scale, [0.5 * step, 0.5 * step])
    np.testing.assert_allclose(layer.translate, [10 + 0.5 * (60 - 0.5 + step / 2), 20 + 0.5 * (25 - 0.5 + step / 2)])
    # the map's outer pixel edges coincide with the box's edges in world coordinates
    source = viewer.layers["control cells"]
    top_left = np.asarray(layer.translate) - np.asarray(layer.scale) / 2
    np.testing.assert_allclose(top_left, source.data_to_world([60 - 0.5, 25 - 0.5]))


def test_gradcam_of_a_group_is_pasted_into_one_source_sized_map(widget, viewer, qtbot):
    widget.show_gradcam(dim=1, sign=1, cells="group: drug")
    wait_idle(qtbot, widget)
    layer = viewer.layers["Grad-CAM"]
    assert layer.data.shape == (200, 200)
    np.testing.assert_allclose(layer.scale, SOURCE_SCALE)
    np.testing.assert_allclose(layer.translate, SOURCE_TRANSLATE)
    inside = np.zeros((200, 200), bool)
    for _, row in cell_table()[0].iloc[4:].iterrows():
        inside[row.y_start : row.y_stop, row.x_start : row.x_stop] = True
    assert layer.data[inside].max() > 0 and not layer.data[~inside].any()
    assert layer.metadata["label_ids"] == [5, 6, 7, 8]
    # without the source layer the overlay has nowhere to go: refused before any work starts
    viewer.layers.remove(layer)
    viewer.layers.remove("control cells")
    widget.show_gradcam(dim=0, sign=1, cells="all cells")
    assert not widget.busy and "Grad-CAM" not in viewer.layers


def test_gradcam_of_the_scatter_selection_maps_exactly_those_cells(widget, viewer, bundle_2d, qtbot):
    session = session_for(viewer)
    session.selection = [6, 1, 2]  # crop ids, as the scatter plot publishes them: cells 2, 3 and 7
    assert SCATTER_SELECTION in [widget.views.cells_combo.itemText(i) for i in range(widget.views.cells_combo.count())]
    widget.show_gradcam(dim=1, sign=1, cells=SCATTER_SELECTION)
    wait_idle(qtbot, widget)
    layer = viewer.layers["Grad-CAM"]
    assert layer.metadata["label_ids"] == [2, 3, 7]
    rows = session.crop_set.table.iloc[[1, 2, 6]]
    maps = gradcam_encoder(bundle_2d.model, session.crop_set.images[[1, 2, 6]], 1, sign=1)
    expected = paste_maps(list(maps), [row for _, row in rows.iterrows()], (200, 200))
    np.testing.assert_allclose(layer.data, expected, atol=1e-6)
    session.selection = []
    widget.show_gradcam(dim=1, sign=1, cells=SCATTER_SELECTION)  # nothing selected: refused, nothing computed
    assert not widget.busy


def test_a_3d_model_decodes_a_volume_in_the_3d_view(make_napari_viewer, tmp_path, qtbot):
    bundle = make_bundle(tmp_path, (1, 16, 16, 16))
    viewer = make_napari_viewer()
    session = session_for(viewer)
    session.crop_set = CropSet(
        images=np.zeros((1, 1, 16, 16, 16), np.float32),
        table=pd.DataFrame({"crop_id": [0]}),
        channel_names=["membrane"],
        spacing=(2.0, 0.5, 0.5),
    )
    widget = LatentWidget(viewer)
    qtbot.addWidget(widget)
    widget.set_bundle(bundle)
    widget.set_slider(3, -3.0)
    z = np.array([0, 0, 0, -3 * LATENT_SCALE[3]], np.float32)
    wait_for_z(qtbot, widget, z)
    layer = viewer.layers[DECODED]
    assert layer.data.ndim == 3 and viewer.dims.ndisplay == 3
    np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.5))
    np.testing.assert_allclose(layer.data, decode(bundle, z)[0], atol=1e-6)
    widget.show_difference(dim=3)  # 16 slices fit the 11-pixel SSIM window
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)
    assert viewer.layers[ABS_DIFFERENCE].data.shape == (16, 16, 16)
