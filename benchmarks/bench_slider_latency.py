"""Slider move → frame shown in the viewer, through the Latent space widget, against a bare decode.

Goals (issue 5): ≤ 50 ms for a 2D 128² model and ≤ 250 ms for a 3D 64³ model
on this CPU (default ``ModelSettings``; untrained weights decode as fast as
trained ones). For each model, in the same run:

* ``bare``: ``decode_latents(model, z)`` for one latent vector on the main
  thread — the floor the widget cannot beat.
* ``widget``: ``LatentWidget.set_slider`` → the ``frame_shown`` signal, i.e.
  the decode on the decoder thread, the hand-over to the GUI thread and the
  update of the "decoded cell" layer (the draw itself follows on the next
  paint event). One move at a time: the hand pauses between moves.

Run under a display (``xvfb-run -a python benchmarks/bench_slider_latency.py``)
with ``[--repeats 30] [--threads 1]``. Prints median and p95 in milliseconds
and the widget/bare ratio of the medians.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
import torch
from qtpy.QtWidgets import QApplication

from napari_morphospace._qt.latent_widget import LatentWidget
from napari_morphospace.core.analysis.traversal import decode_latents
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.bundle import load_bundle, new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings
from napari_morphospace.viewer.session import session_for

CASES = {"2D 128²": ((1, 128, 128), 0.050), "3D 64³": ((1, 64, 64, 64), 0.250)}


def make_bundle(shape: tuple[int, ...], folder: Path):
    settings = ModelSettings()
    model = build_model(settings, shape)
    directory = save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=shape,
            channel_names=["c0"],
            preprocess=None,
            train_settings=TrainSettings(),
            provenance={},
            history=[],
        ),
        folder / f"bundle{len(shape)}",
    )
    return load_bundle(directory)


def bare_latencies(model: torch.nn.Module, values: np.ndarray) -> np.ndarray:
    times = []
    for value in values:
        z = np.zeros((1, model.latent_dim), np.float32)
        z[0, 0] = value
        start = time.perf_counter()
        decode_latents(model, z)
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def widget_latencies(widget: LatentWidget, values: np.ndarray, timeout: float = 30.0) -> np.ndarray:
    app = QApplication.instance()
    shown: list[float] = []
    widget.decoding.frame_shown.connect(lambda z: shown.append(time.perf_counter()))
    dim = widget.dims[0]
    times = []
    for value in values:
        shown.clear()
        start = time.perf_counter()
        widget.set_slider(dim, float(value))
        while not shown and time.perf_counter() - start < timeout:
            app.processEvents()
            time.sleep(0.0005)
        times.append(shown[0] - start)
    return np.asarray(times)


def summary(times: np.ndarray) -> str:
    return f"median {1000 * np.median(times):7.1f} ms   p95 {1000 * np.percentile(times, 95):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.repeats} moves per case")
    values = np.linspace(-3, 3, args.repeats)
    values[np.isclose(values, 0.0)] = 0.01  # every move changes the slider
    with tempfile.TemporaryDirectory() as folder:
        for name, (shape, goal) in CASES.items():
            bundle = make_bundle(shape, Path(folder))
            viewer = napari.Viewer(show=False)
            session_for(viewer).bundle = bundle
            widget = LatentWidget(viewer)
            widget_latencies(widget, values[:3])  # warm-up: first layer, first 3D switch
            bare = bare_latencies(bundle.model, values)
            shown = widget_latencies(widget, values)
            ratio = np.median(shown) / np.median(bare)
            verdict = "meets" if np.median(shown) <= goal else "misses"
            print(f"{name:8s} bare    {summary(bare)}")
            print(f"{name:8s} widget  {summary(shown)}   ×{ratio:.2f} bare; {verdict} the {1000 * goal:.0f} ms goal")
            widget.close()
            viewer.close()


if __name__ == "__main__":
    main()
