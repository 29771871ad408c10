"""Convolutional encoder/decoder blocks for 2D and 3D crops, and the adaptive depth rule.

One code path serves 2D ``(N, C, Y, X)`` and 3D ``(N, C, Z, Y, X)``: the
number of spatial axes picks Conv2d/Conv3d and friends. Every down-sampling
block reduces an axis of size ``n`` to ``ceil(n / 2)`` (strided conv with
padding 1, or MaxPool with ``ceil_mode=True``), and the decoder resizes to the
exact sizes the encoder saw, so odd sizes (33, 35, 141) decode to exactly the
input shape.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .settings import MAX_CHANNELS

#: Conv2d or Conv3d; their kernel and stride tuples have one value per axis, a length the type cannot carry.
_CONV: dict[int, Callable[..., nn.Module]] = {2: nn.Conv2d, 3: nn.Conv3d}
_BATCHNORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
#: Most groups of a GroupNorm layer (fewer when the channel count is not divisible by it).
NORM_GROUPS = 8
_MAXPOOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
# An axis is halved by a block only while the result keeps at least this many pixels.
MIN_AXIS_SIZE = 2


def depth_for_shape(spatial_shape: Sequence[int]) -> int:
    """Number of down-sampling blocks for a crop of this spatial shape (adaptive-depth rule).

    ``L = round(2 + 0.356 · (log2(pixels) − 8.64))`` with ``pixels`` the product of
    the spatial sizes (the thesis rule: 20×20 → 2, 80×80 → 3, 140×140 → 4).

    Notes
    -----
    Rounding is half-up (``floor(v + 0.5)``), not Python's banker's rounding, so
    a value of exactly 2.5 gives 3. The result is at least 1 and at most
    :func:`max_depth`, the number of halvings the *largest* axis allows before
    dropping below 2 pixels.

    In 3D, counting voxels grants depth that a thin axis cannot use: a
    5×140×140 stack would get 5 blocks where its 140×140 plane gets 4. So a
    3D depth is at most the larger of the rule for the Y·X plane and the
    number of times the *smallest* axis can be halved: 5×140×140 → 4,
    16×64×64 → 3, while a cube keeps the voxel rule (64×64×64 → 5). Thin axes
    stop being down-sampled at 2 pixels (see :func:`level_shapes`).
    """
    shape = _check_spatial_shape(spatial_shape)
    depth = _thesis_rule(math.prod(shape))
    if len(shape) == 3:
        depth = min(depth, max(_thesis_rule(shape[1] * shape[2]), _halvings(min(shape))))
    return min(max(1, depth), max_depth(shape))


def _thesis_rule(pixels: int) -> int:
    """``round(2 + 0.356·(log2(pixels) − 8.64))``, rounding half up."""
    return math.floor(2 + 0.356 * (math.log2(pixels) - 8.64) + 0.5)


def max_depth(spatial_shape: Sequence[int]) -> int:
    """Largest number of blocks for which at least one axis is still halved in every block."""
    shape = _check_spatial_shape(spatial_shape)
    return max(_halvings(size) for size in shape)


def _halvings(size: int) -> int:
    """How often ``size`` can be halved (rounding up) while staying at least MIN_AXIS_SIZE."""
    count = 0
    while math.ceil(size / 2) >= MIN_AXIS_SIZE:
        size = math.ceil(size / 2)
        count += 1
    return count


def resolve_depth(depth: int | None, spatial_shape: Sequence[int]) -> int:
    """The user's depth if given (checked against the crop size), else the adaptive rule."""
    if depth is None:
        return depth_for_shape(spatial_shape)
    limit = max_depth(spatial_shape)
    if depth > limit:
        raise InputError(
            f"depth {depth} is too deep for crops of shape {tuple(spatial_shape)}: at most {limit} "
            "down-sampling blocks fit; lower depth or leave it empty for the adaptive rule"
        )
    return depth


def level_shapes(spatial_shape: Sequence[int], depth: int) -> list[tuple[int, ...]]:
    """Spatial shape at the input and after each of ``depth`` blocks (``depth + 1`` entries).

    An axis is halved (rounding up) while the result keeps at least 2 pixels;
    after that it passes through with stride 1.
    """
    shapes = [tuple(int(s) for s in spatial_shape)]
    for _ in range(depth):
        shapes.append(tuple(math.ceil(s / 2) if math.ceil(s / 2) >= MIN_AXIS_SIZE else s for s in shapes[-1]))
    return shapes


def block_channels(base_channels: int, depth: int) -> list[int]:
    """Output channels of each encoder block: doubling from ``base_channels``, capped at 256."""
    return [min(base_channels * 2**k, MAX_CHANNELS) for k in range(depth)]


def _check_spatial_shape(spatial_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in spatial_shape)
    if len(shape) not in (2, 3) or any(s < 1 for s in shape):
        raise InputError(f"crops need 2 or 3 positive spatial sizes ([Z,] Y, X), got {tuple(spatial_shape)}")
    if max(shape) < 2 * MIN_AXIS_SIZE - 1:
        raise InputError(f"crops of shape {shape} are too small for a VAE: make crops at least 3 pixels wide")
    return shape


def normalisation(dim: int, channels: int, norm: str) -> nn.Module:
    """The normalisation layer of a "strided" block: BatchNorm or GroupNorm.

    BatchNorm normalises with the batch's statistics in training and with
    running averages in evaluation (the training engine recomputes those
    averages over the training crops at the end, see
    ``VAEModule.recalibrate_batchnorm``). GroupNorm normalises each crop by
    itself, so training and evaluation compute the same function, but a
    crop's overall brightness and amount of signal are normalised away.
    """
    if norm == "batch":
        return _BATCHNORM[dim](channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(channels, NORM_GROUPS), channels)
    raise InputError(f"norm must be 'batch' or 'group', got {norm!r}")


class DownBlock(nn.Module):
    """One encoder block that halves the axes marked in ``stride`` (2) and keeps the others (1).

    "strided": 3×3 conv with that stride + normalisation (``norm``) + LeakyReLU(0.2).
    "maxpool": 3×3 conv + ReLU + MaxPool (kernel = stride, ``ceil_mode`` so odd sizes round up).
    """

    def __init__(
        self, dim: int, in_channels: int, out_channels: int, stride: tuple[int, ...], kind: str, norm: str = "batch"
    ) -> None:
        super().__init__()
        conv = _CONV[dim]
        if kind == "strided":
            self.layers = nn.Sequential(
                conv(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                normalisation(dim, out_channels, norm),
                nn.LeakyReLU(0.2),
            )
        elif kind == "maxpool":
            self.layers = nn.Sequential(
                conv(in_channels, out_channels, 3, padding=1),
                nn.ReLU(),
                _MAXPOOL[dim](kernel_size=stride, stride=stride, ceil_mode=True),
            )
        else:
            raise InputError(f"block must be 'strided' or 'maxpool', got {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class UpBlock(nn.Module):
    """Mirror of :class:`DownBlock`: resize to the encoder's exact size, then 3×3 conv.

    Nearest-neighbour resizing to a given size (rather than a transposed conv)
    makes odd sizes exact and avoids checkerboard artefacts. "strided" mirrors
    with normalisation + LeakyReLU, "maxpool" with ReLU.
    """

    def __init__(
        self, dim: int, in_channels: int, out_channels: int, out_size: tuple[int, ...], kind: str, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.out_size = out_size
        conv = _CONV[dim]
        if kind == "strided":
            self.layers = nn.Sequential(
                conv(in_channels, out_channels, 3, padding=1, bias=False),
                normalisation(dim, out_channels, norm),
                nn.LeakyReLU(0.2),
            )
        elif kind == "maxpool":
            self.layers = nn.Sequential(conv(in_channels, out_channels, 3, padding=1), nn.ReLU())
        else:
            raise InputError(f"block must be 'strided' or 'maxpool', got {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(F.interpolate(x, size=self.out_size, mode="nearest"))


class ConditionInjection(nn.Module):
    """Adds a reference image and a one-hot label to features at one scale (Statistical Cell).

    The reference image is resized (area averaging) to the features' spatial
    size and passed through a 1×1 conv; the label, broadcast over space, goes
    through a 1×1 conv too — on a spatially constant map that equals a linear
    layer whose output is broadcast, which is how it is computed. Both are
    added to the features.
    """

    def __init__(self, dim: int, reference_channels: int, num_labels: int, feature_channels: int) -> None:
        super().__init__()
        self.dim = dim
        self.reference = _CONV[dim](reference_channels, feature_channels, 1)
        self.label = nn.Linear(num_labels, feature_channels, bias=False) if num_labels > 0 else None

    def forward(self, features: torch.Tensor, reference: torch.Tensor, label: torch.Tensor | None) -> torch.Tensor:
        resized = F.interpolate(reference, size=features.shape[2:], mode="area")
        out = features + self.reference(resized)
        if self.label is not None:
            if label is None:
                raise ValueError("this block was built for labels (num_labels > 0): pass the label")
            out = out + self.label(label).reshape(*label.shape[:1], -1, *([1] * self.dim))
        return out


class Encoder(nn.Module):
    """Down-sampling conv blocks, then a linear bottleneck to the posterior's mu and log-variance.

    Parameters
    ----------
    in_channels : int
        Image channels.
    spatial_shape : tuple of int
        ([Z,] Y, X) of the crops.
    latent_dim, depth, base_channels, kind, norm
        See :class:`~napari_morphospace.core.models.settings.ModelSettings` (``kind`` is its ``block``).
    condition : (reference_channels, num_labels) or None
        If given, a :class:`ConditionInjection` is added after every block.
    """

    def __init__(
        self,
        in_channels: int,
        spatial_shape: tuple[int, ...],
        latent_dim: int,
        depth: int,
        base_channels: int,
        kind: str,
        condition: tuple[int, int] | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        dim = len(spatial_shape)
        shapes = level_shapes(spatial_shape, depth)
        channels = block_channels(base_channels, depth)
        self.blocks = nn.ModuleList()
        for k in range(depth):
            stride = tuple(2 if after != before else 1 for before, after in zip(shapes[k], shapes[k + 1], strict=True))
            self.blocks.append(DownBlock(dim, ([in_channels] + channels)[k], channels[k], stride, kind, norm))
        self.injections = (
            nn.ModuleList(ConditionInjection(dim, condition[0], condition[1], c) for c in channels)
            if condition is not None
            else None
        )
        features = channels[-1] * math.prod(shapes[-1])
        self.mu = nn.Linear(features, latent_dim)
        self.logvar = nn.Linear(features, latent_dim)

    def forward(
        self, x: torch.Tensor, reference: torch.Tensor | None = None, label: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for k, block in enumerate(self.blocks):
            h = block(h)
            if self.injections is not None:
                h = self.injections[k](h, reference, label)
        h = h.flatten(1)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    """Linear layer from z to the bottleneck features, mirrored up-sampling blocks, logit output.

    It returns logits, not pixel values: the reconstruction loss is computed
    from them (a float32 sigmoid rounds to exactly 0 or 1, where cross-entropy
    has no finite gradient), and the model's ``decode`` applies the sigmoid.

    Takes the same parameters as :class:`Encoder`, with ``out_channels`` the
    image channels to produce. With ``condition``, the reference and label are
    injected at the bottleneck and after every up-sampling block.
    """

    def __init__(
        self,
        out_channels: int,
        spatial_shape: tuple[int, ...],
        latent_dim: int,
        depth: int,
        base_channels: int,
        kind: str,
        condition: tuple[int, int] | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        dim = len(spatial_shape)
        shapes = level_shapes(spatial_shape, depth)
        channels = block_channels(base_channels, depth)
        self.bottleneck_shape = (channels[-1], *shapes[-1])
        self.linear = nn.Linear(latent_dim, math.prod(self.bottleneck_shape))
        # Up block k goes from level k+1 to level k, from channels[k] to channels[k-1] (channels[0] at the top).
        up_channels = [channels[max(k - 1, 0)] for k in range(depth)]
        self.blocks = nn.ModuleList(
            UpBlock(dim, channels[k], up_channels[k], shapes[k], kind, norm) for k in reversed(range(depth))
        )
        self.injections = (
            nn.ModuleList(
                ConditionInjection(dim, condition[0], condition[1], c)
                for c in [channels[-1]] + [up_channels[k] for k in reversed(range(depth))]
            )
            if condition is not None
            else None
        )
        self.head = _CONV[dim](channels[0], out_channels, 3, padding=1)

    def forward(
        self, z: torch.Tensor, reference: torch.Tensor | None = None, label: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.linear(z).reshape(z.shape[0], *self.bottleneck_shape)
        if self.injections is not None:
            h = self.injections[0](h, reference, label)
        for k, block in enumerate(self.blocks):
            h = block(h)
            if self.injections is not None:
                h = self.injections[k + 1](h, reference, label)
        return self.head(h)
