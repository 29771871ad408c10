"""The npe2 reader and writer, called directly (no viewer): layer data tuples and OME-TIFF files."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_morphospace._reader import get_reader, read_layers, stack_to_layer_data
from napari_morphospace._writer import write_image
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.io.stacks import Stack, read_stack


def ramp(shape: tuple[int, ...], dtype=np.uint16) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)


@pytest.fixture
def two_channel_movie(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = ramp((3, 2, 4, 5, 6))
    path = tmp_path / "movie.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "TCZYX",
            "PhysicalSizeX": 0.1,
            "PhysicalSizeY": 0.1,
            "PhysicalSizeZ": 0.5,
            "TimeIncrement": 60.0,
            "Channel": {"Name": ["nuclei", "membrane"]},
        },
    )
    return path, data


def test_get_reader_accepts_tiffs_and_declines_others(tmp_path: Path, two_channel_movie) -> None:
    path, _ = two_channel_movie
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    assert get_reader(str(path)) is read_layers
    assert get_reader([str(path), str(path)]) is read_layers
    assert get_reader(str(tmp_path / "a.png")) is None
    assert get_reader([str(path), str(tmp_path / "a.png")]) is None
    assert get_reader(str(tmp_path)) is None
    assert get_reader([]) is None


def test_channels_become_layers_with_scale_and_metadata(two_channel_movie) -> None:
    path, data = two_channel_movie
    [(layer_data, kwargs, layer_type)] = get_reader(str(path))(str(path))
    assert layer_type == "image"
    assert layer_data is not None and np.array_equal(layer_data, data)
    assert kwargs["channel_axis"] == 1
    assert kwargs["name"] == ["movie nuclei", "movie membrane"]  # file name keeps files apart
    assert kwargs["scale"] == pytest.approx([60.0, 0.5, 0.1, 0.1])  # T Z Y X
    assert kwargs["metadata"] == {
        "source": str(path),
        "axes": "TZYX",
        "units": {"T": "s", "Z": "µm", "Y": "µm", "X": "µm"},
    }


def test_reader_output_opens_in_napari_as_one_layer_per_channel(two_channel_movie) -> None:
    from napari.components import ViewerModel  # the viewer's model, no window

    path, data = two_channel_movie
    [(layer_data, kwargs, layer_type)] = read_layers(str(path))
    assert layer_type == "image"
    layers = ViewerModel().add_image(layer_data, **kwargs)
    assert [layer.name for layer in layers] == ["movie nuclei", "movie membrane"]
    np.testing.assert_array_equal(layers[1].data, data[:, 1])
    assert tuple(layers[0].scale) == pytest.approx((60.0, 0.5, 0.1, 0.1))
    assert layers[0].metadata["axes"] == "TZYX"


def test_unnamed_single_channel_layer_is_named_after_the_file(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "field_01.tif", ramp((5, 6)))
    [(_, kwargs, layer_type)] = read_layers(str(tmp_path / "field_01.tif"))
    assert layer_type == "image"
    assert kwargs["name"] == "field_01"
    assert "channel_axis" not in kwargs
    assert kwargs["scale"] == [1.0, 1.0]


def test_integer_mask_file_opens_as_labels_and_float_mask_does_not(tmp_path: Path) -> None:
    labels = np.zeros((6, 7), np.uint16)
    labels[1:3, 2:5] = 4
    tifffile.imwrite(tmp_path / "Cell_Masks.tif", labels)
    tifffile.imwrite(tmp_path / "mask_prob.tif", labels.astype(np.float32))
    [(data, kwargs, layer_type)] = read_layers(str(tmp_path / "Cell_Masks.tif"))
    assert layer_type == "labels"
    np.testing.assert_array_equal(data, labels)
    assert kwargs["name"] == "Cell_Masks"
    [(_, _, layer_type)] = read_layers(str(tmp_path / "mask_prob.tif"))
    assert layer_type == "image"


def test_rgb_file_is_one_rgb_layer(tmp_path: Path) -> None:
    data = ramp((5, 6, 3), np.uint8)
    tifffile.imwrite(tmp_path / "brightfield.tif", data, photometric="rgb")
    [(layer_data, kwargs, layer_type)] = read_layers(str(tmp_path / "brightfield.tif"))
    assert layer_type == "image"
    assert kwargs["rgb"] is True
    np.testing.assert_array_equal(layer_data, data)
    assert kwargs["scale"] == [1.0, 1.0]


def test_several_paths_give_layers_in_order(tmp_path: Path) -> None:
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / f"{name}.tif", ramp((5, 6)))
    layers = read_layers([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")])
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["a", "b"]


def test_lazy_data_passes_through_unchanged() -> None:
    lazy = da.zeros((2, 3, 40, 50), chunks=(1, 1, 40, 50), dtype=np.uint16)
    stack = Stack(
        data=lazy, axes="CZYX", scale={"Z": 1.0, "Y": 1.0, "X": 1.0}, channel_names=["a", "b"], source="/x/big.tif"
    )
    [(layer_data, kwargs, _)] = stack_to_layer_data(stack)
    assert layer_data is lazy


def test_corrupt_file_raises_input_error(tmp_path: Path) -> None:
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    reader = get_reader(str(tmp_path / "broken.tif"))
    with pytest.raises(InputError, match="broken.tif"):
        reader(str(tmp_path / "broken.tif"))


def napari_layer_meta(data: np.ndarray, **kwargs) -> dict:
    """What napari passes to a writer: the layer's state without its data."""
    from napari.layers import Image

    _, meta, _ = Image(data, **kwargs).as_layer_data_tuple()
    return meta


def test_writer_saves_scale_name_and_axes_from_our_metadata(tmp_path: Path) -> None:
    data = ramp((3, 4, 5, 6))
    meta = napari_layer_meta(
        data,
        name="nuclei",
        scale=(60.0, 0.5, 0.1, 0.2),
        metadata={"axes": "TZYX", "units": {"T": "s", "Z": "µm", "Y": "µm", "X": "µm"}},
    )
    [written] = write_image(str(tmp_path / "out.ome.tif"), data, meta)
    back = read_stack(written)
    assert back.axes == "TZYX"
    np.testing.assert_array_equal(back.data, data)
    assert back.scale == pytest.approx({"T": 60.0, "Z": 0.5, "Y": 0.1, "X": 0.2})
    assert back.units == {"T": "s", "Z": "µm", "Y": "µm", "X": "µm"}
    assert back.channel_names == ["nuclei"]


def test_writer_guesses_axes_and_takes_napari_units(tmp_path: Path) -> None:
    data = ramp((4, 5, 6))
    meta = napari_layer_meta(data, name="stack", scale=(2.0, 0.3, 0.3), units=("micrometer",) * 3)
    [written] = write_image(str(tmp_path / "out"), data, meta)
    assert written.endswith("out.ome.tif")
    back = read_stack(written)
    assert back.axes == "ZYX"
    assert back.scale == pytest.approx({"Z": 2.0, "Y": 0.3, "X": 0.3})
    assert back.units == {"Z": "µm", "Y": "µm", "X": "µm"}


def test_writer_rgb_layer(tmp_path: Path) -> None:
    data = ramp((5, 6, 3), np.uint8)
    meta = napari_layer_meta(data, name="he", rgb=True)
    [written] = write_image(str(tmp_path / "he.ome.tif"), data, meta)
    back = read_stack(written)
    assert back.rgb and back.axes == "CYX"
    np.testing.assert_array_equal(np.moveaxis(back.data, 0, -1), data)


def test_reader_then_writer_round_trip(tmp_path: Path, two_channel_movie) -> None:
    path, data = two_channel_movie
    [(layer_data, kwargs, _)] = read_layers(str(path))
    membrane = layer_data[:, 1]
    meta = napari_layer_meta(membrane, name=kwargs["name"][1], scale=kwargs["scale"], metadata=kwargs["metadata"])
    [written] = write_image(str(tmp_path / "membrane.ome.tif"), membrane, meta)
    [(back_data, back_kwargs, _)] = read_layers(written)
    np.testing.assert_array_equal(back_data, data[:, 1])
    assert back_kwargs["name"] == "membrane"
    assert back_kwargs["scale"] == pytest.approx(kwargs["scale"])
    assert back_kwargs["metadata"]["axes"] == "TZYX"
    assert back_kwargs["metadata"]["units"] == kwargs["metadata"]["units"]


def test_writer_refuses_six_dimensions(tmp_path: Path) -> None:
    data = np.zeros((2, 2, 2, 2, 3, 4), np.uint8)
    with pytest.raises(InputError, match="6-dimensional"):
        write_image(str(tmp_path / "x.ome.tif"), data, {"name": "x", "scale": [1.0] * 6})


def test_manifest_points_at_these_functions() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-morphospace")
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    readers = [commands[r.command] for r in manifest.contributions.readers]
    assert readers == [
        "napari_morphospace._analysis_reader:get_analysis_reader",
        "napari_morphospace._reader:get_reader",
    ]
    assert commands[manifest.contributions.writers[0].command] == "napari_morphospace._writer:write_image"
