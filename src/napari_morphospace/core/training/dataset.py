"""Crop sets as a torch ``Dataset``: what training, embedding and the classifiers feed a ``DataLoader``.

Kept apart from :mod:`~napari_morphospace.core.cells.crop_set` so that cropping,
reading and writing crop sets never import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..cells.crop_set import CropSet, read_crops
from ..errors import InputError


class CropDataset(Dataset):
    """Crops as float32 tensors ``(C, [Z,] Y, X)`` for a torch ``DataLoader``.

    Reads numpy, zarr or dask images one batch at a time (see
    :meth:`__getitems__`), so a set on disk streams; the object pickles (zarr arrays reopen their store), so it works
    with ``DataLoader(num_workers=...)``.

    Parameters
    ----------
    crop_set : CropSet
    label_column : str, optional
        A table column (e.g. ``"group"``) whose values become integer class
        codes, in the sorted order given by :attr:`classes`; for conditional
        models and classifiers.
    return_index : bool
        Also return the row position, to map outputs back to ``table`` rows.

    Items are the image tensor alone, or a tuple ``(image, label)``,
    ``(image, index)`` or ``(image, label, index)``: labels and indices are
    int64 scalar tensors.
    """

    def __init__(self, crop_set: CropSet, *, label_column: str | None = None, return_index: bool = False) -> None:
        self.images = crop_set.images
        self.return_index = return_index
        self.classes: list[Any] = []
        self.labels: np.ndarray | None = None
        if label_column is not None:
            if label_column not in crop_set.table.columns:
                raise InputError(
                    f"the crop table has no column {label_column!r}; "
                    f"choose one of {', '.join(map(str, crop_set.table.columns))}"
                )
            codes, classes = pd.factorize(crop_set.table[label_column], sort=True)
            if (codes < 0).any():
                raise InputError(f"column {label_column!r} has empty values; fill them in before training on it")
            self.labels = codes.astype(np.int64)
            self.classes = list(classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return self._item(np.array(self.images[index], dtype=np.float32), index)

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor | tuple[torch.Tensor, ...]]:
        """A whole batch of items; ``DataLoader`` calls this instead of one ``__getitem__`` per crop.

        A set on disk is read with one call for the batch (a slice when the
        indices are consecutive, as when embedding), not one per crop.
        """
        positions = np.asarray(indices, dtype=np.int64)
        return [
            self._item(image, int(index))
            for image, index in zip(read_crops(self.images, positions), positions, strict=True)
        ]

    def _item(self, image: np.ndarray, index: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
        tensor = torch.from_numpy(image)
        extras = []
        if self.labels is not None:
            extras.append(torch.tensor(self.labels[index], dtype=torch.int64))
        if self.return_index:
            extras.append(torch.tensor(index, dtype=torch.int64))
        return (tensor, *extras) if extras else tensor
