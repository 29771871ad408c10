"""Synthetic microscopy of two cell populations whose every shape factor is known.

The demo's data and the tests' known answer: a control and a treated field of
cells, each with its own Labels image and one row of ground-truth factors per
cell. A VAE trained on crops of these cells should find a latent dimension
that separates the groups, and that dimension should follow the factors the
treated group shifts.

Factors and their control distributions (``U`` uniform; ``N`` normal, clipped
to the given range). Lengths are in pixels of the Y/X grid.

- ``size``: equivalent radius, the radius of the disc with the cell's area (in
  3D, of its widest Y/X section). 2D: N(11.5, 1.5) in [8, 15]; 3D: N(8.5, 1.0)
  in [6, 11].
- ``elongation``: major/minor axis ratio of the cell body. U(1.0, 1.7).
- ``orientation``: major axis angle in radians (see Notes). U(-pi/2, pi/2).
- ``roughness``: protrusion height relative to the body radius. U(0.1, 0.2).
- ``n_protrusions``: number of protrusions. Integers 2 to 5.
- ``texture``: granularity; the contrast (relative standard deviation) of the
  fine cytoplasm texture and the granule density (``GRANULES_PER_PX * texture``
  granules per cytoplasm pixel). U(0.2, 0.45).
- ``nucleus_size``: nucleus radius relative to the body radius. U(0.35, 0.55).
- ``intensity``: mean cytoplasm brightness, 0 to 1. U(0.4, 0.7).

The treated group draws from the same distributions and then multiplies the
factors in :data:`TREATED_SHIFTS`: ``size`` x sqrt(1.3) (30 % more area),
``roughness`` x 1.8 and ``n_protrusions`` x 1.6 (rounded) (a rougher membrane
with more protrusions), ``texture`` x 1.6 (more granular). ``elongation``,
``orientation``, ``nucleus_size`` and ``intensity`` are identically distributed.
With these ranges every cell fits a 64 px box in 2D and a 48 px Y/X box in 3D.

Notes
-----
Shape: a star-convex outline around the cell centre, the radius at angle
``theta`` being ``k * ellipse(theta) * (1 + roughness * max_i bump(theta - a_i))``
with ``n_protrusions`` von Mises bumps at random angles ``a_i`` and ``k`` chosen
so that the area is exactly ``pi * size**2``. In 3D the outline is the
equator of a flattened body whose height semi-axis is ``Z_ASPECT * size``
(physical units), so the body fits a short Z stack.

Orientation follows scikit-image's ``regionprops``: the angle between the row
axis (axis 0, Y) and the major axis, counter-clockwise, in [-pi/2, pi/2); the
major axis points along ``(dy, dx) = (cos(orientation), sin(orientation))``.
In napari, whose Y axis points down, that is the angle from the vertical.

Images are uint16 like camera output: fluorescence is Poisson photon noise on
``CAMERA_OFFSET + PEAK_COUNTS * signal`` after a slight blur; phase contrast is
a mid-grey background, darker textured cell bodies with a bright halo, and
Gaussian noise. Channels for fluorescence: ``membrane`` (textured cytoplasm
with a bright rim), ``nucleus`` (DNA) and ``granules`` (organelle-like spots).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import InputError
from ..io.stacks import Stack

FACTOR_NAMES = (
    "size",
    "elongation",
    "orientation",
    "roughness",
    "n_protrusions",
    "texture",
    "nucleus_size",
    "intensity",
)

# Multiplicative shifts of the treated group's factors (see the module docstring).
TREATED_SHIFTS: dict[str, float] = {
    "size": math.sqrt(1.3),
    "roughness": 1.8,
    "n_protrusions": 1.6,
    "texture": 1.6,
}

CHANNEL_NAMES = ("membrane", "nucleus", "granules")
PIXEL_SIZE_2D_UM = 0.65  # a 20x objective on a 6.5 um camera pixel
VOXEL_SIZE_3D_UM = (1.0, 0.5, 0.5)  # (Z, Y, X): z steps twice the lateral pixel
Z_ASPECT = 0.9  # height semi-axis / equivalent radius, physical units
EDGE_MARGIN = {2: 32, 3: 24}  # px from the Y/X border to a cell centre: room for a crop box
CELL_GAP = 3.0  # px between the bounding circles of two cells
GRANULES_PER_PX = 0.06
CAMERA_OFFSET = 100.0
PEAK_COUNTS = 1000.0
_PROTRUSION_KAPPA = 20.0  # von Mises concentration: a bump about 15 degrees wide
_N_ANGLES = 720
MAX_NUCLEUS_SHIFT = 1.6  # keeps nucleus_size (at most 0.55 in control) below 0.9


@dataclass
class SampleSettings:
    """What synthetic sample to make.

    Parameters
    ----------
    n_cells
        Cells per group.
    ndim
        2 for (Y, X) fields, 3 for (Z, Y, X) volumes.
    modality
        ``"fluorescence"`` (1-3 channels) or ``"phase"`` (2D, one channel).
    n_channels
        Fluorescence channels, in the order membrane, nucleus, granules.
    image_size
        Side of the square Y/X field in px; ``None`` picks one that holds the
        cells at about 30 % coverage.
    z_size
        Slices of a 3D volume.
    seed
        Everything, factors and noise, follows from it.
    groups
        Names of the control and the treated group.
    treated_shifts
        Factor -> multiplier applied to the treated group's draws.
    """

    n_cells: int = 100
    ndim: int = 2
    modality: Literal["fluorescence", "phase"] = "fluorescence"
    n_channels: int = 3
    image_size: int | None = None
    z_size: int = 24
    seed: int = 0
    groups: tuple[str, str] = ("control", "treated")
    treated_shifts: dict[str, float] = field(default_factory=lambda: dict(TREATED_SHIFTS))

    def __post_init__(self) -> None:
        if self.n_cells < 1:
            raise InputError(f"n_cells is {self.n_cells}; ask for at least 1 cell per group")
        if self.ndim not in (2, 3):
            raise InputError(f"ndim is {self.ndim}; choose 2 (Y, X images) or 3 (Z, Y, X volumes)")
        if self.modality not in ("fluorescence", "phase"):
            raise InputError(f"modality {self.modality!r} is unknown; choose 'fluorescence' or 'phase'")
        if self.modality == "phase" and (self.ndim != 2 or self.n_channels != 1):
            raise InputError("phase contrast samples are 2D with one channel; set ndim=2 and n_channels=1")
        if not 1 <= self.n_channels <= len(CHANNEL_NAMES):
            raise InputError(f"n_channels is {self.n_channels}; choose 1 to {len(CHANNEL_NAMES)}")
        if len(self.groups) != 2 or self.groups[0] == self.groups[1]:
            raise InputError(f"groups {self.groups!r}: give two different names, control first")
        shiftable = [name for name in FACTOR_NAMES if name != "orientation"]
        unknown = sorted(set(self.treated_shifts) - set(shiftable))
        if unknown:
            raise InputError(
                f"cannot shift factor(s) {', '.join(unknown)}; shiftable factors are {', '.join(shiftable)}"
            )
        if any(v <= 0 for v in self.treated_shifts.values()):
            raise InputError(f"treated_shifts {self.treated_shifts}: multipliers must be positive")
        # Elongation below 1 would swap the axes (and the orientation); a nucleus
        # as large as the body would no longer sit inside the cell.
        if self.treated_shifts.get("elongation", 1.0) < 1:
            raise InputError("an elongation multiplier below 1 makes some cells rounder than round; use 1 or more")
        if self.treated_shifts.get("nucleus_size", 1.0) > MAX_NUCLEUS_SHIFT:
            raise InputError(f"a nucleus_size multiplier above {MAX_NUCLEUS_SHIFT} puts nuclei outside cells; use less")


@dataclass
class SampleData:
    """Synthetic fields with their labels and ground truth.

    ``images[g]`` is group ``g``'s field (axes ``"CYX"`` or ``"CZYX"``, uint16,
    physical scale in micrometres, source ``"synthetic-<group>"``);
    ``labels[g]`` the uint16 cell labels of the same spatial shape, ids 1..N;
    ``factors`` one row per cell, both groups, with ``group``, ``source``,
    ``label_id``, the :data:`FACTOR_NAMES` and the cell centre
    (``[centroid_z,] centroid_y, centroid_x`` in pixels: the star centre, where
    the nucleus sits, within 3 px of the mask centroid), in the order
    of ``images`` and then ``label_id``.
    """

    images: list[Stack]
    labels: list[np.ndarray]
    factors: pd.DataFrame


def draw_factors(
    n_cells: int, ndim: int, rng: np.random.Generator, shifts: dict[str, float] | None = None
) -> pd.DataFrame:
    """Draw ``n_cells`` rows of factors from the control distributions, then apply ``shifts``.

    The distributions are listed in the module docstring; ``shifts`` multiplies
    factors by name (``n_protrusions`` is rounded back to an integer).
    """
    size_mean, size_sd, size_low, size_high = (11.5, 1.5, 8.0, 15.0) if ndim == 2 else (8.5, 1.0, 6.0, 11.0)
    factors = pd.DataFrame(
        {
            "size": np.clip(rng.normal(size_mean, size_sd, n_cells), size_low, size_high),
            "elongation": rng.uniform(1.0, 1.7, n_cells),
            "orientation": rng.uniform(-np.pi / 2, np.pi / 2, n_cells),
            "roughness": rng.uniform(0.1, 0.2, n_cells),
            "n_protrusions": rng.integers(2, 6, n_cells),
            "texture": rng.uniform(0.2, 0.45, n_cells),
            "nucleus_size": rng.uniform(0.35, 0.55, n_cells),
            "intensity": rng.uniform(0.4, 0.7, n_cells),
        }
    )
    for name, multiplier in (shifts or {}).items():
        factors[name] = factors[name] * multiplier
    factors["n_protrusions"] = np.round(factors["n_protrusions"]).astype(int)
    return factors


def star_radius(
    theta: np.ndarray, elongation: float, orientation: float, roughness: float, protrusion_angles: np.ndarray
) -> np.ndarray:
    """Unscaled outline radius at angles ``theta`` (from the row axis towards the column axis).

    An ellipse of unit area-equivalent radius (semi-axes ``sqrt(elongation)``
    and ``1/sqrt(elongation)``, major axis at ``orientation``) times
    ``1 + roughness * max_i bump(theta - protrusion_angles[i])``. The maximum,
    not the sum, of the bumps keeps the radius below ``1 + roughness`` times
    the ellipse even where protrusions meet.
    """
    phi = theta - orientation
    a, b = math.sqrt(elongation), 1 / math.sqrt(elongation)
    ellipse = a * b / np.sqrt((b * np.cos(phi)) ** 2 + (a * np.sin(phi)) ** 2)
    if len(protrusion_angles) == 0:
        return ellipse
    bumps = np.exp(_PROTRUSION_KAPPA * (np.cos(theta[..., None] - protrusion_angles) - 1))
    return ellipse * (1 + roughness * bumps.max(axis=-1))


@dataclass
class _CellShape:
    """One cell's outline: ``radius(theta) = scale * star_radius(theta, ...)``, area ``pi * size**2``."""

    elongation: float
    orientation: float
    roughness: float
    protrusion_angles: np.ndarray
    scale: float
    bounding_radius: float

    def radius(self, theta: np.ndarray) -> np.ndarray:
        return self.scale * star_radius(
            theta, self.elongation, self.orientation, self.roughness, self.protrusion_angles
        )

    def body_radius(self, theta: np.ndarray) -> np.ndarray:
        """The ellipse under the protrusions; the nucleus is a fraction of it, so it stays inside."""
        return self.scale * star_radius(theta, self.elongation, self.orientation, 0.0, np.empty(0))


def _cell_shape(cell: pd.Series, rng: np.random.Generator) -> _CellShape:
    """Scale the star outline so its area is ``pi * size**2`` (area = 1/2 * integral of r^2)."""
    angles = rng.uniform(-np.pi, np.pi, int(cell["n_protrusions"]))
    theta = np.linspace(-np.pi, np.pi, _N_ANGLES, endpoint=False)
    unit = star_radius(theta, cell["elongation"], cell["orientation"], cell["roughness"], angles)
    unit_area = 0.5 * np.mean(unit**2) * 2 * np.pi
    scale = cell["size"] * math.sqrt(math.pi / unit_area)
    return _CellShape(cell["elongation"], cell["orientation"], cell["roughness"], angles, scale, scale * unit.max() + 1)


def _place_cells(radii: np.ndarray, side: int, margin: int, rng: np.random.Generator) -> np.ndarray:
    """Centres ``(n, 2)`` (y, x) such that no two bounding circles come closer than ``CELL_GAP``.

    Random sequential placement, largest cells first, each centre at least
    ``margin`` px from the border. A field too small raises :class:`InputError`.
    """
    centres = np.zeros((len(radii), 2))
    placed: list[int] = []
    for i in np.argsort(-radii):
        low = max(margin, radii[i] + 1)
        if side - 1 - low < low:
            raise InputError(
                f"image_size {side} px is too small for cells of radius {radii[i]:.0f} px; "
                f"use at least {2 * int(low) + 2}"
            )
        candidates = rng.uniform(low, side - 1 - low, (500, 2))
        if placed:
            gaps = np.linalg.norm(candidates[:, None] - centres[placed], axis=-1) - radii[placed] - radii[i]
            free = np.flatnonzero(gaps.min(axis=1) >= CELL_GAP)
        else:
            free = np.array([0])
        if free.size == 0:
            raise InputError(
                f"could not place {len(radii)} cells without overlap in a {side} x {side} px field; "
                "use a larger image_size (or None to choose one) or fewer n_cells"
            )
        centres[i] = candidates[free[0]]
        placed.append(i)
    return centres


def _auto_side(radii: np.ndarray, margin: int) -> int:
    """A square side that holds the cells' bounding circles at 30 % coverage inside the margins."""
    area = np.sum(np.pi * (radii + CELL_GAP) ** 2) / 0.3
    return int(math.ceil(math.sqrt(area))) + 2 * margin


def _place_z(heights: np.ndarray, z_size: int, rng: np.random.Generator) -> np.ndarray:
    """Integer Z centres near the middle of the stack (adherent cells share a focal plane).

    Integer centres put each cell's equator on a slice, so its widest section
    has area ``pi * size**2``. ``heights`` are the cells' Z semi-axes in slices.
    """
    needed = 2 * int(np.ceil(heights.max())) + 3
    if z_size < needed:
        raise InputError(f"z_size {z_size} is too short for these cells; use at least {needed} slices")
    middle = (z_size - 1) // 2
    room = np.floor(np.minimum(middle, z_size - 1 - middle) - heights - 1).astype(int)
    return middle + np.array([rng.integers(-r, r + 1) for r in np.minimum(room, 2)])


@dataclass
class _Field:
    """Noise-free layout of one field: cell labels, nucleus mask, per-pixel factor maps."""

    labels: np.ndarray
    nucleus: np.ndarray
    intensity: np.ndarray
    texture: np.ndarray


def _cell_box(half_widths: tuple[float, ...], centre: np.ndarray, spatial_shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, int(c - h)), min(n, int(c + h) + 2))
        for c, h, n in zip(centre, half_widths, spatial_shape, strict=True)
    )


def _height_profile(dz: np.ndarray, semi_axis: float) -> np.ndarray:
    """``sqrt(1 - (dz / semi_axis)**2)``: how much of the equator is left at height ``dz``; 0 beyond."""
    return np.sqrt(np.clip(1 - (dz / semi_axis) ** 2, 0, None))


def _cell_masks(
    shape: _CellShape, size: float, nucleus_size: float, centre: np.ndarray, box: tuple[slice, ...], z_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cell and nucleus masks inside ``box``.

    A pixel is in the cell when its Y/X distance from the centre is within the
    outline radius at its angle, times the height profile in 3D (Z distances
    converted to Y/X pixels by ``z_ratio``). The nucleus is the body ellipse
    scaled by ``nucleus_size`` in every direction, so it lies inside the cell.
    """
    grid = np.meshgrid(*[np.arange(s.start, s.stop) for s in box], indexing="ij")
    dy, dx = grid[-2] - centre[-2], grid[-1] - centre[-1]
    theta, rho = np.arctan2(dx, dy), np.hypot(dy, dx)
    cell_height: float | np.ndarray
    nucleus_height: float | np.ndarray
    if len(box) == 2:
        cell_height = nucleus_height = 1.0
    else:
        dz = (grid[0] - centre[0]) * z_ratio
        cell_height = _height_profile(dz, Z_ASPECT * size)
        nucleus_height = _height_profile(dz, Z_ASPECT * nucleus_size * size)
    cell = rho <= shape.radius(theta) * cell_height
    nucleus = cell & (rho <= nucleus_size * shape.body_radius(theta) * nucleus_height)
    return cell, nucleus


def _render_layout(
    shapes: list[_CellShape], factors: pd.DataFrame, centres: np.ndarray, spatial_shape: tuple[int, ...], z_ratio: float
) -> _Field:
    """Rasterise every cell (label ``row + 1``) and its nucleus, with its intensity and texture."""
    field_ = _Field(
        labels=np.zeros(spatial_shape, np.uint16),
        nucleus=np.zeros(spatial_shape, bool),
        intensity=np.zeros(spatial_shape, np.float32),
        texture=np.zeros(spatial_shape, np.float32),
    )
    for label, (shape, cell, centre) in enumerate(zip(shapes, factors.itertuples(), centres, strict=True), start=1):
        half: tuple[float, ...] = (shape.bounding_radius,) * 2
        if len(spatial_shape) == 3:
            half = (Z_ASPECT * cell.size / z_ratio + 1, *half)
        box = _cell_box(half, centre, spatial_shape)
        cell_mask, nucleus_mask = _cell_masks(shape, cell.size, cell.nucleus_size, centre, box, z_ratio)
        field_.labels[box][cell_mask] = label
        field_.nucleus[box] |= nucleus_mask
        field_.intensity[box][cell_mask] = cell.intensity
        field_.texture[box][cell_mask] = cell.texture
    return field_


def _pixel_sigma(sigma_px: float, ndim: int, z_ratio: float) -> tuple[float, ...]:
    """A Gaussian sigma given in Y/X pixels, per axis (Z in slices) so it is isotropic physically."""
    return (sigma_px,) * 2 if ndim == 2 else (sigma_px / z_ratio, sigma_px, sigma_px)


def _smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma: tuple[float, ...]) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return (noise - noise.mean()) / noise.std()


def _fluorescence_signal(field_: _Field, n_channels: int, rng: np.random.Generator, z_ratio: float) -> np.ndarray:
    """Noise-free channels ``(C, *spatial)`` in about [0, 1.5]: membrane, nucleus, granules.

    Membrane: cytoplasm brightness ``intensity * (1 + texture * g)`` with fine
    noise ``g``, dimmed over the nucleus, brighter within 1.5 px of the edge.
    Nucleus: uniform DNA stain with mild chromatin texture. Granules: spots
    with per-pixel probability ``GRANULES_PER_PX * texture`` in the cytoplasm.
    """
    ndim = field_.labels.ndim
    inside = field_.labels > 0
    sampling = (z_ratio, 1.0, 1.0)[-ndim:]
    fine = _pixel_sigma(0.8, ndim, z_ratio)
    membrane = field_.intensity * np.clip(1 + field_.texture * _smooth_noise(inside.shape, rng, fine), 0, None)
    membrane *= np.where(field_.nucleus, 0.5, 1.0)
    membrane *= np.where(inside & (ndimage.distance_transform_edt(inside, sampling=sampling) <= 1.5), 1.6, 1.0)
    channels = [membrane]
    if n_channels >= 2:
        channels.append(0.7 * field_.nucleus * (1 + 0.15 * _smooth_noise(inside.shape, rng, fine)))
    if n_channels == 3:
        cytoplasm = inside & ~field_.nucleus
        spots = (rng.random(inside.shape) < GRANULES_PER_PX * field_.texture) & cytoplasm
        # A unit-height spot: a Gaussian's peak is 1 / sqrt(2 pi sigma^2) per axis.
        sigma = _pixel_sigma(1.0, ndim, z_ratio)
        peak = np.prod([1 / math.sqrt(2 * math.pi * s**2) for s in sigma])
        granules = 0.8 * ndimage.gaussian_filter(spots.astype(np.float32), sigma) / peak
        channels.append(granules + 0.1 * cytoplasm)
    return np.stack(channels).astype(np.float32)


def _camera_counts(signal: np.ndarray, rng: np.random.Generator, z_ratio: float) -> np.ndarray:
    """Slight optical blur, then Poisson photon noise on ``CAMERA_OFFSET + PEAK_COUNTS * signal``, as uint16."""
    blur = (0,) + _pixel_sigma(0.7, signal.ndim - 1, z_ratio)
    expected = CAMERA_OFFSET + PEAK_COUNTS * np.clip(ndimage.gaussian_filter(signal, blur), 0, None)
    return np.clip(rng.poisson(expected), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def _phase_image(field_: _Field, rng: np.random.Generator) -> np.ndarray:
    """Phase-contrast-like ``(1, Y, X)`` uint16: mid-grey background, dark textured body, bright halo.

    The body darkens with ``intensity`` (optical thickness) and its texture
    contrast follows ``texture``; the halo fades over about 1.5 px outside
    each cell. Values in [0, 1] are mapped to 0..4000 counts with Gaussian noise.
    """
    inside = field_.labels > 0
    texture = np.clip(1 + field_.texture * _smooth_noise(inside.shape, rng, (0.8, 0.8)), 0, None)
    body = 0.25 * field_.intensity * texture + 0.05 * field_.nucleus
    halo = 0.3 * np.exp(-ndimage.distance_transform_edt(~inside) / 1.5) * ~inside
    image = ndimage.gaussian_filter(0.5 - body + halo, 0.7) + rng.normal(0, 0.02, inside.shape)
    return np.clip(np.round(4000 * image), 0, np.iinfo(np.uint16).max).astype(np.uint16)[None]


def make_sample_data(settings: SampleSettings | None = None) -> SampleData:
    """Make a control and a treated field of synthetic cells with their ground-truth factors.

    Parameters
    ----------
    settings
        What to make; ``SampleSettings()`` (100 2D fluorescence cells per
        group, seed 0) when omitted.

    Returns
    -------
    SampleData
        One uint16 image and one uint16 label image per group, and the factor
        table. The same settings always give identical arrays.

    Examples
    --------
    >>> sample = make_sample_data(SampleSettings(n_cells=20, seed=1))
    >>> sample.images[0].axes, sample.labels[0].max(), len(sample.factors)
    ('CYX', 20, 40)
    """
    settings = settings or SampleSettings()
    ndim = settings.ndim
    z_ratio = VOXEL_SIZE_3D_UM[0] / VOXEL_SIZE_3D_UM[1] if ndim == 3 else 1.0
    margin = EDGE_MARGIN[ndim]
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(2)]
    tables, shapes = [], []
    for index, rng in enumerate(rngs):
        tables.append(draw_factors(settings.n_cells, ndim, rng, settings.treated_shifts if index == 1 else None))
        shapes.append([_cell_shape(cell, rng) for _, cell in tables[-1].iterrows()])
    radii = [np.array([s.bounding_radius for s in group]) for group in shapes]
    side = settings.image_size or max(_auto_side(r, margin) for r in radii)
    spatial_shape = (side, side) if ndim == 2 else (settings.z_size, side, side)

    images, labels = [], []
    for group, rng, table, group_shapes, group_radii in zip(settings.groups, rngs, tables, shapes, radii, strict=True):
        centres = _place_cells(group_radii, side, margin, rng)
        if ndim == 3:
            heights = Z_ASPECT * table["size"].to_numpy() / z_ratio
            centres = np.column_stack([_place_z(heights, settings.z_size, rng), centres])
        field_ = _render_layout(group_shapes, table, centres, spatial_shape, z_ratio)
        if settings.modality == "phase":
            data, names = _phase_image(field_, rng), ["phase"]
        else:
            signal = _fluorescence_signal(field_, settings.n_channels, rng, z_ratio)
            data, names = _camera_counts(signal, rng, z_ratio), list(CHANNEL_NAMES[: settings.n_channels])
        source = f"synthetic-{group}"
        images.append(_stack(data, names, source))
        labels.append(field_.labels)
        _add_identity(table, group, source, centres)
    return SampleData(images=images, labels=labels, factors=pd.concat(tables, ignore_index=True))


def _stack(data: np.ndarray, channel_names: list[str], source: str) -> Stack:
    spatial = "YX" if data.ndim == 3 else "ZYX"
    sizes = (PIXEL_SIZE_2D_UM,) * 2 if data.ndim == 3 else VOXEL_SIZE_3D_UM
    return Stack(
        data=data,
        axes="C" + spatial,
        scale=dict(zip(spatial, sizes, strict=True)),
        channel_names=channel_names,
        source=source,
        units={axis: "µm" for axis in spatial},
    )


def _add_identity(table: pd.DataFrame, group: str, source: str, centres: np.ndarray) -> None:
    """Prefix ``group, source, label_id`` and append the centre columns, in place."""
    table.insert(0, "label_id", np.arange(1, len(table) + 1))
    table.insert(0, "source", source)
    table.insert(0, "group", group)
    for axis, values in zip("zyx"[3 - centres.shape[1] :], centres.T, strict=True):
        table[f"centroid_{axis}"] = values


__all__ = [
    "FACTOR_NAMES",
    "TREATED_SHIFTS",
    "CHANNEL_NAMES",
    "SampleSettings",
    "SampleData",
    "draw_factors",
    "star_radius",
    "make_sample_data",
]
