"""What the end-of-training representation probe adds to the diagnostics, on a BBBC007-size crop set.

The diagnostics run at the end of every training. Crops cut from labels keep
their object masks, so the diagnostics also measure every cell (regionprops
of its mask in its crop) and fit the latent-vs-pixel-PCA ridge probe. This
script cuts one 32×32 crop per nucleus of the 14 real BBBC007 fields
(1 233 nuclei, ``tests/real_data.py``), splits them by source image as
training does, and times in one run, with one torch thread: the diagnostics
without the probe (the baseline), the same with it, and one optimiser step
of the default model at batch 64 — so the probe's cost is printed in
optimiser steps (a default training takes at least 3 000). The model is
untrained: the cost does not depend on the weights, and its probe ratio
shows what a random encoder scores.

    nice -n 10 .venv/bin/python benchmarks/bench_diagnostics_cost.py
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from real_data import bbbc007_fields  # noqa: E402

from napari_morphospace.core.cells.crop_set import concat_crop_sets  # noqa: E402
from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels  # noqa: E402
from napari_morphospace.core.models import ModelSettings, build_model  # noqa: E402
from napari_morphospace.core.training.diagnostics import ProbeCrops, diagnose_training  # noqa: E402
from napari_morphospace.core.training.engine import split_crops  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    parts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nuclei larger than the crop are cut: counted, not needed here
        for group, image, labels in bbbc007_fields():
            parts.append(
                crops_from_labels(
                    tifffile.imread(image),
                    tifffile.imread(labels),
                    CropSettings(size=32),
                    group=group,
                    source=image.name,
                )
            )
    crop_set = concat_crop_sets(parts)
    split = split_crops(crop_set.table, val_fraction=0.2, method="source", seed=0)
    model = build_model(ModelSettings(), tuple(crop_set.images.shape[1:]))
    images = np.asarray(crop_set.images)
    held_out = images[split.val]
    start = time.perf_counter()
    diagnose_training(model, held_out)
    baseline = time.perf_counter() - start
    probe_crops = ProbeCrops(
        images, np.asarray(crop_set.masks), crop_set.table["source"].astype(str).to_numpy(), images[split.train]
    )
    start = time.perf_counter()
    diagnostics = diagnose_training(model, held_out, probe_crops=probe_crops)
    with_probe = time.perf_counter() - start
    optimiser = torch.optim.AdamW(model.parameters())
    model.train()
    batch = torch.as_tensor(images[:64])
    start = time.perf_counter()
    for _ in range(5):
        loss = model.loss(batch, model(batch), dataset_size=len(split.train), step=0)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    step = (time.perf_counter() - start) / 5
    cost = with_probe - baseline
    print(f"{len(crop_set)} real nuclei, {len(held_out)} held out, one torch thread")
    print(f"diagnostics without the probe: {baseline:6.1f} s")
    print(f"diagnostics with the probe:    {with_probe:6.1f} s  (ratio {with_probe / baseline:.2f})")
    print(f"the probe: {cost:.1f} s = {cost / step:.0f} optimiser steps of {step:.2f} s (a default training: >= 3000)")
    print(f"untrained encoder: {diagnostics.probe.summary()}")


if __name__ == "__main__":
    main()
