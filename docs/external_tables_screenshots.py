"""Screenshots of docs/external-tables.md: a CellProfiler table of the real BBBC007 fields explored in napari.

Run under a virtual display on a machine without one:

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/external_tables_screenshots.py

The steps are a user's: open the 14 fields with File > Open, open the
measurements from the Analysis dock, plot two of them in Scatter coloured by
condition, lasso the largest nuclei, compare two conditions in Statistics.
The table is measured with scikit-image and written with CellProfiler's
column names (``tests/cellprofiler_table.py``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from cellprofiler_table import write_cellprofiler_tables  # noqa: E402
from real_data import bbbc007_fields  # noqa: E402

IMAGES = Path(__file__).parent / "images"
PLUGIN = "napari-morphospace"


def settle(seconds: float = 0.5, until=lambda: True) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or not until():
        QApplication.processEvents()
        time.sleep(0.02)


def show_one_field(viewer: napari.Viewer, stem: str = "A9 p10d") -> None:
    """Show one field (its image, its labels half transparent, the highlighted cells), as a user looking at it would."""
    for layer in viewer.layers:
        layer.visible = layer.name.startswith(stem) or layer.name == "selected cells"
        if layer.name == f"{stem}_labels":
            layer.opacity = 0.4


def main() -> None:
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1600, 1000)
    for _condition, image, labels in bbbc007_fields():
        viewer.open(str(image), plugin=PLUGIN)
        viewer.open(str(labels), plugin=PLUGIN)
    labels_layers = [layer.name for layer in viewer.layers if layer.name.endswith("_labels")]
    with tempfile.TemporaryDirectory() as folder:
        nuclei, _image_table = write_cellprofiler_tables(Path(folder))
        _dock, analysis = viewer.window.add_plugin_dock_widget(PLUGIN, "Analysis")
        analysis.open_table(nuclei)
        settle(1.0, until=lambda: not analysis.tasks.busy)
    show_one_field(viewer)
    viewer.screenshot(str(IMAGES / "external-table-opened.png"), canvas_only=False)

    _dock, scatter = viewer.window.add_plugin_dock_widget(PLUGIN, "Scatter")
    scatter.set_sources(labels_layers)
    scatter.set_axes("feature:AreaShape_Area", "feature:AreaShape_Eccentricity")
    scatter.set_color_by("group")
    area = scatter._positions[:, 0]
    scatter.select_rows(np.flatnonzero(area > np.quantile(area, 0.9)))  # the largest tenth of the nuclei
    show_one_field(viewer)
    settle(1.5)
    viewer.screenshot(str(IMAGES / "external-table-scatter.png"), canvas_only=False)

    _dock, statistics = viewer.window.add_plugin_dock_widget(PLUGIN, "Statistics")
    statistics.set_groups("A9", "f9620")
    statistics.compute()
    settle(1.0, until=lambda: statistics.summary is not None)
    statistics.tabs.setCurrentIndex(1)  # Cohen's d
    settle(1.0)
    viewer.screenshot(str(IMAGES / "external-table-statistics.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    IMAGES.mkdir(exist_ok=True)
    main()
