"""Real fields opened as a user opens them, their crops with the default settings, and a small model.

Shared by the widget tests that follow a user through the per-cell table:
the BBBC007 nuclei fields (``real_data.bbbc007_fields``) opened with File >
Open (our reader), one crop per nucleus with the default ``CropSettings``
(which skip the smallest nuclei: 17 of the ~1 250 objects are under
``min_area``), named after their Labels layer as the Cells widget names
them, and an untrained β-VAE bundle for 64×64 one-channel crops (embedding is
deterministic, which is all these tests need).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from real_data import bbbc007_fields

from napari_morphospace.core.cells.crop_job import read_labels
from napari_morphospace.core.cells.crop_set import CropSet, concat_crop_sets
from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels
from napari_morphospace.core.io.stacks import read_stack
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.training.bundle import new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings

#: One field of each condition, whose names pair unambiguously (same-condition fields share a first word).
ONE_PER_CONDITION = (0, 4, 9)


def fields(which: tuple[int, ...] | None = None) -> list[tuple[str, Path, Path]]:
    """``(condition, image, labels)`` of the fields at positions ``which`` (all 14 by default)."""
    every = bbbc007_fields()
    return every if which is None else [every[i] for i in which]


def open_fields(viewer, which: tuple[int, ...] | None = None) -> list[str]:
    """Open image and labels of each field as File > Open does; returns the Labels layer names."""
    names = []
    for _condition, image, labels in fields(which):
        viewer.open(image, plugin="napari-morphospace")
        viewer.open(labels, plugin="napari-morphospace")
        names.append(viewer.layers[-1].name)
    return names


@lru_cache(maxsize=4)
def _crops(which: tuple[int, ...] | None) -> CropSet:
    parts = []
    for condition, image, labels in fields(which):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "N of M objects were smaller than min_area and skipped"
            parts.append(
                crops_from_labels(
                    read_stack(image),
                    read_labels(labels),
                    CropSettings(),
                    source=labels.name.removesuffix(".tif"),
                    group=condition,
                )
            )
    return concat_crop_sets(parts)


def crop_set(which: tuple[int, ...] | None = None) -> CropSet:
    """The default-settings crops of the fields, sources named like their Labels layers (a fresh table each call)."""
    cached = _crops(which)
    return CropSet(cached.images, cached.table.copy(), list(cached.channel_names), cached.spacing, cached.preprocess)


def object_count(which: tuple[int, ...] | None = None) -> int:
    """Labelled objects in the fields (cropped or not)."""
    return sum(len(np.unique(read_labels(labels))) - 1 for _c, _i, labels in fields(which))


def small_bundle(folder: Path, latent_dim: int = 4) -> Path:
    """An untrained β-VAE bundle for the 64×64 one-channel crops of :func:`crop_set`."""
    settings = ModelSettings(model="beta-vae", latent_dim=latent_dim, base_channels=4)
    torch.manual_seed(0)
    model = build_model(settings, (1, 64, 64)).eval()
    return save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=(1, 64, 64),
            channel_names=crop_set((0,)).channel_names,
            preprocess=None,
            train_settings=TrainSettings(epochs=1),
            provenance={},
            history=[],
        ),
        folder,
    )
