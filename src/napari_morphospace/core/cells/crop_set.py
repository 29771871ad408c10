"""Crop sets: the single-cell crops, one metadata row per crop, saved and loaded from disk.

On disk a crop set is a folder::

    images.zarr      zarr v3 array (N, C, [Z,] Y, X) float32, uncompressed, in shards of
                     ~32 MB (one file each) holding chunks of ~512 kB (whole crops), so a
                     set of a million crops is a few hundred files and one crop is read
                     without reading its shard
    masks.zarr       (crops cut from labels only) zarr v3 array (N, [Z,] Y, X) bool, in
                     shards of the same number of crops as the images: each crop's object
                     pixels, moved with the crop by the preprocessing; the end-of-training
                     diagnostics measure the cells from them
    crops.parquet    the table (authoritative, keeps dtypes)
    crops.csv        the same table for people and spreadsheets
    crop_set.json    format name and version, channel names, spacing,
                     preprocessing config, creation time, crop count and shape

Folders are written into a hidden temporary sibling and renamed into place at
the end, so a crash or a cancelled run never leaves a half-written crop set.
Crop sets written before sharding (one crop per chunk file) open unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import dask.array as da
import numpy as np
import pandas as pd
import zarr

from ..config import shown
from ..errors import InputError
from ..files import replace_folder, scratch_folder, write_failed
from ..outputs import check_output, names_format

# Columns every crop table has, in this order; more columns may follow.
# The bounding box is one start/stop pair per spatial axis of the source:
# ``z_start, z_stop`` (3D sources only), ``y_start, y_stop, x_start, x_stop``.
CROP_TABLE_COLUMNS = ["crop_id", "source", "label_id", "t", "group", "annotation"]
# Optional column of crops of tracked cells: the track each crop lies on (NO_TRACK: on none).
# It is written by core.analysis.tracks and travels like any other crop column (latents, features, exports).
TRACK_ID = "track_id"
NO_TRACK = -1

FORMAT_NAME = "napari-morphospace crop set"
FORMAT_VERSION = 1
# Crop sets up to this size are loaded into memory by default; larger ones stay on disk.
IN_MEMORY_LIMIT_BYTES = 512 * 2**20

IMAGES_NAME = "images.zarr"
MASKS_NAME = "masks.zarr"
TABLE_PARQUET = "crops.parquet"
TABLE_CSV = "crops.csv"
METADATA_NAME = "crop_set.json"
_TEXT_COLUMNS = ("source", "group", "annotation")
# Storage layout of images.zarr: chunks of whole crops of about this size (the unit one random
# read decodes; zarr's cost per chunk outweighs copying it), in shards (files) of about this size.
CHUNK_BYTES = 2**19
SHARD_BYTES = 2**25


def bbox_columns(ndim: int) -> list[str]:
    """Bounding-box column names for a source with ``ndim`` spatial axes (2 or 3)."""
    axes = "zyx"[3 - ndim :]
    return [f"{a}_{end}" for a in axes for end in ("start", "stop")]


@dataclass
class CropSet:
    """Crops ``(N, C, [Z,] Y, X)`` float32 in [0, 1] plus a table with one row per crop.

    ``images`` is a numpy array, or a zarr/dask array when the set is larger
    than memory. ``table`` holds ``CROP_TABLE_COLUMNS`` plus the bounding box
    columns (``bbox_columns``): the region of the source, in source pixel
    coordinates, that the crop shows before any resize (it may extend past the
    image edge where the crop was padded). ``label_id`` is the Labels id, or
    the 1-based index of the point/box/patch for other object sources. Crops of tracked cells also have
    ``track_id`` (:data:`TRACK_ID`, see :mod:`core.analysis.tracks`). ``channel_names``, ``spacing`` (physical size
    of one crop pixel per spatial axis) and ``preprocess`` (the pipeline
    config dict) travel with the set so a model trained on it can record them.
    ``masks`` ``(N, [Z,] Y, X)`` bool are the objects' pixels in each crop for
    crops cut from labels (None for points, boxes and patches): the cells can
    be measured from their crops without the label images.
    """

    images: Any
    table: pd.DataFrame
    channel_names: list[str]
    spacing: tuple[float, ...] = ()
    preprocess: dict[str, Any] | None = None
    masks: Any | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def spatial_ndim(self) -> int:
        """Number of spatial axes of one crop: 2 for ``(C, Y, X)``, 3 for ``(C, Z, Y, X)``."""
        return int(self.images.ndim) - 2

    def subset(self, indices: Sequence[int] | np.ndarray) -> CropSet:
        """The crops at positions ``indices`` (not crop ids), in that order.

        ``crop_id`` values are kept so results still map back to the full set.
        A numpy set gives numpy images; a zarr or dask set gives a lazy dask
        array, so subsetting a large set reads nothing yet.
        """
        positions = np.asarray(indices, dtype=np.int64).reshape(-1)
        if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise InputError(f"subset indices must lie in 0..{len(self) - 1}; got {positions.min()}..{positions.max()}")
        return CropSet(
            images=_take(self.images, positions),
            table=self.table.iloc[positions].reset_index(drop=True),
            channel_names=list(self.channel_names),
            spacing=tuple(self.spacing),
            preprocess=self.preprocess,
            masks=None if self.masks is None else _take(self.masks, positions),
        )

    def validate(self, *, check_values: bool | None = None) -> None:
        """Check shapes, dtype, table columns and (optionally) the value range.

        Parameters
        ----------
        check_values : bool or None
            Read every pixel to check it is finite and in [0, 1]. ``None``
            checks only in-memory (numpy) sets, because a lazy set would be
            read from disk in full.

        Raises
        ------
        InputError
            Naming the first inconsistency found.
        """
        shape = tuple(self.images.shape)
        if len(shape) not in (4, 5):
            raise InputError(f"crop images must be (N, C, Y, X) or (N, C, Z, Y, X); got shape {shape}")
        if np.dtype(self.images.dtype) != np.float32:
            raise InputError(f"crop images must be float32 in [0, 1]; got {self.images.dtype}")
        if len(self.table) != shape[0]:
            raise InputError(f"the crop table has {len(self.table)} rows but there are {shape[0]} crop images")
        missing = [c for c in CROP_TABLE_COLUMNS + bbox_columns(self.spatial_ndim) if c not in self.table.columns]
        if missing:
            raise InputError(f"the crop table lacks column(s) {', '.join(missing)}")
        if not self.table["crop_id"].is_unique:
            raise InputError("crop_id values in the crop table are not unique; renumber them (concat_crop_sets does)")
        if len(self.channel_names) != shape[1]:
            raise InputError(f"{len(self.channel_names)} channel names for {shape[1]} channels")
        if self.masks is not None and tuple(self.masks.shape) != (shape[0], *shape[2:]):
            raise InputError(f"object masks of shape {tuple(self.masks.shape)} do not fit crops of shape {shape}")
        if self.spacing and len(self.spacing) != self.spatial_ndim:
            raise InputError(
                f"spacing {tuple(self.spacing)} does not have one value per spatial axis ({self.spatial_ndim})"
            )
        ids = self.table["crop_id"]
        if len(ids) and not pd.api.types.is_integer_dtype(ids.dtype):
            raise InputError(
                f"crop_id values must be whole numbers; the crop table has {ids.dtype} values {_first(ids)}"
            )
        if check_values is None:
            check_values = isinstance(self.images, np.ndarray)
        if check_values:
            for start, block in crop_blocks(self.images):
                check_crop_values(block, ids.iloc[start : start + len(block)])


def _first(values: pd.Series, n: int = 3) -> str:
    return ", ".join(repr(v) for v in values.head(n).tolist())


def _take(array: Any, positions: np.ndarray) -> Any:
    """Rows ``positions`` of images or masks: numpy from numpy, a lazy dask array from zarr or dask."""
    return array[positions] if isinstance(array, np.ndarray) else _as_dask(array)[positions]


def _joined(arrays: list[Any]) -> Any:
    """Images or masks of several sets as one: numpy when every part is, lazy (dask) otherwise."""
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np.concatenate(arrays, axis=0)
    return da.concatenate([_as_dask(a) for a in arrays], axis=0)


def _as_dask(images: Any) -> da.Array:
    """Wrap numpy, zarr or dask images (or masks) as a dask array with one chunk per block of crops
    (a shard on disk)."""
    if isinstance(images, da.Array):
        return images
    chunks = (block_length(images),) + tuple(images.shape[1:])
    if isinstance(images, zarr.Array):
        return da.from_zarr(images, chunks=chunks)
    return da.from_array(images, chunks=chunks)


def crop_set_folder(crop_set: CropSet) -> Path | None:
    """The folder a crop set's images are read from (a zarr set on disk), None for one in memory."""
    if not isinstance(crop_set.images, zarr.Array):
        return None
    root = getattr(crop_set.images.store_path.store, "root", None)
    return None if root is None else Path(str(root)).parent


def block_length(images: Any) -> int:
    """Crops per block for reading ``images`` in bulk: a shard of a zarr set, ~32 MB otherwise."""
    shards = getattr(images, "shards", None)
    if shards:
        return int(shards[0])
    crop_bytes = max(1, math.prod(int(s) for s in images.shape[1:]) * np.dtype(images.dtype).itemsize)
    return max(1, SHARD_BYTES // crop_bytes)


def crop_blocks(images: Any, length: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, crops)`` for consecutive blocks of ``length`` crops (default :func:`block_length`).

    Each block is one read of a zarr or dask set, so a whole set can be checked or copied without
    holding it in memory and without a task per crop.
    """
    length = length or block_length(images)
    for start in range(0, int(images.shape[0]), length):
        yield start, np.asarray(images[start : start + length])


def check_crop_values(crops: np.ndarray, crop_ids: Sequence[int] | pd.Series | None = None) -> None:
    """Refuse crops that are not finite or not in [0, 1], saying what was found (and which crops, given their ids).

    Crops are always made in [0, 1]; other values come from a damaged or
    hand-made crop set (a lost chunk of a crop set written with a NaN fill
    value reads as NaN).
    """
    if crops.size == 0:
        return
    flat = np.asarray(crops).reshape(len(crops), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    with np.errstate(invalid="ignore"):
        bad |= (flat < 0).any(axis=1) | (flat > 1).any(axis=1)
    if not bad.any():
        return
    values = flat[bad]
    finite = values[np.isfinite(values)]
    found = f"{finite.min()}..{finite.max()}" if finite.size else "no finite value"
    nonfinite = "" if np.isfinite(values).all() else " and NaN or inf values"
    which = ""
    if crop_ids is not None:
        ids = np.asarray(crop_ids)[bad]
        more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
        which = f" in the crop(s) with crop_id {', '.join(str(i) for i in ids[:5])}{more}"
    raise InputError(
        f"crop values must be finite and in [0, 1]; found {found}{nonfinite}{which} (a chunk file lost from "
        f"{IMAGES_NAME} reads as NaN): the crop set is damaged or was not made by napari-morphospace; copy it again "
        "or make it again"
    )


def concat_crop_sets(
    crop_sets: Iterable[CropSet], *, output: str | os.PathLike | None = None, overwrite: bool = False
) -> CropSet:
    """Join crop sets from several images into one, renumbering ``crop_id`` from 0.

    Every set keeps its own ``source`` and ``group`` columns. The sets must
    have the same crop shape, channel names and preprocessing, because one
    model is trained on the result; ``spacing`` is kept when all sets agree
    and left empty (unknown) otherwise; object masks when every set has them.

    Without ``output`` the result is in memory (numpy) when every set is, and
    lazy (dask) otherwise. With ``output`` the sets are streamed into that
    crop-set folder one block at a time as they come (``crop_sets`` may be a
    generator), so the joined set never sits in memory.
    """
    if output is not None:
        return _concat_to_folder(crop_sets, output, overwrite)
    crop_sets = list(crop_sets)
    if not crop_sets:
        raise InputError("no crop sets to join; make crops from at least one image first")
    first = crop_sets[0]
    for i, other in enumerate(crop_sets[1:], start=1):
        check_joinable(CropFormat.of(other, f"crop set {i}"), CropFormat.of(first, "crop set 0"))
    table = pd.concat([c.table for c in crop_sets], ignore_index=True)
    table["crop_id"] = np.arange(len(table), dtype=np.int64)
    with_masks = all(c.masks is not None for c in crop_sets)
    return CropSet(
        images=_joined([c.images for c in crop_sets]),
        table=table,
        channel_names=list(first.channel_names),
        spacing=_common_spacing(c.spacing for c in crop_sets),
        preprocess=first.preprocess,
        masks=_joined([c.masks for c in crop_sets]) if with_masks else None,
    )


@dataclass(frozen=True)
class CropFormat:
    """What crops from several sources must share to join one crop set, and where they came from (for messages)."""

    name: str
    shape: tuple[int, ...]  # (C, [Z,] Y, X) of one crop
    channel_names: tuple[str, ...]
    preprocess: dict[str, Any] | None  # the crop and preprocessing settings they were made with

    @classmethod
    def of(cls, crop_set: CropSet, name: str) -> CropFormat:
        shape = tuple(int(n) for n in crop_set.images.shape[1:])
        return cls(name, shape, tuple(crop_set.channel_names), crop_set.preprocess)


def check_joinable(crops: CropFormat, first: CropFormat) -> None:
    """Refuse to join ``crops`` to the ``first`` ones when their shape, channels or settings differ."""
    if crops.shape != first.shape:
        raise InputError(
            f"{crops.name} has crops of shape {crops.shape} but {first.name} has {first.shape}; "
            "make all crops with the same size, channels and preprocessing"
        )
    if crops.channel_names != first.channel_names:
        raise InputError(
            f"{crops.name} has channels {list(crops.channel_names)} but {first.name} has "
            f"{list(first.channel_names)}; select the same channels in the same order"
        )
    if crops.preprocess != first.preprocess:
        raise InputError(
            f"{crops.name} was cropped with different crop or preprocessing settings than {first.name}; "
            "make all crops with the same settings"
        )


def _common_spacing(spacings: Iterable[Sequence[float]]) -> tuple[float, ...]:
    """The spacing all sets share, or () (unknown) when they differ."""
    distinct = {tuple(s) for s in spacings}
    return distinct.pop() if len(distinct) == 1 else ()


def _concat_to_folder(crop_sets: Iterable[CropSet], output: str | os.PathLike, overwrite: bool) -> CropSet:
    """:func:`concat_crop_sets` streamed into a crop-set folder, one block of crops at a time."""
    writer: CropSetWriter | None = None
    first: CropSet | None = None
    spacings: list[tuple[float, ...]] = []
    try:
        for i, crop_set in enumerate(crop_sets):
            if first is None or writer is None:
                first = crop_set
                writer = CropSetWriter(
                    output,
                    crop_set.images.shape[1:],
                    crop_set.channel_names,
                    preprocess=crop_set.preprocess,
                    overwrite=overwrite,
                    masks=crop_set.masks is not None,
                )
            else:
                check_joinable(CropFormat.of(crop_set, f"crop set {i}"), CropFormat.of(first, "crop set 0"))
            table = crop_set.table.reset_index(drop=True)
            table["crop_id"] = np.arange(len(writer), len(writer) + len(table), dtype=np.int64)
            _append_blocks(writer, crop_set, table)
            spacings.append(tuple(crop_set.spacing))
        if writer is None:
            raise InputError("no crop sets to join; make crops from at least one image first")
        writer.spacing = _common_spacing(spacings)
        return writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


class CropSetWriter:
    """Streams crops into a crop-set folder so large sets never sit in memory.

    Crops go into a zarr array inside a hidden temporary sibling of
    ``directory``, one whole shard (file) at a time: appended crops wait in a
    buffer of one shard, so memory stays at one shard whatever the number of
    crops. Their values are checked as they arrive (finite, in [0, 1]).
    :meth:`close` writes the table and metadata and renames the folder into
    place, :meth:`abort` (or leaving a ``with`` block with an exception)
    deletes it. With ``masks`` every append brings the crops' object masks
    too, written beside them into ``masks.zarr``; one append without masks
    drops them for the whole set.

    Making one refuses an existing ``directory`` unless ``overwrite=True``
    (and then only if it is empty or a crop set, so a mistyped path cannot
    delete other data). Crops are shaped ``crop_shape`` = ``(C, [Z,] Y, X)``.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        crop_shape: Sequence[int],
        channel_names: Sequence[str],
        *,
        spacing: Sequence[float] = (),
        preprocess: dict[str, Any] | None = None,
        overwrite: bool = False,
        masks: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.crop_shape = tuple(int(s) for s in crop_shape)
        if len(self.crop_shape) not in (3, 4):
            raise InputError(f"crop_shape must be (C, Y, X) or (C, Z, Y, X); got {self.crop_shape}")
        if len(channel_names) != self.crop_shape[0]:
            raise InputError(f"{len(channel_names)} channel names for {self.crop_shape[0]} channels")
        self.channel_names = [str(n) for n in channel_names]
        self.spacing = tuple(float(s) for s in spacing)
        self.preprocess = preprocess
        self.overwrite = overwrite
        check_crop_set_target(self.directory, overwrite)
        try:
            self._tmp = scratch_folder(self.directory)
        except OSError as err:
            raise write_failed(self.directory, err) from err
        chunk, shard = _storage_layout(self.crop_shape)
        self._images = zarr.create_array(
            store=str(self._tmp / IMAGES_NAME),
            shape=(0,) + self.crop_shape,
            chunks=(chunk,) + self.crop_shape,
            shards=(shard,) + self.crop_shape,
            dtype="float32",
            fill_value=np.nan,  # a chunk file lost later reads as NaN, which loading refuses (0 would pass as a crop)
            compressors=None,
            config={"write_empty_chunks": True},  # every chunk holds crops: skip zarr's check for empty ones
        )
        self._buffer = np.empty((shard,) + self.crop_shape, np.float32)
        self._masks: zarr.Array | None = None
        self._mask_buffer: np.ndarray | None = None
        if masks:
            self._masks = zarr.create_array(
                store=str(self._tmp / MASKS_NAME),
                shape=(0,) + self.crop_shape[1:],
                chunks=(chunk,) + self.crop_shape[1:],
                shards=(shard,) + self.crop_shape[1:],
                dtype="bool",
                config={"write_empty_chunks": True},
            )  # one file per shard, as the images
            self._mask_buffer = np.empty((shard,) + self.crop_shape[1:], bool)
        self._buffered = 0
        self._written = 0
        self._tables: list[pd.DataFrame] = []
        self._closed = False

    def __len__(self) -> int:
        return self._written + self._buffered

    def append(
        self, images: np.ndarray, rows: pd.DataFrame | Sequence[dict[str, Any]], masks: np.ndarray | None = None
    ) -> None:
        """Add crops ``(n, *crop_shape)`` float32 in [0, 1], their ``n`` table rows and (optionally) object masks."""
        if self._closed:
            raise RuntimeError("this crop set writer is already closed")
        images = np.asarray(images)
        if masks is None:
            self._drop_masks()
        elif self._masks is not None and tuple(np.shape(masks)) != (len(images), *self.crop_shape[1:]):
            raise InputError(
                f"object masks of shape {tuple(np.shape(masks))} do not fit {len(images)} crops of "
                f"shape {self.crop_shape}"
            )
        rows = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
        if tuple(images.shape[1:]) != self.crop_shape:
            raise InputError(
                f"crops of shape {tuple(images.shape[1:])} do not fit a crop set of shape {self.crop_shape}"
            )
        if len(rows) != images.shape[0]:
            raise InputError(f"{images.shape[0]} crops but {len(rows)} table rows")
        check_crop_values(images)
        done = 0
        while done < len(images):
            take = min(len(images) - done, len(self._buffer) - self._buffered)
            self._buffer[self._buffered : self._buffered + take] = images[done : done + take]
            if self._mask_buffer is not None and masks is not None:
                self._mask_buffer[self._buffered : self._buffered + take] = masks[done : done + take]
            self._buffered += take
            done += take
            if self._buffered == len(self._buffer):
                self._flush()
        self._tables.append(rows.reset_index(drop=True))

    def _flush(self) -> None:
        """Write the buffered crops as one shard (the last one may be partial)."""
        if not self._buffered:
            return
        stop = self._written + self._buffered
        self._images.resize((stop,) + self.crop_shape)
        self._images[self._written : stop] = self._buffer[: self._buffered]
        if self._masks is not None and self._mask_buffer is not None:
            self._masks.resize((stop,) + self.crop_shape[1:])
            self._masks[self._written : stop] = self._mask_buffer[: self._buffered]
        self._written, self._buffered = stop, 0

    def _drop_masks(self) -> None:
        """Crops without masks joined the set: it keeps none (a mask for some crops only would mislead)."""
        if self._masks is not None:
            shutil.rmtree(self._tmp / MASKS_NAME, ignore_errors=True)
        self._masks = self._mask_buffer = None

    def close(self, *, in_memory: bool = False) -> CropSet:
        """Write table and metadata, move the folder into place and return the crop set.

        Its images stay on disk (a read-only zarr array) unless ``in_memory``.
        """
        if self._closed:
            raise RuntimeError("this crop set writer is already closed")
        try:
            self._flush()
            self._buffer, self._mask_buffer = np.empty((0,) + self.crop_shape, np.float32), None
            columns = CROP_TABLE_COLUMNS + bbox_columns(len(self.crop_shape) - 1)
            table = pd.concat(self._tables, ignore_index=True) if self._tables else pd.DataFrame(columns=columns)
            CropSet(self._images, table, self.channel_names, self.spacing, self.preprocess, self._masks).validate(
                check_values=False
            )
            _write_table(table, self._tmp)
            metadata = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "n_crops": len(table),
                "crop_shape": list(self.crop_shape),
                "channel_names": self.channel_names,
                "spacing": list(self.spacing),
                "preprocess": self.preprocess,
                "crop_id_order": crop_id_order(table["crop_id"]),
            }
            (self._tmp / METADATA_NAME).write_text(json.dumps(metadata, indent=2))
            check_crop_set_target(self.directory, self.overwrite)
            replace_folder(self._tmp, self.directory)
        except OSError as err:
            self.abort()
            raise write_failed(self.directory, err) from err
        except BaseException:
            self.abort()
            raise
        self._closed = True
        stored = zarr.open_array(str(self.directory / IMAGES_NAME), mode="r")
        stored_masks = None if self._masks is None else zarr.open_array(str(self.directory / MASKS_NAME), mode="r")
        if in_memory:
            images, masks = np.asarray(stored[...]), None if stored_masks is None else np.asarray(stored_masks[...])
            return CropSet(images, table, self.channel_names, self.spacing, self.preprocess, masks)
        return CropSet(stored, table, self.channel_names, self.spacing, self.preprocess, stored_masks)

    def abort(self) -> None:
        """Delete everything written so far; the target directory is left as it was."""
        self._closed = True
        self._buffer = np.empty((0,) + self.crop_shape, np.float32)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> CropSetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and not self._closed:
            self.abort()


def _storage_layout(crop_shape: tuple[int, ...]) -> tuple[int, int]:
    """Crops per chunk (~``CHUNK_BYTES``) and per shard (~``SHARD_BYTES``, a whole number of chunks)."""
    crop_bytes = math.prod(crop_shape) * 4
    chunk = max(1, CHUNK_BYTES // crop_bytes)
    return chunk, chunk * max(1, SHARD_BYTES // (chunk * crop_bytes))


def save_crop_set(crop_set: CropSet, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``crop_set`` to a folder (see the module docstring), atomically.

    Lazy images are copied one shard-sized block at a time (their values
    checked on the way), so saving never needs the whole set in memory.
    """
    crop_set.validate(check_values=False)
    writer = CropSetWriter(
        directory,
        crop_set.images.shape[1:],
        crop_set.channel_names,
        spacing=crop_set.spacing,
        preprocess=crop_set.preprocess,
        overwrite=overwrite,
        masks=crop_set.masks is not None,
    )
    with writer:
        _append_blocks(writer, crop_set, crop_set.table)
        writer.close()
    return Path(directory)


def _append_blocks(writer: CropSetWriter, crop_set: CropSet, table: pd.DataFrame) -> None:
    """Append a crop set's crops (with ``table`` as their rows, and their masks) one block at a time."""
    for start, block in crop_blocks(crop_set.images):
        stop = start + len(block)
        masks = None if crop_set.masks is None else np.asarray(crop_set.masks[start:stop])
        writer.append(block, table.iloc[start:stop], masks)


def load_crop_set(directory: str | os.PathLike, *, in_memory: bool | None = None) -> CropSet:
    """Read a crop-set folder written by :func:`save_crop_set` or :class:`CropSetWriter`.

    Parameters
    ----------
    in_memory : bool or None
        ``True`` loads the images as a numpy array, ``False`` keeps them as a
        read-only zarr array on disk, ``None`` loads them when they take at
        most ``IN_MEMORY_LIMIT_BYTES``.

    Raises
    ------
    InputError
        When the folder is missing, not a crop set, of an unknown format
        version, damaged, or edited so that its parts no longer agree.
    """
    directory = Path(directory)
    metadata = _read_metadata(directory)
    try:
        images = zarr.open_array(str(directory / IMAGES_NAME), mode="r")
    except (FileNotFoundError, ValueError, KeyError, TypeError, zarr.errors.BaseZarrError) as err:
        raise InputError(
            f"{directory}: cannot open the crop images {IMAGES_NAME} ({err}); the crop set is damaged, make it again"
        ) from err
    table = _read_table(directory)
    if tuple(images.shape[1:]) != tuple(metadata["crop_shape"]):
        raise InputError(
            f"{directory}: {IMAGES_NAME} holds crops of shape {tuple(images.shape[1:])} but {METADATA_NAME} "
            f"says {tuple(metadata['crop_shape'])}; the crop set was modified, make it again"
        )
    _check_stored_chunks(images, directory)
    if in_memory is None:
        in_memory = images.nbytes <= IN_MEMORY_LIMIT_BYTES
    stored_masks = _open_masks(directory)
    try:
        data = images[...] if in_memory else images
        masks = stored_masks[...] if in_memory and stored_masks is not None else stored_masks
    except Exception as err:  # zarr and its codecs raise many types for a damaged chunk
        raise InputError(
            f"{directory}: cannot read the crop images {IMAGES_NAME} or masks {MASKS_NAME} "
            f"({type(err).__name__}: {err}); the crop set is damaged, make it again"
        ) from err
    crop_set = CropSet(
        images=data,
        table=table,
        channel_names=list(metadata["channel_names"]),
        spacing=tuple(metadata["spacing"]),
        preprocess=metadata.get("preprocess"),
        masks=masks,
    )
    try:
        crop_set.validate(check_values=in_memory)
        order = metadata.get("crop_id_order")
        if order is not None and order != crop_id_order(table["crop_id"]):
            raise InputError(
                f"the rows of {TABLE_PARQUET}/{TABLE_CSV} are not in the order of the crop images (reordered or "
                "edited by hand), so crop ids would name the wrong crops"
            )
    except InputError as err:
        raise InputError(f"{directory}: {err}; the crop set was modified or is damaged, make it again") from err
    return crop_set


def _open_masks(directory: Path) -> zarr.Array | None:
    """The object masks of a crop set cut from labels; None for other sets and those written before masks were kept."""
    if not (directory / MASKS_NAME).exists():
        return None
    try:
        return zarr.open_array(str(directory / MASKS_NAME), mode="r")
    except (FileNotFoundError, ValueError, KeyError, TypeError, zarr.errors.BaseZarrError) as err:
        raise InputError(
            f"{directory}: cannot open the object masks {MASKS_NAME} ({err}); the crop set is damaged, make it again"
        ) from err


def _check_stored_chunks(images: zarr.Array, directory: Path) -> None:
    """Refuse a crop set whose image store lost data files (shards or chunks): zarr would read them as fill values.

    Crop sets written with a NaN fill value read a lost file as NaN, which the value checks refuse;
    older sets (fill value 0, indistinguishable from a black crop) are counted: one file per shard
    (or per chunk, before sharding) under ``images.zarr/c``.
    """
    if np.isnan(images.fill_value):
        return
    per_file = int((images.shards or images.chunks)[0])
    expected = math.ceil(int(images.shape[0]) / per_file)
    stored = sum(len(files) for _, _, files in os.walk(directory / IMAGES_NAME / "c"))
    if stored < expected:
        raise InputError(
            f"{directory}: {expected - stored} of {expected} data file(s) of {IMAGES_NAME} are missing "
            "(deleted or not copied), so some crops have no data; the crop set is damaged, "
            "copy it again or make it again"
        )


def is_crop_set_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding a ``crop_set.json`` of this format (what ``overwrite`` may replace)."""
    return names_format(Path(path) / METADATA_NAME, FORMAT_NAME)


def check_crop_set_target(directory: str | os.PathLike, overwrite: bool, *, needed_bytes: int = 0) -> Path:
    """Refuse a crop-set target before any work: existing (without ``overwrite``), not a crop set, or not writable."""
    return check_output(
        directory,
        what="crop set",
        kind="folder",
        overwrite=overwrite,
        is_ours=is_crop_set_folder,
        needed_bytes=needed_bytes,
    )


def crop_id_order(crop_ids: pd.Series | np.ndarray) -> str:
    """A fingerprint of the crop ids in table order: rows reordered by hand no longer match their images."""
    return hashlib.sha256(np.asarray(crop_ids, dtype="<i8").tobytes()).hexdigest()[:16]


def _write_table(table: pd.DataFrame, directory: Path) -> None:
    table.to_parquet(directory / TABLE_PARQUET, index=False)
    table.to_csv(directory / TABLE_CSV, index=False, na_rep="NaN")


def replace_crop_table(directory: str | os.PathLike, table: pd.DataFrame) -> None:
    """Give a saved crop set a new table with the same crops in the same order (e.g. with track ids added).

    Both table files are written beside the old ones first and then moved over
    them, so a failure leaves the old, consistent pair.
    """
    directory = Path(directory)
    old = _read_table(directory)
    if len(table) != len(old) or not np.array_equal(table["crop_id"].to_numpy(), old["crop_id"].to_numpy()):
        raise InputError(f"the new table does not list the crops of {directory} in their order; it was not written")
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=".table-"))
    try:
        _write_table(table.reset_index(drop=True), staging)
        for name in (TABLE_PARQUET, TABLE_CSV):
            os.replace(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_metadata(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        what = "is a file, not a folder" if directory.exists() else "does not exist"
        raise InputError(
            f"crop set folder {directory} {what}; choose the folder written by 'morphospace crops' "
            "(or make crops first)"
        )
    path = directory / METADATA_NAME
    if not path.exists():
        raise InputError(
            f"{directory} is not a crop set: it has no {METADATA_NAME}; choose a folder written by save_crop_set"
        )
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise InputError(f"{path} is damaged ({err}); make the crop set again") from err
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise InputError(f"{path} does not describe a {FORMAT_NAME}; choose a folder written by save_crop_set")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{directory} is a crop set of format version {shown(metadata.get('format_version'))}, but this version of "
            f"napari-morphospace reads version {FORMAT_VERSION}; update napari-morphospace or make the crops again"
        )
    checks = {
        "crop_shape": lambda v: (
            isinstance(v, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in v)
        ),
        "channel_names": lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
        "spacing": lambda v: (
            isinstance(v, list) and all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in v)
        ),
        "preprocess": lambda v: v is None or isinstance(v, dict),
    }
    defaults: dict[str, Any] = {"spacing": [], "preprocess": None}
    for key, valid in checks.items():
        value = metadata.get(key, defaults.get(key))
        if not valid(value):
            raise InputError(
                f"{path}: {key} is {shown(value)}, which is not what a crop set records; the file was edited "
                "by hand or is damaged: make the crop set again"
            )
        metadata[key] = value
    return metadata


def _read_table(directory: Path) -> pd.DataFrame:
    """Read the table, preferring Parquet; if both files exist they must agree (a hand edit shows up here)."""
    parquet, csv = directory / TABLE_PARQUET, directory / TABLE_CSV
    try:
        from_parquet = pd.read_parquet(parquet) if parquet.exists() else None
        from_csv = (
            pd.read_csv(csv, keep_default_na=False, na_values=["NaN"], dtype={c: str for c in _TEXT_COLUMNS})
            if csv.exists()
            else None
        )
    except (OSError, ValueError) as err:
        raise InputError(
            f"{directory}: cannot read the crop table ({err}); the crop set is damaged, make it again"
        ) from err
    if from_parquet is None and from_csv is None:
        raise InputError(
            f"{directory} has neither {TABLE_PARQUET} nor {TABLE_CSV}; the crop set is incomplete, make it again"
        )
    if from_parquet is not None and from_csv is not None and not _tables_agree(from_parquet, from_csv):
        raise InputError(
            f"{directory}: {TABLE_CSV} and {TABLE_PARQUET} differ, so one of them was edited by hand; "
            f"delete the one that is out of date and load again"
        )
    return from_parquet if from_parquet is not None else from_csv


def _tables_agree(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_column_type=False)
    except AssertionError:
        return False
    return True


def read_crops(images: Any, positions: np.ndarray) -> np.ndarray:
    """``images[positions]`` as a float32 numpy array, in the order given, in one read.

    Consecutive positions are one slice; others one orthogonal selection of
    the sorted positions, which zarr serves reading each chunk once.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if isinstance(images, np.ndarray) or positions.size == 0:
        return np.asarray(images[positions], dtype=np.float32)
    first = int(positions[0])
    if np.array_equal(positions, np.arange(first, first + positions.size)):
        return np.asarray(images[first : first + positions.size], dtype=np.float32)
    unique, inverse = np.unique(positions, return_inverse=True)
    block = images.oindex[unique] if isinstance(images, zarr.Array) else np.asarray(images[unique])
    return np.asarray(block, dtype=np.float32)[inverse]


__all__ = [
    "CROP_TABLE_COLUMNS",
    "NO_TRACK",
    "TRACK_ID",
    "replace_crop_table",
    "FORMAT_VERSION",
    "CropSet",
    "CropSetWriter",
    "bbox_columns",
    "check_crop_set_target",
    "check_crop_values",
    "concat_crop_sets",
    "crop_blocks",
    "crop_id_order",
    "crop_set_folder",
    "is_crop_set_folder",
    "load_crop_set",
    "CropFormat",
    "check_joinable",
    "save_crop_set",
]
