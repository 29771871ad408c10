"""Memory of opening a >= 2 GB TIFF lazily with read_stack and reading one crop, vs loading it whole.

Writes a uint16 ZYX stack plane by plane (never whole in memory) into --tmp,
then, each in a fresh Python process so nothing is shared:

* lazy:     ``read_stack(path)`` (the file is over the default 1 GiB lazy
            threshold, so this gives a dask array) and computes one
            10 x 256 x 256 crop, checked against the known pattern;
* baseline: ``tifffile.imread(path)``, the eager read.

Prints the file size, each process's peak resident memory increase over its
resident memory after imports, times, and the ratio baseline / lazy. The file
is deleted afterwards.

    python benchmarks/bench_lazy_open.py --tmp /tmp [--size-gb 2.1] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PLANE_SHAPE = (2048, 2048)
CROP = (slice(100, 110), slice(500, 756), slice(1000, 1256))


def plane(z: int) -> np.ndarray:
    """Plane ``z`` of the synthetic stack: a ramp shifted by z, so any crop has a known value."""
    rows = np.arange(PLANE_SHAPE[0], dtype=np.uint32)[:, None]
    cols = np.arange(PLANE_SHAPE[1], dtype=np.uint32)[None, :]
    return ((rows * 7 + cols + z * 13) % 65536).astype(np.uint16)


def expected_crop() -> np.ndarray:
    return np.stack([plane(z)[CROP[1], CROP[2]] for z in range(CROP[0].start, CROP[0].stop)])


def write_stack_file(path: Path, size_bytes: int) -> int:
    """Write a ZYX uint16 TIFF of at least ``size_bytes`` one plane at a time; return its plane count."""
    import tifffile

    n_planes = math.ceil(size_bytes / (PLANE_SHAPE[0] * PLANE_SHAPE[1] * 2))
    tifffile.imwrite(
        path,
        (plane(z) for z in range(n_planes)),
        shape=(n_planes, *PLANE_SHAPE),
        dtype=np.uint16,
        metadata={"axes": "ZYX"},
    )
    return n_planes


def memory_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(mode: str, path: str) -> dict[str, float]:
    """Run inside a fresh process: peak memory increase and time of one way of reading the file."""
    import dask.array  # noqa: F401  (imports before the baseline memory reading)
    import tifffile

    from napari_morphospace.core.io.stacks import read_stack

    rss_before = memory_kib("VmRSS")
    start = time.perf_counter()
    if mode == "lazy":
        stack = read_stack(path)
        kind = type(stack.data).__module__.split(".")[0]
        crop = stack.data[CROP].compute()
        correct = bool(np.array_equal(crop, expected_crop()))
    else:
        data = tifffile.imread(path)
        kind = type(data).__module__.split(".")[0]
        correct = bool(np.array_equal(data[CROP], expected_crop()))
    seconds = time.perf_counter() - start
    peak_increase_mib = (memory_kib("VmHWM") - rss_before) / 1024
    return {"seconds": seconds, "peak_increase_mib": peak_increase_mib, "array": kind, "crop_correct": correct}


def run_in_subprocess(mode: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", mode, str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="folder for the temporary TIFF (needs the space)")
    parser.add_argument("--size-gb", type=float, default=2.1, help="file size in GB (10^9 bytes), at least 2")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the eager read (when the file does not fit in RAM)"
    )
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return

    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench_lazy_open_") as folder:
        path = Path(folder) / "stack.tif"
        start = time.perf_counter()
        n_planes = write_stack_file(path, int(args.size_gb * 1e9))
        print(
            f"file: {path.stat().st_size / 1e9:.3f} GB, uint16 ZYX {n_planes} x {PLANE_SHAPE[0]} x {PLANE_SHAPE[1]}, "
            f"written in {time.perf_counter() - start:.1f} s"
        )
        lazy = run_in_subprocess("lazy", path)
        print(
            f"lazy read_stack + one {CROP[0].stop - CROP[0].start}x256x256 crop: {lazy['array']} array, "
            f"peak RSS +{lazy['peak_increase_mib']:.1f} MiB, {lazy['seconds']:.3f} s, crop correct: "
            f"{lazy['crop_correct']}"
        )
        if args.no_baseline:
            return
        eager = run_in_subprocess("eager", path)
        print(
            f"baseline tifffile.imread (whole file): {eager['array']} array, "
            f"peak RSS +{eager['peak_increase_mib']:.1f} MiB, {eager['seconds']:.3f} s, crop correct: "
            f"{eager['crop_correct']}"
        )
        ratio = eager["peak_increase_mib"] / max(lazy["peak_increase_mib"], 1e-3)
        print(f"memory ratio baseline / lazy: {ratio:.1f}x")


if __name__ == "__main__":
    main()
