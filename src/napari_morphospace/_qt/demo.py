"""``morphospace demo`` in a window: the sample cells in napari with the plugin's widgets docked.

The demo drives the widgets exactly as a user would (the same buttons), so
what it shows is what the widgets do on the user's own data.
"""

from __future__ import annotations

from typing import Any

import napari

from .._sample_data import sample_layer_data
from ..core.demo import DemoSettings
from ..core.sample_data import make_sample_data
from .cells_widget import CellsWidget


def open_demo_viewer(settings: DemoSettings, *, show: bool = True) -> tuple[napari.Viewer, dict[str, Any]]:
    """A viewer with the synthetic control/treated cells and the widgets docked, crop size preset."""
    viewer = napari.Viewer(title="napari-morphospace demo", show=show)
    for data, kwargs, layer_type in sample_layer_data(make_sample_data(settings.sample_settings())):
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    cells = CellsWidget(viewer)
    size = settings.crop_settings().size
    cells.crop_form.size.value = str(size) if isinstance(size, int) else ", ".join(map(str, size))
    viewer.window.add_dock_widget(cells, name="Cells", area="right")
    return viewer, {"cells": cells}


def launch_demo(settings: DemoSettings) -> None:
    """Open the demo viewer, start building the crop set, and run napari until the window closes."""
    viewer, widgets = open_demo_viewer(settings)
    widgets["cells"].build()
    napari.run()
