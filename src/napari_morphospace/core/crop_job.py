"""Build one crop set from image files: the ``morphospace crops`` job and its YAML config.

The widget saves the same :class:`CropJob` it would run on layers, so a crop
set made interactively can be rebuilt from files on a cluster.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from .crops import CropSettings, PatchSettings, crops_from_labels, patch_grid
from .data import CropSet, check_crop_set_target, concat_crop_sets, load_crop_set, save_crop_set
from .errors import InputError
from .io import read_stack
from .outputs import replace_folder, scratch_prefix, write_failed
from .preprocess import PreprocessPipeline

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

    def group_of(self, index: int) -> str:
        if not self.groups:
            return Path(self.images[index]).name.split(".")[0]
        return self.groups[0] if len(self.groups) == 1 else self.groups[index]


def read_labels(path: str | Path, *, axes: str | None = None) -> np.ndarray:
    """A label image as an integer array ``[T,] [Z,] Y, X``, refusing float or multi-channel files.

    ``axes`` (the image's, as given to :func:`read_stack`) is used without ``C``
    when the label file has that many axes.
    """
    stack = None
    if axes is not None:
        try:
            stack = read_stack(path, reader="tifffile", lazy_threshold_bytes=1 << 62, axes=axes.upper().replace("C", ""))
        except InputError as err:
            if "does not fit the file" not in str(err):
                raise
    if stack is None:
        stack = read_stack(path, reader="tifffile", lazy_threshold_bytes=1 << 62)
    if "C" in stack.axes:
        raise InputError(
            f"label file {path} has {stack.data.shape[stack.axes.index('C')]} channels (axes {stack.axes}); "
            "save one label image per segmentation, without a channel axis"
        )
    labels = np.asarray(stack.data)
    if labels.dtype.kind not in "iub":
        raise InputError(
            f"label file {path} holds {labels.dtype} values, not integer labels; "
            "save the segmentation as an integer (e.g. uint16) label image"
        )
    return labels


def run_crop_job(
    job: CropJob,
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    stop_event: threading.Event | None = None,
) -> CropSet:
    """Crop every image of ``job`` and return one crop set, saved to ``out`` when given.

    ``out`` is checked before any image is read (an existing folder without
    ``overwrite``, one that is not a crop set, a read-only or full disk).
    Each image's crops are streamed to a scratch folder next to ``out`` and
    joined at the end, so large jobs do not need all crops in memory; nothing
    appears at ``out`` unless every image succeeded.
    """
    job.check()
    if out is None:
        return concat_crop_sets([_crop_image(job, index, None, on_progress, stop_event) for index in range(len(job.images))])
    out = check_crop_set_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Parts are streamed into a scratch folder beside ``out``: a rename finishes the job, and the scratch of a
    # killed run is recognised (host and process id in its name) and removed by the next run.
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=scratch_prefix(out), suffix=".tmp"))
    try:
        parts = [_crop_image(job, index, scratch / f"part{index}", on_progress, stop_event) for index in range(len(job.images))]
        if len(parts) == 1:
            finished = scratch / "part0"
        else:
            finished = save_crop_set(concat_crop_sets(parts), scratch / "joined")
        check_crop_set_target(out, overwrite)
        replace_folder(finished, out)
    except OSError as err:
        raise write_failed(out, err) from err
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return load_crop_set(out)


def _crop_image(job: CropJob, index: int, output: Path | None, on_progress: ProgressCallback | None,
                stop_event: threading.Event | None) -> CropSet:
    """The crops of image ``index`` of ``job``, streamed to ``output`` when given."""
    image_path = job.images[index]
    name = Path(image_path).name

    def progress(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(name, done, total)

    stack = read_stack(image_path, reader=job.reader, axes=job.axes)
    common = dict(
        pipeline=job.preprocess if job.preprocess.steps else None,
        group=job.group_of(index),
        source=str(image_path),
        output=output,
        on_progress=progress,
        stop_event=stop_event,
    )
    if job.objects == "labels":
        return crops_from_labels(stack, read_labels(job.labels[index], axes=job.axes), job.crop, **common)
    return patch_grid(stack, job.patches, **common)
