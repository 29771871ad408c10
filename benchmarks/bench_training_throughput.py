"""Training throughput of the Lightning engine against a bare hand-written PyTorch loop.

Both train the same β-VAE on the same 2D 64×64 crops with the same batch
size, epochs, optimiser (AdamW), gradient clipping, train/validation split
and per-epoch validation pass; augmentation is off in both. The bare loop is
what a careful user would write by hand, so the ratio measures what the
engine costs (Lightning's loop, logging, checkpoints, progress messages, the
per-step reseeding and NaN check). Runs alternate (bare, engine, bare, ...)
so a change in machine load hits both; the medians of each and the median
of the ratios of neighbouring runs are reported. On a shared machine use
``--threads 1``: small CPU models are sensitive to competing threads.

Goal: engine / bare >= 0.9.

    .venv/bin/python benchmarks/bench_training_throughput.py [--crops 256] [--epochs 3] [--repeats 3] [--threads 1]

``--demo`` trains on the headless demo's crops with the demo's model and
training settings instead (240 crops of 32×32, batch 32: six optimiser steps
per epoch, flips and 90° turns on in both loops), and prints optimiser steps
per second: tiny epochs are where per-epoch costs of the engine (checkpoints,
validation, callbacks) would show.

    .venv/bin/python benchmarks/bench_training_throughput.py --demo [--epochs 30] [--repeats 3] [--threads 2]

On a GPU, the figures the issue asks for (2D 128² and 3D 64³ with bf16):

    python benchmarks/bench_training_throughput.py --accelerator gpu --precision bf16-mixed --shape 128,128 --crops 2048
    python benchmarks/bench_training_throughput.py --accelerator gpu --precision bf16-mixed --shape 64,64,64 --crops 512
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from napari_morphospace.core.cells.crop_set import CropSet
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.dataset import CropDataset
from napari_morphospace.core.training.engine import TrainSettings, augment_batch, augmentation_for, split_crops, train


def ellipse_crops(n: int, shape: tuple[int, ...] = (64, 64), seed: int = 0) -> CropSet:
    """Ellipses (ellipsoids in 3D) of two sizes along random axes, over 8 source images."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, *shape), np.float32)
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij"), axis=-1)
    for i in range(n):
        radii = np.array(shape) * (0.35 if i % 2 else 0.2) * rng.uniform(0.6, 1.0, len(shape))
        rotation, _ = np.linalg.qr(rng.normal(size=(len(shape), len(shape))))
        inside = (((grid @ rotation) / radii) ** 2).sum(axis=-1) <= 1
        images[i, 0][inside] = 0.8
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": [f"image{i % 8}.tif" for i in range(n)],
            "label_id": np.arange(1, n + 1),
            "t": 0,
            "group": "a",
            "annotation": "",
            **{
                f"{axis}_{end}": (0 if end == "start" else size)
                for axis, size in zip("zyx"[3 - len(shape) :], shape, strict=True)
                for end in ("start", "stop")
            },
        }
    )
    return CropSet(images, table, ["ch0"], (1.0,) * len(shape), None)


def demo_crops() -> tuple[CropSet, ModelSettings, TrainSettings]:
    """The headless demo's crop set and its model and training settings (``morphospace demo``)."""
    from napari_morphospace.core.cells.crops import concat_crop_sets, crops_from_labels
    from napari_morphospace.core.cells.sample_data import make_sample_data
    from napari_morphospace.core.project.demo import DemoSettings

    demo = DemoSettings()
    sample = make_sample_data(demo.sample_settings())
    crop_set = concat_crop_sets(
        [
            crops_from_labels(
                stack, labels, demo.crop_settings(), pipeline=demo.preprocess(), group=stack.source, source=stack.source
            )
            for stack, labels in zip(sample.images, sample.labels, strict=True)
        ]
    )
    config = demo.train_config()
    return crop_set, config.model, config.training


def bare_loop(crop_set: CropSet, model_settings: ModelSettings, settings: TrainSettings) -> int:
    """The hand-written baseline; returns the number of training images processed.

    Same device and mixed precision as the engine: losses in float32 (the
    models do that themselves), the forward pass under bf16/fp16 autocast.
    """
    device = torch.device("cuda" if settings.accelerator in ("gpu", "cuda") else "cpu")
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(settings.precision)
    torch.manual_seed(settings.seed)
    split = split_crops(crop_set.table, val_fraction=settings.val_fraction, method=settings.split, seed=settings.seed)
    dataset = CropDataset(crop_set)
    train_loader = DataLoader(
        Subset(dataset, split.train.tolist()), batch_size=settings.batch_size, shuffle=True, drop_last=True
    )
    val_loader = DataLoader(Subset(dataset, split.val.tolist()), batch_size=settings.batch_size)
    model = build_model(model_settings, tuple(crop_set.images.shape[1:])).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    augment = augmentation_for(settings, model_settings.model)
    images, step = 0, 0
    for _ in range(settings.epochs):
        model.train()
        for x in train_loader:
            x = augment_batch(x.to(device, non_blocking=True), **augment)
            optimiser.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = model.loss(x, model(x), dataset_size=len(split.train), step=step)["loss"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.gradient_clip_val)
            optimiser.step()
            images += len(x)
            step += 1
        model.eval()
        with torch.no_grad(), autocast(device, dtype):
            for x in val_loader:
                x = x.to(device, non_blocking=True)
                model.loss(x, model(x), dataset_size=len(split.train), step=step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def engine(crop_set: CropSet, model_settings: ModelSettings, settings: TrainSettings) -> int:
    """The engine under test; returns the number of training images processed."""
    with tempfile.TemporaryDirectory() as directory:
        settings.checkpoint_dir = directory
        result = train(crop_set, model_settings, settings)
    return result.train_size // settings.batch_size * settings.batch_size * settings.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--shape", default="64,64", help="crop size: Y,X or Z,Y,X")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed", "16-mixed"), default="32-true")
    parser.add_argument("--demo", action="store_true", help="the headless demo's crops and settings; steps/s")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.demo:
        crop_set, model_settings, demo_settings = demo_crops()
        shape, args.crops, args.batch_size = tuple(crop_set.images.shape[2:]), len(crop_set), demo_settings.batch_size
    else:
        crop_set, model_settings = ellipse_crops(args.crops, shape), ModelSettings(model="beta-vae", latent_dim=16)
        demo_settings = TrainSettings(
            batch_size=args.batch_size, augment_flips=False, augment_rot90=False, gradient_clip_val=1.0
        )
    rates: dict[str, list[float]] = {"bare": [], "engine": []}
    for _ in range(args.repeats):
        for name, run in (("bare", bare_loop), ("engine", engine)):
            settings = replace(
                demo_settings, epochs=args.epochs, accelerator=args.accelerator, devices=1, precision=args.precision
            )
            start = time.perf_counter()
            images = run(crop_set, model_settings, settings)
            rates[name].append(images / (time.perf_counter() - start))
    bare, eng = statistics.median(rates["bare"]), statistics.median(rates["engine"])
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"CPU ({torch.get_num_threads()} threads)"
    what = "the demo's crops and settings, " if args.demo else ""
    print(
        f"{what}{len(shape)}D {'x'.join(map(str, shape))}, {args.crops} crops, batch {args.batch_size}, "
        f"{args.epochs} epochs, {device}, {args.precision}, median of {args.repeats}"
    )
    per_step = args.batch_size  # both loops drop the last incomplete batch: images / batch size = optimiser steps
    for name, label in (("bare", "bare PyTorch loop:"), ("engine", "engine (train()): ")):
        runs = ", ".join(f"{r:.1f}" for r in rates[name])
        print(
            f"{label} {statistics.median(rates[name]):8.1f} images/s = "
            f"{statistics.median(rates[name]) / per_step:6.2f} optimiser steps/s  (runs: {runs} images/s)"
        )
    pairs = statistics.median(e / b for e, b in zip(rates["engine"], rates["bare"], strict=True))
    print(f"ratio engine/bare: {eng / bare:.3f} (medians), {pairs:.3f} (median of paired runs)  (goal >= 0.9)")


if __name__ == "__main__":
    main()
