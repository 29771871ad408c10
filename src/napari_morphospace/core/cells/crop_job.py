"""Build one crop set from image files: the ``morphospace crops`` job and its YAML config.

The widget saves the same :class:`CropJob` it would run on layers, so a crop
set made interactively can be rebuilt from files on a cluster. Files are
cropped one after another through :func:`~napari_morphospace.core.cells.crops.build_crop_set`
(the widget's path too), or in parallel, one task per file, on local worker
processes or a dask.distributed cluster (:mod:`~napari_morphospace.core.parallel`).
"""

from __future__ import annotations

import shutil
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from ..files import scratch_folder
from ..io.stacks import read_stack
from ..parallel import dask_client, ordered_map
from .crop_set import (
    NO_TRACK,
    CropSet,
    check_crop_set_target,
    concat_crop_sets,
    load_crop_set,
    replace_crop_table,
)
from .crops import (
    CropCancelled,
    CropSettings,
    CropSource,
    PatchSettings,
    build_crop_set,
)
from .preprocess import PreprocessPipeline
from .track_ids import read_tracks, track_ids_from_labels, track_ids_from_tracks, with_track_ids

ProgressCallback = Callable[[str, int, int], None]


@dataclass
class CropJob:
    """Which files to crop, how, and with which preprocessing.

    Attributes
    ----------
    images : list of str
        Image files (TIFF/OME-TIFF, or any format an installed optional reader handles).
    labels : list of str
        One label image per image, same spatial (and time) shape; not used for ``objects="patches"``.
    groups : list of str
        The condition of each image (``control``, ``treated``...); empty: the image file's stem.
    objects : {"labels", "patches"}
        One crop per labelled object, or a patch grid with Otsu sparsity filtering.
    crop, patches : CropSettings, PatchSettings
    preprocess : PreprocessPipeline
        Steps run on every crop; stored with the crop set and with any model trained on it.
    reader : {"auto", "tifffile", "bioio", "aicsimageio"}
    axes : str, optional
        For TIFF images whose axes metadata is missing or wrong: one letter
        from ``TCZYX`` per axis of the file, in file order (e.g. ``"CYX"`` for
        three channel planes, which would otherwise be read as Z). The label
        images are read with the same axes without ``C``.
    track_ids : {"none", "labels", "tracks"}
        Give each crop a ``track_id`` (time-lapses of tracked cells, :mod:`core.analysis.tracks`): from its label
        id (a tracked label image, where ids persist over time), or from the ``tracks`` files.
    tracks : list of str
        With ``track_ids="tracks"``: one tracks file per image (CSV or ``.npy``, columns in the order of
        a napari Tracks layer: track id, t, [z,] y, x, in the image's pixel coordinates).
    """

    images: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    objects: Literal["labels", "patches"] = "labels"
    crop: CropSettings = field(default_factory=CropSettings)
    patches: PatchSettings = field(default_factory=PatchSettings)
    preprocess: PreprocessPipeline = field(default_factory=PreprocessPipeline)
    reader: Literal["auto", "tifffile", "bioio", "aicsimageio"] = "auto"
    axes: str | None = None
    track_ids: Literal["none", "labels", "tracks"] = "none"
    tracks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Check step names and parameters the same way for a YAML config as for the widget.
        self.preprocess = PreprocessPipeline.from_dict(self.preprocess.to_dict())

    def check(self) -> None:
        """Refuse a job whose file lists do not line up, before any work is done."""
        if not self.images:
            raise InputError("no image files given; pass at least one image")
        if self.objects == "labels" and len(self.labels) != len(self.images):
            raise InputError(
                f"{len(self.images)} image(s) but {len(self.labels)} label image(s); "
                "give one label image per image, in the same order"
            )
        if self.groups and len(self.groups) not in (1, len(self.images)):
            raise InputError(
                f"{len(self.images)} image(s) but {len(self.groups)} group name(s); "
                "give one group per image, or one group for all"
            )
        if self.track_ids == "tracks" and len(self.tracks) != len(self.images):
            raise InputError(
                f"{len(self.images)} image(s) but {len(self.tracks)} tracks file(s); give one tracks file per image"
            )
        if self.track_ids == "labels" and self.objects != "labels":
            raise InputError("track ids from label ids need labelled objects; crop labels, not patches")

    def group_of(self, index: int) -> str:
        if not self.groups:
            return Path(self.images[index]).name.split(".")[0]
        return self.groups[0] if len(self.groups) == 1 else self.groups[index]


def read_labels(path: str | Path, *, axes: str | None = None) -> Any:
    """A label image as an integer array ``[T,] [Z,] Y, X``, refusing float or multi-channel files.

    numpy, or a dask array for files over 1 GiB (the crop builder loads one
    time point at a time). ``axes`` (the image's, as given to :func:`read_stack`)
    is used without ``C`` when the label file has that many axes.
    """
    stack = None
    if axes is not None:
        try:
            stack = read_stack(path, reader="tifffile", axes=axes.upper().replace("C", ""))
        except InputError as err:
            if "does not fit the file" not in str(err):
                raise
    if stack is None:
        stack = read_stack(path, reader="tifffile")
    if "C" in stack.axes:
        raise InputError(
            f"label file {path} has {stack.data.shape[stack.axes.index('C')]} channels (axes {stack.axes}); "
            "save one label image per segmentation, without a channel axis"
        )
    if np.dtype(stack.data.dtype).kind not in "iub":
        raise InputError(
            f"label file {path} holds {stack.data.dtype} values, not integer labels; "
            "save the segmentation as an integer (e.g. uint16) label image"
        )
    labels = stack.data
    return labels.astype(np.uint8) if labels.dtype == bool else labels


def job_source(job: CropJob, index: int) -> CropSource:
    """Image ``index`` of ``job`` (opened lazily when large) and its objects, ready for ``build_crop_set``."""
    image_path = job.images[index]
    stack = read_stack(image_path, reader=job.reader, axes=job.axes)
    common = dict(group=job.group_of(index), source=str(image_path))
    if job.objects == "labels":
        return CropSource(stack, read_labels(job.labels[index], axes=job.axes), "labels", job.crop, **common)
    return CropSource(stack, None, "patches", job.patches, **common)


def run_crop_job(
    job: CropJob,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    on_progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
) -> CropSet:
    """Crop every image of ``job`` and return one crop set, saved to ``out`` when given.

    ``out`` is checked before any image is read (an existing folder without
    ``overwrite``, one that is not a crop set, a read-only or full disk).
    Images are opened one at a time and their crops streamed straight into
    ``out`` (through a scratch folder beside it that a rename finishes), so
    neither the images nor the crops need to fit in memory together; nothing
    appears at ``out`` unless every image succeeded.

    With ``workers`` (local processes) or ``scheduler`` (the address of a
    dask.distributed cluster), each image is cropped by its own task into a
    part folder next to ``out``, and the parts are joined into ``out`` in
    image order as they finish: the crop set is the same as without.
    """
    job.check()
    if out is not None:
        check_crop_set_target(out, overwrite)
    tracks = [read_tracks(path) for path in job.tracks] if job.track_ids == "tracks" else []  # bad files: refused first
    pipeline = job.preprocess if job.preprocess.steps else None
    with dask_client(workers=workers, scheduler=scheduler) as client:
        if client is None:
            sources = (job_source(job, index) for index in range(len(job.images)))
            crop_set = build_crop_set(
                sources,
                pipeline=pipeline,
                output=out,
                overwrite=overwrite,
                on_progress=on_progress,
                stop_event=stop_event,
            )
        else:
            crop_set = _run_on_cluster(
                job, client, out, overwrite=overwrite, on_progress=on_progress, stop_event=stop_event
            )
    if job.track_ids != "none":
        crop_set.table = with_track_ids(crop_set.table, _job_track_ids(job, crop_set.table, tracks))
        if out is not None:
            replace_crop_table(out, crop_set.table)
    return crop_set


def _job_track_ids(job: CropJob, table: Any, tracks: list[np.ndarray]) -> np.ndarray:
    """The track id of every crop of ``job``: its label id, or the track of ``tracks[image]`` at its position."""
    if job.track_ids == "labels":
        return track_ids_from_labels(table)
    ids = np.full(len(table), NO_TRACK, np.int64)
    for index, image in enumerate(job.images):
        rows = (table["source"] == str(image)).to_numpy()
        labels = read_labels(job.labels[index], axes=job.axes) if job.objects == "labels" else None
        ids[rows] = track_ids_from_tracks(
            table[rows], tracks[index], None if labels is None else _frames(labels, table)
        )
    return ids


def _frames(labels: Any, table: Any) -> Callable[[int], np.ndarray]:
    """``labels_at(t)`` of a label image with or without a time axis."""
    timed = labels.ndim > (3 if "z_start" in table.columns else 2)
    return lambda t: np.asarray(labels[t] if timed else labels)


@dataclass
class _Part:
    """What one task gives back: its crop set (in memory), or the folder it wrote, and its warnings."""

    index: int
    crop_set: CropSet | None
    folder: str | None
    warnings: list[str]


def _crop_part(task: tuple[CropJob, int, str | None]) -> _Part:
    """Crop image ``index`` of ``job`` into ``folder`` (or memory), on a worker."""
    job, index, folder = task
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        crop_set = build_crop_set(
            [job_source(job, index)], pipeline=job.preprocess if job.preprocess.steps else None, output=folder
        )
    return _Part(index, None if folder else crop_set, folder, [str(w.message) for w in caught])


def _run_on_cluster(
    job: CropJob,
    client: Any,
    out: str | Path | None,
    *,
    overwrite: bool,
    on_progress: ProgressCallback | None,
    stop_event: threading.Event | None,
) -> CropSet:
    """One task per image; parts joined in image order as they arrive (streamed into ``out`` when given)."""
    scratch = None
    if out is not None:
        # Named for this host and process, so the next run removes it if this one is killed.
        scratch = scratch_folder(out)
    tasks = [(job, index, str(scratch / f"part{index}") if scratch else None) for index in range(len(job.images))]

    def parts() -> Iterator[CropSet]:
        for part in ordered_map(client, _crop_part, tasks):
            if stop_event is not None and stop_event.is_set():
                raise CropCancelled("crop making was stopped")
            for message in part.warnings:
                warnings.warn(f"{Path(job.images[part.index]).name}: {message}", UserWarning, stacklevel=2)
            if on_progress is not None:
                on_progress(Path(job.images[part.index]).name, 1, 1)
            yield part.crop_set if part.folder is None else load_crop_set(part.folder, in_memory=False)
            if part.folder is not None:
                shutil.rmtree(part.folder, ignore_errors=True)  # joined: a few shard files, gone at once

    try:
        return concat_crop_sets(parts(), output=out, overwrite=overwrite)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
