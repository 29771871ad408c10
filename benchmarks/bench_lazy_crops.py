"""Crops from a multi-GB TIFF opened lazily (chunk-aware reads) against the same file read into memory.

Writes a TCYX uint16 time-lapse of 2048 x 2048 frames with 2 channels,
frame by frame (never whole in memory), until it holds ``--size-gb``, and
its TYX label image (~120 cells of 20-70 px per frame; ``synthetic_fields.py``).
Then, each in a fresh process so peak memory is its own:

* eager: ``read_stack(..., lazy_threshold_bytes=inf)`` loads the file into
  numpy (what a file that fits in memory gets), then ``build_crop_set``
  streams 96 x 96 crops to a crop-set folder;
* lazy: ``read_stack`` opens it as a dask array (as any file over 1 GiB; what
  a file larger than memory gets), labels too (one frame in memory at a
  time), and the same ``build_crop_set`` reads one region of whole chunks
  (here: TIFF pages) per block of cells.

Runs alternate (eager, lazy, ...; ``--repeats`` pairs). Prints wall time and
peak resident memory (VmHWM) of each, the time ratio lazy/eager (goal
<= 1.5) and checks that both crop sets are identical. Files are deleted at
the end.

    nice -n 10 .venv/bin/python benchmarks/bench_lazy_crops.py --tmp /tmp --size-gb 2.3
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import memory_kib  # noqa: E402
from synthetic_fields import synthetic_field  # noqa: E402

FRAME = (2048, 2048)
CHANNELS = 2
PITCH = 180
CROP = 96


def write_files(folder: Path, size_bytes: int) -> tuple[Path, Path, int]:
    """Write the time-lapse and its labels one frame at a time; return the paths and the frame count."""
    import tifffile

    frames = math.ceil(size_bytes / (CHANNELS * FRAME[0] * FRAME[1] * 2))
    fields = [synthetic_field(seed, shape=FRAME, pitch=PITCH, channels=CHANNELS) for seed in range(4)]
    image_path, labels_path = folder / "timelapse.tif", folder / "timelapse_labels.tif"
    tifffile.imwrite(
        image_path,
        (fields[t % 4][0][c] for t in range(frames) for c in range(CHANNELS)),
        shape=(frames, CHANNELS, *FRAME),
        dtype=np.uint16,
        metadata={"axes": "TCYX"},
        bigtiff=True,
    )
    tifffile.imwrite(
        labels_path,
        (fields[t % 4][1] for t in range(frames)),
        shape=(frames, *FRAME),
        dtype=fields[0][1].dtype,
        metadata={"axes": "TYX"},
        bigtiff=True,
    )
    return image_path, labels_path, frames


def run(kind: str, image_path: str, labels_path: str, out: str) -> dict:
    from napari_morphospace.core.cells.crops import (
        CropSettings,
        CropSource,
        build_crop_set,
    )
    from napari_morphospace.core.io.stacks import read_stack

    base = memory_kib("VmRSS")
    start = time.perf_counter()
    threshold = 1 << 62 if kind == "eager" else 0  # lazy: as any file over the 1 GiB default
    stack = read_stack(image_path, lazy_threshold_bytes=threshold)
    labels = read_stack(labels_path, lazy_threshold_bytes=threshold).data
    crop_set = build_crop_set([CropSource(stack, labels, "labels", CropSettings(size=CROP), group="a")], output=out)
    return {
        "seconds": time.perf_counter() - start,
        "peak_mib": (memory_kib("VmHWM") - base) / 1024,
        "crops": len(crop_set),
        "lazy": type(stack.data).__module__.split(".")[0],
    }


def same_crop_sets(a: str, b: str) -> bool:
    from napari_morphospace.core.cells.crop_set import crop_blocks, load_crop_set

    first, second = load_crop_set(a, in_memory=False), load_crop_set(b, in_memory=False)
    if not first.table.equals(second.table) or first.images.shape != second.images.shape:
        return False
    return all(
        np.array_equal(block, second.images[start : start + len(block)]) for start, block in crop_blocks(first.images)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--size-gb", type=float, default=2.3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run(*args.worker)))
        return
    folder = Path(tempfile.mkdtemp(dir=args.tmp, prefix="morphospace-bench-lazy-"))
    try:
        image_path, labels_path, frames = write_files(folder, int(args.size_gb * 1e9))
        print(
            f"file: {image_path.stat().st_size / 1e9:.2f} GB, TCYX uint16 {frames} x {CHANNELS} x "
            f"{FRAME[0]} x {FRAME[1]}; labels {labels_path.stat().st_size / 1e9:.2f} GB; {CROP} px crops"
        )
        runs: dict[str, list[dict]] = {"eager": [], "lazy": []}
        for repeat in range(args.repeats):
            for kind in ("eager", "lazy"):
                out = folder / f"{kind}{repeat}"
                command = [sys.executable, __file__, "--worker", kind, str(image_path), str(labels_path), str(out)]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode:
                    raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
                runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
        identical = same_crop_sets(str(folder / "eager0"), str(folder / "lazy0"))
        for kind, results in runs.items():
            seconds = statistics.median(r["seconds"] for r in results)
            peak = statistics.median(r["peak_mib"] for r in results)
            each = ", ".join(f"{r['seconds']:.1f}" for r in results)
            print(
                f"{kind:>5} ({results[0]['lazy']} array): {results[0]['crops']} crops in {seconds:7.1f} s "
                f"(runs: {each}), peak RSS +{peak:,.0f} MiB"
            )
        ratios = [lazy["seconds"] / eager["seconds"] for eager, lazy in zip(runs["eager"], runs["lazy"], strict=True)]
        print(
            f"time ratio lazy / eager: {statistics.median(ratios):.2f} (goal <= 1.5); crop sets identical: {identical}"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
