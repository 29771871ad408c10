"""One overlay layer per kind follows the source the user looks at."""

import numpy as np
from napari.components import ViewerModel
from napari.utils._proxies import PublicOnlyProxy

from napari_morphospace.viewer.layers import SourceOverlay, shown_source


def _fields(viewer, count=3):
    return [viewer.add_labels(np.full((4, 4), i + 1, np.int32), name=f"field {i}") for i in range(count)]


def test_the_shown_source_is_the_active_one_else_the_topmost_visible():
    viewer = ViewerModel()
    fields = _fields(viewer)
    viewer.add_image(np.zeros((4, 4)), name="image")  # active now, and no source
    assert shown_source(viewer, fields) is fields[2]
    fields[2].visible = False
    assert shown_source(PublicOnlyProxy(viewer), fields[:2]) is fields[1]
    viewer.layers.selection.active = fields[0]
    assert shown_source(viewer, [PublicOnlyProxy(f) for f in fields]) is fields[0]


def test_one_overlay_layer_follows_the_shown_source_and_goes_with_the_last_source():
    viewer = ViewerModel()
    fields = _fields(viewer)
    overlay = SourceOverlay(
        viewer,
        "marked",
        "labels",
        lambda source, current: (np.asarray(source.data) * 10, {"translate": source.translate}),
    )
    overlay.set_sources(fields)
    assert [layer.name for layer in viewer.layers] == ["field 0", "field 1", "field 2", "marked"]  # above the top one
    assert viewer.layers.selection.active is fields[2]  # the overlay took nothing from the user
    assert (viewer.layers["marked"].data == 30).all() and overlay.shown is fields[2]
    viewer.layers.selection.active = fields[0]
    assert (viewer.layers["marked"].data == 10).all()
    viewer.layers.remove(fields[0])
    assert (viewer.layers["marked"].data == 30).all()
    viewer.layers.remove(fields[2])
    viewer.layers.remove(fields[1])
    assert "marked" not in viewer.layers and overlay.layer is None


def test_a_re_render_sets_only_the_properties_that_changed():
    """napari refreshes a layer on every property set: an unchanged scale is not set again, a changed one is."""
    viewer = ViewerModel()
    fields = _fields(viewer, 1)
    placement = {"scale": (2.0, 2.0), "metadata": {"label_ids": [1, 2]}}
    overlay = SourceOverlay(viewer, "marked", "labels", lambda source, current: (np.asarray(source.data), placement))
    overlay.set_sources(fields)
    scale_sets = []
    overlay.layer.events.scale.connect(lambda event: scale_sets.append(tuple(event.source.scale)))
    overlay.refresh()
    assert scale_sets == [] and tuple(overlay.layer.scale) == (2.0, 2.0)
    placement["scale"] = (3.0, 3.0)
    overlay.refresh()
    assert scale_sets == [(3.0, 3.0)]


def test_the_overlay_sits_right_above_its_source_so_fields_on_top_cover_it():
    viewer = ViewerModel()
    fields = _fields(viewer)
    overlay = SourceOverlay(viewer, "marked", "labels", lambda source, current: (np.asarray(source.data), {}))
    overlay.set_sources(fields)
    viewer.layers.selection.active = fields[0]
    assert [layer.name for layer in viewer.layers] == ["field 0", "marked", "field 1", "field 2"]
    viewer.layers.selection.active = fields[1]
    assert [layer.name for layer in viewer.layers] == ["field 0", "field 1", "marked", "field 2"]


def test_fields_side_by_side_share_the_one_overlay_and_fields_on_top_of_each_other_do_not():
    viewer = ViewerModel()
    left = viewer.add_labels(np.full((4, 4), 1, np.int32), name="left", scale=(0.5, 0.5))
    right = viewer.add_labels(np.full((4, 6), 2, np.int32), name="right", scale=(0.5, 0.5), translate=(1.0, 3.0))
    under = viewer.add_labels(np.full((4, 4), 3, np.int32), name="under", scale=(0.5, 0.5))  # on top of 'left'
    overlay = SourceOverlay(
        viewer,
        "marked",
        "labels",
        lambda source, current: (np.asarray(source.data), {"scale": source.scale, "translate": source.translate}),
    )
    overlay.set_sources([left, right, under])
    viewer.layers.selection.active = left
    data = viewer.layers["marked"].data
    assert data.shape == (6, 12) and tuple(viewer.layers["marked"].translate) == (0.0, 0.0)
    assert (data[:4, :4] == 1).all() and (data[2:6, 6:12] == 2).all()  # 'right' pasted 2 rows down, 6 columns right
    assert not (data == 3).any()  # 'under' lies over 'left': not shown with it
