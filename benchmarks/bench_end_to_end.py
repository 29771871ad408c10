"""What N cells cost on this machine: synthetic fields -> crops -> 1 epoch -> embed -> scatter, stage by stage.

Each stage prints its wall time, CPU time, items per second and peak
resident memory, so a user can read off what a million cells
(``--cells 1000000``) costs before starting. The stages are the commands a
user runs, each in its own process as from a shell (so each pays its own
start-up: importing torch and Lightning is part of what a command costs):

1. fields: synthetic 2048 x 2048 uint16 fields with ~5 300 labelled cells
   each (``synthetic_fields.py``), written as TIFF + label TIFF; at most
   ``--distinct`` different files are written and listed again as needed
   (the input a user brings; not one of our commands);
2. crops: ``morphospace crops IMAGES --labels LABELS --group a --size 32
   --out crops`` (``--workers N`` crops on N local processes);
3. train: ``morphospace train --crops crops --out model --epochs 1
   --batch-size B`` with the default model (β-VAE) and default settings;
4. embed: ``morphospace embed --model model --crops crops --out latents.parquet``;
5. scatter: the latent table read back, a napari Points layer with one
   point per cell (at its crop's centre) and the table in
   ``layer.features``, added to a hidden viewer with the Scatter widget
   docked as from the Plugins menu, plotted (mu_0 vs mu_1) and rendered.
   The viewer is opened before the clock starts. Needs a display (run under
   ``xvfb-run``), skipped without one.

Peak memory is the child process's maximum resident set (``wait4``) for
the commands, and this process's VmHWM for the fields and the scatter.

    nice -n 10 xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_end_to_end.py --cells 100000
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import peak_mib  # noqa: E402
from synthetic_fields import write_fields  # noqa: E402

SCATTER = "Scatter"  # the widget's display name in napari.yaml (Plugins menu)


def morphospace_command() -> list[str]:
    """The ``morphospace`` console script of this Python's environment (``python -m`` when it is not installed)."""
    script = Path(sys.executable).with_name("morphospace")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "napari_morphospace"]


def disk_bytes(folder: Path) -> tuple[int, int]:
    """``(bytes on disk, files)`` under ``folder`` (allocated blocks, as ``du`` counts)."""
    files = [path for path in folder.rglob("*") if path.is_file()]
    return sum(path.stat().st_blocks * 512 for path in files), len(files)


class Stages:
    """Runs the stages, printing for each its seconds, CPU seconds, items/s and peak memory."""

    def __init__(self) -> None:
        self.total = 0.0
        self.peak = 0.0
        print(f"{'stage':>8} {'seconds':>9} {'CPU s':>8} {'items':>9} {'items/s':>9} {'peak MiB':>9}", flush=True)

    def _print(self, name: str, seconds: float, cpu: float, items: int, peak: float) -> None:
        self.total += seconds
        self.peak = max(self.peak, peak)
        print(f"{name:>8} {seconds:9.1f} {cpu:8.1f} {items:9d} {items / seconds:9.0f} {peak:9.0f}", flush=True)

    def command(self, name: str, items: int, arguments: list[str]) -> None:
        """Run ``morphospace ARGUMENTS`` in a child process; its peak RSS comes from ``wait4``."""
        start = time.perf_counter()
        child = subprocess.Popen(morphospace_command() + arguments, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = child.stdout.read()
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            raise RuntimeError(f"morphospace {name} failed ({child.returncode}):\n{output.decode()[-3000:]}")
        self._print(name, seconds, usage.ru_utime + usage.ru_stime, items, usage.ru_maxrss / 1024)

    def here(self, name: str, items: int, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` in this process (its peak is this process's VmHWM so far)."""
        start, cpu = time.perf_counter(), time.process_time()
        result = function(*args)
        self._print(name, time.perf_counter() - start, time.process_time() - cpu, items, peak_mib())
        return result


def open_viewer() -> tuple[Any, Any]:
    """A hidden napari viewer with the Scatter widget docked from the Plugins menu (not timed)."""
    import napari
    from qtpy.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=False)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-morphospace", SCATTER)
    return viewer, widget


def scatter(viewer: Any, widget: Any, latents_path: Path, crop_size: int) -> int:
    """The latent table as a Points layer of the cells, plotted in the Scatter widget; the number of points drawn."""
    import napari
    import pandas as pd
    from qtpy.QtWidgets import QApplication

    table = pd.read_parquet(latents_path)
    centres = table[["y_start", "x_start"]].to_numpy(float) + crop_size / 2
    layer = napari.layers.Points(centres, features=table, size=4, name="cells")
    viewer.add_layer(layer)
    widget.set_sources([layer])
    QApplication.instance().processEvents()
    widget.plot.canvas.render()
    return len(widget._positions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=20000, help="number of cells (objects) to make")
    parser.add_argument("--distinct", type=int, default=8, help="distinct field files written (then repeated)")
    parser.add_argument("--workers", type=int, default=None, help="morphospace crops --workers N")
    parser.add_argument("--batch-size", type=int, default=256, help="morphospace train/embed --batch-size")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the files (in --tmp) afterwards")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(dir=args.tmp, prefix="morphospace-e2e-"))
    load = os.getloadavg()
    print(
        f"{args.cells} cells, 32x32 crops, {os.cpu_count()} CPUs, load average {load[0]:.1f} at the start; "
        f"files in {folder}"
    )
    stages = Stages()
    try:
        per_field = 73 * 73  # synthetic_field's grid: one cell per 28 x 28 pixels of 2048 x 2048
        n_fields = math.ceil(args.cells / per_field)
        distinct = min(n_fields, args.distinct)
        fields = stages.here("fields", distinct * per_field, write_fields, folder / "fields", distinct)
        files = [fields[i % len(fields)] for i in range(n_fields)]
        crops, model, latents = folder / "crops", folder / "model", folder / "latents.parquet"
        crop_arguments = [
            "crops",
            *(str(image) for image, _ in files),
            "--labels",
            *(str(labels) for _, labels in files),
            "--group",
            "a",
            "--size",
            "32",
            "--out",
            str(crops),
        ]
        if args.workers:
            crop_arguments += ["--workers", str(args.workers)]
        stages.command("crops", n_fields * per_field, crop_arguments)
        import pandas as pd

        n = len(pd.read_parquet(crops / "crops.parquet", columns=["crop_id"]))
        used, n_files = disk_bytes(crops)
        print(f"{'':>8} {n} crops; crop set {used / 1e9:.2f} GB on disk in {n_files} files", flush=True)
        stages.command(
            "train",
            n,
            [
                "train",
                "--crops",
                str(crops),
                "--out",
                str(model),
                "--epochs",
                "1",
                "--batch-size",
                str(args.batch_size),
            ],
        )
        stages.command(
            "embed",
            n,
            [
                "embed",
                "--model",
                str(model),
                "--crops",
                str(crops),
                "--out",
                str(latents),
                "--batch-size",
                str(args.batch_size),
            ],
        )
        if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
            viewer, widget = open_viewer()
            drawn = stages.here("scatter", n, scatter, viewer, widget, latents, 32)
            print(f"{'':>8} {drawn} points plotted", flush=True)
            viewer.close()
        else:
            print(" scatter: skipped (no display; run under xvfb-run)")
        print(
            f"{'total':>8} {stages.total:9.1f} s; peak memory of any stage {stages.peak:.0f} MiB; "
            f"load average {os.getloadavg()[0]:.1f} at the end",
            flush=True,
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
