"""Start-up time of the ``morphospace`` command and of the widget modules, against baselines from the same run.

Each case runs in a fresh Python process, ``--repeats`` times; the median wall
time is printed with its ratio to the baselines:

* ``python -c pass``        a bare interpreter start;
* ``import numpy``          the cheapest import any of our code makes;
* ``import napari ...``     what is loaded before a widget opens (napari's viewer, layers, Qt, magicgui);
* ``import torch`` and ``import lightning``, what the command line and the
  widgets that do not train no longer pay for;

and the cases:

* ``morphospace --help``, ``morphospace crops --size big`` (a bad argument:
  the answer the user waits for) and ``morphospace train --help`` (shows the
  defaults, so it loads the training settings and with them torch);
* importing each widget module, with the heavy libraries it pulled in.

    python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "lightning", "sklearn", "umap", "matplotlib", "pandas")
WIDGETS = (
    "analysis_widget",
    "annotation_widget",
    "cells_widget",
    "classifier_widget",
    "embed_widget",
    "latent_widget",
    "scatter_widget",
    "statistics_widget",
    "train_widget",
)
NAPARI = "import napari, napari.viewer, napari.layers, qtpy.QtWidgets, magicgui.widgets"


def wall_time(code: str, repeats: int) -> tuple[float, str]:
    """Median seconds to run ``python -c code`` in a fresh process, and what it printed after ``HEAVY:``."""
    times, last = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode not in (0, 2):
            raise RuntimeError(f"{code!r} failed:\n{result.stderr[-2000:]}")
        last = next((line[len("HEAVY:") :] for line in result.stdout.splitlines() if line.startswith("HEAVY:")), "")
    return statistics.median(times), last


def cli_code(argv: list[str]) -> str:
    """The console script's steps for ``morphospace ARGV``, then the heavy modules it imported."""
    return (
        f"import sys\nfrom napari_morphospace.cli import main\ntry:\n    main({argv!r})\n"
        f"except SystemExit:\n    pass\nprint('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per case (the median is shown)")
    args = parser.parse_args()

    baselines = {
        name: wall_time(code, args.repeats)[0]
        for name, code in (
            ("python -c pass", "pass"),
            ("import numpy", "import numpy"),
            ("import napari ...", NAPARI),
            ("import torch", "import torch"),
            ("import lightning", "import lightning"),
        )
    }
    for name, seconds in baselines.items():
        print(f"baseline {name:<38s} {seconds:6.2f} s")
    bare, numpy, napari = baselines["python -c pass"], baselines["import numpy"], baselines["import napari ..."]

    print(f"\n{'case':<47s} {'seconds':>7s} {'/ bare':>7s} {'/ numpy':>8s}  heavy modules imported")
    for argv in (["--help"], ["crops", "cells.tif", "--size", "big", "--out", "crops"], ["train", "--help"]):
        seconds, heavy = wall_time(cli_code(argv), args.repeats)
        print(
            f"morphospace {' '.join(argv):<35s} {seconds:7.2f} {seconds / bare:7.1f} "
            f"{seconds / numpy:8.1f}  {heavy or '-'}"
        )

    print(
        f"\n{'widget module (after import napari ...)':<47s} {'seconds':>7s} {'- napari':>8s}  heavy modules imported"
    )
    for widget in WIDGETS:
        code = (
            f"import sys\n{NAPARI}\nimport napari_morphospace._qt.{widget}\n"
            f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
        )
        seconds, heavy = wall_time(code, args.repeats)
        print(f"{widget:<47s} {seconds:7.2f} {seconds - napari:8.2f}  {heavy or '-'}")


if __name__ == "__main__":
    main()
