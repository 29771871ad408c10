"""Crop making at 10k, 100k and 1M objects: time, CPU, peak memory and files, against a bare numpy loop.

Writes a few distinct synthetic 2048 x 2048 fields (``synthetic_fields.py``:
~5 300 elliptical cells each, uint16, axes CYX) as TIFF files with their
label images, then, for each size N, lists fields until they hold N objects
(distinct files repeated) and runs, each in a fresh process so peak memory
is its own:

* ours: ``run_crop_job`` (what ``morphospace crops`` runs), files -> crop-set
  folder on disk, default settings except ``--size``;
* bare: a plain numpy/scipy loop over the same fields, already in memory,
  that cuts the same boxes and produces the same crops (checked pixel for
  pixel on one field before timing): ``find_objects``, area and centre of
  mass per object, the fixed box around the rounded centre, zero outside
  the image, one percentile range per channel and field, neighbours masked.
  Its crops go into a reused buffer and are not kept or saved.

Runs alternate (bare, ours, bare, ours, ...; ``--repeats`` pairs per size)
so load on a shared machine hits both alike. Prints per size: objects/s of
each (medians), the median of the paired ratios ours/bare (goal >= 0.8),
CPU seconds, peak resident memory (VmHWM) above the memory after imports,
and the number of files in the crop set. ``--profile FILE`` writes a
cProfile of our run at the first size.

    nice -n 10 .venv/bin/python benchmarks/bench_crop_scaling.py --sizes 10000,100000,1000000 --repeats 3,3,1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
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
from synthetic_fields import write_fields  # noqa: E402

DISTINCT_FIELDS = 4
PERCENTILES = (0.1, 99.9)
MIN_AREA = 10


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def job_files(fields: list[tuple[Path, Path]], per_field: int, n_objects: int) -> list[tuple[Path, Path]]:
    """Fields (distinct ones repeated) until they hold ``n_objects``."""
    return [fields[i % len(fields)] for i in range(math.ceil(n_objects / per_field))]


# --------------------------------------------------------------------------- bare loop


def bare_field(image: np.ndarray, labels: np.ndarray, size: int, buffer: np.ndarray) -> int:
    """Cut, normalise and mask every object's fixed box of one field into ``buffer``; return the count."""
    from scipy import ndimage

    low = np.percentile(image.reshape(len(image), -1), PERCENTILES[0], axis=1)[:, None, None]
    high = np.percentile(image.reshape(len(image), -1), PERCENTILES[1], axis=1)[:, None, None]
    span = np.where(high > low, high - low, 1.0)
    height, width = labels.shape
    count = 0
    for label_id, slices in enumerate(ndimage.find_objects(labels), start=1):
        if slices is None:
            continue
        inside = labels[slices] == label_id
        if np.count_nonzero(inside) < MIN_AREA:
            continue
        cy, cx = (c + s.start for c, s in zip(ndimage.center_of_mass(inside), slices, strict=True))
        y0, x0 = math.floor(cy + 0.5) - size // 2, math.floor(cx + 0.5) - size // 2
        ya, yb, xa, xb = max(y0, 0), min(y0 + size, height), max(x0, 0), min(x0 + size, width)
        crop = buffer[count % len(buffer)]
        crop[:] = 0
        region = image[:, ya:yb, xa:xb]
        crop[:, ya - y0 : yb - y0, xa - x0 : xb - x0] = np.clip((region - low) / span, 0, 1)
        neighbours = (labels[ya:yb, xa:xb] != label_id) & (labels[ya:yb, xa:xb] != 0)
        crop[:, ya - y0 : yb - y0, xa - x0 : xb - x0][:, neighbours] = 0
        count += 1
    return count


def run_bare(args: argparse.Namespace) -> dict:
    import tifffile

    fields = [(tifffile.imread(i), tifffile.imread(lab)) for i, lab in json.loads(args.fields)]
    files = job_files(list(range(len(fields))), args.per_field, args.objects)
    buffer = np.zeros((256, fields[0][0].shape[0], args.size, args.size), np.float32)
    base_rss = memory_kib("VmRSS")
    start, cpu = time.perf_counter(), cpu_seconds()
    made = sum(bare_field(*fields[index], args.size, buffer) for index in files)
    return {
        "crops": made,
        "seconds": time.perf_counter() - start,
        "cpu": cpu_seconds() - cpu,
        "peak_mib": (memory_kib("VmHWM") - base_rss) / 1024,
        "files": 0,
    }


# --------------------------------------------------------------------------- ours


def run_ours(args: argparse.Namespace) -> dict:
    from napari_morphospace.core.cells.crop_job import CropJob, run_crop_job
    from napari_morphospace.core.cells.crops import CropSettings

    fields = [tuple(map(Path, pair)) for pair in json.loads(args.fields)]
    files = job_files(fields, args.per_field, args.objects)
    job = CropJob(
        images=[str(i) for i, _ in files],
        labels=[str(lab) for _, lab in files],
        groups=["a"],
        crop=CropSettings(size=args.size, min_area=MIN_AREA, percentiles=PERCENTILES),
    )
    out = Path(args.out)
    base_rss = memory_kib("VmRSS")
    start, cpu = time.perf_counter(), cpu_seconds()
    if args.profile:
        import cProfile

        cProfile.runctx(
            "run_crop_job(job, out)",
            globals(),
            {"run_crop_job": run_crop_job, "job": job, "out": out},
            filename=args.profile,
        )
    else:
        run_crop_job(job, out)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    peak = (memory_kib("VmHWM") - base_rss) / 1024
    n_files = sum(len(names) for _, _, names in os.walk(out))
    from napari_morphospace.core.cells.crop_set import load_crop_set

    made = len(load_crop_set(out, in_memory=False))
    return {"crops": made, "seconds": seconds, "cpu": cpu, "peak_mib": peak, "files": n_files}


def check_same_crops(field: tuple[Path, Path], size: int) -> float:
    """Largest difference between our crops and the bare loop's on one field (must be 0)."""
    import tifffile

    from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels

    image, labels = tifffile.imread(field[0]), tifffile.imread(field[1])
    ours = crops_from_labels(
        image, labels, CropSettings(size=size, min_area=MIN_AREA, percentiles=PERCENTILES), axes="CYX"
    )
    buffer = np.zeros((len(ours), image.shape[0], size, size), np.float32)
    assert bare_field(image, labels, size, buffer) == len(ours)
    return float(np.abs(np.asarray(ours.images) - buffer).max())


def spawn(kind: str, args: argparse.Namespace, n_objects: int, fields: str, per_field: int, out: Path) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--objects",
        str(n_objects),
        "--fields",
        fields,
        "--per-field",
        str(per_field),
        "--size",
        str(args.size),
        "--out",
        str(out),
    ]
    if args.profile and kind == "ours":
        command += ["--profile", args.profile]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="object counts, comma-separated")
    parser.add_argument("--repeats", default="3", help="bare/ours pairs per size, one value or one per size")
    parser.add_argument("--size", type=int, default=32, help="crop size in pixels")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--profile", default=None, help="write a cProfile of our run at the first size here")
    parser.add_argument("--worker", choices=("ours", "bare"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--objects", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--fields", default="", help=argparse.SUPPRESS)
    parser.add_argument("--per-field", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_ours(args) if args.worker == "ours" else run_bare(args)))
        return

    import tifffile

    folder = args.tmp / f"morphospace-bench-fields-c{args.channels}"
    fields = write_fields(folder, DISTINCT_FIELDS, channels=args.channels)
    per_field = int(tifffile.imread(fields[0][1]).max())
    print(
        f"fields: {DISTINCT_FIELDS} distinct 2048x2048 uint16, {args.channels} channel(s), ~{per_field} objects each; "
        f"{args.size}x{args.size} crops"
    )
    print(f"same crops as the bare loop on one field: max |difference| = {check_same_crops(fields[0], args.size):g}")
    fields_json = json.dumps([[str(i), str(lab)] for i, lab in fields])
    sizes = [int(s) for s in args.sizes.split(",")]
    repeats = [int(r) for r in args.repeats.split(",")]
    repeats = repeats * len(sizes) if len(repeats) == 1 else repeats
    print(
        f"{'objects':>9} | {'ours obj/s':>10} {'bare obj/s':>10} {'ratio':>6} | {'ours CPU s':>10} "
        f"{'bare CPU s':>10} | "
        f"{'ours peak MiB':>13} {'bare peak MiB':>13} | {'files':>6}"
    )
    for n_objects, n_repeats in zip(sizes, repeats, strict=True):
        runs: dict[str, list[dict]] = {"bare": [], "ours": []}
        for _ in range(n_repeats):
            for kind in ("bare", "ours"):
                out = Path(tempfile.mkdtemp(dir=args.tmp, prefix="morphospace-bench-crops-")) / "set"
                try:
                    runs[kind].append(spawn(kind, args, n_objects, fields_json, per_field, out))
                finally:
                    shutil.rmtree(out.parent, ignore_errors=True)
                if kind == "ours" and args.profile:
                    print(f"profile of our run written to {args.profile}")
                    args.profile = None
        ratios = [
            (o["crops"] / o["seconds"]) / (b["crops"] / b["seconds"])
            for b, o in zip(runs["bare"], runs["ours"], strict=True)
        ]
        med = {kind: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for kind, rs in runs.items()}
        ours, bare = med["ours"], med["bare"]
        print(
            f"{int(ours['crops']):>9} | {ours['crops'] / ours['seconds']:>10.0f} "
            f"{bare['crops'] / bare['seconds']:>10.0f} "
            f"{statistics.median(ratios):>6.2f} | {ours['cpu']:>10.1f} {bare['cpu']:>10.1f} | "
            f"{ours['peak_mib']:>13.0f} {bare['peak_mib']:>13.0f} | {int(ours['files']):>6}",
            flush=True,
        )


if __name__ == "__main__":
    main()
