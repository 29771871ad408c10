"""What N cells cost on this machine: synthetic fields -> crops -> 1 epoch -> embed -> scatter, stage by stage.

Each stage prints its wall time and the peak resident memory so far
(VmHWM), so a user can read off what a million cells (``--cells 1000000``)
costs before starting. The stages are the ones a user runs:

1. fields: synthetic 2048 x 2048 uint16 fields with ~5 300 labelled cells
   each (``synthetic_fields.py``), written as TIFF + label TIFF; at most
   ``--distinct`` different files are written and listed again as needed;
2. crops: ``run_crop_job`` (``morphospace crops``), 32 x 32 crops streamed
   to a crop-set folder (``--workers N`` crops on N local processes);
3. train: ``train`` for one epoch of a β-VAE (16 latents, 16 base channels),
   streamed from the crop set on disk;
4. embed: ``embed`` of every crop with the trained model;
5. scatter: a napari Points layer with one point per cell and the latents
   in ``layer.features``, added to a (hidden, already open) viewer and
   plotted by the Scatter widget (mu_0 vs mu_1) and rendered; needs a
   display (run under ``xvfb-run``), skipped without one.

    nice -n 10 xvfb-run -a .venv/bin/python benchmarks/bench_end_to_end.py --cells 1000000 --tmp /tmp
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import peak_mib  # noqa: E402
from synthetic_fields import write_fields  # noqa: E402


class Stages:
    """Times each stage and prints it with the peak memory so far."""

    def __init__(self) -> None:
        self.total = 0.0

    def run(self, name: str, function, *args, **kwargs):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        seconds = time.perf_counter() - start
        self.total += seconds
        print(f"{name:>8}: {seconds:8.1f} s   peak memory so far {peak_mib():8.0f} MiB", flush=True)
        return result


def open_viewer():
    """A hidden napari viewer with the Scatter widget (its start-up is not part of the scatter stage)."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_morphospace._qt.scatter_widget import ScatterWidget

    QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=False)
    return viewer, ScatterWidget(viewer)


def scatter(viewer, widget, latents, crop_set) -> str:
    """Plot the latents of every cell in the Scatter widget, as a user does; return what was drawn."""
    import napari
    from qtpy.QtWidgets import QApplication

    centres = crop_set.table[["y_start", "x_start"]].to_numpy(float) + 16
    layer = napari.layers.Points(centres, features=latents.filter(like="mu_"), size=4, name="cells")
    viewer.add_layer(layer)
    widget.set_sources([layer])
    QApplication.instance().processEvents()
    widget.plot.canvas.render()
    return f"{len(widget._positions)} points plotted"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20000, help="number of cells (objects) to make")
    parser.add_argument("--distinct", type=int, default=8, help="distinct field files written (then repeated)")
    parser.add_argument("--workers", type=int, default=None, help="crop on this many local worker processes")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the files (in --tmp) afterwards")
    args = parser.parse_args()

    import torch

    from napari_morphospace.core.analysis.embed import embed
    from napari_morphospace.core.cells.crop_job import CropJob, run_crop_job
    from napari_morphospace.core.cells.crops import CropSettings
    from napari_morphospace.core.models import ModelSettings
    from napari_morphospace.core.training.engine import TrainSettings, train

    folder = Path(tempfile.mkdtemp(dir=args.tmp, prefix="morphospace-e2e-"))
    print(f"{args.cells} cells, 32x32 crops, CPU with {torch.get_num_threads()} torch threads, files in {folder}")
    stages = Stages()
    try:
        per_field = 73 * 73  # synthetic_field's grid: one cell per 28 x 28 pixels of 2048 x 2048
        n_fields = math.ceil(args.cells / per_field)
        fields = stages.run("fields", write_fields, folder / "fields", min(n_fields, args.distinct))
        files = [fields[i % len(fields)] for i in range(n_fields)]
        job = CropJob(images=[str(i) for i, _ in files], labels=[str(l) for _, l in files], groups=["a"],
                      crop=CropSettings(size=32))
        crop_set = stages.run("crops", run_crop_job, job, folder / "crops", workers=args.workers)
        print(f"          {len(crop_set)} crops, {crop_set.images.nbytes / 1e9:.2f} GB on disk")
        settings = TrainSettings(epochs=1, batch_size=args.batch_size, checkpoint_dir=str(folder / "checkpoints"),
                                 augment_flips=False, augment_rot90=False)
        result = stages.run("train", train, crop_set, ModelSettings(model="beta-vae", latent_dim=16, base_channels=16),
                            settings)
        latents = stages.run("embed", embed, result.model, crop_set, batch_size=args.batch_size)
        if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
            viewer, widget = open_viewer()
            drawn = stages.run("scatter", scatter, viewer, widget, latents, crop_set)
            print(f"          {drawn}")
            viewer.close()
        else:
            print(" scatter: skipped (no display; run under xvfb-run)")
        print(f"   total: {stages.total:8.1f} s   peak memory {peak_mib():8.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
