"""Opening files as a user does (File > Open, drag and drop): which reader napari offers for what."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from npe2 import PluginManager
from skimage import io as skio

from napari_morphospace.core.project.analysis_folder import create_analysis

ANALYSIS_READER = "napari-morphospace.get_analysis_reader"
STACK_READER = "napari-morphospace.get_reader"


def _offered(path) -> list[str]:
    """The reader commands napari would offer for ``path`` (what decides whether it asks "choose reader")."""
    manager = PluginManager.instance()
    manager.discover()
    return sorted(r.command for r in manager.iter_compatible_readers([str(path)]))


@pytest.fixture
def files(tmp_path, sources):
    png = tmp_path / "photo.png"
    skio.imsave(png, np.arange(64, dtype=np.uint8).reshape(8, 8), check_contrast=False)
    folder = tmp_path / "analysis"
    create_analysis(folder)
    # The images inside the folder: napari's File > Open Folder cannot ask for consent to read outside it.
    inside = [[shutil.copy(path, folder / Path(path).name) for path in paths] for paths in sources[:2]]
    create_analysis(folder, images=inside[0], labels=inside[1], groups=["control", "treated"], overwrite=True)
    return png, sources[0][0], folder


def test_the_analysis_reader_is_offered_for_folders_only(files):
    png, tif, folder = files
    assert not [c for c in _offered(png) if c.startswith("napari-morphospace")]  # napari opens PNGs without asking
    assert [c for c in _offered(tif) if c.startswith("napari-morphospace")] == [STACK_READER]
    assert ANALYSIS_READER in _offered(folder)


def test_a_png_opens_without_a_reader_question_and_an_analysis_folder_still_opens(files, make_napari_viewer):
    png, tif, folder = files
    viewer = make_napari_viewer()
    # File > Open passes plugin=None: with more than one reader on offer napari raises MultipleReaderError
    # (the window turns it into the "choose reader" question).
    [layer] = viewer.open(str(png), plugin=None)
    np.testing.assert_array_equal(layer.data, np.arange(64).reshape(8, 8))
    layers = viewer.open(str(folder), plugin="napari-morphospace")
    assert [layer.name for layer in layers] == [
        "control",
        "control_labels",
        "treated",
        "treated_labels",
    ]  # as File > Open names them
    assert layers[1].data.max() == tifffile.imread(tif.with_name("control_labels.tif")).max()
