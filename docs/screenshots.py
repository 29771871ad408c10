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
from napari_morphospace.core.demo import DemoSettings

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
    while cells._worker is not None:
        settle(0.1)
    cells.crop_section.collapse(animate=False)
    cells.preprocessing_section.collapse(animate=False)
    settle()
    cells.scroll.ensureWidgetVisible(cells.gallery)
    settle()
    viewer.screenshot(str(IMAGES / "cells-built.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    IMAGES.mkdir(exist_ok=True)
    cells_widget()
