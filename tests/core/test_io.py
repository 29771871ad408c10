"""read_stack / write_stack on files written here with known axes, scales and names."""

from __future__ import annotations

import types
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_morphospace.core.errors import InputError
from napari_morphospace.core.io import stacks as io
from napari_morphospace.core.io.stacks import (
    Stack,
    assign_tczyx,
    read_stack,
    stack_from_bioimage,
    write_stack,
)


def ramp(shape: tuple[int, ...], dtype=np.uint16) -> np.ndarray:
    """Distinct values everywhere, so any axis mix-up changes the array."""
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)


# ------------------------------------------------------------------ OME-TIFF


def test_ome_tiff_gives_axes_scale_units_and_channel_names(tmp_path: Path) -> None:
    data = ramp((2, 3, 4, 5, 6))
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.2,
            "PhysicalSizeY": 0.3,
            "PhysicalSizeZ": 1.5,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
            "PhysicalSizeZUnit": "µm",
            "TimeIncrement": 30.0,
            "TimeIncrementUnit": "s",
            "Channel": {"Name": ["dna", "membrane", "actin"]},
        },
    )
    stack = read_stack(path)
    assert stack.axes == "TCZYX"
    assert isinstance(stack.data, np.ndarray)
    np.testing.assert_array_equal(stack.data, data)
    assert stack.scale == pytest.approx({"T": 30.0, "Z": 1.5, "Y": 0.3, "X": 0.2})
    assert stack.units == {"T": "s", "Z": "µm", "Y": "µm", "X": "µm"}
    assert stack.channel_names == ["dna", "membrane", "actin"]
    assert not stack.rgb
    assert stack.source == str(path)


def test_ome_units_are_converted_to_micrometres_and_seconds(tmp_path: Path) -> None:
    path = tmp_path / "nm.ome.tif"
    tifffile.imwrite(
        path,
        ramp((3, 4, 5)),
        ome=True,
        metadata={
            "axes": "TYX",
            "PhysicalSizeX": 200.0,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 250.0,
            "PhysicalSizeYUnit": "nm",
            "TimeIncrement": 500.0,
            "TimeIncrementUnit": "ms",
        },
    )
    stack = read_stack(path)
    assert stack.scale == pytest.approx({"T": 0.5, "Y": 0.25, "X": 0.2})
    assert stack.units == {"T": "s", "Y": "µm", "X": "µm"}


def test_singleton_ome_axes_are_dropped(tmp_path: Path) -> None:
    data = ramp((1, 1, 4, 5, 6))
    path = tmp_path / "z.ome.tif"
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "TCZYX"})
    stack = read_stack(path)
    assert stack.axes == "ZYX"
    np.testing.assert_array_equal(stack.data, data[0, 0])
    assert stack.channel_names == ["ch0"]
    assert stack.scale == {"Z": 1.0, "Y": 1.0, "X": 1.0}
    assert stack.units == {}


# ------------------------------------------------------------------ ImageJ


def test_imagej_hyperstack_is_reordered_to_tczyx_with_calibration(tmp_path: Path) -> None:
    data = ramp((2, 4, 3, 5, 6))  # ImageJ order T Z C Y X
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.4),
        metadata={
            "axes": "TZCYX",
            "spacing": 2.0,
            "unit": "micron",
            "finterval": 10.0,
            "Labels": ["dapi", "gfp", "rfp"] * 8,
        },
    )
    stack = read_stack(path)
    assert stack.axes == "TCZYX"
    np.testing.assert_array_equal(stack.data, data.transpose(0, 2, 1, 3, 4))
    assert stack.scale == pytest.approx({"T": 10.0, "Z": 2.0, "Y": 0.4, "X": 0.25})
    assert stack.units == {"T": "s", "Z": "µm", "Y": "µm", "X": "µm"}
    assert stack.channel_names == ["dapi", "gfp", "rfp"]


def test_imagej_labels_that_differ_per_plane_are_not_channel_names(tmp_path: Path) -> None:
    path = tmp_path / "slices.tif"
    tifffile.imwrite(
        path,
        ramp((2, 2, 5, 6)),
        imagej=True,
        metadata={
            "axes": "ZCYX",
            "Labels": ["a", "b", "c", "d"],
        },
    )
    stack = read_stack(path)
    assert stack.axes == "CZYX"
    assert stack.channel_names == ["ch0", "ch1"]
    assert stack.units == {}  # no unit in the file: sizes stay in pixels


# ------------------------------------------------------------------ plain TIFF


def test_plain_2d_tiff(tmp_path: Path) -> None:
    data = ramp((5, 6), np.float32)
    tifffile.imwrite(tmp_path / "a.tif", data)
    stack = read_stack(tmp_path / "a.tif")
    assert stack.axes == "YX"
    assert stack.data.dtype == np.float32
    np.testing.assert_array_equal(stack.data, data)
    assert stack.scale == {"Y": 1.0, "X": 1.0}
    assert stack.channel_names == ["ch0"]


def test_plain_multipage_tiff_is_a_z_stack(tmp_path: Path) -> None:
    data = ramp((7, 5, 6))
    tifffile.imwrite(tmp_path / "a.tif", data)  # tifffile calls this axis Q (unknown)
    stack = read_stack(tmp_path / "a.tif")
    assert stack.axes == "ZYX"
    np.testing.assert_array_equal(stack.data, data)


def test_axes_override_for_a_plain_tiff(tmp_path: Path) -> None:
    data = ramp((7, 5, 6))
    tifffile.imwrite(tmp_path / "a.tif", data)
    stack = read_stack(tmp_path / "a.tif", axes="TYX")
    assert stack.axes == "TYX"
    np.testing.assert_array_equal(stack.data, data)
    with pytest.raises(InputError, match="3 distinct letters"):
        read_stack(tmp_path / "a.tif", axes="ZYXC")


def test_shaped_metadata_axes_are_used(tmp_path: Path) -> None:
    data = ramp((5, 2, 6, 7))
    tifffile.imwrite(tmp_path / "a.tif", data, metadata={"axes": "ZCYX"})
    stack = read_stack(tmp_path / "a.tif")
    assert stack.axes == "CZYX"
    np.testing.assert_array_equal(stack.data, data.transpose(1, 0, 2, 3))


def test_metric_resolution_tags_give_pixel_size_and_inches_are_ignored(tmp_path: Path) -> None:
    # 20000 pixels per cm = 0.5 µm per pixel.
    tifffile.imwrite(tmp_path / "cm.tif", ramp((5, 6)), resolution=(20000, 40000), resolutionunit="CENTIMETER")
    stack = read_stack(tmp_path / "cm.tif")
    assert stack.scale == pytest.approx({"Y": 0.25, "X": 0.5})
    assert stack.units == {"Y": "µm", "X": "µm"}
    tifffile.imwrite(tmp_path / "inch.tif", ramp((5, 6)), resolution=(72, 72), resolutionunit="INCH")
    stack = read_stack(tmp_path / "inch.tif")
    assert stack.scale == {"Y": 1.0, "X": 1.0}
    assert stack.units == {}


def test_rgb_tiff_becomes_a_flagged_channel_axis(tmp_path: Path) -> None:
    data = ramp((5, 6, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", data, photometric="rgb")
    stack = read_stack(tmp_path / "rgb.tif")
    assert stack.axes == "CYX"
    assert stack.rgb
    assert stack.channel_names == ["red", "green", "blue"]
    np.testing.assert_array_equal(stack.data, np.moveaxis(data, -1, 0))


def test_non_rgb_samples_are_channels_without_rgb_flag(tmp_path: Path) -> None:
    data = ramp((5, 6, 2))
    tifffile.imwrite(
        tmp_path / "two.tif", data, photometric="minisblack", planarconfig="contig", extrasamples=["unspecified"]
    )
    stack = read_stack(tmp_path / "two.tif")
    assert stack.axes == "CYX"
    assert not stack.rgb
    np.testing.assert_array_equal(stack.data, np.moveaxis(data, -1, 0))


# ------------------------------------------------------------------ axis mapping


def test_assign_tczyx_drops_singletons_and_maps_samples() -> None:
    targets, rgb = assign_tczyx("IZYXS", (1, 4, 5, 6, 3), samples_are_rgb=True)
    assert targets == ["", "Z", "Y", "X", "C"]
    assert rgb
    targets, rgb = assign_tczyx("TQYX", (3, 8, 5, 6), samples_are_rgb=False)
    assert targets == ["T", "Z", "Y", "X"]
    assert not rgb


@pytest.mark.parametrize(
    ("axes", "shape"),
    [("IQYX", (2, 3, 5, 6)), ("ZQYX", (2, 3, 5, 6)), ("RYX", (4, 5, 6)), ("CYXS", (2, 5, 6, 3))],
)
def test_assign_tczyx_refuses_ambiguous_axes(axes: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match=f"axes '{axes}'.*axes="):
        assign_tczyx(axes, shape, samples_are_rgb=True, source="x.tif")


# ------------------------------------------------------------------ lazy


def test_large_contiguous_file_opens_lazily_with_equal_values(tmp_path: Path) -> None:
    data = ramp((2, 4, 3, 16, 20))
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "TZCYX"})
    eager = read_stack(path)
    lazy = read_stack(path, lazy_threshold_bytes=1000)
    assert isinstance(lazy.data, da.Array)
    assert lazy.axes == eager.axes == "TCZYX"
    np.testing.assert_array_equal(lazy.data[1, 2, 3, 4:9, 5:11].compute(), eager.data[1, 2, 3, 4:9, 5:11])
    np.testing.assert_array_equal(lazy.data.compute(), eager.data)


def test_large_compressed_file_opens_lazily_through_zarr(tmp_path: Path) -> None:
    data = ramp((6, 16, 20))
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(path, data, compression="zlib", metadata={"axes": "ZYX"})
    lazy = read_stack(path, lazy_threshold_bytes=1000)
    assert isinstance(lazy.data, da.Array)
    np.testing.assert_array_equal(lazy.data.compute(), data)


# ------------------------------------------------------------------ bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_stack(tmp_path / "nope.tif")


def test_text_file_named_tif(tmp_path: Path) -> None:
    (tmp_path / "notes.tif").write_text("not an image")
    with pytest.raises(InputError, match="not a TIFF"):
        read_stack(tmp_path / "notes.tif")


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("lazy_threshold_bytes", [1 << 30, 1000])
def test_truncated_file_is_refused_when_opened(
    tmp_path: Path, compression: str | None, lazy_threshold_bytes: int
) -> None:
    # A lazy open must notice too, not fail later in the middle of a computation.
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, ramp((6, 40, 50)), compression=compression, metadata={"axes": "ZYX"})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(InputError, match="truncated"):
        read_stack(path, lazy_threshold_bytes=lazy_threshold_bytes)


def test_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unknown file extension .png"):
        read_stack(tmp_path / "a.png")


def test_czi_without_optional_reader_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io, "_importable", lambda module: False)
    (tmp_path / "a.czi").write_bytes(b"ZISRAWFILE")
    with pytest.raises(InputError, match=r"napari-morphospace\[bioio\].*bioio-czi"):
        read_stack(tmp_path / "a.czi")
    with pytest.raises(InputError, match=r"pip install 'napari-morphospace\[aicsimageio\]'"):
        read_stack(tmp_path / "a.czi", reader="aicsimageio")


def test_unknown_reader_name(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", ramp((5, 6)))
    with pytest.raises(InputError, match="unknown reader 'pillow'"):
        read_stack(tmp_path / "a.tif", reader="pillow")


def test_zero_size_image(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 5, 6), np.uint16))
    with pytest.raises(InputError, match="empty image"):
        read_stack(tmp_path / "empty.tif")


# ------------------------------------------------------------------ bioio / aicsimageio adapter


def fake_bioimage(data: np.ndarray, order: str, sizes: tuple, names: list[str] | None) -> types.SimpleNamespace:
    """The attributes BioImage and AICSImage document, on plain objects."""
    return types.SimpleNamespace(
        dims=types.SimpleNamespace(order=order),
        data=data,
        dask_data=da.from_array(data, chunks=data.shape),
        physical_pixel_sizes=types.SimpleNamespace(Z=sizes[0], Y=sizes[1], X=sizes[2]),
        channel_names=names,
    )


def test_bioimage_adapter_drops_singletons_and_keeps_metadata() -> None:
    data = ramp((1, 2, 3, 4, 5))
    stack = stack_from_bioimage(fake_bioimage(data, "TCZYX", (1.0, 0.2, 0.2), ["dna", "mem"]), source="a.czi")
    assert stack.axes == "CZYX"
    assert isinstance(stack.data, np.ndarray)
    np.testing.assert_array_equal(stack.data, data[0])
    assert stack.scale == pytest.approx({"Z": 1.0, "Y": 0.2, "X": 0.2})
    assert stack.units == {"Z": "µm", "Y": "µm", "X": "µm"}
    assert stack.channel_names == ["dna", "mem"]


def test_bioimage_adapter_rgb_unknown_sizes_and_lazy() -> None:
    data = ramp((1, 1, 1, 4, 5, 3), np.uint8)
    stack = stack_from_bioimage(
        fake_bioimage(data, "TCZYXS", (None, None, None), ["TL"]), source="a.nd2", lazy_threshold_bytes=10
    )
    assert stack.axes == "CYX"
    assert stack.rgb
    assert isinstance(stack.data, da.Array)
    np.testing.assert_array_equal(stack.data.compute(), np.moveaxis(data[0, 0, 0], -1, 0))
    assert stack.scale == {"Y": 1.0, "X": 1.0}
    assert stack.units == {}
    assert stack.channel_names == ["red", "green", "blue"]


# ------------------------------------------------------------------ writing


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    data = ramp((3, 2, 4, 5, 6))
    stack = Stack(
        data=data,
        axes="TCZYX",
        scale={"T": 2.5, "Z": 0.8, "Y": 0.1, "X": 0.1},
        channel_names=["nucleus", "cell"],
        units={"T": "s", "Z": "µm", "Y": "µm", "X": "µm"},
    )
    path = write_stack(tmp_path / "out.ome.tif", stack)
    back = read_stack(path)
    assert back.axes == "TCZYX"
    np.testing.assert_array_equal(back.data, data)
    assert back.scale == pytest.approx(stack.scale)
    assert back.units == stack.units
    assert back.channel_names == ["nucleus", "cell"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.ome.tif"]  # no temporary file left behind


def test_write_lazy_rgb_round_trips(tmp_path: Path) -> None:
    data = ramp((3, 2, 5, 6), np.uint8)
    stack = Stack(
        data=da.from_array(data, chunks=(1, 1, 5, 6)),
        axes="CZYX",
        scale={"Z": 2.0, "Y": 1.0, "X": 1.0},
        channel_names=["red", "green", "blue"],
        units={"Z": "µm"},
        rgb=True,
    )
    back = read_stack(write_stack(tmp_path / "rgb.ome.tif", stack))
    assert back.axes == "CZYX"
    assert back.rgb
    np.testing.assert_array_equal(back.data, data)
    assert back.scale == {"Z": 2.0, "Y": 1.0, "X": 1.0}
    assert back.units == {"Z": "µm"}


def test_write_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    first = Stack(data=np.zeros((4, 5), np.uint8), axes="YX", channel_names=["a"])
    second = Stack(data=np.ones((4, 5), np.uint8), axes="YX", channel_names=["b"])
    path = write_stack(tmp_path / "a.ome.tif", first)
    with pytest.raises(InputError, match="already exists.*overwrite=True"):
        write_stack(path, second)
    assert read_stack(path).channel_names == ["a"]
    write_stack(path, second, overwrite=True)
    assert read_stack(path).channel_names == ["b"]
    np.testing.assert_array_equal(read_stack(path).data, 1)


def test_write_refuses_non_tiff_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=".ome.tif"):
        write_stack(tmp_path / "a.png", Stack(data=np.zeros((4, 5)), axes="YX"))


def test_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_imwrite(path, *args, **kwargs):
        Path(path).write_bytes(b"II*\x00 half")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken_imwrite)
    with pytest.raises(InputError, match="cannot write .*a.ome.tif \\(disk full\\)"):
        write_stack(tmp_path / "a.ome.tif", Stack(data=np.zeros((4, 5)), axes="YX"))
    assert list(tmp_path.iterdir()) == []


def test_stack_rejects_rgb_without_colour_axis() -> None:
    with pytest.raises(ValueError, match="RGB"):
        Stack(data=np.zeros((2, 4, 5)), axes="ZYX", rgb=True)
