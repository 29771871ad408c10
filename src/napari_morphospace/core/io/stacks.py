"""Read microscopy stacks into arrays with axes, physical pixel sizes and channel names; write OME-TIFF.

tifffile reads TIFF, OME-TIFF and ImageJ hyperstacks. Other formats (CZI, ND2,
LIF, ...) go through bioio, or aicsimageio when only that is installed; both
are optional. Whatever the source, a :class:`Stack` comes back with its axes in
``TCZYX`` order, so the rest of the package never guesses axis meanings.
Files larger than ``lazy_threshold_bytes`` open as dask arrays that read only
the planes a computation touches.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import struct
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import tifffile
import zarr

from ..errors import InputError
from ..files import atomic_path

AXES_ORDER = "TCZYX"

#: Suffixes read with tifffile (TIFF flavours, including Zeiss LSM and MetaMorph STK).
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".lsm", ".stk")
#: Microscopy formats that need the optional bioio (or aicsimageio) reader.
OTHER_MICROSCOPY_SUFFIXES = (".czi", ".nd2", ".lif", ".oib", ".oif", ".ims", ".vsi", ".dv", ".r3d", ".zvi")
READERS = ("auto", "tifffile", "bioio", "aicsimageio")

# Length units -> factor to micrometres, time units -> factor to seconds. Known
# units are converted so every stack has the same units and scales compare.
_LENGTH_TO_UM = {
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00B5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "Å": 1e-4,
    "angstrom": 1e-4,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
}
_TIME_TO_S = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "millisecond": 1e-3,
    "µs": 1e-6,
    "us": 1e-6,
    "microsecond": 1e-6,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
# ``pixel`` is how OME and napari say "no physical unit".
_NO_UNIT = ("", "pixel", "pixels", "px")
_RGB_NAMES = ["red", "green", "blue", "alpha"]
# tifffile writes a classic TIFF up to this size and needs BigTIFF beyond it.
_CLASSIC_TIFF_LIMIT = 2**32 - 2**25


@dataclass
class Stack:
    """An image with named axes drawn from ``TCZYX`` (missing axes dropped).

    ``data`` is a numpy array, or a dask array for files too large to load;
    ``scale`` holds the physical pixel size per spatial/time axis (e.g.
    ``{"Z": 0.5, "Y": 0.1, "X": 0.1}``, micrometres; 1.0 where unknown);
    ``channel_names`` has one entry per ``C`` (one name when there is no C axis).
    ``units`` names the unit of each scale entry (``"µm"`` for lengths and
    ``"s"`` for time when the file says so; absent where the file gives none).
    ``rgb`` is true when ``C`` holds the 3 or 4 samples of an RGB(A) image, so
    preprocessing can offer RGB -> gray and viewers can show it as one colour image.
    """

    data: Any
    axes: str
    scale: dict[str, float] = field(default_factory=dict)
    channel_names: list[str] = field(default_factory=list)
    source: str = ""
    units: dict[str, str] = field(default_factory=dict)
    rgb: bool = False

    def __post_init__(self) -> None:
        if len(self.axes) != self.data.ndim:
            raise ValueError(f"axes {self.axes!r} do not match an array of {self.data.ndim} dimensions")
        if any(a not in AXES_ORDER for a in self.axes) or len(set(self.axes)) != len(self.axes):
            raise ValueError(f"axes {self.axes!r} must be distinct letters from {AXES_ORDER}")
        if self.rgb and ("C" not in self.axes or self.data.shape[self.axes.index("C")] not in (3, 4)):
            raise ValueError(
                f"an RGB stack needs a C axis of 3 or 4 samples, got axes {self.axes!r} shape {self.data.shape}"
            )

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.axes if a in "ZYX")

    @property
    def name(self) -> str:
        return Path(self.source).name if self.source else "image"

    @property
    def n_channels(self) -> int:
        return self.data.shape[self.axes.index("C")] if "C" in self.axes else 1


def default_channel_names(n_channels: int) -> list[str]:
    """Names for channels the file does not name: ``ch0, ch1, ...``.

    They do not depend on the file name, so crops from several files of one
    experiment share channel names.
    """
    return [f"ch{i}" for i in range(n_channels)]


def read_stack(
    path: str | os.PathLike,
    *,
    lazy_threshold_bytes: int = 1 << 30,
    reader: str = "auto",
    axes: str | None = None,
) -> Stack:
    """Read a microscopy file into a :class:`Stack` with axes in ``TCZYX`` order.

    Parameters
    ----------
    path
        TIFF / OME-TIFF / ImageJ TIFF (read with tifffile), or any format the
        optional bioio / aicsimageio readers know (CZI, ND2, LIF, ...).
    lazy_threshold_bytes
        Images whose decoded size exceeds this open as a dask array that reads
        planes on demand (through tifffile's zarr view of the TIFF); smaller
        ones load into numpy.
    reader
        ``"auto"`` (tifffile for TIFF suffixes, else bioio, else aicsimageio),
        or one of ``"tifffile"``, ``"bioio"``, ``"aicsimageio"``.
    axes
        Override for TIFF files whose axes metadata is missing or wrong: one
        letter from ``TCZYX`` per axis of the file's first series, in file order
        (e.g. ``"TZYX"``).

    Returns
    -------
    Stack
        Data in the file's dtype; singleton axes other than Y and X dropped;
        scales in µm (lengths) and s (time) when the file gives units.

    Raises
    ------
    InputError
        Missing, unreadable, truncated or empty file, unknown extension, axes
        that cannot be mapped to ``TCZYX``, or a reader that is not installed.
    """
    path = Path(path)
    if reader not in READERS:
        raise InputError(f"unknown reader {reader!r}; choose one of {', '.join(READERS)}")
    if not path.exists():
        raise InputError(f"file not found: {path}; check the path and that the drive is mounted")
    if path.is_dir():
        raise InputError(f"{path} is a folder; choose an image file inside it")
    chosen = reader if reader != "auto" else ("tifffile" if is_tiff_path(path) else _installed_optional_reader(path))
    if chosen == "tifffile":
        stack = _read_tiff(path, lazy_threshold_bytes=lazy_threshold_bytes, axes=axes)
    else:
        if axes is not None:
            raise InputError(f"axes= applies to TIFF files only; {chosen} reads axes from the file's own metadata")
        stack = _read_with_optional_reader(path, chosen, lazy_threshold_bytes=lazy_threshold_bytes)
    if 0 in stack.data.shape:
        raise InputError(
            f"{path} holds an empty image (shape {stack.data.shape}, axes {stack.axes}); re-export it with data"
        )
    return stack


def is_tiff_path(path: str | os.PathLike) -> bool:
    """True for suffixes tifffile reads (``.tif``, ``.ome.tiff``, ``.lsm``, ...)."""
    return str(path).lower().endswith(TIFF_SUFFIXES)


def can_read(path: str | os.PathLike) -> bool:
    """True when ``path`` names a file ``read_stack`` can open, judged by its name only.

    TIFF suffixes always; other microscopy formats when bioio or aicsimageio is installed.
    """
    if Path(path).is_dir():
        return False
    if is_tiff_path(path):
        return True
    return str(path).lower().endswith(OTHER_MICROSCOPY_SUFFIXES) and (
        _importable("bioio") or _importable("aicsimageio")
    )


def _installed_optional_reader(path: Path) -> str:
    """Pick bioio, else aicsimageio, for a non-TIFF file; say what to install when neither is there."""
    for name, module in (("bioio", "bioio"), ("aicsimageio", "aicsimageio")):
        if _importable(module):
            return name
    suffix = "".join(path.suffixes[-2:]).lower() or "(none)"
    if path.suffix.lower() in OTHER_MICROSCOPY_SUFFIXES:
        raise InputError(
            f"{path.name}: reading {path.suffix} files needs an optional reader; "
            f"install napari-morphospace[bioio] plus the bioio plugin for the format "
            f"(e.g. pip install 'napari-morphospace[bioio]' bioio-{path.suffix.lstrip('.').lower()}), "
            "or export the image as OME-TIFF"
        )
    raise InputError(
        f"{path.name}: unknown file extension {suffix}; supported are {', '.join(TIFF_SUFFIXES)} "
        f"and, with napari-morphospace[bioio] installed, {', '.join(OTHER_MICROSCOPY_SUFFIXES)}"
    )


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --------------------------------------------------------------------------- TIFF


def _read_tiff(path: Path, *, lazy_threshold_bytes: int, axes: str | None) -> Stack:
    """Read the first series of a TIFF file with its axes, scale and channel names."""
    # tifffile signals corrupt or truncated files with several exception types.
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if 0 in series.shape:
                raise InputError(
                    f"{path} holds an empty image (shape {series.shape}, axes {series.axes}); re-export it with data"
                )
            _check_complete(series, path)
            # Axes first, so an ambiguous file is refused before any pixel is read.
            photometric_rgb = series.keyframe.photometric == tifffile.PHOTOMETRIC.RGB
            if axes is not None:
                targets, rgb = _user_axes(axes, series.axes, series.shape, photometric_rgb)
            else:
                targets, rgb = assign_tczyx(
                    series.axes, series.shape, samples_are_rgb=photometric_rgb, source=path.name
                )
            scale, units, channel_names = _tiff_metadata(tif, series, path.name)
            lazy = series.nbytes > lazy_threshold_bytes
            data = None if lazy else series.asarray()
    except InputError:
        raise
    except (ValueError, OSError, struct.error, IndexError, KeyError, EOFError, ElementTree.ParseError) as err:
        if "imagecodecs" in str(err):
            raise InputError(
                f"{path.name} is compressed in a way (e.g. LZW, as Fiji saves) that needs the imagecodecs package; "
                "install it with pip install imagecodecs, or save the file uncompressed"
            ) from err
        raise InputError(
            f"cannot read {path.name} as TIFF ({err}); the file may be truncated, corrupt or not a TIFF: "
            "copy it again or re-export it from the acquisition software"
        ) from err
    if lazy:
        data = _open_tiff_lazily(path)
    data, tczyx = arrange_axes(data, targets)
    return _make_stack(data, tczyx, scale, units, channel_names, str(path), rgb)


def _check_complete(series: Any, path: Path) -> None:
    """Refuse files whose image data runs past the end of the file (interrupted copies)."""
    file_size = path.stat().st_size
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
    else:
        pages = list(series.pages)
        if any(page is None for page in pages):
            raise ValueError("image pages are missing")
        end = max(
            (
                offset + count
                for page in pages
                for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)
            ),
            default=0,
        )
    if end > file_size:
        raise ValueError(f"image data needs {end} bytes but the file has {file_size}")


def _open_tiff_lazily(path: Path) -> Any:
    """A dask array over the first series that reads only the TIFF pages or tiles a computation touches.

    tifffile's zarr store serves one chunk per page (or tile) and keeps its own
    file handle open for as long as the dask array lives. A memory map would
    not do: ``dask.array.from_array`` copies the array it is given.
    """
    store = tifffile.imread(path, series=0, level=0, aszarr=True)
    return da.from_zarr(zarr.open(store, mode="r"))


def assign_tczyx(
    file_axes: str, shape: tuple[int, ...], *, samples_are_rgb: bool, source: str = ""
) -> tuple[list[str], bool]:
    """Map tifffile axis codes to ``TCZYX`` letters.

    Parameters
    ----------
    file_axes, shape
        ``TiffPageSeries.axes`` and ``.shape``.
    samples_are_rgb
        The pages are photometric RGB: a samples axis ``S`` of size 3 or 4 is
        then the colour of an RGB(A) image.

    Returns
    -------
    targets, rgb
        One ``TCZYX`` letter per file axis, ``""`` for singleton axes to drop,
        and whether ``C`` holds RGB(A) samples.

    Notes
    -----
    ``S`` (samples) becomes ``C``; ``E`` (wavelength) becomes ``C``. A single
    generic axis (``I`` image sequence, ``Q`` unknown) becomes ``Z`` when the
    file has no Z axis: that is how ImageJ and napari open a plain multi-page
    TIFF. Anything else of size > 1 that is not ``TCZYX`` is ambiguous and refused.
    """
    targets: list[str] = []
    rgb = False
    generic = [i for i, (a, n) in enumerate(zip(file_axes, shape, strict=True)) if a in "IQ" and n > 1]
    for i, (axis, size) in enumerate(zip(file_axes, shape, strict=True)):
        if axis in AXES_ORDER:
            targets.append(axis)
        elif axis in "SE" and size > 1:
            targets.append("C")
            rgb = rgb or (axis == "S" and samples_are_rgb and size in (3, 4))
        elif size == 1:
            targets.append("")
        elif i in generic and len(generic) == 1 and "Z" not in file_axes:
            targets.append("Z")
            warnings.warn(
                f"{source or 'file'}: {size} planes without axes metadata were read as Z (a z-stack); if they are "
                "channels or time points, give the axes (--axes CYX or TYX on the command line, axes= in read_stack)",
                UserWarning,
                stacklevel=4,
            )
        else:
            raise _ambiguous_axes(file_axes, shape, source, f"axis {axis!r} of size {size} has no TCZYX meaning")
    used = [t for t in targets if t]
    if len(used) != len(set(used)):
        raise _ambiguous_axes(file_axes, shape, source, "two file axes map to the same TCZYX axis")
    return targets, rgb


def _ambiguous_axes(file_axes: str, shape: tuple[int, ...], source: str, why: str) -> InputError:
    return InputError(
        f"{source or 'file'}: cannot tell what the axes {file_axes!r} (shape {tuple(shape)}) mean: {why}. "
        "Pass axes= to read_stack with one TCZYX letter per axis (e.g. axes='TZYX'), or save the file with axes "
        "metadata (OME-TIFF; Fiji: Image > Hyperstacks > Stack to Hyperstack; tifffile: metadata={'axes': 'TZYX'})"
    )


def _user_axes(axes: str, file_axes: str, shape: tuple[int, ...], photometric_rgb: bool) -> tuple[list[str], bool]:
    """Check a user-given axes string against the file's series; RGB when it maps RGB samples to C."""
    axes = axes.upper()
    if len(axes) != len(shape) or any(a not in AXES_ORDER for a in axes) or len(set(axes)) != len(axes):
        raise InputError(
            f"axes={axes!r} does not fit the file, whose first series has shape {tuple(shape)} "
            f"(file axes {file_axes!r}): give {len(shape)} distinct letters from {AXES_ORDER}"
        )
    rgb = (
        photometric_rgb
        and "S" in file_axes
        and axes[file_axes.index("S")] == "C"
        and shape[file_axes.index("S")] in (3, 4)
    )
    return list(axes), rgb


def arrange_axes(data: Any, targets: list[str]) -> tuple[Any, str]:
    """Drop axes whose target is ``""`` (size 1) and transpose the rest into ``TCZYX`` order.

    Works on numpy and dask arrays alike; neither copies data.
    """
    data = data[tuple(0 if t == "" else slice(None) for t in targets)]
    kept = [t for t in targets if t]
    order = sorted(range(len(kept)), key=lambda i: AXES_ORDER.index(kept[i]))
    return data.transpose(order), "".join(kept[i] for i in order)


def _tiff_metadata(
    tif: tifffile.TiffFile, series: Any, name: str
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """Physical scale, units and channel names of the first series, from OME-XML, ImageJ metadata or resolution tags.

    Metadata that cannot be understood never rejects a file whose pixels are
    readable: it is ignored with a warning naming what is unknown.
    """
    try:
        if tif.is_ome and tif.ome_metadata:
            return _ome_metadata(tif.ome_metadata, name)
        if tif.is_imagej and tif.imagej_metadata is not None:
            return _imagej_metadata(tif.imagej_metadata, series.keyframe, series.axes, series.shape)
        return _resolution_tag_metadata(series.keyframe)
    except (ValueError, TypeError, KeyError, AttributeError, ZeroDivisionError) as err:
        warnings.warn(
            f"{name}: its pixel-size metadata cannot be read ({err}); the pixels were read, with pixel sizes "
            "of 1 and default channel names: set the scale by hand if you need it",
            UserWarning,
            stacklevel=3,
        )
        return {}, {}, []


def _ome_metadata(ome_xml: str, name: str = "file") -> tuple[dict[str, float], dict[str, str], list[str]]:
    """PhysicalSizeX/Y/Z, TimeIncrement (with units) and channel names of the first OME Image.

    OME-XML with a document type declaration (entities, which could expand
    without bound or name other files) is never parsed; XML that does not
    parse and values that are not positive numbers are skipped with a warning.
    """
    if "<!DOCTYPE" in ome_xml or "<!ENTITY" in ome_xml:
        warnings.warn(
            f"{name}: its OME-XML declares a document type or entities, which are never read; the pixels "
            "were read without pixel sizes or channel names",
            UserWarning,
            stacklevel=4,
        )
        return {}, {}, []
    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError as err:
        warnings.warn(
            f"{name}: its OME-XML is not well-formed ({err}); the pixels were read without pixel sizes or "
            "channel names: re-export the file to repair its metadata",
            UserWarning,
            stacklevel=4,
        )
        return {}, {}, []
    image = root.find("{*}Image")
    pixels = image.find("{*}Pixels") if image is not None else None
    if pixels is None:
        return {}, {}, []
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    for axis in "ZYX":
        value = _ome_number(pixels, f"PhysicalSize{axis}", name)
        if value is not None:
            # OME's default length unit is the micrometre.
            _set_scale(scale, units, axis, value, pixels.get(f"PhysicalSize{axis}Unit", "µm"), _LENGTH_TO_UM, "µm")
    increment = _ome_number(pixels, "TimeIncrement", name)
    if increment is not None:
        _set_scale(scale, units, "T", increment, pixels.get("TimeIncrementUnit", "s"), _TIME_TO_S, "s")
    channels = pixels.findall("{*}Channel")
    names = [c.get("Name") for c in channels]
    if channels and all(names) and all(c.get("SamplesPerPixel", "1") == "1" for c in channels):
        return scale, units, [str(n) for n in names]
    return scale, units, []


def _ome_number(pixels: ElementTree.Element, attribute: str, name: str) -> float | None:
    """A positive finite number from an OME Pixels attribute; None (with a warning) when it is anything else."""
    text = pixels.get(attribute)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        warnings.warn(
            f"{name}: OME {attribute}={text[:40]!r} is not a positive number; that size is unknown (1 is "
            "used) and the pixels were read",
            UserWarning,
            stacklevel=5,
        )
        return None
    return value


def _imagej_metadata(
    meta: dict[str, Any], page: Any, axes: str, shape: tuple[int, ...]
) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """Spacing, frame interval, X/Y resolution and channel labels of an ImageJ hyperstack."""
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    unit = str(meta.get("unit", "")).strip()
    if unit.lower() not in _NO_UNIT:
        x_res, y_res = page.resolution
        # ImageJ stores pixels per unit; a missing calibration is written as 1 pixel per unit.
        if x_res > 0 and y_res > 0:
            _set_scale(scale, units, "X", 1.0 / x_res, unit, _LENGTH_TO_UM, "µm")
            _set_scale(scale, units, "Y", 1.0 / y_res, unit, _LENGTH_TO_UM, "µm")
        if "spacing" in meta:
            _set_scale(scale, units, "Z", float(meta["spacing"]), unit, _LENGTH_TO_UM, "µm")
    if meta.get("finterval"):
        _set_scale(scale, units, "T", float(meta["finterval"]), str(meta.get("tunit", "s")), _TIME_TO_S, "s")
    return scale, units, _imagej_channel_labels(meta, axes, shape)


def _imagej_channel_labels(meta: dict[str, Any], axes: str, shape: tuple[int, ...]) -> list[str]:
    """Channel names from ImageJ slice labels, when the labels repeat with the channel.

    ImageJ labels every plane (channel fastest, then Z, then T). Labels are
    channel names only when plane ``i`` carries the label of channel ``i % C``.
    """
    labels = meta.get("Labels")
    if "C" not in axes or not isinstance(labels, list):
        return []
    n_channels = shape[axes.index("C")]
    if len(labels) < n_channels or not all(labels[i] == labels[i % n_channels] for i in range(len(labels))):
        return []
    names = [str(label) for label in labels[:n_channels]]
    return names if all(names) else []


def _resolution_tag_metadata(page: Any) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """Pixel size from the TIFF X/Y resolution tags when they are in metric units.

    Inch-based resolution (72 or 300 dpi) is what general image software
    writes by default, not a microscope calibration, so it is ignored.
    """
    metric = {tifffile.RESUNIT.CENTIMETER: "cm", tifffile.RESUNIT.MILLIMETER: "mm", tifffile.RESUNIT.MICROMETER: "µm"}
    unit = metric.get(page.resolutionunit)
    scale: dict[str, float] = {}
    units: dict[str, str] = {}
    x_res, y_res = page.resolution
    if unit is not None and x_res > 0 and y_res > 0:
        _set_scale(scale, units, "X", 1.0 / x_res, unit, _LENGTH_TO_UM, "µm")
        _set_scale(scale, units, "Y", 1.0 / y_res, unit, _LENGTH_TO_UM, "µm")
    return scale, units, []


def _set_scale(
    scale: dict[str, float],
    units: dict[str, str],
    axis: str,
    value: float,
    unit: str,
    factors: dict[str, float],
    canonical: str,
) -> None:
    """Store ``value`` in the canonical unit when ``unit`` is known, else as given with its unit."""
    unit = unit.strip()
    factor = factors.get(unit, factors.get(unit.lower()))
    if factor is not None:
        scale[axis], units[axis] = value * factor, canonical
    elif unit.lower() in _NO_UNIT:
        scale[axis] = value
    else:
        scale[axis], units[axis] = value, unit


def _make_stack(
    data: Any,
    axes: str,
    scale: dict[str, float],
    units: dict[str, str],
    channel_names: list[str],
    source: str,
    rgb: bool,
) -> Stack:
    """Assemble a Stack: scale for every non-channel axis (1.0 where unknown), one name per channel."""
    full_scale = {a: float(scale.get(a, 1.0)) for a in axes if a != "C"}
    kept_units = {a: u for a, u in units.items() if a in full_scale}
    n_channels = data.shape[axes.index("C")] if "C" in axes else 1
    if rgb:
        names = _RGB_NAMES[:n_channels]
    elif len(channel_names) == n_channels:
        names = list(channel_names)
    else:
        names = default_channel_names(n_channels)
    return Stack(data=data, axes=axes, scale=full_scale, channel_names=names, source=source, units=kept_units, rgb=rgb)


# ------------------------------------------------------------- bioio / aicsimageio


def _read_with_optional_reader(path: Path, reader: str, *, lazy_threshold_bytes: int) -> Stack:
    """Open ``path`` with bioio's ``BioImage`` or aicsimageio's ``AICSImage`` (first scene)."""
    if not _importable(reader):
        raise InputError(
            f"the {reader} reader is not installed; install it with pip install 'napari-morphospace[{reader}]' "
            "(plus the bioio plugin for your format, e.g. bioio-czi, bioio-nd2, bioio-lif)"
        )
    # Both libraries raise their own exception types (unsupported format, missing plugin, corrupt file).
    try:
        if reader == "bioio":
            from bioio import BioImage

            image = BioImage(path)
        else:
            from aicsimageio import AICSImage

            image = AICSImage(path)
        return stack_from_bioimage(image, source=str(path), lazy_threshold_bytes=lazy_threshold_bytes)
    except InputError:
        raise
    except Exception as err:
        raise InputError(
            f"{reader} could not read {path.name} ({type(err).__name__}: {err}); check that the file is complete and "
            "that the reader plugin for this format is installed (bioio-czi, bioio-nd2, bioio-lif, ...)"
        ) from err


def stack_from_bioimage(image: Any, *, source: str, lazy_threshold_bytes: int = 1 << 30) -> Stack:
    """Convert a bioio ``BioImage`` / aicsimageio ``AICSImage`` to a :class:`Stack`.

    Uses their documented attributes: ``dims.order`` (e.g. ``"TCZYX"`` or
    ``"TCZYXS"`` for RGB), ``dask_data`` / ``data``, ``physical_pixel_sizes``
    (``Z, Y, X`` in micrometres, ``None`` where unknown) and ``channel_names``.
    Singleton axes other than Y and X are dropped; an ``S`` axis of 3 or 4
    samples becomes an RGB ``C`` axis.
    """
    order = str(image.dims.order)
    lazy_data = image.dask_data
    data = lazy_data if lazy_data.nbytes > lazy_threshold_bytes else np.asarray(image.data)
    if 0 in data.shape:
        raise InputError(f"{source} holds an empty image (shape {data.shape}, axes {order}); re-export it with data")
    targets = []
    for axis, size in zip(order, data.shape, strict=True):
        if axis in "YX" or (axis in AXES_ORDER and size > 1):
            targets.append(axis)
        elif axis == "S" and size > 1:
            targets.append("C")
        elif size == 1:
            targets.append("")
        else:
            raise _ambiguous_axes(order, data.shape, source, f"axis {axis!r} of size {size} has no TCZYX meaning")
    if targets.count("C") > 1:
        raise _ambiguous_axes(order, data.shape, source, "an RGB image with several channels is not supported")
    rgb = (
        "S" in order
        and "C" in [t for a, t in zip(order, targets, strict=True) if a == "S"]
        and data.shape[order.index("S")] in (3, 4)
    )
    data, axes = arrange_axes(data, targets)
    sizes = image.physical_pixel_sizes
    scale = {
        axis: float(value) for axis, value in zip("ZYX", (sizes.Z, sizes.Y, sizes.X), strict=True) if value is not None
    }
    units = {axis: "µm" for axis in scale}
    names = [] if rgb else [str(n) for n in (image.channel_names or [])]
    return _make_stack(data, axes, scale, units, names, source, rgb)


# ------------------------------------------------------------------------ writing


def write_stack(path: str | os.PathLike, stack: Stack, *, overwrite: bool = False) -> Path:
    """Write ``stack`` as OME-TIFF with axes, physical pixel sizes, units and channel names.

    The file appears atomically (written to a temporary file in the same
    folder, then renamed), so a crash never leaves half a file under ``path``.
    Dask data is written plane by plane and never held in memory whole.
    ``read_stack(write_stack(path, stack))`` gives back the same data, axes,
    scale, units and channel names.

    Raises
    ------
    InputError
        ``path`` exists and ``overwrite`` is false, or its suffix is not ``.tif``/``.tiff``.
    """
    path = Path(path)
    if not path.name.lower().endswith((".tif", ".tiff")):
        raise InputError(f"cannot write {path.name}: OME-TIFF files end in .ome.tif or .ome.tiff; change the file name")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; choose another name or pass overwrite=True to replace it")
    data, file_axes = _ome_layout(stack)
    metadata = _ome_write_metadata(stack, file_axes)
    nbytes = int(np.prod(data.shape)) * np.dtype(data.dtype).itemsize
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            data if isinstance(data, np.ndarray) else _planes(data, rgb=stack.rgb),
            shape=data.shape,
            dtype=data.dtype,
            ome=True,
            bigtiff=nbytes > _CLASSIC_TIFF_LIMIT,
            photometric="rgb" if stack.rgb else "minisblack",
            metadata=metadata,
        )
    return path


def _ome_layout(stack: Stack) -> tuple[Any, str]:
    """The array and axes string as OME-TIFF stores them: RGB samples last, as ``S``."""
    if not stack.rgb:
        return stack.data, stack.axes
    channel = stack.axes.index("C")
    data = np.moveaxis(stack.data, channel, -1)
    return data, stack.axes.replace("C", "") + "S"


def _planes(data: Any, *, rgb: bool) -> Iterator[np.ndarray]:
    """Yield the 2D planes (with samples for RGB) of a lazy array in C order, one at a time."""
    plane_ndim = 3 if rgb else 2
    for index in itertools.product(*(range(n) for n in data.shape[:-plane_ndim])):
        yield np.asarray(data[index])


def _ome_write_metadata(stack: Stack, file_axes: str) -> dict[str, Any]:
    """tifffile's OME metadata: axes, PhysicalSize*/TimeIncrement with units, channel names."""
    metadata: dict[str, Any] = {"axes": file_axes}
    for axis in "ZYX":
        if axis in stack.axes and (axis in stack.units or stack.scale.get(axis, 1.0) != 1.0):
            metadata[f"PhysicalSize{axis}"] = float(stack.scale.get(axis, 1.0))
            metadata[f"PhysicalSize{axis}Unit"] = stack.units.get(axis, "pixel")
    if "T" in stack.axes and ("T" in stack.units or stack.scale.get("T", 1.0) != 1.0):
        metadata["TimeIncrement"] = float(stack.scale.get("T", 1.0))
        # OME has no "no unit" for time; a unitless interval is stored in seconds.
        metadata["TimeIncrementUnit"] = stack.units.get("T", "s")
    if not stack.rgb and len(stack.channel_names) == stack.n_channels:
        metadata["Channel"] = {"Name": list(stack.channel_names)}
    return metadata


__all__ = [
    "AXES_ORDER",
    "TIFF_SUFFIXES",
    "OTHER_MICROSCOPY_SUFFIXES",
    "Stack",
    "default_channel_names",
    "read_stack",
    "write_stack",
    "is_tiff_path",
    "can_read",
    "assign_tczyx",
    "arrange_axes",
    "stack_from_bioimage",
]
