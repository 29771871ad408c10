"""Embedding and training streamed from a crop set on disk, against bare PyTorch on the same crops in memory.

Makes ``--crops`` 2D crops (ellipses of two sizes, ``bench_training_throughput.ellipse_crops``),
saves them as a crop set (sharded zarr) and opens it lazily
(``load_crop_set(in_memory=False)``: what a set larger than memory gets),
then, with torch's default thread count unless ``--threads``:

* embed: ``embed(model, crop set on disk)`` against a bare forward pass
  (``model.encode`` in ``torch.no_grad``) over the same crops held in one
  in-memory tensor, same batch size; the latents must be identical;
* train: ``train()`` for ``--epochs`` on the set on disk against the
  hand-written loop of ``bench_training_throughput.py`` on the crops in
  memory (same model, batch size, optimiser, split, validation pass).

Runs alternate (bare, ours, ...); prints images/s, the median of paired
ratios ours/bare (goal >= 0.9 for both) and the peak resident memory.

    nice -n 10 .venv/bin/python benchmarks/bench_streamed_crops.py --crops 20000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training_throughput import bare_loop, ellipse_crops, engine  # noqa: E402
from measure import peak_mib  # noqa: E402

from napari_morphospace.core.analysis.embed import embed  # noqa: E402
from napari_morphospace.core.cells.crop_set import load_crop_set, save_crop_set  # noqa: E402
from napari_morphospace.core.models import ModelSettings, build_model  # noqa: E402
from napari_morphospace.core.training.engine import TrainSettings  # noqa: E402


def bare_embed(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """Posterior means of in-memory crops, one batch after the other."""
    means = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            means.append(model.encode(images[start : start + batch_size])[0].numpy())
    return np.concatenate(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=20000)
    parser.add_argument("--shape", default="64,64")
    parser.add_argument("--batch-size", type=int, default=256, help="embedding batch size")
    parser.add_argument("--train-batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-crops", type=int, default=4096, help="crops for the training comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--skip", choices=("embed", "train"), default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    model_settings = ModelSettings(model="beta-vae", latent_dim=16)
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        crops = ellipse_crops(args.crops, shape)
        save_crop_set(crops, Path(folder) / "set")
        on_disk = load_crop_set(Path(folder) / "set", in_memory=False)
        size_mb = on_disk.images.nbytes / 1e6
        print(
            f"{args.crops} crops {'x'.join(map(str, shape))} ({size_mb:.0f} MB on disk, read lazily), "
            f"CPU with {torch.get_num_threads()} threads"
        )
        if args.skip != "embed":
            model = build_model(model_settings, tuple(crops.images.shape[1:])).eval()
            in_memory = torch.from_numpy(crops.images)
            rates: dict[str, list[float]] = {"bare": [], "ours": []}
            for _ in range(args.repeats):
                start = time.perf_counter()
                expected = bare_embed(model, in_memory, args.batch_size)
                rates["bare"].append(args.crops / (time.perf_counter() - start))
                start = time.perf_counter()
                table = embed(model, on_disk, batch_size=args.batch_size)
                rates["ours"].append(args.crops / (time.perf_counter() - start))
            same = np.array_equal(table[[f"mu_{i}" for i in range(16)]].to_numpy(np.float32), expected)
            report("embed", rates, f"latents identical to the bare pass: {same}")
        if args.skip != "train":
            subset = crops.subset(np.arange(min(args.train_crops, args.crops)))
            save_crop_set(subset, Path(folder) / "train")
            train_on_disk = load_crop_set(Path(folder) / "train", in_memory=False)
            rates = {"bare": [], "ours": []}
            for _ in range(args.repeats):
                for name, run, data in (("bare", bare_loop, subset), ("ours", engine, train_on_disk)):
                    settings = TrainSettings(
                        epochs=args.epochs,
                        batch_size=args.train_batch_size,
                        devices=1,
                        augment_flips=False,
                        augment_rot90=False,
                        gradient_clip_val=1.0,
                    )
                    start = time.perf_counter()
                    images = run(data, model_settings, settings)
                    rates[name].append(images / (time.perf_counter() - start))
            report(f"train ({len(subset)} crops, {args.epochs} epoch)", rates, "")
    print(f"peak resident memory: {peak_mib():.0f} MiB")


def report(what: str, rates: dict[str, list[float]], note: str) -> None:
    bare, ours = statistics.median(rates["bare"]), statistics.median(rates["ours"])
    paired = statistics.median(o / b for o, b in zip(rates["ours"], rates["bare"], strict=True))
    print(f"{what}: bare in memory {bare:8.1f} img/s (runs: {', '.join(f'{r:.0f}' for r in rates['bare'])})")
    print(f"{' ' * len(what)}  ours streamed  {ours:8.1f} img/s (runs: {', '.join(f'{r:.0f}' for r in rates['ours'])})")
    print(f"{' ' * len(what)}  ratio ours/bare {paired:.3f} (median of paired runs; goal >= 0.9)  {note}")


if __name__ == "__main__":
    main()
