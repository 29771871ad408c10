"""Slider move → decoded frame latency, through LatentDecoder and as a bare ``model.decode`` call.

Goals on a laptop-class CPU: ≤ 50 ms for a 2D 128² model, ≤ 250 ms for a 3D 64³
model (default ``ModelSettings``; untrained weights decode as fast as trained ones).

Three measurements per model, in the same run:

* ``bare``: ``model.decode(z)`` for one latent vector (eval mode, no grad) —
  the baseline the decoder thread cannot beat.
* ``isolated``: ``LatentDecoder.request(z)`` → ``on_result`` for one slider
  move at a time (the hand pauses between moves).
* ``drag``: a slider dragged at 60 moves per second for ``--drag-seconds``; for
  every frame shown, the time since the request it shows was made. Coalescing
  keeps this close to one decode instead of growing with a queue.

Run: ``python benchmarks/bench_decode_latency.py [--repeats 30] [--drag-seconds 2] [--threads N] [--base-channels 32]``

On a busy 2-core machine, torch's two OpenMP threads in the main thread can be
many times slower than one thread; ``--threads 1`` gives the fair baseline there.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
import torch

from napari_morphospace.core.analysis.traversal import LatentDecoder, decode_latents
from napari_morphospace.core.models import ModelSettings, build_model

CASES = {"2D 128²": ((1, 128, 128), 0.050), "3D 64³": ((1, 64, 64, 64), 0.250)}


def bare_latencies(model: torch.nn.Module, repeats: int) -> np.ndarray:
    times = []
    for value in np.linspace(-3, 3, repeats):
        z = np.full((1, model.latent_dim), value, dtype=np.float32)
        start = time.perf_counter()
        decode_latents(model, z)
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def isolated_latencies(model: torch.nn.Module, repeats: int) -> np.ndarray:
    done = threading.Event()
    times = []
    with LatentDecoder(model, lambda z, image: done.set()) as decoder:
        for value in np.linspace(-3, 3, repeats):
            done.clear()
            start = time.perf_counter()
            decoder.request(np.full(model.latent_dim, value))
            done.wait()
            times.append(time.perf_counter() - start)
    return np.asarray(times)


def drag_latencies(model: torch.nn.Module, seconds: float, rate_hz: float = 60.0) -> tuple[np.ndarray, int]:
    """Latency of each frame shown while requests arrive at ``rate_hz``; also the number of requests."""
    requested_at: dict[float, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()

    def on_result(z: np.ndarray, image: np.ndarray) -> None:
        with lock:
            latencies.append(time.perf_counter() - requested_at[float(z[0])])

    n_requests = int(seconds * rate_hz)
    with LatentDecoder(model, on_result) as decoder:
        began = time.perf_counter()
        for i, value in enumerate(np.linspace(-3, 3, n_requests)):
            with lock:
                requested_at[float(np.float32(value))] = time.perf_counter()
            decoder.request(np.full(model.latent_dim, value))
            time.sleep(max(0.0, began + (i + 1) / rate_hz - time.perf_counter()))
        time.sleep(1.0)  # let the last frame arrive before closing
    return np.asarray(latencies), n_requests


def summary(times: np.ndarray) -> str:
    return f"median {1000 * np.median(times):7.1f} ms   p95 {1000 * np.percentile(times, 95):7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--drag-seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--base-channels", type=int, default=ModelSettings.base_channels)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ModelSettings(base_channels=args.base_channels)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"ModelSettings(base_channels={settings.base_channels}), otherwise defaults"
    )
    for name, (shape, goal) in CASES.items():
        torch.manual_seed(0)
        model = build_model(settings, shape).eval()
        decode_latents(model, np.zeros((1, model.latent_dim), dtype=np.float32))  # warm-up
        bare = bare_latencies(model, args.repeats)
        isolated = isolated_latencies(model, args.repeats)
        drag, n_requests = drag_latencies(model, args.drag_seconds)
        ratio = np.median(isolated) / np.median(bare)
        verdict = "meets" if np.percentile(isolated, 95) <= goal else "MISSES"
        print(f"\n{name}  input {shape}, depth {model.depth}, goal ≤ {1000 * goal:.0f} ms")
        print(f"  bare decode        {summary(bare)}")
        print(
            f"  LatentDecoder      {summary(isolated)}   ratio to bare (median) {ratio:.2f}   {verdict} the goal (p95)"
        )
        print(f"  drag at 60 Hz      {summary(drag)}   {len(drag)} frames for {n_requests} requests")


if __name__ == "__main__":
    main()
