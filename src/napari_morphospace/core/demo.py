"""The main job on the bundled synthetic cells, headless: sample data in, analysis folder out.

``morphospace demo --headless`` runs :func:`run_demo`; the viewer version runs
the same steps through the widgets. Every step writes its result under the
output folder, so a user can open each file the demo produced.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .config import save_config
from .crop_job import CropJob, run_crop_job
from .crops import CropSettings
from .data import CropSet
from .errors import InputError
from .gallery import gallery_figure
from .io import Stack, write_stack
from .sample_data import SampleData, SampleSettings, make_sample_data

StepCallback = Callable[[str], None]


@dataclass
class DemoSettings:
    """Size of the demo run: small enough for a laptop CPU in a few minutes."""

    ndim: Literal[2, 3] = 2
    n_cells: int = 120
    crop_size: int = 64
    seed: int = 0

    def sample_settings(self) -> SampleSettings:
        return SampleSettings(n_cells=self.n_cells, ndim=self.ndim, seed=self.seed)

    def crop_settings(self) -> CropSettings:
        size = self.crop_size if self.ndim == 2 else (16, self.crop_size, self.crop_size)
        return CropSettings(size=size, mode="fixed")


@dataclass
class DemoResult:
    """Where the demo wrote what, and the crop set it built."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    crop_set: CropSet | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def write_sample_files(sample: SampleData, folder: Path) -> tuple[list[Path], list[Path]]:
    """Save each group's image and labels as OME-TIFF (with pixel sizes) and the factor table as CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for stack, label_image in zip(sample.images, sample.labels):
        name = stack.source.removeprefix("synthetic-")
        spatial = {axis: stack.scale[axis] for axis in stack.spatial_axes if axis in stack.scale}
        images.append(write_stack(folder / f"{name}.ome.tif", stack, overwrite=True))
        label_stack = Stack(label_image, stack.spatial_axes, scale=spatial, channel_names=["labels"], source=name)
        labels.append(write_stack(folder / f"{name}_labels.ome.tif", label_stack, overwrite=True))
    sample.factors.to_csv(folder / "factors.csv", index=False)
    return images, labels


def run_demo(
    out: str | Path, settings: DemoSettings | None = None, *, overwrite: bool = False, on_step: StepCallback | None = None
) -> DemoResult:
    """Make the sample data, crop every cell, and write the analysis files to ``out``."""
    settings = settings or DemoSettings()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"{out} is not empty; choose another --out folder or pass --overwrite")
        if not (out / "demo.json").exists():
            raise InputError(f"{out} holds files that the demo did not write; choose an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(out=out)
    report = on_step or (lambda message: None)

    started = time.perf_counter()
    report("making synthetic control and treated cells")
    sample = make_sample_data(settings.sample_settings())
    images, labels = write_sample_files(sample, out / "data")
    result.files.update(data=out / "data", factors=out / "data" / "factors.csv")
    result.seconds["sample"] = time.perf_counter() - started

    started = time.perf_counter()
    report("cropping every cell")
    job = CropJob(
        images=[str(p) for p in images],
        labels=[str(p) for p in labels],
        groups=[s.source.removeprefix("synthetic-") for s in sample.images],
        crop=settings.crop_settings(),
    )
    save_config(job, out / "crop_job.yaml")
    result.crop_set = run_crop_job(job, out / "crops")
    figure = gallery_figure(result.crop_set.images, list(result.crop_set.table["group"]), seed=settings.seed)
    (out / "figures").mkdir(exist_ok=True)
    figure.savefig(out / "figures" / "crop_gallery.png", dpi=120)
    result.files.update(
        crop_job=out / "crop_job.yaml", crops=out / "crops", gallery=out / "figures" / "crop_gallery.png"
    )
    result.seconds["crops"] = time.perf_counter() - started

    summary = {
        "settings": {"ndim": settings.ndim, "n_cells": settings.n_cells, "crop_size": settings.crop_size,
                     "seed": settings.seed},  # fmt: skip
        "files": {key: str(path.relative_to(out)) for key, path in result.files.items()},
        "seconds": {key: round(value, 2) for key, value in result.seconds.items()},
        "n_crops": len(result.crop_set),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return result
