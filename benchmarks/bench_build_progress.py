"""Building a crop set of real fields while the GUI thread is busy: time and progress updates against an idle build.

The Cells widget is docked as from the Plugins menu in a real viewer with the
14 BBBC007 fields (about 1 200 nuclei) opened from their files. After a warm-up
build, the same build runs twice: idle (the baseline), then with a timer that blocks the GUI thread
for ``--block-ms`` every ``--every-ms`` (slow software-GL redraws do that).
Printed: build time, progress messages the worker yielded, progress shown in
the GUI, and their rates. Goals: the busy build finishes, shows at most a few
updates a second (one per object made the first release nest until
RecursionError), and takes about 1 / (GUI share) of the idle time at most.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1100x24" .venv/bin/python benchmarks/bench_build_progress.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))


def build(cells, busy: QTimer | None) -> dict[str, float]:
    """Press Build on ``cells`` and pump events until it has finished; what it took and showed."""
    from napari_morphospace._qt.workers import Progress, ProgressDisplay

    shown: list[Progress] = []
    yielded = [0]
    original = ProgressDisplay.show_latest

    def counting_show(self: ProgressDisplay) -> None:
        before = self._shown
        original(self)
        if self._shown is not before:
            shown.append(self._shown)

    ProgressDisplay.show_latest = counting_show
    started = time.perf_counter()
    if busy is not None:
        busy.start()
    cells.build()
    cells._worker.yielded.connect(lambda message: yielded.__setitem__(0, yielded[0] + isinstance(message, Progress)))
    while cells._worker is not None:
        QApplication.processEvents()
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    if busy is not None:
        busy.stop()
    ProgressDisplay.show_latest = original
    return {
        "seconds": elapsed,
        "yielded": yielded[0],
        "shown": len(shown),
        "crops": len(cells.crop_set),
        "status_final": cells.status.text().startswith(f"{len(cells.crop_set)} crops"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-ms", type=float, default=80.0)
    parser.add_argument("--every-ms", type=int, default=20)
    args = parser.parse_args()

    import napari
    from real_data import dataset

    viewer = napari.Viewer()
    for path in sorted(dataset("bbbc007").glob("*/*.tif")):
        viewer.open(str(path), plugin="napari-morphospace")
    _, cells = viewer.window.add_plugin_dock_widget("napari-morphospace", "Cells")
    busy = QTimer()
    busy.setInterval(args.every_ms)
    busy.timeout.connect(lambda: time.sleep(args.block_ms / 1000))

    build(cells, None)  # warm-up: imports, first reads of the files
    idle = build(cells, None)
    loaded = build(cells, busy)
    print(
        f"{idle['crops']} crops from {len(cells.sources())} sources; busy GUI thread: {args.block_ms:.0f} ms "
        f"blocked every {args.every_ms} ms"
    )
    print("phase    seconds  progress yielded  progress shown  shown/s  final status")
    for name, run in (("idle", idle), ("busy", loaded)):
        print(
            f"{name:<8} {run['seconds']:7.2f}  {run['yielded']:16d}  {run['shown']:14d}  "
            f"{run['shown'] / run['seconds']:7.2f}  {run['status_final']}"
        )
    print(
        f"ratio busy/idle: time {loaded['seconds'] / idle['seconds']:.2f}, "
        f"progress shown {loaded['shown'] / max(idle['shown'], 1):.2f}"
    )
    viewer.close()


if __name__ == "__main__":
    main()
