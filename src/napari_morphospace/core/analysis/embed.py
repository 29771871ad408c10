"""Embed crops with a trained model: one row of posterior means and log-variances per crop.

The crop set may be one the model never saw, e.g. drug-treated cells embedded
with a model trained on controls (as in the Statistical Cell drug study): the
encoder is applied as is, in eval mode, so the new cells land in the same
latent space as the training cells.

A crop set on disk streams: batches are read in order, the next one while the
model encodes the current one, so a set larger than memory embeds at the
speed of one held in memory. :func:`embed_on_cluster` splits a set on disk
into blocks encoded by dask.distributed workers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..cells.crop_set import (
    CropSet,
    block_length,
    check_crop_values,
    load_crop_set,
    read_crops,
)
from ..errors import InputError
from ..models import Condition, MorphoVAE, StackedConditionalVAE
from ..parallel import ordered_map, worker_threads
from ..training.bundle import Bundle, check_compatible, load_bundle

if TYPE_CHECKING:  # the training module imports Lightning, which embedding does not need
    from ..training.engine import StopFlag


def embed(
    model_or_bundle: MorphoVAE | StackedConditionalVAE | Bundle,
    crop_set: CropSet,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    label_column: str | None = None,
    label_classes: list[Any] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    stop_event: StopFlag | None = None,
    allow_preprocessing_mismatch: bool = False,
) -> pd.DataFrame:
    """Posterior means and log-variances of every crop, as a table keyed by ``crop_id``.

    Parameters
    ----------
    model_or_bundle : MorphoVAE, StackedConditionalVAE or Bundle
        A bundle is first checked against the crop set (channels, crop shape,
        preprocessing: :func:`~napari_morphospace.core.training.bundle.check_compatible`) and supplies
        ``label_column``/``label_classes`` of its training.
    crop_set : CropSet
        Crops ``(N, C, [Z,] Y, X)`` float32 in [0, 1]; zarr-backed sets are
        read one batch at a time (the next while this one is encoded), never in
        full, and every batch is checked to hold finite values in [0, 1] (a
        damaged set is refused, not embedded).
    batch_size : int
    device : str or torch.device
        Where to run the encoder (e.g. "cuda:0").
    label_column, label_classes : optional
        Conditional model only: the crop-table column with the structure or
        condition label and its values in one-hot order, as in training.
    on_progress : callable, optional
        Called with ``(crops done, crops total)`` after every batch.
    stop_event : object with ``is_set()``, optional
        Checked before every batch; when set, embedding stops and returns
        the rows done so far.
    allow_preprocessing_mismatch : bool
        Embed (with a warning) crops made with other crop or preprocessing
        settings than the bundle's training crops, instead of refusing them.

    Returns
    -------
    pandas.DataFrame
        ``crop_id, mu_0..mu_{D-1}, logvar_0..logvar_{D-1}``, then the crop
        table's other columns, one row per crop in crop-set order. For the
        conditional model (``cond-vae``) the latents are the target encoder's,
        conditioned on the crop's reference channels and label (the
        reference model's own latents come from passing ``model.reference``
        and a crop set of the reference channels).

    Notes
    -----
    The model runs in eval mode without gradients: BatchNorm uses its running
    statistics and ``mu`` is deterministic (the ME-VAE uses the untransformed
    crop for every view), so the same crop always gets the same row.
    """
    if batch_size < 1:
        raise InputError(f"batch_size is {batch_size}; use at least 1")
    device = check_device(device)
    if isinstance(model_or_bundle, Bundle):
        differences = check_compatible(
            model_or_bundle, crop_set, allow_preprocessing_mismatch=allow_preprocessing_mismatch
        )
        if differences:
            warnings.warn(
                "embedding crops made differently from the model's training crops: " + "; ".join(differences),
                UserWarning,
                stacklevel=2,
            )
        model = model_or_bundle.model
        label_column = label_column or model_or_bundle.config.get("train_settings", {}).get("label_column")
        label_classes = label_classes or model_or_bundle.label_classes
    else:
        model = model_or_bundle
    encode = _encoder(model, crop_set, label_column, label_classes)
    model.to(device).eval()
    mus, logvars = [], []
    done = 0
    with torch.no_grad():
        for images in _batches_read_ahead(crop_set.images, batch_size):
            if stop_event is not None and stop_event.is_set():
                break
            check_crop_values(images, crop_set.table["crop_id"].iloc[done : done + len(images)])
            mu, logvar = encode(torch.from_numpy(images).to(device), slice(done, done + len(images)))
            mus.append(mu.float().cpu().numpy())
            logvars.append(logvar.float().cpu().numpy())
            done += len(images)
            if on_progress is not None:
                on_progress(done, len(crop_set))
    return _latent_table(crop_set.table.iloc[:done], mus, logvars, int(model.settings.latent_dim))


def check_device(device: str | torch.device) -> torch.device:
    """The torch device named ``device``, refused in one line when it is not a device name or this machine lacks it."""
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"{device!r} is not a torch device name; use cpu, cuda, cuda:0 or mps") from err
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(
                f"device {str(device)!r} needs CUDA, which this machine (or this torch build) lacks; use --device cpu"
            )
        if chosen.index is not None and chosen.index >= count:
            raise InputError(
                f"device {str(device)!r} does not exist: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {str(device)!r} needs Apple's MPS, which this machine lacks; use --device cpu")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device type {chosen.type!r} is not supported; use cpu, cuda, cuda:0 or mps")
    return chosen


def _batches_read_ahead(images: Any, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive batches of ``images`` as float32 arrays, each read while the previous one is in use."""
    n = int(images.shape[0])
    starts = range(0, n, batch_size)
    if isinstance(images, np.ndarray):
        yield from (np.asarray(images[a : a + batch_size], dtype=np.float32) for a in starts)
        return
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = None
        for a in starts:
            following = reader.submit(read_crops, images, np.arange(a, min(a + batch_size, n)))
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def embed_on_cluster(
    client: Any,
    bundle_path: str | os.PathLike,
    crops_path: str | os.PathLike,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    allow_preprocessing_mismatch: bool = False,
) -> pd.DataFrame:
    """:func:`embed` of the crop set at ``crops_path``, split into blocks encoded by dask.distributed workers.

    Each task loads the bundle, reads one block of crops (a shard) from disk
    and encodes it with as many torch threads as its worker has; the rows
    come back in crop-set order, identical to :func:`embed` in one process.
    Workers must see both folders at the same paths.
    """
    crop_set = load_crop_set(crops_path, in_memory=False)
    differences = check_compatible(
        load_bundle(bundle_path), crop_set, allow_preprocessing_mismatch=allow_preprocessing_mismatch
    )
    if differences:
        warnings.warn(
            "embedding crops made differently from the model's training crops: " + "; ".join(differences),
            UserWarning,
            stacklevel=2,
        )
    block = block_length(crop_set.images)
    tasks = [
        (str(bundle_path), str(crops_path), start, min(start + block, len(crop_set)), batch_size, device)
        for start in range(0, len(crop_set), block)
    ]
    parts = list(ordered_map(client, _embed_block, tasks))
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else embed(load_bundle(bundle_path), crop_set, allow_preprocessing_mismatch=True)
    )


def _embed_block(task: tuple[str, str, int, int, int, str]) -> pd.DataFrame:
    """One task of :func:`embed_on_cluster`: the latent rows of crops ``start:stop``."""
    bundle_path, crops_path, start, stop, batch_size, device = task
    torch.set_num_threads(worker_threads())
    crop_set = load_crop_set(crops_path, in_memory=False)
    block = CropSet(
        crop_set.images[start:stop],
        crop_set.table.iloc[start:stop],
        crop_set.channel_names,
        crop_set.spacing,
        crop_set.preprocess,
    )
    # Checked (and warned about) once by embed_on_cluster, before the tasks started.
    return embed(
        load_bundle(bundle_path, map_location=device),
        block,
        batch_size=batch_size,
        device=device,
        allow_preprocessing_mismatch=True,
    )


def _encoder(
    model: MorphoVAE | StackedConditionalVAE,
    crop_set: CropSet,
    label_column: str | None,
    label_classes: list[Any] | None,
) -> Callable[[torch.Tensor, slice], tuple[torch.Tensor, torch.Tensor]]:
    """A function ``(images, rows) -> (mu, logvar)`` for this kind of model."""
    if not isinstance(model, StackedConditionalVAE):
        return lambda images, rows: model.encode(images)
    num_labels = model.settings.cond_num_labels
    codes = _label_codes(crop_set, label_column, label_classes, num_labels) if num_labels else None

    def encode_target(images: torch.Tensor, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        reference, target = model.split_channels(images)
        label = None
        if codes is not None:
            label = F.one_hot(torch.from_numpy(codes[rows]).to(images.device), num_labels).to(images.dtype)
        return model.target.encode(target, Condition(reference, label))

    return encode_target


def _label_codes(
    crop_set: CropSet, label_column: str | None, label_classes: list[Any] | None, num_labels: int
) -> np.ndarray:
    """One-hot positions of each crop's label, using the training order of the classes."""
    if label_column is None or not label_classes:
        raise InputError(
            f"this conditional model needs each crop's label ({num_labels} classes); "
            "pass label_column and label_classes, or embed with the model's bundle"
        )
    if label_column not in crop_set.table.columns:
        raise InputError(f"the crop table has no column {label_column!r}, which the model was trained with")
    position = {value: i for i, value in enumerate(label_classes)}
    values = crop_set.table[label_column].tolist()
    unknown = sorted({str(v) for v in values if v not in position})
    if unknown:
        raise InputError(
            f"column {label_column!r} has value(s) {', '.join(unknown)} the model was not trained with; "
            f"it knows {', '.join(map(str, label_classes))}"
        )
    return np.array([position[v] for v in values], dtype=np.int64)


def _latent_table(table: pd.DataFrame, mus: list[np.ndarray], logvars: list[np.ndarray], dim: int) -> pd.DataFrame:
    """``crop_id``, ``mu_*``, ``logvar_*``, then the crop table's other columns."""
    mu = np.concatenate(mus) if mus else np.zeros((0, dim), np.float32)
    logvar = np.concatenate(logvars) if logvars else np.zeros((0, dim), np.float32)
    latents = pd.DataFrame(
        np.concatenate([mu, logvar], axis=1),
        columns=[f"mu_{i}" for i in range(dim)] + [f"logvar_{i}" for i in range(dim)],
    )
    table = table.reset_index(drop=True)
    others = table.drop(columns=["crop_id"])
    return pd.concat([table[["crop_id"]], latents, others], axis=1)


__all__ = ["check_device", "embed", "embed_on_cluster"]
