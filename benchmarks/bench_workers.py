"""Crop making and embedding over many files on 1 and 2 dask.distributed workers (and in one process).

Crops: ``--files`` copies of 4 distinct synthetic 2048 x 2048 fields
(``synthetic_fields.py``, ~5 300 cells each) cropped by ``run_crop_job``
(what ``morphospace crops`` runs) in one process, with ``workers=1`` and
with 2 (a ``LocalCluster`` of single-threaded processes, started and warmed
up, i.e. our modules imported, before the clock starts; that start-up, paid
once per command, is printed on its own).

Embedding: the resulting crop set embedded with an (untrained) β-VAE
bundle by ``embed`` in one process (torch's default threads) and by
``embed_on_cluster`` on 1 and 2 workers (one torch thread each).

Runs alternate; prints seconds (medians of ``--repeats``), the speed-up of
2 workers over 1 and checks that all outputs are identical.

    nice -n 10 .venv/bin/python benchmarks/bench_workers.py --files 16 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_fields import write_fields  # noqa: E402

from napari_morphospace.core.analysis.embed import embed, embed_on_cluster  # noqa: E402
from napari_morphospace.core.cells.crop_job import CropJob, run_crop_job  # noqa: E402
from napari_morphospace.core.cells.crop_set import crop_blocks, load_crop_set  # noqa: E402
from napari_morphospace.core.cells.crops import CropSettings  # noqa: E402
from napari_morphospace.core.models import ModelSettings, build_model  # noqa: E402
from napari_morphospace.core.parallel import dask_client  # noqa: E402
from napari_morphospace.core.training.bundle import new_bundle, save_bundle  # noqa: E402
from napari_morphospace.core.training.engine import TrainSettings  # noqa: E402


def same_crop_sets(a: Path, b: Path) -> bool:
    first, second = load_crop_set(a, in_memory=False), load_crop_set(b, in_memory=False)
    return first.table.equals(second.table) and all(
        np.array_equal(block, second.images[start : start + len(block)]) for start, block in crop_blocks(first.images)
    )


@contextlib.contextmanager
def warm_cluster(workers: int | None, startups: list[float]) -> Iterator[str | None]:
    """The address of a started ``LocalCluster`` whose workers imported our modules (None for one process)."""
    if workers is None:
        yield None
        return
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster:
        with Client(cluster) as client:
            for module in ("napari_morphospace.core.cells.crop_job", "napari_morphospace.core.analysis.embed"):
                client.run(importlib.import_module, module)
        startups.append(time.perf_counter() - start)
        yield cluster.scheduler_address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    fields = write_fields(args.tmp / "morphospace-bench-fields-c1", 4)
    files = [fields[i % len(fields)] for i in range(args.files)]
    job = CropJob(
        images=[str(i) for i, _ in files],
        labels=[str(lab) for _, lab in files],
        groups=["a"],
        crop=CropSettings(size=args.size),
    )
    folder = Path(tempfile.mkdtemp(dir=args.tmp, prefix="morphospace-bench-workers-"))
    try:
        crop_seconds: dict[str, list[float]] = {"one process": [], "1 worker": [], "2 workers": []}
        startups: list[float] = []
        for repeat in range(args.repeats):
            for name, workers in (("one process", None), ("1 worker", 1), ("2 workers", 2)):
                out = folder / f"{name.replace(' ', '')}{repeat}"
                with warm_cluster(workers, startups) as address:
                    start = time.perf_counter()
                    crop_set = run_crop_job(job, out, scheduler=address)
                    crop_seconds[name].append(time.perf_counter() - start)
        reference = folder / "oneprocess0"
        identical = all(same_crop_sets(reference, folder / f"{n.replace(' ', '')}0") for n in ("1 worker", "2 workers"))
        print(
            f"crops: {args.files} files, {len(crop_set)} crops of {args.size}x{args.size}; {os.cpu_count()} CPUs, "
            f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} now (other jobs share the cores)"
        )
        report(crop_seconds, f"crop sets identical: {identical}")
        print(f"  (starting a warmed-up local cluster took {statistics.median(startups):.1f} s, not counted above)")

        settings = ModelSettings(model="beta-vae", latent_dim=16)
        model = build_model(settings, tuple(crop_set.images.shape[1:])).eval()
        save_bundle(
            new_bundle(
                model,
                model_settings=settings,
                input_shape=tuple(crop_set.images.shape[1:]),
                channel_names=crop_set.channel_names,
                preprocess=crop_set.preprocess,
                train_settings=TrainSettings(),
                provenance={},
                history=[],
            ),
            folder / "model",
        )
        embed_seconds: dict[str, list[float]] = {"one process": [], "1 worker": [], "2 workers": []}
        tables: dict[str, pd.DataFrame] = {}
        for _ in range(args.repeats):
            for name, workers in (("one process", None), ("1 worker", 1), ("2 workers", 2)):
                with warm_cluster(workers, startups) as address, dask_client(scheduler=address) as client:
                    start = time.perf_counter()
                    if client is None:
                        tables[name] = embed(model, load_crop_set(reference, in_memory=False))
                    else:
                        tables[name] = embed_on_cluster(client, folder / "model", reference)
                    embed_seconds[name].append(time.perf_counter() - start)
        same = all(
            np.allclose(tables[n].filter(like="mu_"), tables["one process"].filter(like="mu_"), atol=1e-5)
            for n in tables
        )
        print(f"embed: {len(crop_set)} crops, beta-VAE 16 latents; load average {os.getloadavg()[0]:.1f} now")
        report(embed_seconds, f"latents equal (1e-5): {same}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def report(seconds: dict[str, list[float]], note: str) -> None:
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in medians.items():
        print(f"  {name:>12}: {value:7.1f} s  (runs: {', '.join(f'{v:.1f}' for v in seconds[name])})")
    pairs = statistics.median(one / two for one, two in zip(seconds["1 worker"], seconds["2 workers"], strict=True))
    print(f"  speed-up 2 workers / 1 worker: {pairs:.2f} (median of paired runs)   {note}")


if __name__ == "__main__":
    main()
