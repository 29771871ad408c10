"""The main job on the bundled synthetic cells, headless: sample data in, analysis folder and report out.

``morphospace demo --headless`` runs :func:`run_demo`; the viewer version runs
the same steps through the widgets. The output folder *is* an analysis folder
(see :mod:`.analysis_folder`): the synthetic images and their factor table under
``data/``, the crop set, the model bundle, the latents, the statistics and
the HTML report, so a user can open each file the demo produced, or the whole
folder in napari.

The default size is chosen so the whole run takes at most five minutes on a
2-core laptop CPU (measured in ``docs/report.md``): 120 cells per group cut
in 64 px boxes (every cell fits, cell size is kept) and resized to 32 px for
the model, a β-VAE with 8 latent dimensions trained for 30 epochs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal

import pandas as pd
import torch

from ..analysis.embed import embed
from ..cells.crop_job import CropJob, run_crop_job
from ..cells.crop_set import CropSet
from ..cells.crops import CropSettings
from ..cells.preprocess import PreprocessPipeline, PreprocessStep
from ..cells.sample_data import (
    TREATED_SHIFTS,
    SampleData,
    SampleSettings,
    make_sample_data,
)
from ..config import save_config, to_dict
from ..figures.gallery import gallery_figure
from ..figures.render import render_figure
from ..files import atomic_write_text
from ..io.stacks import Stack, write_stack
from ..models import ModelSettings
from ..outputs import check_output
from ..training.bundle import save_bundle
from ..training.engine import TrainConfig, TrainSettings, train, trained_bundle
from .analysis_folder import create_analysis, save_analysis
from .report import TOP_DIMENSIONS, NotAvailable, check_known_answer, write_report

StepCallback = Callable[[str], None]
MARKER = "demo.json"


@dataclass
class DemoSettings:
    """Size of the demo run: small enough for a 2-core laptop CPU in under five minutes.

    Attributes
    ----------
    ndim : {2, 3}
        2D fields or 3D volumes of synthetic cells.
    n_cells : int
        Cells per group (control and treated).
    crop_size : int
        Side of the box cut around every cell, in source pixels (Y/X); the
        cells of the sample data fit a 64 px box.
    model_size : int
        Side (Y/X) the crops are resized to for the model.
    latent_dim, epochs, batch_size, beta : model and training size (β-VAE).
    reconstruction : {"bce", "sse"}
        Reconstruction term. Binary cross-entropy: with 0.5·SSE the mostly dark
        32 px crops reconstruct with a loss of a few nats, the KL term wins and
        the posterior collapses (measured: 0.6 nats of KL after 30 epochs).
    threads : int
        Torch CPU threads for training and embedding.
    seed : int
        Seed of the data, the split and the training.
    """

    ndim: Literal[2, 3] = 2
    n_cells: int = 120
    crop_size: int = 64
    model_size: int = 32
    latent_dim: int = 8
    epochs: int = 30
    batch_size: int = 32
    beta: float = 1.0
    reconstruction: Literal["bce", "sse"] = "bce"
    threads: int = 2
    seed: int = 0

    def sample_settings(self) -> SampleSettings:
        return SampleSettings(n_cells=self.n_cells, ndim=self.ndim, seed=self.seed)

    def crop_settings(self) -> CropSettings:
        size = self.crop_size if self.ndim == 2 else (16, self.crop_size, self.crop_size)
        return CropSettings(size=size, mode="fixed")

    def preprocess(self) -> PreprocessPipeline:
        """Resize the fixed boxes for the model; cells keep their relative size."""
        shape = [self.model_size] * 2 if self.ndim == 2 else [16, self.model_size, self.model_size]
        return PreprocessPipeline([PreprocessStep("resize", {"shape": shape})])

    def train_config(self) -> TrainConfig:
        # Random split: with one field per group, a split by source would hold out a whole group.
        return TrainConfig(
            model=ModelSettings(
                model="beta-vae", latent_dim=self.latent_dim, beta=self.beta, reconstruction=self.reconstruction
            ),
            # Flips and 90° turns: the synthetic cells lie at random angles, and what the treatment changes is their
            # shape, not their orientation. Without them the dimension that separates the groups best followed
            # roughness (ρ 0.32) and the known answer failed; with them it follows size (ρ 0.78), as it should.
            training=TrainSettings(
                epochs=self.epochs,
                batch_size=self.batch_size,
                split="random",
                seed=self.seed,
                accelerator="cpu",
                devices=1,
                preview_every_n_epochs=max(self.epochs, 1),
                augment_flips=True,
                augment_rot90=True,
            ),
        )


@dataclass
class DemoResult:
    """Where the demo wrote what, the crop set it built, the known-answer check and seconds per step."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    crop_set: CropSet | None = None
    latents: pd.DataFrame | None = None
    known_answer: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def write_sample_files(sample: SampleData, folder: Path) -> tuple[list[Path], list[Path]]:
    """Save each group's image and labels as OME-TIFF (with pixel sizes) and the factor table as CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = [], []
    for stack, label_image in zip(sample.images, sample.labels, strict=True):
        name = stack.source.removeprefix("synthetic-")
        spatial = {axis: stack.scale[axis] for axis in stack.spatial_axes if axis in stack.scale}
        images.append(write_stack(folder / f"{name}.ome.tif", stack, overwrite=True))
        label_stack = Stack(label_image, stack.spatial_axes, scale=spatial, channel_names=["labels"], source=name)
        labels.append(write_stack(folder / f"{name}_labels.ome.tif", label_stack, overwrite=True))
    sample.factors.to_csv(folder / "factors.csv", index=False)
    return images, labels


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, restoring the previous number after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def latent_statistics(latents: pd.DataFrame) -> dict[str, Any]:
    """The studies' numbers for a latent table: Cohen's d (treated − control), per-dimension KL, active units,
    empirical KL.

    ``groups`` is ``[reference, condition]``: d > 0 means higher in the condition.
    """
    from ..analysis.latent_summary import summarise_latents

    summary = summarise_latents(latents)
    effects = summary.require_two_groups()
    stats: dict[str, Any] = {
        "groups": [summary.reference, summary.condition],
        "cohens_d": effects.d.tolist(),
        "cohens_d_ci_low": effects.ci_low.tolist(),
        "cohens_d_ci_high": effects.ci_high.tolist(),
        "top_dimensions": summary.top(TOP_DIMENSIONS),
        "active_units": summary.active_units,
        "empirical_kl_nats": summary.empirical_kl,
    }
    if summary.kl is not None:
        stats["kl_per_dimension"] = summary.kl.tolist()
    return stats


def _prepare(out: Path, overwrite: bool) -> None:
    """Make ``out`` an empty folder: new, empty, or (with ``overwrite``) the output of an earlier demo run."""
    check_output(
        out,
        what="demo output folder",
        kind="folder",
        overwrite=overwrite,
        is_ours=lambda folder: (folder / MARKER).is_file(),
    )
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run_demo(
    out: str | Path,
    settings: DemoSettings | None = None,
    *,
    overwrite: bool = False,
    on_step: StepCallback | None = None,
) -> DemoResult:
    """Make the sample data, crop, train, embed, compute the statistics, save the analysis folder and the report.

    Parameters
    ----------
    out : path
        The output folder, which becomes an analysis folder. It must be new
        or empty; with ``overwrite`` an earlier demo output is replaced
        (never a folder the demo did not write).
    settings : DemoSettings
    on_step : callable, optional
        Called with a short message as each step starts.

    Returns
    -------
    DemoResult
        ``known_answer`` holds :func:`.report.check_known_answer`: whether the
        dimension with the largest |Cohen's d| follows a factor the treated
        group shifts (Spearman |ρ| > 0.5).
    """
    settings = settings or DemoSettings()
    out = Path(out)
    _prepare(out, overwrite)
    result = DemoResult(out=out)
    report = on_step or (lambda message: None)
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        result.seconds[step] = now - clock
        clock = now

    report("making synthetic control and treated cells")
    manifest = create_analysis(out)
    # Claim the folder first, so --overwrite can replace the outputs of a run that was interrupted.
    atomic_write_text(out / MARKER, json.dumps({"status": "running"}))
    sample = make_sample_data(settings.sample_settings())
    images, labels = write_sample_files(sample, out / "data")
    groups = [s.source.removeprefix("synthetic-") for s in sample.images]
    save_analysis(manifest, images=images, labels=labels, groups=groups)
    result.files.update(analysis=out / "analysis.json", data=out / "data", factors=out / "data" / "factors.csv")
    lap("sample")

    report("cropping every cell")
    job = CropJob(
        images=[str(p.resolve()) for p in images],
        labels=[str(p.resolve()) for p in labels],
        groups=groups,
        crop=settings.crop_settings(),
        preprocess=settings.preprocess(),
    )
    save_config(job, out / "crop_job.yaml")
    result.crop_set = run_crop_job(job, out / "crops")
    (out / "figures").mkdir(exist_ok=True)
    gallery = gallery_figure(result.crop_set.images, list(result.crop_set.table["group"]), seed=settings.seed)
    (out / "figures" / "crop_gallery.png").write_bytes(render_figure(gallery, dpi=120))
    result.files.update(
        crop_job=out / "crop_job.yaml", crops=out / "crops", gallery=out / "figures" / "crop_gallery.png"
    )
    lap("crops")

    config = settings.train_config()
    save_config(config, out / "train_config.yaml")
    report(f"training a {config.model.model} ({config.model.latent_dim} latent dims, {config.training.epochs} epochs)")
    with torch_threads(settings.threads), tempfile.TemporaryDirectory(prefix="morphospace-demo-ckpt-") as checkpoints:
        config.training.checkpoint_dir = checkpoints
        trained = train(result.crop_set, config.model, config.training)
        config.training.checkpoint_dir = None
        save_bundle(
            trained_bundle(trained, result.crop_set, train_settings=config.training, crop_set_origin="crops"),
            out / "model",
        )
        result.files.update(train_config=out / "train_config.yaml", model=out / "model")
        lap("train")

        report("embedding every crop")
        result.latents = embed(trained.model, result.crop_set)
    lap("embed")

    report("computing the statistics and checking the known answer")
    statistics = latent_statistics(result.latents)
    try:
        result.known_answer = check_known_answer(result.latents, sample.factors, list(TREATED_SHIFTS))
    except NotAvailable as err:
        result.known_answer = {"passed": False, "not_available": str(err)}
    statistics["known_answer"] = result.known_answer
    atomic_write_text(out / "statistics.json", json.dumps(statistics, indent=2, allow_nan=True))
    result.files["statistics"] = out / "statistics.json"
    save_analysis(
        manifest,
        crop_set=out / "crops",
        model=out / "model",
        latents=result.latents,
        factors=out / "data" / "factors.csv",
        crop_job=out / "crop_job.yaml",
        plot_settings={
            "x": f"mu_{statistics['top_dimensions'][0]}",
            "y": f"mu_{statistics['top_dimensions'][min(1, len(statistics['top_dimensions']) - 1)]}",
            "colour_by": "group",
        },
    )
    result.files["latents"] = out / "latents.parquet"
    lap("statistics")

    report("writing the HTML report")
    result.files["report"] = write_report(out, out / "report.html", overwrite=True)
    lap("report")

    summary = {
        "status": "finished",
        "settings": to_dict(settings),
        "files": {key: str(path.relative_to(out)) for key, path in result.files.items()},
        "seconds": {key: round(value, 2) for key, value in result.seconds.items()},
        "total_seconds": round(sum(result.seconds.values()), 2),
        "n_crops": len(result.crop_set),
        "known_answer": result.known_answer,
    }
    atomic_write_text(out / MARKER, json.dumps(summary, indent=2, allow_nan=True))
    return result
