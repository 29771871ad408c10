"""The studies' model comparisons as one workflow: a grid of ordinary training runs, scored on one held-out test split.

The macrophage study compared β-VAE, β-TCVAE and ME-VAE on the same crops;
the Statistical Cell study swept β over 25 models and plotted the ELBO terms
against β on held-out data; the thesis compared MaxPool and strided-BN blocks,
depths 2/3/4, latent sizes 2 and 20, and the interpolated (adaptive) depth
against fixed depths. A sweep does any of these from one config
(:class:`SweepSettings`: a base ``model:`` and ``training:`` section as for
``morphospace train``, and grid axes as lists):

* The crop set is split **once** into train / validation / test by source
  image (:func:`split_for_sweep`) and the split is recorded in the sweep
  folder (``split.csv``): every run trains on the same crops and is scored on
  the same held-out test crops, which no run saw during training or model
  selection.
* Every grid point is an ordinary training run: :func:`~napari_morphospace.core.training.engine.train`,
  the engine of ``morphospace train``, with its own folder
  (``runs/<index>-<name>/``: the model bundle, Lightning checkpoints and
  ``run.json``). A cluster runs the same config one grid point per job
  (``morphospace sweep --index K``, e.g. a SLURM array) and then collects.
* Each run is scored on the test split (:func:`evaluate_run`) by the same
  functions that diagnose every training (:mod:`~napari_morphospace.core.training.diagnostics`): the ELBO
  terms with z sampled, KL per dimension (each encoder's own for the ME-VAE)
  and active units in eval mode, reconstruction SSIM, the train/eval spread
  ratio and the warnings (:func:`~napari_morphospace.core.training.diagnostics.diagnose_training`); the
  ridge probe from the latent means to the crops' measurement columns next to
  the same probe on a pixel PCA, cross-validated over all crops with folds
  grouped by source image (:func:`~napari_morphospace.core.training.diagnostics.representation_probe`); and
  |Cohen's d| per dimension between the two groups of the test crops.
* A failed grid point is recorded with its message and the sweep goes on.
  ``run.json`` is written last and atomically: a run folder without it did
  not finish. Running the same command again reruns what is missing or failed.

:func:`collect_sweep` builds the comparison table (``comparison.csv``), the
figures and the HTML report (:mod:`.sweep_report`) from a sweep folder.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..analysis.cell_table import require_mu_columns
from ..analysis.embed import embed
from ..analysis.statistics import cohens_d
from ..cells.crop_set import CROP_TABLE_COLUMNS, CropSet, bbox_columns
from ..config import from_dict, load_config, save_config, to_dict
from ..errors import InputError
from ..files import atomic_write_text
from ..models import ModelSettings, MorphoVAE
from ..models.settings import BlockKind, ModelName
from ..outputs import check_output
from ..training.bundle import save_bundle
from ..training.diagnostics import diagnose_training, representation_probe
from ..training.engine import (
    StopFlag,
    TrainSettings,
    TrainUpdate,
    split_crops,
    train,
    trained_bundle,
)

SETTINGS_NAME = "sweep.yaml"
MARKER_NAME = "sweep.json"
SPLIT_NAME = "split.csv"
RUNS_FOLDER = "runs"
RUN_RECORD = "run.json"
TABLE_NAME = "comparison.csv"
FIGURES_FOLDER = "figures"
REPORT_NAME = "report.html"
#: Everything a sweep folder holds; any other file means the folder belongs to something else.
SWEEP_FILES = {SETTINGS_NAME, MARKER_NAME, SPLIT_NAME, RUNS_FOLDER, TABLE_NAME, FIGURES_FOLDER, REPORT_NAME}
#: Models a sweep compares. The conditional model trains in two stages on a label column;
#: train it with ``morphospace train``.
SWEEP_MODELS = ("beta-vae", "beta-tcvae", "me-vae")
#: Crop-table columns that identify a crop or place it, never probed.
_NOT_MEASUREMENTS = {*CROP_TABLE_COLUMNS, *bbox_columns(3), "centroid_z", "centroid_y", "centroid_x"}


# ---------------------------------------------------------------- settings


@dataclass
class SweepGrid:
    """The axes of the grid: one list of values per setting; an empty list keeps the base value.

    ``beta`` is the weight of the KL term (``model.beta``); for β-TCVAE it is
    the weight of the total correlation (``model.tc_beta``, the β of Chen et
    al.), since β-TCVAE does not use ``beta``. ``depth``: ``null`` (None) is
    the adaptive (interpolated) depth rule, a number a fixed depth. The grid
    is every combination, in the order model, beta, latent_dim, depth, block.
    """

    model: list[ModelName] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)
    latent_dim: list[int] = field(default_factory=list)
    depth: list[int | None] = field(default_factory=list)
    block: list[BlockKind] = field(default_factory=list)

    def axes(self) -> list[tuple[str, list[Any]]]:
        """The swept axes (non-empty lists), in grid order."""
        return [
            (name, list(getattr(self, name)))
            for name in ("model", "beta", "latent_dim", "depth", "block")
            if getattr(self, name)
        ]


@dataclass
class SweepSettings:
    """A sweep: base settings (``model:``, ``training:``, as for ``morphospace train``), the grid, the test split.

    ``test_fraction``: share of the crops held out for testing, by whole
    source images (``training.split``), before the usual train/validation
    split of the rest (``training.val_fraction``). ``elbo_samples``: draws of
    z per test crop for the reconstruction term. ``probe_columns``:
    crop-table columns the latent probe predicts; None takes every numeric
    column that is not an id or a bounding box (e.g. ``area``).
    """

    model: ModelSettings = field(default_factory=ModelSettings)
    training: TrainSettings = field(default_factory=TrainSettings)
    grid: SweepGrid = field(default_factory=SweepGrid)
    test_fraction: float = 0.2
    elbo_samples: int = 10
    probe_columns: list[str] | None = None

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise InputError(f"test_fraction is {self.test_fraction}; use a fraction between 0 and 1, e.g. 0.2")
        if self.elbo_samples < 1:
            raise InputError(f"elbo_samples is {self.elbo_samples}; use at least 1 (the Statistical Cell used 10)")
        grid_points(self)  # every grid point must be valid settings before anything trains


@dataclass
class GridPoint:
    """One run of the grid: its ``index``, folder ``name``, the swept ``values`` and the resulting model settings."""

    index: int
    name: str
    values: dict[str, Any]
    model: ModelSettings


def effective_beta(settings: ModelSettings) -> float:
    """The β a model is compared by: ``tc_beta`` for β-TCVAE, else ``beta``."""
    return settings.tc_beta if settings.model == "beta-tcvae" else settings.beta


def _point_settings(base: ModelSettings, values: dict[str, Any]) -> ModelSettings:
    data = to_dict(base)
    data.update({k: v for k, v in values.items() if k != "beta"})
    if data["model"] == "beta-tcvae":
        data["beta"] = ModelSettings().beta  # unused by β-TCVAE: the grid's β is its tc_beta
        if "beta" in values:
            data["tc_beta"] = values["beta"]
    elif "beta" in values:
        data["beta"] = values["beta"]
    return from_dict(ModelSettings, data, where="model")


def _point_name(index: int, values: dict[str, Any]) -> str:
    """``"003_beta-tcvae_beta4_latent2"``: the index, then each swept value (``depthauto`` for the adaptive rule)."""
    labels = {"model": "", "beta": "beta", "latent_dim": "latent", "depth": "depth", "block": ""}
    parts = [
        f"{labels[k]}{'auto' if v is None else f'{v:g}' if isinstance(v, float) else v}" for k, v in values.items()
    ]
    return "_".join([f"{index:03d}", *parts]) if parts else f"{index:03d}_base"


def grid_points(settings: SweepSettings) -> list[GridPoint]:
    """Every combination of the grid axes as model settings, in grid order (one point when nothing is swept).

    Raises
    ------
    InputError
        Naming the first grid point whose settings are invalid, or a model
        the sweep does not compare.
    """
    axes = settings.grid.axes()
    names = [name for name, _ in axes]
    points = []
    for index, combination in enumerate(itertools.product(*[values for _, values in axes])):
        values = dict(zip(names, combination, strict=True))
        name = _point_name(index, values)
        try:
            model = _point_settings(settings.model, values)
        except InputError as err:
            raise InputError(f"grid point {index} ({name}): {err}") from err
        if model.model not in SWEEP_MODELS:
            raise InputError(
                f"grid point {index} ({name}): the sweep compares {', '.join(SWEEP_MODELS)}; "
                f"{model.model!r} trains in two stages on a label column: train it with 'morphospace train'"
            )
        points.append(GridPoint(index, name, values, model))
    return points


def load_sweep_settings(path: str | Path) -> SweepSettings:
    """Read a sweep config (YAML or JSON) into :class:`SweepSettings`."""
    return load_config(path, SweepSettings)


# ---------------------------------------------------------------- the split


@dataclass
class SweepSplit:
    """Row positions of the crops each run trains on, validates on, and is tested on;
    ``note`` when a split fell back."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def fit(self) -> np.ndarray:
        """Training and validation crops, sorted: the crop set every run is given."""
        return np.sort(np.concatenate([self.train, self.val]))

    def table(self, crop_table: pd.DataFrame) -> pd.DataFrame:
        """``crop_id``, ``source``, ``part`` (train / val / test) per crop, in crop-set order."""
        part = np.empty(len(crop_table), dtype=object)
        part[self.train], part[self.val], part[self.test] = "train", "val", "test"
        return pd.DataFrame(
            {
                "crop_id": crop_table["crop_id"].to_numpy(),
                "source": crop_table["source"].astype(str).to_numpy(),
                "part": part,
            }
        )


def split_for_sweep(crop_table: pd.DataFrame, settings: SweepSettings) -> SweepSplit:
    """Hold out the test crops by source image, then split the rest as
    :func:`~napari_morphospace.core.training.engine.train` will.

    The test split takes whole source images (``training.split="source"``)
    until ``test_fraction`` of the crops; the train/validation split of the
    rest is the one the training engine makes from the same settings and
    seed, so ``split.csv`` records exactly what every run used.
    """
    training = settings.training
    outer = split_crops(crop_table, val_fraction=settings.test_fraction, method=training.split, seed=training.seed)
    rest = outer.train
    inner = split_crops(
        crop_table.iloc[rest].reset_index(drop=True),
        val_fraction=training.val_fraction,
        method=training.split,
        seed=training.seed,
    )
    notes = [f"test split: {outer.note}"] if outer.note else []
    notes += [f"validation split: {inner.note}"] if inner.note else []
    if len(outer.val) < 3:
        raise InputError(
            f"the test split has {len(outer.val)} crop(s); it needs at least 3. Raise test_fraction or add crops"
        )
    return SweepSplit(train=rest[inner.train], val=rest[inner.val], test=np.sort(outer.val), notes=notes)


# ---------------------------------------------------------------- scoring one run on the test split


def probe_targets(table: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    """The crop-table measurements a latent probe predicts: ``columns``, or every numeric non-id column that varies."""
    if columns is not None:
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise InputError(
                f"probe_columns {', '.join(missing)} are not in the crop table; "
                f"it has {', '.join(map(str, table.columns))}"
            )
        chosen = list(columns)
    else:
        chosen = [
            c
            for c in table.columns
            if c not in _NOT_MEASUREMENTS
            and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c])
        ]
    targets = table[chosen].apply(pd.to_numeric, errors="coerce").astype(float)
    return targets.loc[:, targets.notna().all() & (targets.std() > 0)]


def evaluate_run(model: MorphoVAE, crop_set: CropSet, split: SweepSplit, settings: SweepSettings) -> dict[str, Any]:
    """Score a trained model (see the module docstring); JSON-ready values, NaN where undefined.

    ``diagnostics`` is :func:`~napari_morphospace.core.training.diagnostics.diagnose_training` on the test
    crops (``elbo_samples`` draws of z, the training seed). ``probe`` is
    :func:`~napari_morphospace.core.training.diagnostics.representation_probe` on every crop of the sweep,
    folds grouped by source image, the pixel PCA fitted on the training
    crops (or None, with ``probe_note`` saying why): the test split holds
    few source images, and folds of one or two images would extrapolate
    from one condition to another rather than measure what the latents know.
    """
    test_images = np.asarray(crop_set.subset(split.test).images, dtype=np.float32)
    diagnostics = diagnose_training(model, test_images, elbo_samples=settings.elbo_samples, seed=settings.training.seed)
    latents = embed(model, crop_set)
    mu = latents[require_mu_columns(latents)].to_numpy(dtype=float)
    metrics: dict[str, Any] = {"test_crops": int(len(split.test)), "diagnostics": diagnostics.to_dict()}
    metrics.update(_probe(crop_set, split, settings, mu))
    metrics.update(_effect_sizes(crop_set.table.iloc[split.test], mu[split.test]))
    return metrics


def _probe(crop_set: CropSet, split: SweepSplit, settings: SweepSettings, mu: np.ndarray) -> dict[str, Any]:
    """The representation probe on every crop, or None and a note when the crops cannot be probed."""
    targets = probe_targets(crop_set.table, settings.probe_columns)
    if targets.shape[1] == 0:
        return {
            "probe": None,
            "probe_note": "the crop table has no numeric measurement column that varies (e.g. area) to probe",
        }
    images = np.asarray(crop_set.images, dtype=np.float32)
    try:
        probe = representation_probe(
            mu, images, targets, crop_set.table["source"].astype(str), pca_fit=images[split.train]
        )
    except InputError as err:  # e.g. too few crops
        return {"probe": None, "probe_note": f"no probe: {err}"}
    return {"probe": probe.to_dict(), "probe_note": probe.note}


def _effect_sizes(test_table: pd.DataFrame, mu: np.ndarray) -> dict[str, Any]:
    """|Cohen's d| per dimension between the first two groups of the test crops (second against first)."""
    groups = test_table["group"].astype(str).to_numpy()
    names = list(pd.unique(groups))
    if len(names) < 2 or min((groups == n).sum() for n in names[:2]) < 2:
        return {
            "abs_cohens_d": [],
            "effect_groups": names,
            "max_abs_cohens_d": float("nan"),
            "effect_note": "the test crops need two groups with at least 2 crops each for Cohen's d",
        }
    effects = cohens_d(mu[groups == names[1]], mu[groups == names[0]])
    magnitude = np.abs(np.nan_to_num(np.asarray(effects.d, dtype=float)))
    return {
        "abs_cohens_d": [float(v) for v in magnitude],
        "effect_groups": names[:2],
        "max_abs_cohens_d": float(magnitude.max()),
    }


# ---------------------------------------------------------------- running


SweepStatus = Literal["training", "ok", "failed", "stopped", "skipped"]


@dataclass
class SweepProgress:
    """Progress of a sweep: grid point ``index`` of ``total``, its ``status`` and, while training, the epoch."""

    index: int
    total: int
    name: str
    status: SweepStatus
    epoch: int | None = None
    epochs: int | None = None
    message: str = ""


def _crop_set_fingerprint(table: pd.DataFrame) -> str:
    """Identifies the crops (ids and sources, in order): a sweep folder refuses runs on other crops."""
    text = "\n".join(f"{c}\t{s}" for c, s in zip(table["crop_id"], table["source"].astype(str), strict=True))
    return hashlib.sha1(text.encode()).hexdigest()


def prepare_sweep(
    crop_set: CropSet, settings: SweepSettings, folder: str | Path, *, crop_set_origin: str = ""
) -> SweepSplit:
    """Create (or reopen) a sweep folder: settings, crop-set identity and the split, each written atomically.

    A folder made by the same settings on the same crops is reopened as it is
    (so several cluster jobs can start at once); another sweep's folder is
    refused.
    """
    folder = check_output(folder, what="sweep folder", kind="folder", overwrite=True)  # a file, read-only, full disk
    crop_set.validate()
    split = split_for_sweep(crop_set.table, settings)
    identity = {"settings": to_dict(settings), "crop_set": _crop_set_fingerprint(crop_set.table)}
    marker = folder / MARKER_NAME
    foreign = (
        [p.name for p in folder.iterdir() if p.name not in SWEEP_FILES and not p.name.startswith(".")]
        if folder.is_dir()
        else []
    )
    if foreign:
        raise InputError(
            f"{folder} holds other files ({', '.join(sorted(foreign)[:3])}); choose a new or empty output folder"
        )
    if marker.exists():
        found = json.loads(marker.read_text())
        if {k: found.get(k) for k in identity} != identity:
            raise InputError(f"{folder} holds another sweep (other settings or crops); choose another output folder")
    folder.mkdir(parents=True, exist_ok=True)
    save_config(settings, folder / SETTINGS_NAME)
    atomic_write_text(folder / SPLIT_NAME, split.table(crop_set.table).to_csv(index=False))
    points = grid_points(settings)
    atomic_write_text(
        marker,
        json.dumps(
            {
                **identity,
                "crop_set_origin": crop_set_origin,
                "n_crops": len(crop_set),
                "split_notes": split.notes,
                "points": [p.name for p in points],
            },
            indent=2,
        ),
    )
    return split


def run_sweep(
    crop_set: CropSet,
    settings: SweepSettings,
    folder: str | Path,
    *,
    index: int | None = None,
    crop_set_origin: str = "",
    on_update: Callable[[SweepProgress], None] | None = None,
    stop_event: StopFlag | None = None,
) -> pd.DataFrame | None:
    """Train and score the grid points not yet done (or only point ``index``), then collect the folder.

    Returns the comparison table (:func:`collect_sweep`), or None when only
    one point was run (``index``; collect once every job has finished) and
    in all but the first process of distributed (DDP) training, which writes
    every file.
    Points whose ``run.json`` says "ok" are skipped; failed, stopped and
    unfinished points run again. Set ``stop_event`` to stop within one
    training step; the remaining points are left for the next run.
    """
    folder = Path(folder)
    split = prepare_sweep(crop_set, settings, folder, crop_set_origin=crop_set_origin)
    points = grid_points(settings)
    if index is not None and not 0 <= index < len(points):
        raise InputError(f"--index {index} is outside the grid: it has {len(points)} point(s), 0 to {len(points) - 1}")
    chosen = points if index is None else [points[index]]
    writer = True  # False in the other processes of distributed training, which leave the files to the first
    for point in chosen:
        if stop_event is not None and stop_event.is_set():
            break
        record = read_run_record(folder, point)
        if record is not None and record.get("status") == "ok":
            if on_update is not None:
                on_update(SweepProgress(point.index, len(points), point.name, "skipped", message="done before"))
            continue
        record = run_point(
            crop_set, settings, split, point, folder, total=len(points), on_update=on_update, stop_event=stop_event
        )
        writer = writer and record.get("is_global_zero", True)
    return collect_sweep(folder) if index is None and writer else None


def run_point(
    crop_set: CropSet,
    settings: SweepSettings,
    split: SweepSplit,
    point: GridPoint,
    folder: Path,
    *,
    total: int,
    on_update: Callable[[SweepProgress], None] | None = None,
    stop_event: StopFlag | None = None,
) -> dict[str, Any]:
    """Train one grid point with the ordinary engine into its own folder, score it, write ``run.json`` last.

    Any error is recorded in ``run.json`` (status "failed", the message and
    the traceback) instead of raised, so the sweep goes on. Under
    distributed training only the first process saves, scores and records.
    """
    run_dir = folder / RUNS_FOLDER / point.name
    (run_dir / RUN_RECORD).unlink(missing_ok=True)  # until it is written again, the run has not finished
    training = replace(settings.training, checkpoint_dir=str(run_dir / "checkpoints"))
    record: dict[str, Any] = {
        "index": point.index,
        "name": point.name,
        "values": point.values,
        "model_settings": to_dict(point.model),
        "train_crops": int(len(split.train)),
        "val_crops": int(len(split.val)),
    }
    started = time.perf_counter()

    def send(status: SweepStatus, **extra: Any) -> None:
        if on_update is not None:
            on_update(SweepProgress(point.index, total, point.name, status, **extra))

    def forward(message: Any) -> None:
        if isinstance(message, TrainUpdate) and message.val_losses is not None:
            send("training", epoch=message.epoch + 1, epochs=training.epochs)

    send("training", epoch=0, epochs=training.epochs)
    try:
        fit_crops = crop_set.subset(split.fit)
        result = train(fit_crops, point.model, training, on_update=forward, stop_event=stop_event)
        if not result.is_global_zero:  # distributed training: only the first process writes
            return {**record, "status": "other process", "is_global_zero": False}
        record.update(best_val_loss=result.best_val_loss, epochs_trained=len(result.history))
        if result.stopped_by_user:
            record.update(status="stopped", message="stopped by the user before the end of training")
        else:
            origin = f"sweep {folder.resolve()} (train and validation split)"
            bundle = trained_bundle(result, fit_crops, train_settings=training, crop_set_origin=origin)
            save_bundle(bundle, run_dir / "bundle", overwrite=True)
            assert isinstance(result.model, MorphoVAE)  # a sweep's models are single VAEs (SWEEP_MODELS)
            record.update(
                status="ok",
                message="",
                bundle=str(Path(RUNS_FOLDER) / point.name / "bundle"),
                test=evaluate_run(result.model, crop_set, split, settings),
            )
    except Exception as err:  # a failed grid point must not end the sweep: record why
        message = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
        record.update(status="failed", message=message, traceback=traceback.format_exc())
    record["seconds"] = time.perf_counter() - started
    atomic_write_text(run_dir / RUN_RECORD, json.dumps(_json_ready(record), indent=2, allow_nan=False) + "\n")
    send(record["status"], message=record.get("message", ""))
    return record


def _json_ready(value: Any) -> Any:
    """Builtins for JSON, NaN and infinities as None."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def read_run_record(folder: str | Path, point: GridPoint) -> dict[str, Any] | None:
    """The ``run.json`` of a grid point, or None when it has not finished."""
    path = Path(folder) / RUNS_FOLDER / point.name / RUN_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------- collecting


TABLE_COLUMNS = [
    "index",
    "name",
    "status",
    "model",
    "beta",
    "latent_dim",
    "depth",
    "block",
    "elbo_rec",
    "elbo_kl",
    "elbo",
    "active_units",
    "ssim",
    "spread_ratio",
    "probe_r2",
    "pca_probe_r2",
    "max_abs_cohens_d",
    "warnings",
    "best_val_loss",
    "epochs_trained",
    "seconds",
    "message",
    "bundle",
]


def comparison_table(folder: str | Path) -> pd.DataFrame:
    """One row per grid point: its settings, status and test-split scores ("not run" for points without ``run.json``).

    ``beta`` is :func:`effective_beta` (``tc_beta`` for β-TCVAE); ``depth``
    is empty for the adaptive rule; ``warnings`` names the diagnostics'
    problems ("collapsed", "learned little", ...), whose sentences are in ``run.json``.
    """
    folder = Path(folder)
    settings = open_sweep_settings(folder)
    rows = []
    for point in grid_points(settings):
        record = read_run_record(folder, point) or {"status": "not run", "message": ""}
        test = record.get("test") or {}
        diagnostics, probe = test.get("diagnostics") or {}, test.get("probe") or {}
        model = point.model
        rows.append(
            {
                "index": point.index,
                "name": point.name,
                "status": record["status"],
                "model": model.model,
                "beta": effective_beta(model),
                "latent_dim": model.latent_dim,
                "depth": model.depth,
                "block": model.block,
                "elbo_rec": diagnostics.get("elbo_rec"),
                "elbo_kl": diagnostics.get("elbo_kl"),
                "elbo": diagnostics.get("elbo"),
                "active_units": diagnostics.get("active_units"),
                "ssim": diagnostics.get("heldout_ssim"),
                "spread_ratio": diagnostics.get("spread_ratio"),
                "probe_r2": probe.get("latent_mean"),
                "pca_probe_r2": probe.get("pca_mean"),
                "max_abs_cohens_d": test.get("max_abs_cohens_d"),
                "warnings": ", ".join(diagnostics.get("problems", [])),
                "best_val_loss": record.get("best_val_loss"),
                "epochs_trained": record.get("epochs_trained"),
                "seconds": record.get("seconds"),
                "message": record.get("message", ""),
                "bundle": record.get("bundle", ""),
            }
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    numeric = [
        "elbo_rec",
        "elbo_kl",
        "elbo",
        "ssim",
        "spread_ratio",
        "probe_r2",
        "pca_probe_r2",
        "max_abs_cohens_d",
        "best_val_loss",
        "seconds",
    ]
    table[numeric] = table[numeric].astype(float)
    table["depth"] = table["depth"].astype("Int64")
    table[["active_units", "epochs_trained"]] = table[["active_units", "epochs_trained"]].astype("Int64")
    return table


def open_sweep_settings(folder: str | Path) -> SweepSettings:
    """The settings of a sweep folder (its ``sweep.yaml``)."""
    path = Path(folder) / SETTINGS_NAME
    if not path.is_file():
        raise InputError(
            f"{folder} is not a sweep folder (no {SETTINGS_NAME}); run 'morphospace sweep --config' into it first"
        )
    return load_sweep_settings(path)


def run_records(folder: str | Path) -> list[dict[str, Any]]:
    """The ``run.json`` of every finished grid point, in grid order."""
    settings = open_sweep_settings(folder)
    return [r for r in (read_run_record(folder, p) for p in grid_points(settings)) if r is not None]


def collect_sweep(folder: str | Path) -> pd.DataFrame:
    """Write ``comparison.csv``, the figures and ``report.html`` of a sweep folder; return the table."""
    from .sweep_report import write_sweep_report

    folder = Path(folder)
    table = comparison_table(folder)
    atomic_write_text(folder / TABLE_NAME, table.to_csv(index=False))
    write_sweep_report(folder, table)
    return table


__all__ = [
    "GridPoint",
    "SweepGrid",
    "SweepProgress",
    "SweepSettings",
    "SweepSplit",
    "collect_sweep",
    "comparison_table",
    "effective_beta",
    "evaluate_run",
    "grid_points",
    "load_sweep_settings",
    "open_sweep_settings",
    "prepare_sweep",
    "probe_targets",
    "read_run_record",
    "run_point",
    "run_records",
    "run_sweep",
    "split_for_sweep",
]
