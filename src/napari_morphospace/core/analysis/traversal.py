"""Latent traversal: walk one latent dimension and decode, to see what it encodes.

The functions work with any ``torch.nn.Module`` that has ``decode(z, cond=None)``
returning images ``(N, C, [Z,] Y, X)`` (duck typing), so they serve every model
in :mod:`napari_morphospace.core.models` and small test modules alike. Traversal
values are absolute latent values (they replace the start point's value of the
walked dimension, they are not offsets from it), in units of the model's
``latent_scale`` buffer where it has one: ones (the prior's SD) for most models,
the empirical SD of the latent means for the multi-encoder VAE, which calibrates
it after training (``docs/models.md``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from ..errors import InputError
from ..models import Condition, MorphoVAE
from .cell_table import require_mu_columns

TRAVERSAL_EXTENT = 3.0


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode after.

    Eval mode matters for every read-out here: BatchNorm must use its running
    statistics (so a sample's result does not depend on the rest of the batch)
    and dropout must be off.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def latent_dim(model: torch.nn.Module) -> int:
    """Number of latent dimensions, from ``model.latent_dim``."""
    dim = getattr(model, "latent_dim", None)
    if dim is None:
        raise TypeError(f"{type(model).__name__} has no latent_dim attribute")
    return int(dim)


def _dim_scale(model: torch.nn.Module, dim: int) -> float:
    scale = getattr(model, "latent_scale", None)
    return 1.0 if scale is None else float(scale[dim])


def _check_dim(model: torch.nn.Module, dim: int) -> None:
    n = latent_dim(model)
    if not 0 <= dim < n:
        raise InputError(f"latent dimension {dim} does not exist: the model has dimensions 0 to {n - 1}")


def latent_vector(model: torch.nn.Module, start: Any) -> np.ndarray:
    """``start`` as a float32 vector of the model's latent size (zeros when None); wrong sizes are refused."""
    n = latent_dim(model)
    if start is None:
        return np.zeros(n, dtype=np.float32)
    vector = np.asarray(start, dtype=np.float32).reshape(-1)
    if vector.size != n:
        raise InputError(f"the starting latent vector has {vector.size} values but the model has {n} dimensions")
    return vector


def broadcast_condition(cond: Any, n: int) -> Any:
    """Repeat a condition given for one cell (batch 1) over ``n`` latents.

    One reference image (and label) then serves a whole traversal of the
    conditional model. Tensors, and tuples of tensors such as
    ``models.Condition``, are expanded along their first axis; a condition
    that already has batch ``n`` is returned unchanged.
    """
    if torch.is_tensor(cond):
        return cond.expand(n, *cond.shape[1:]) if cond.shape[0] == 1 else cond
    if isinstance(cond, tuple):
        parts = [broadcast_condition(part, n) for part in cond]
        return Condition(*parts) if isinstance(cond, Condition) else tuple(parts)
    return cond


def decode_latents(model: MorphoVAE, z: np.ndarray, *, cond: Any = None) -> np.ndarray:
    """Decode latent vectors ``z`` (N, D) to images (N, C, [Z,] Y, X), float32, in eval mode without gradients.

    ``cond`` (conditional models) is passed to ``model.decode``, repeated over
    the N latents when it is given for one cell (:func:`broadcast_condition`);
    it is left out of the call when None so that unconditional modules need no
    such argument.
    """
    with evaluating(model), torch.no_grad():
        tensor = torch.as_tensor(np.asarray(z, dtype=np.float32), device=model_device(model))
        images = (
            model.decode(tensor) if cond is None else model.decode(tensor, cond=broadcast_condition(cond, len(tensor)))
        )
    return images.detach().cpu().numpy().astype(np.float32, copy=False)


def traversal_values(n_steps: int = 7, extent: float = TRAVERSAL_EXTENT) -> np.ndarray:
    """Evenly spaced values from ``-extent`` to ``+extent``, both endpoints included."""
    if n_steps < 2:
        raise InputError(f"a traversal needs at least 2 steps (got {n_steps}) to include both ends")
    return np.linspace(-extent, extent, n_steps, dtype=np.float32)


def traverse(
    model: MorphoVAE,
    dim: int,
    *,
    start: Any = None,
    values: Any = None,
    n_steps: int = 7,
    cond: Any = None,
) -> np.ndarray:
    """Decode a walk along one latent dimension while the others stay fixed.

    Parameters
    ----------
    model : torch.nn.Module
        Has ``decode(z, cond=None)``, ``latent_dim`` and optionally a
        ``latent_scale`` buffer.
    dim : int
        The latent dimension to walk.
    start : array-like of shape (D,), optional
        Values of all other dimensions (a cell's μ, a group mean); zeros (the
        prior mean) when omitted.
    values : array-like, optional
        Values taken by ``dim``, in units of ``latent_scale[dim]`` (standard
        deviations for a VAE with an N(0, I) prior). They replace ``start[dim]``
        (absolute values, not offsets), so traversals from different starting
        points visit the same values of ``dim``. Default:
        ``linspace(-3, 3, n_steps)``, both endpoints included.
    n_steps : int
        Number of values when ``values`` is omitted.
    cond : optional
        Condition passed to ``model.decode`` (conditional models only), for
        one cell (batch 1, repeated over the steps) or one per step.

    Returns
    -------
    np.ndarray
        Decoded images ``(n, C, [Z,] Y, X)``, float32 in the decoder's range
        ([0, 1] for the sigmoid decoders of this package).
    """
    _check_dim(model, dim)
    steps = traversal_values(n_steps) if values is None else np.asarray(values, dtype=np.float32).reshape(-1)
    z = np.tile(latent_vector(model, start), (steps.size, 1))
    z[:, dim] = steps * _dim_scale(model, dim)
    return decode_latents(model, z, cond=cond)


def traversal_grid(
    model: MorphoVAE,
    dims: Sequence[int],
    n_steps: int = 7,
    start: Any = None,
    *,
    values: Any = None,
    cond: Any = None,
) -> np.ndarray:
    """Traversals of several dimensions from the same start: ``(len(dims), n_steps, C, [Z,] Y, X)``.

    Row ``i`` is :func:`traverse` of ``dims[i]``; the stack can be shown as one
    napari layer browsed with its dimension sliders (dimension × step).
    """
    if len(dims) == 0:
        raise InputError("choose at least one latent dimension for the traversal grid")
    return np.stack([traverse(model, d, start=start, values=values, n_steps=n_steps, cond=cond) for d in dims])


def group_means(latent_table: pd.DataFrame, group_column: str = "group") -> dict[Any, np.ndarray]:
    """Mean latent vector (of the posterior means μ) per group, in order of first appearance."""
    if group_column not in latent_table.columns:
        raise InputError(
            f"the latent table has no column {group_column!r}; "
            f"available columns: {', '.join(map(str, latent_table.columns))}"
        )
    columns = require_mu_columns(latent_table)
    grouped = latent_table.groupby(group_column, sort=False, dropna=True)[columns].mean()
    if grouped.empty:
        raise InputError(f"column {group_column!r} has no group values: assign groups to the crops first")
    return {group: row.to_numpy(dtype=np.float32) for group, row in grouped.iterrows()}


def group_traversals(
    model: MorphoVAE,
    means: dict[Any, np.ndarray],
    dim: int,
    *,
    values: Any = None,
    n_steps: int = 7,
    cond: Any = None,
) -> dict[Any, np.ndarray]:
    """The same traversal of ``dim`` started from each group's mean, for side-by-side display.

    Every group visits the same values of ``dim`` (see :func:`traverse`), so
    column ``j`` of each group shows the cells at the same latent value and any
    difference between groups comes from the other dimensions.
    """
    return {
        group: traverse(model, dim, start=mean, values=values, n_steps=n_steps, cond=cond)
        for group, mean in means.items()
    }


class LatentDecoder:
    """Decode latent vectors off the GUI thread, coalescing rapid requests (latest wins).

    A slider emits many values per second; decoding each one would build a
    queue and the picture would lag behind the hand. ``request`` only stores
    the newest vector and wakes the worker thread; the worker always decodes
    the newest pending vector and drops those that were overwritten meanwhile.
    ``on_result(z, image)`` is called from the worker thread with the decoded
    image ``(C, [Z,] Y, X)``: a GUI must hand it to its own thread (e.g. a Qt
    signal). If decoding fails, ``on_error(exc)`` is called when given; without
    it the error is kept and raised by the next ``request``.

    The worker puts the model in eval mode for each decode: do not train or
    otherwise use the same model from another thread while the decoder is open.

    Use as a context manager, or call :meth:`close` when done.
    """

    def __init__(
        self,
        model: MorphoVAE,
        on_result: Callable[[np.ndarray, np.ndarray], None],
        *,
        cond: Any = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._model = model
        self._cond = cond
        self._on_result = on_result
        self._on_error = on_error
        self._pending: np.ndarray | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="LatentDecoder", daemon=True)
        self._thread.start()

    def request(self, z: Any) -> None:
        """Ask for ``z`` (D,) to be decoded; replaces any request not yet started."""
        vector = np.array(z, dtype=np.float32).reshape(-1)
        with self._condition:
            if self._error is not None:
                raise RuntimeError("the latent decoder stopped after an error") from self._error
            if self._closed:
                raise RuntimeError("the latent decoder is closed")
            self._pending = vector
            self._condition.notify()

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the worker after the decode in progress; pending requests are dropped."""
        with self._condition:
            self._closed = True
            self._pending = None
            self._condition.notify()
        self._thread.join(timeout)

    def __enter__(self) -> LatentDecoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _next_request(self) -> np.ndarray | None:
        with self._condition:
            while self._pending is None and not self._closed:
                self._condition.wait()
            z, self._pending = self._pending, None
            return None if self._closed else z

    def _run(self) -> None:
        while (z := self._next_request()) is not None:
            try:
                image = decode_latents(self._model, z[None], cond=self._cond)[0]
            except Exception as err:  # handed to the caller, never swallowed
                if self._on_error is None:
                    with self._condition:
                        self._error = err
                    return
                self._on_error(err)
                continue
            self._on_result(z, image)


# --------------------------------------------------------------------------- where a traversal starts, slider units


def find_cell(table: pd.DataFrame, source: str, label_id: int, t: int | None = None) -> int:
    """Position (``iloc``) of the row of cell ``label_id`` of ``source`` (at frame ``t``) in a crop or latent table.

    ``t`` is ignored when the table has no ``t`` column or ``t`` is None.

    Raises
    ------
    InputError
        When no row matches, naming what was looked for.
    """
    missing = [c for c in ("source", "label_id") if c not in table.columns]
    if missing:
        raise InputError(f"the table has no {', '.join(missing)} column: it does not say which cell each row is")
    match = (table["source"].astype(str) == str(source)).to_numpy() & (table["label_id"].to_numpy() == int(label_id))
    if t is not None and "t" in table.columns:
        match &= table["t"].to_numpy() == int(t)
    rows = np.flatnonzero(match)
    if rows.size == 0:
        where = f" at t={t}" if t is not None and "t" in table.columns else ""
        raise InputError(
            f"label {label_id} of {source!r}{where} is not in the table; select a cell that was cropped "
            "(label 0 is background), or build and embed the crops of this layer first"
        )
    return int(rows[0])


def start_vector(
    latent_table: pd.DataFrame | None,
    latent_dim: int,
    *,
    kind: Literal["origin", "group mean", "cell"] = "origin",
    group: Any = None,
    row: int | None = None,
    group_column: str = "group",
) -> np.ndarray:
    """The latent vector a traversal starts from: the origin, a group's mean μ, or one cell's μ (table row ``row``)."""
    if kind == "origin":
        return np.zeros(latent_dim, np.float32)
    if latent_table is None:
        raise InputError(f"starting from a {kind} needs a latent table: embed the crops with the model first")
    columns = require_mu_columns(latent_table)
    if len(columns) != latent_dim:
        raise InputError(
            f"the latent table has {len(columns)} dimensions but the model has {latent_dim}: embed with this model"
        )
    if kind == "group mean":
        means = group_means(latent_table, group_column)
        if group not in means:
            raise InputError(f"group {group!r} is not in column {group_column!r}; groups: {', '.join(map(str, means))}")
        return means[group]
    if kind == "cell":
        if row is None or not 0 <= row < len(latent_table):
            raise InputError("no cell is chosen: select a cell in a Labels layer and press 'Use selected cell'")
        return latent_table[columns].iloc[row].to_numpy(np.float32)
    raise InputError(f"unknown start {kind!r}; choose 'origin', 'group mean' or 'cell'")


def latent_from_sliders(start: Any, dims: Sequence[int], values: Sequence[float], latent_scale: Any) -> np.ndarray:
    """``start`` with ``z[dims[i]] = values[i] · latent_scale[dims[i]]``:
    slider values are in units of the latent's spread.

    Sliders span −3…+3 of ``latent_scale`` (the prior SD, 1, for the β-VAEs;
    the empirical SD of the combined latent for the multi-encoder VAE), the
    same convention as :func:`traverse`.
    """
    z = np.array(start, dtype=np.float32).reshape(-1)
    scale = np.ones_like(z) if latent_scale is None else np.asarray(latent_scale, dtype=np.float32).reshape(-1)
    index = np.asarray(dims, dtype=np.int64)
    z[index] = np.asarray(values, dtype=np.float32) * scale[index]
    return z


def slider_values(z: Any, dims: Sequence[int], latent_scale: Any) -> np.ndarray:
    """Inverse of :func:`latent_from_sliders`: the slider positions that show ``z`` (not clipped)."""
    z = np.asarray(z, dtype=np.float32).reshape(-1)
    scale = np.ones_like(z) if latent_scale is None else np.asarray(latent_scale, dtype=np.float32).reshape(-1)
    index = np.asarray(dims, dtype=np.int64)
    return z[index] / scale[index]
