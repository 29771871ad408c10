"""Synthetic microscopy fields with known labelled cells, for the scaling benchmarks.

A field is a ``(C, H, W)`` uint16 image and a ``(H, W)`` uint16 label image:
elliptical cells on a jittered grid (one per ``pitch`` x ``pitch`` cell),
each with its own brightness per channel and a smooth texture, on a noisy
background. Everything is vectorised, so a 2048 x 2048 field with ~5 000
cells takes well under a second to make.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage


def synthetic_field(
    seed: int, *, shape: tuple[int, int] = (2048, 2048), pitch: int = 28, channels: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``(image (C, H, W) uint16, labels (H, W) uint16)`` with one cell per ``pitch`` grid cell."""
    rng = np.random.default_rng(seed)
    height, width = shape
    rows, cols = height // pitch, width // pitch
    n = rows * cols
    centres = (np.stack(np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij"), -1).reshape(n, 2) + 0.5) * pitch
    centres += rng.uniform(-pitch / 8, pitch / 8, (n, 2))
    radii = rng.uniform(pitch * 0.18, pitch * 0.4, (n, 2))
    angle = rng.uniform(0, np.pi, n)
    yy, xx = np.mgrid[:height, :width]
    cell = np.minimum(yy // pitch, rows - 1) * cols + np.minimum(xx // pitch, cols - 1)
    dy, dx = yy - centres[cell, 0], xx - centres[cell, 1]
    cos, sin = np.cos(angle[cell]), np.sin(angle[cell])
    u, v = (dy * cos + dx * sin) / radii[cell, 0], (-dy * sin + dx * cos) / radii[cell, 1]
    inside = u * u + v * v <= 1
    labels = np.where(inside, cell + 1, 0).astype(np.uint16 if n < 65535 else np.uint32)
    image = np.empty((channels, height, width), np.uint16)
    for c in range(channels):
        brightness = rng.uniform(800, 3000, n)
        texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 3) * 400
        plane = rng.normal(300, 20, shape).astype(np.float32) + np.where(inside, brightness[cell] + texture, 0)
        image[c] = np.clip(plane, 0, 65535).astype(np.uint16)
    return image, labels


def write_fields(folder: Path, count: int, **kwargs) -> list[tuple[Path, Path]]:
    """Write ``count`` distinct fields as ``field{i}.tif`` (axes CYX) and ``field{i}_labels.tif``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image_path, labels_path = folder / f"field{i}.tif", folder / f"field{i}_labels.tif"
        if not (image_path.exists() and labels_path.exists()):
            image, labels = synthetic_field(i, **kwargs)
            tifffile.imwrite(image_path, image, metadata={"axes": "CYX"})
            tifffile.imwrite(labels_path, labels, metadata={"axes": "YX"})
        paths.append((image_path, labels_path))
    return paths
