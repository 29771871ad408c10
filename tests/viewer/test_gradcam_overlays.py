"""Result images without Qt: Grad-CAM maps placed on their cells, the one Grad-CAM layer, layers updated in place."""

import numpy as np
import pandas as pd
import pytest
from napari.components import ViewerModel

from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.errors import InputError
from napari_morphospace.viewer.layers import selected_cell
from napari_morphospace.viewer.overlays import GradcamOverlay, channel_colormaps, chosen_cells, place_maps, put_image


def _rows(sources, ts=None):
    """Cells of 4×4 boxes: cell i at y 4i..4i+4, x 2..6."""
    n = len(sources)
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": sources,
            "label_id": np.arange(1, n + 1),
            "y_start": 4 * np.arange(n),
            "y_stop": 4 * np.arange(n) + 4,
            "x_start": np.full(n, 2),
            "x_stop": np.full(n, 6),
            "group": ["ab"[i % 2] for i in range(n)],
        }
    )
    if ts is not None:
        table["t"] = ts
    return table


def test_one_cell_lies_on_its_box_in_the_source_world_and_several_are_pasted_at_their_boxes():
    viewer = ViewerModel()
    viewer.add_labels(np.zeros((16, 8), np.int32), name="left", scale=(0.5, 0.5), translate=(10.0, 20.0))
    viewer.add_labels(np.zeros((16, 8), np.int32), name="right")
    maps = [np.full((2, 2), v, np.float32) for v in (0.25, 0.5, 1.0)]
    [single, pasted] = place_maps(viewer.layers, maps, _rows(["left", "right", "right"]))
    # a 2x2 map of a 4x4 box at y 0, x 2: one map pixel = 2 source pixels, centred at start - 0.5 + 1
    assert single.source is viewer.layers["left"] and single.label_ids == [1] and single.frame is None
    assert single.scale == (1.0, 1.0) and single.translate == (10.0 + 0.5 * 0.5, 20.0 + 0.5 * 2.5)
    assert pasted.data.shape == (16, 8) and pasted.translate == (0.0, 0.0) and pasted.label_ids == [2, 3]
    assert (pasted.data[4:8, 2:6] == 0.5).all() and (pasted.data[8:12, 2:6] == 1.0).all()
    assert pasted.data[:4].sum() == 0 and pasted.data[:, :2].sum() == 0


def test_cells_of_a_time_lapse_go_to_their_frame_and_other_axes_are_refused():
    viewer = ViewerModel()
    viewer.add_labels(np.zeros((3, 16, 8), np.int32), name="movie")
    maps = [np.ones((2, 2), np.float32)] * 2
    placed = place_maps(viewer.layers, maps, _rows(["movie", "movie"], ts=[0, 2]))
    assert [(part.frame, part.data.shape, part.translate[0]) for part in placed] == [
        (0, (1, 2, 2), 0.0),
        (2, (1, 2, 2), 2.0),
    ]
    viewer.add_labels(np.zeros((2, 3, 16, 8), np.int32), name="4d")
    with pytest.raises(InputError, match="layer '4d' has 4 axes"):
        place_maps(viewer.layers, maps, _rows(["4d", "4d"]))
    with pytest.raises(InputError, match="no layer named 'gone'"):
        place_maps(viewer.layers, maps, _rows(["gone", "movie"]))


def test_the_grad_cam_layer_shows_the_field_looked_at_at_its_frame():
    viewer = ViewerModel()
    movie = viewer.add_labels(np.zeros((3, 16, 8), np.int32), name="movie")
    other = viewer.add_labels(np.zeros((16, 8), np.int32), name="other")
    viewer.dims.set_point(0, 0)
    maps = [np.full((2, 2), v, np.float32) for v in (0.25, 0.5, 1.0)]
    gradcam = GradcamOverlay(viewer)
    layer = gradcam.show(
        place_maps(viewer.layers, maps, _rows(["movie", "movie", "other"], ts=[0, 2, 0])), dim=3, sign=-1
    )
    assert layer is viewer.layers["Grad-CAM"] and layer.metadata["source"] == "other"  # the top one
    assert (layer.metadata["dim"], layer.metadata["sign"], layer.metadata["label_ids"]) == (3, -1, [3])
    viewer.layers.selection.active = movie
    layer = gradcam.layer  # a new layer: the movie's maps have a time axis
    assert layer.metadata["source"] == "movie" and layer.metadata["label_ids"] == [1]  # frame 0 shown
    viewer.dims.set_point(0, 2)
    assert gradcam.layer.metadata["label_ids"] == [2] and float(gradcam.layer.data.max()) == 0.5
    viewer.dims.set_point(0, 1)  # no cell at this frame: nothing to show
    assert "Grad-CAM" not in viewer.layers
    gradcam.remove()
    viewer.dims.set_point(0, 2)
    assert "Grad-CAM" not in viewer.layers and other in viewer.layers


def test_a_result_layer_is_updated_in_place_and_keeps_the_style_the_user_chose():
    viewer = ViewerModel()
    labels = viewer.add_labels(np.zeros((4, 4), np.int32), name="cells")
    first = put_image(viewer, "result", np.zeros((4, 4)), colormap="gray", translate=(1.0, 1.0), contrast_limits=(0, 1))
    assert viewer.layers.selection.active is labels  # the user's active layer stays active
    first.colormap = "magma"  # the user's choice
    again = put_image(viewer, "result", np.ones((4, 4)), colormap="gray", translate=(2.0, 3.0), contrast_limits=(0, 2))
    assert again is first and again.colormap.name == "magma" and tuple(again.translate) == (2.0, 3.0)
    assert tuple(again.contrast_limits) == (0, 2) and again.data.sum() == 16
    volume = put_image(viewer, "result", np.ones((2, 4, 4)))  # other axes: a new layer
    assert volume is not first and volume.ndim == 3 and [layer.name for layer in viewer.layers] == ["cells", "result"]


def test_the_cells_grad_cam_runs_on_are_chosen_by_selection_group_or_label():
    table = _rows(["f", "f", "g", "g"])
    crop_set = CropSet(images=np.zeros((4, 1, 4, 4), np.float32), table=table, channel_names=["c"])
    assert chosen_cells(crop_set, "all cells").tolist() == [0, 1, 2, 3]
    assert chosen_cells(crop_set, "group: b").tolist() == [1, 3]
    assert chosen_cells(crop_set, "scatter selection", selection=[2, 0]).tolist() == [0, 2]
    assert chosen_cells(crop_set, "selected cell", selected=("g", 4, None)).tolist() == [3]
    with pytest.raises(InputError, match="1 selected cell"):
        chosen_cells(crop_set, "scatter selection", selection=[0, 9])
    with pytest.raises(InputError, match="no crop of group 'c'"):
        chosen_cells(crop_set, "group: c")
    with pytest.raises(InputError, match="build or load a crop set"):
        chosen_cells(None, "all cells")


def test_the_selected_cell_is_the_label_picked_in_the_active_labels_layer_at_the_shown_frame():
    viewer = ViewerModel()
    movie = viewer.add_labels(np.zeros((3, 16, 8), np.int32), name="g")
    viewer.add_image(np.zeros((16, 8)), name="image")  # active, but no Labels layer: the first Labels layer is used
    movie.selected_label = 4
    viewer.dims.set_point(0, 2)
    assert selected_cell(viewer, 2) == ("g", 4, 2)
    assert selected_cell(viewer, 3, "g") == ("g", 4, None)  # a 3D crop: the first axis is z, not time
    table = _rows(["f", "f", "g", "g"], ts=[0, 0, 0, 2])
    crop_set = CropSet(images=np.zeros((4, 1, 4, 4), np.float32), table=table, channel_names=["c"])
    assert chosen_cells(crop_set, "selected cell", selected=selected_cell(viewer, 2)).tolist() == [3]
    movie.selected_label = 0
    with pytest.raises(InputError, match="label 0 \\(background\\) is selected in 'g'"):
        selected_cell(viewer, 2)


def test_channel_colormaps_follow_the_shown_layers():
    known = {"control membrane": "green", "control nucleus": "cyan"}
    assert channel_colormaps(["membrane", "nucleus", "granules"], known) == ["green", "cyan", "cyan"]
    assert channel_colormaps(["phase"], {}) == ["gray"]


def test_the_grad_cam_status_names_the_fields_the_maps_lie_on():
    from napari_morphospace.viewer.latent_views import LatentViews

    viewer = ViewerModel()
    viewer.add_labels(np.zeros((16, 8), np.int32), name="field 1")
    viewer.add_labels(np.zeros((16, 8), np.int32), name="field 2")
    views = LatentViews(viewer)
    maps = np.ones((3, 2, 2), np.float32)
    status = views.show_gradcam(maps[:2], _rows(["field 1", "field 1"]), dim=4, sign=1)
    assert status == "Grad-CAM of dim 4 (+): 2 cell(s) on 1 field(s) (field 1)"
    status = views.show_gradcam(maps, _rows(["field 1", "field 2", "field 1"]), dim=4, sign=-1)
    assert status == (
        "Grad-CAM of dim 4 (−): 3 cell(s) on 2 field(s) (field 1, field 2); select a field's layer to see its maps"
    )
