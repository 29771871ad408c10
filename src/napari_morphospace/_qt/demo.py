"""``morphospace demo`` in a window: the sample cells in napari, every widget docked and run in turn.

The demo presses the widgets' own buttons (crop → train → save the model →
embed → statistics), so what it shows is what the widgets do on the user's
data. Its files go to a fresh temporary folder, named in the status bar.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import napari
from qtpy.QtCore import QTimer

from .._sample_data import sample_layer_data
from ..core.cells.sample_data import make_sample_data
from ..core.project.demo import DemoSettings
from ..viewer.session import session_for
from .annotation_widget import AnnotationWidget
from .cells_widget import CellsWidget
from .embed_widget import EmbedWidget
from .latent_widget import LatentWidget
from .scatter_widget import ScatterWidget
from .statistics_widget import StatisticsWidget
from .train_widget import TrainWidget


@dataclass
class DemoViewer:
    """The demo's viewer, its widgets by step name and their dock widgets (to bring one to the front)."""

    viewer: napari.Viewer
    widgets: dict[str, Any]
    docks: dict[str, Any]

    def show(self, step: str) -> None:
        self.docks[step].raise_()


def open_demo_viewer(settings: DemoSettings, *, show: bool = True) -> DemoViewer:
    """A viewer with the synthetic control/treated cells and the widgets docked, preset for the demo."""
    viewer = napari.Viewer(title="napari-morphospace demo", show=show)
    for data, kwargs, layer_type in sample_layer_data(make_sample_data(settings.sample_settings())):
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)
    widgets: dict[str, Any] = {
        "cells": CellsWidget(viewer),
        "train": TrainWidget(viewer),
        "embed": EmbedWidget(viewer),
        "scatter": ScatterWidget(viewer),
        "statistics": StatisticsWidget(viewer),
        "latent": LatentWidget(viewer),
        "annotate": AnnotationWidget(viewer),
    }
    cells = widgets["cells"]
    size = settings.crop_settings().size
    cells.crop_form.size.value = str(size) if isinstance(size, int) else ", ".join(map(str, size))
    cells.steps.set_steps(("resize",))
    cells.steps.set_resize_shape(tuple(settings.preprocess().steps[0].params["shape"]))
    widgets["train"].set_config(settings.train_config())
    docks = {
        name: viewer.window.add_dock_widget(widget, name=name.capitalize(), area="right", tabify=index > 0)
        for index, (name, widget) in enumerate(widgets.items())
    }
    demo = DemoViewer(viewer, widgets, docks)
    demo.show("cells")
    return demo


class DemoDriver:
    """Runs the demo's steps through the widgets, each starting when the previous one has finished."""

    def __init__(self, demo: DemoViewer, folder: Path) -> None:
        self.demo, self.viewer, self.widgets, self.folder = demo, demo.viewer, demo.widgets, folder
        self.session = session_for(demo.viewer)
        train = self.widgets["train"]
        config = train.config()
        config.training.checkpoint_dir = str(folder / "checkpoints")  # with the demo's other files
        train.set_config(config)
        self.session.crop_set_changed.connect(self._train)
        self.session.bundle_changed.connect(self._embed)
        self.session.latents_changed.connect(self._statistics)
        self._poll = QTimer()
        self._poll.setInterval(250)
        self._poll.timeout.connect(self._check_training)

    def start(self) -> None:
        self._status("cropping every cell")
        self.widgets["cells"].build()

    def _status(self, text: str) -> None:
        self.viewer.status = f"Demo: {text} (files in {self.folder})"

    def _train(self, crop_set: Any) -> None:
        if crop_set is None:
            return
        self.demo.show("train")
        self._status("training a small β-VAE")
        self.widgets["train"].start()
        self._poll.start()

    def _check_training(self) -> None:
        train = self.widgets["train"]
        if train.running:
            return
        self._poll.stop()
        if train.result is not None:
            train.save_bundle_to(self.folder / "model")  # sets the session's bundle → _embed

    def _embed(self, bundle: Any) -> None:
        if bundle is None:
            return
        self.demo.show("embed")
        self._status("embedding every cell")
        self.widgets["embed"].embed()

    def _statistics(self, latents: Any) -> None:
        if latents is None:
            return
        self._status("comparing treated with control")
        statistics = self.widgets["statistics"]
        statistics.set_groups("treated", "control")  # condition, reference: d > 0 where treated is higher
        statistics.compute()
        scatter = self.widgets["scatter"]
        scatter.set_sources(["control cells", "treated cells"])
        x, y = scatter.axis_columns()[:2]  # the two most informative latent dimensions
        scatter.set_axes(x, y)
        scatter.set_color_by("group")
        self.demo.show("scatter")
        self._status("done: lasso cells in the Scatter tab to see them light up in the image")


def launch_demo(settings: DemoSettings) -> None:
    """Open the demo viewer, run every step through the widgets, and keep napari open."""
    driver = DemoDriver(open_demo_viewer(settings), Path(tempfile.mkdtemp(prefix="morphospace-demo-")))
    driver.start()
    napari.run()
