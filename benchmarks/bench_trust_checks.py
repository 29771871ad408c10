"""What the checks against damaged input cost, against reading the same data without them.

Saves a crop set of ``--crops`` crops (1 x 64 x 64 float32, one zarr chunk
each) inside an analysis folder, then times, alternating, with medians:

1. ``load_crop_set(in_memory=True)`` (metadata checks, the stored-chunk count,
   the crop-id order fingerprint and the finite-in-[0, 1] check of every
   pixel) against the bare reads it is built on: ``zarr`` ``images[...]`` plus
   ``pd.read_parquet`` and ``pd.read_csv`` of the table.
2. ``open_analysis`` (which also walks every part for links leading outside
   the folder) against ``load_crop_set`` of the same crop set alone.
3. ``embed``'s per-batch value check against the encoder's forward pass on
   the same batch (``check_crop_values`` over 256 crops vs ``model.encode``).

Run: ``.venv/bin/python benchmarks/bench_trust_checks.py [--crops 5000] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import zarr

from napari_morphospace.core.cells.crop_set import (
    CropSet,
    bbox_columns,
    check_crop_values,
    load_crop_set,
)
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.analysis_folder import (
    create_analysis,
    open_analysis,
    save_analysis,
)


def crop_set(n: int) -> CropSet:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": "field.tif",
            "label_id": np.arange(1, n + 1),
            "t": 0,
            "group": np.where(np.arange(n) % 2, "treated", "control"),
            "annotation": "",
        }
    )
    for column, value in zip(bbox_columns(2), (0, 64, 0, 64), strict=True):
        table[column] = value
    return CropSet(rng.random((n, 1, 64, 64), dtype=np.float32), table, ["dna"], (0.5, 0.5))


def median_seconds(function: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def compare(name: str, checked: Callable[[], object], baseline: Callable[[], object], repeats: int) -> None:
    checked_times, baseline_times = [], []
    for _ in range(repeats):  # alternate, so a busy machine slows both alike
        checked_times += median_seconds(checked, 1)
        baseline_times += median_seconds(baseline, 1)
    a, b = statistics.median(checked_times), statistics.median(baseline_times)
    print(f"{name}: {a * 1000:.1f} ms vs baseline {b * 1000:.1f} ms  ->  ratio {a / b:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "analysis"
        save_analysis(create_analysis(folder), crop_set=crop_set(args.crops))
        crops = folder / "crops"

        def bare_reads() -> None:
            zarr.open_array(str(crops / "images.zarr"), mode="r")[...]
            pd.read_parquet(crops / "crops.parquet")
            pd.read_csv(crops / "crops.csv")

        print(f"{args.crops} crops of 1 x 64 x 64, median of {args.repeats}:")
        compare(
            "load_crop_set (with checks) vs zarr + table reads",
            lambda: load_crop_set(crops, in_memory=True),
            bare_reads,
            args.repeats,
        )
        compare(
            "open_analysis (link walk + crop set) vs load_crop_set",
            lambda: open_analysis(folder),
            lambda: load_crop_set(crops, in_memory=True),
            args.repeats,
        )
        model = build_model(ModelSettings(latent_dim=8, base_channels=16), (1, 64, 64)).eval()
        batch = load_crop_set(crops, in_memory=True)
        images, ids = batch.images[:256], batch.table["crop_id"][:256]
        with torch.no_grad():
            compare(
                "check_crop_values (256 crops) vs model.encode (256 crops)",
                lambda: check_crop_values(images, ids),
                lambda: model.encode(torch.from_numpy(images)),
                args.repeats,
            )


if __name__ == "__main__":
    main()
