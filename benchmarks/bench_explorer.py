"""Scaling benchmark of the latent-space explorer against napari-clusters-plotter 0.11 (the peer).

Usage (both tools in one run; needs a display: xvfb-run and QT_QPA_PLATFORM=xcb)::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" \\
        .venv/bin/python benchmarks/bench_explorer.py --layers points,labels \\
        --ns 1000,10000,100000,1000000 --peer-python /tmp/peer-venv/bin/python

``--peer-python`` is a Python with ``napari[pyqt6] napari-clusters-plotter==0.11.0``
(a separate virtual environment, so ours stays untouched); the peer's own
script (``--peer-script``, default ``../shared/peers/napari_clusters_plotter_bench.py``)
runs there, from a temporary copy so its results file lands in a temporary
folder. Without ``--peer-python`` the peer's *published* figures (measured on
the 2-core project machine) are printed instead and labelled so.

Every (layer, N, repetition) runs in a fresh process; medians of ``--reps``.
The scene is the peer's: N objects with 16 latent columns (``mu_0..mu_15``
here, ``z0..z15`` there) in the features of a Points layer (random
positions) or a Labels layer (4x4-pixel tiles on a grid).

Timed steps of ours (time.perf_counter, in the worker):
  plot      : viewer.add_layer(layer) + widget.set_sources([layer]) (axes mu_0/mu_1)
              until our vispy canvas has drawn the points (as the peer's plot_total,
              which includes add_layer)
  replot    : set_axes("mu_2", "mu_3") until drawn (informational)
  select    : select_polygon(lasso with ~10 % of the points inside) -> highlight
              layer rewritten and refreshed (for a Points source this first selection
              adds the "selected points" layer) -> Qt events processed -> plot drawn
              (with --show also napari's canvas has painted it)
  pick_first: first pick (waits for the k-d tree, built beside the GUI thread since the plot), pick: median of 200 picks
The peer's "plot" is its plot_total, its "select" its select_total.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_LATENT = 16
HERE = Path(__file__).resolve().parent
# shared/ sits beside the checkout: /work/main/../shared, or two levels up from a worktree /work/wt/NAME
PEER_SCRIPT = Path("shared") / "peers" / "napari_clusters_plotter_bench.py"
DEFAULT_PEER_SCRIPT = next(
    (up / PEER_SCRIPT for up in HERE.parents if (up / PEER_SCRIPT).is_file()), HERE.parents[1] / PEER_SCRIPT
)
# The peer's figures published in shared/peers/README.md (2-core project machine, medians of 3).
PUBLISHED_PEER = {
    ("points", 100_000): {"plot": 2.30, "select": 1.19},
    ("points", 1_000_000): {"plot": 23.3, "select": 12.5},
    ("labels", 100_000): {"plot": 7.54, "select": 2.16},
    ("labels", 1_000_000): {"plot": 75.8, "select": 22.7},
}
GOALS = {100_000: {"plot": 0.2, "select": 0.1}, 1_000_000: {"plot": 2.0, "select": 1.0}}
PICK_GOAL_S = 0.016


# --------------------------------------------------------------------------- worker (one process per run)
def worker(args: argparse.Namespace) -> None:
    """Build one scene of ``args.n`` objects, time plot / select / pick, print one RESULT line."""
    import warnings

    warnings.filterwarnings("ignore")
    import napari
    import numpy as np
    import pandas as pd
    from qtpy.QtWidgets import QApplication

    from napari_morphospace._qt.scatter_widget import ScatterWidget
    from napari_morphospace.viewer.highlights import SELECTED_CELLS, SELECTED_POINTS

    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=args.show)
    widget = ScatterWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    app.processEvents()
    draws = {"plot": 0, "napari": 0}
    widget.plot.canvas.events.draw.connect(lambda event: draws.__setitem__("plot", draws["plot"] + 1))
    napari_canvas = viewer.window._qt_viewer.canvas._scene_canvas
    napari_canvas.events.draw.connect(lambda event: draws.__setitem__("napari", draws["napari"] + 1))
    rng = np.random.default_rng(args.seed)
    highlight_seconds = [0.0]  # time in the highlight layers' updates (napari adding/rewriting a layer), summed
    update_highlights = widget._update_highlights

    def timed_update_highlights() -> None:
        start = time.perf_counter()
        update_highlights()
        highlight_seconds[0] += time.perf_counter() - start

    widget._update_highlights = timed_update_highlights

    def wait_drawn(which: str, before: int) -> None:
        """Process Qt events until the canvas ``which`` has drawn again.

        With ``--show`` the window is on screen and this waits for the real
        paint. Without it (the peer's conditions: a hidden viewer, the
        plot rendered off screen, napari's canvas not drawn) our plot is
        rendered with ``canvas.render()`` (a full GL draw plus a read back).
        """
        app.processEvents()
        if not args.show:
            if which == "plot":
                widget.plot.canvas.render()
            return
        deadline = time.perf_counter() + 30
        while draws[which] == before:
            app.processEvents()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the {which} canvas never drew: is a display available?")

    def make_layer(n: int):
        features = pd.DataFrame(
            rng.standard_normal((n, N_LATENT)).astype(np.float32), columns=[f"mu_{i}" for i in range(N_LATENT)]
        )
        if args.layer == "points":
            return napari.layers.Points(rng.uniform(0, 1000, size=(n, 2)), features=features, size=2, name=f"cells{n}")
        side = int(np.ceil(np.sqrt(n)))
        ids = np.zeros(side * side, dtype=np.int32)
        ids[:n] = np.arange(1, n + 1, dtype=np.int32)
        image = np.repeat(np.repeat(ids.reshape(side, side), 4, 0), 4, 1)
        features.insert(0, "index", np.arange(1, n + 1))
        return napari.layers.Labels(image, features=features, name=f"cells{n}")

    def one_cycle(n: int) -> dict:
        out = {}
        t = time.perf_counter()
        layer = make_layer(n)
        out["layer_build"] = time.perf_counter() - t

        before = draws["plot"]
        highlight_seconds[0] = 0.0
        t = time.perf_counter()
        viewer.add_layer(layer)
        out["add_layer"] = time.perf_counter() - t
        widget.set_sources([layer])
        out["set_sources"] = time.perf_counter() - t - out["add_layer"]
        wait_drawn("plot", before)
        out["plot"] = time.perf_counter() - t
        out["plot_highlight"] = highlight_seconds[0]
        assert widget._axes == ("mu_0", "mu_1") and len(widget._positions) == n

        before = draws["plot"]
        t = time.perf_counter()
        widget.set_axes("mu_2", "mu_3")
        wait_drawn("plot", before)
        out["replot"] = time.perf_counter() - t
        widget.set_axes("mu_0", "mu_1")
        app.processEvents()

        # lasso = everything right of the 90th percentile of x -> ~10 %, as in the peer's benchmark
        x = widget._positions[:, 0]
        threshold = float(np.quantile(x, 0.9))
        big = 10 * (float(np.abs(widget._positions).max()) + 1)
        lasso = np.array([[threshold, -big], [big, -big], [big, big], [threshold, big]])
        before = draws["napari"], draws["plot"]
        highlight_seconds[0] = 0.0
        t = time.perf_counter()
        rows = widget.select_polygon(lasso)
        out["select_call"] = time.perf_counter() - t
        out["select_highlight"] = highlight_seconds[0]
        wait_drawn("napari", before[0])
        wait_drawn("plot", before[1])
        out["select"] = time.perf_counter() - t
        out["n_selected"] = int(len(rows))

        # correctness (not timed): the lasso took the points right of the threshold (a point lying
        # exactly on the polygon's edge may go either way), and the image shows exactly those cells
        strictly_inside, on_edge = np.flatnonzero(x > threshold), np.flatnonzero(x == threshold)
        out["lasso_ok"] = bool(
            np.isin(strictly_inside, rows).all() and np.isin(rows, np.r_[strictly_inside, on_edge]).all()
        )
        expected = rows
        highlight = viewer.layers[SELECTED_CELLS if args.layer == "labels" else SELECTED_POINTS]
        if args.layer == "labels":
            shown = np.unique(np.asarray(layer.data)[np.asarray(highlight.data) == 1])
            out["highlight_ok"] = bool(np.array_equal(shown, expected + 1))
        else:
            out["highlight_ok"] = bool(np.array_equal(np.asarray(highlight.data), layer.data[expected]))

        targets = widget._positions[rng.integers(0, n, 201)] + rng.normal(0, 0.01, (201, 2)).astype(np.float32)
        t = time.perf_counter()
        widget.pick(*targets[0])
        out["pick_first"] = time.perf_counter() - t
        times = []
        for target in targets[1:]:
            t = time.perf_counter()
            widget.pick(*target)
            times.append(time.perf_counter() - t)
        out["pick"] = statistics.median(times)
        out["pick_max"] = max(times)
        return layer, out

    warm_layer, _ = one_cycle(200)  # first-call imports, shader compilation, font cache
    viewer.layers.remove(warm_layer)  # its highlight layer goes with its last source
    app.processEvents()
    _, out = one_cycle(args.n)
    out.update(layer=args.layer, n=args.n, qpa_platform=app.platformName())
    print("RESULT " + json.dumps(out), flush=True)
    os._exit(0)  # skip the slow Qt/napari teardown


# --------------------------------------------------------------------------- driver
def run_ours(layer: str, ns: list[int], reps: int, timeout: int, show: bool) -> dict[int, dict]:
    """Medians of our worker over ``reps`` fresh processes per N."""
    medians = {}
    for n in ns:
        runs = []
        for rep in range(reps):
            cmd = [sys.executable, __file__, "worker", "--layer", layer, "--n", str(n), "--seed", str(rep)]
            cmd += ["--show"] if show else []
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if not lines:
                raise RuntimeError(f"ours {layer} N={n} failed (rc={done.returncode}):\n{done.stderr[-3000:]}")
            runs.append(json.loads(lines[0][len("RESULT ") :]))
            print(f"ours  {layer} N={n} rep={rep}: " + lines[0][len("RESULT ") :], flush=True)
        keys = (
            "plot",
            "add_layer",
            "set_sources",
            "plot_highlight",
            "replot",
            "select",
            "select_call",
            "select_highlight",
            "pick_first",
            "pick",
            "pick_max",
        )
        medians[n] = {k: statistics.median(r[k] for r in runs) for k in keys}
        medians[n]["ok"] = all(r["highlight_ok"] and r["lasso_ok"] for r in runs)
    return medians


def run_peer(peer_python: str, peer_script: Path, layer: str, ns: list[int], reps: int) -> dict[int, dict]:
    """Run the peer's own benchmark driver in its environment; its medians per N."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(shutil.copy(peer_script, folder))
        cmd = [
            peer_python,
            str(script),
            "driver",
            "--layer",
            layer,
            "--ns",
            ",".join(map(str, ns)),
            "--reps",
            str(reps),
        ]
        env = dict(os.environ)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    medians = {}
    for line in done.stdout.splitlines():
        if line.startswith("MEDIAN "):
            m = json.loads(line[len("MEDIAN ") :])
            medians[m["n"]] = {"plot": m["plot_total"], "select": m["select_total"], "ok": m["ok"]}
            print(
                f"peer  {layer} N={m['n']}: plot {m['plot_total']:.3f} s, select {m['select_total']:.3f} s", flush=True
            )
    if not medians:
        print(f"peer {layer} produced no result (rc={done.returncode}):\n{done.stderr[-3000:]}", flush=True)
    return medians


def report(layer: str, ours: dict, peer: dict, peer_source: str) -> None:
    print(f"\n{layer} layer — seconds, medians; peer = napari-clusters-plotter 0.11 ({peer_source})")
    print(
        f"{'N':>9} {'plot':>8} {'peer':>8} {'ratio':>7} {'select':>8} {'peer':>8} {'ratio':>7} "
        f"{'pick ms':>8} {'1st ms':>8} {'replot':>7} {'napari':>7} {'sources':>8} {'(hl)':>6} {'draw':>6} "
        f"{'sel.call':>8} {'(hl)':>6}  ok    goals"
    )
    for n, mine in ours.items():
        theirs = peer.get(n, {})
        cells = []
        for key in ("plot", "select"):
            other = theirs.get(key)
            cells += [
                f"{mine[key]:>8.3f}",
                f"{other:>8.3f}" if other else f"{'—':>8}",
                f"{other / mine[key]:>6.1f}x" if other else f"{'—':>7}",
            ]
        goal = GOALS.get(n)
        verdict = []
        if goal:
            verdict += [f"{k} {'met' if mine[k] <= goal[k] else 'MISSED'} (≤{goal[k]} s)" for k in ("plot", "select")]
        verdict.append(f"pick {'met' if mine['pick'] <= PICK_GOAL_S else 'MISSED'}")
        print(
            f"{n:>9} " + " ".join(cells) + f" {1000 * mine['pick']:>8.2f} {1000 * mine['pick_first']:>8.1f}"
            f" {mine['replot']:>7.3f} {mine['add_layer']:>7.3f} {mine['set_sources']:>8.3f} "
            f"{mine['plot_highlight']:>6.3f}"
            f" {mine['plot'] - mine['add_layer'] - mine['set_sources']:>6.3f} {mine['select_call']:>8.3f}"
            f" {mine['select_highlight']:>6.3f}  {str(mine['ok']):5} " + ", ".join(verdict)
        )
    print(
        "ratio = peer time / our time (higher is better for us). Where plot goes: napari = viewer.add_layer() "
        "(napari's layer and its vispy node, in both tools' plot), sources = our set_sources() (features read, "
        "colours, picture of the points), draw = the rest (the canvas drawn: GL). sel.call = select_polygon() alone "
        "(hit test + highlight layer rewritten by napari), inside select. (hl) = of which the highlight layer's "
        "update: napari adding the layer or setting its data (our part of it, picking the rows, is a few ms)"
    )


def driver(args: argparse.Namespace) -> None:
    ns = [int(v) for v in args.ns.split(",")]
    for layer in args.layers.split(","):
        ours = run_ours(layer, ns, args.reps, args.timeout, args.show)
        if args.peer_python:
            peer, source = (
                run_peer(args.peer_python, Path(args.peer_script), layer, ns, args.reps),
                "measured in this run",
            )
        else:
            peer = {n: v for (kind, n), v in PUBLISHED_PEER.items() if kind == layer}
            source = "PUBLISHED figures, not measured in this run: pass --peer-python to measure"
        report(layer, ours, peer, source)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["driver", "worker"], default="driver")
    parser.add_argument("--layers", default="points,labels", help="driver: comma-separated points,labels")
    parser.add_argument("--layer", choices=["points", "labels"], default="points", help="worker: layer kind")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--ns", default="1000,10000,100000,1000000")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--peer-python", default="", help="Python of an environment with napari-clusters-plotter 0.11")
    parser.add_argument("--peer-script", default=str(DEFAULT_PEER_SCRIPT))
    parser.add_argument(
        "--show", action="store_true", help="ours on screen (waits for real paints, napari's canvas included)"
    )
    arguments = parser.parse_args()
    (driver if arguments.mode == "driver" else worker)(arguments)
