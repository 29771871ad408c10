"""The windowed demo opens the sample cells with the widgets docked and builds the crop set."""

from napari_morphospace._qt.demo import open_demo_viewer
from napari_morphospace.core.demo import DemoSettings


def test_demo_viewer_builds_crops_of_both_groups(qtbot):
    demo = open_demo_viewer(DemoSettings(n_cells=6, crop_size=48), show=False)
    viewer, widgets = demo.viewer, demo.widgets
    try:
        assert {"control cells", "treated cells", "control membrane"} <= {layer.name for layer in viewer.layers}
        cells = widgets["cells"]
        assert [s.group for s in cells.sources()] == ["control", "treated"]
        cells.build()
        qtbot.waitUntil(lambda: cells._worker is None, timeout=60000)
        assert cells.crop_set.images.shape == (12, 3, 32, 32)  # 48 px boxes resized for the model
    finally:
        viewer.close()
