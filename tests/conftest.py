"""Settings shared by every test."""

import numpy as np
import pytest
import tifffile
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run torch on one thread: the test models are tiny, and on a busy 2-core machine
    two threads competing made their steps 10-30x slower (measured on the CI machine kind)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sources(tmp_path):
    """Two 40x40 TIFF images with labels 1..3 each, in a data folder (analysis folder tests)."""
    data = tmp_path / "data"
    data.mkdir()
    images, labels = [], []
    for name in ("control", "treated"):
        label_image = np.zeros((40, 40), np.uint16)
        for i in range(3):
            label_image[4 + 12 * i : 12 + 12 * i, 5:15] = i + 1
        tifffile.imwrite(data / f"{name}.tif", (label_image * 100).astype(np.uint16))
        tifffile.imwrite(data / f"{name}_labels.tif", label_image)
        images.append((data / f"{name}.tif").resolve())
        labels.append((data / f"{name}_labels.tif").resolve())
    return images, labels
