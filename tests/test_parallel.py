"""Crop making and embedding on dask.distributed workers give exactly what one process gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from napari_morphospace.cli import main
from napari_morphospace.core.analysis.embed import embed, embed_on_cluster
from napari_morphospace.core.cells.crop_set import load_crop_set
from napari_morphospace.core.cells.sample_data import SampleSettings, make_sample_data
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.parallel import dask_client
from napari_morphospace.core.project.demo import write_sample_files
from napari_morphospace.core.training.bundle import new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    images, labels = [], []
    for seed in (3, 4):  # 2 x 2 images of 10 cells
        sample = make_sample_data(SampleSettings(n_cells=10, seed=seed))
        found = write_sample_files(sample, folder / f"s{seed}")
        images += found[0]
        labels += found[1]
    return images, labels


@pytest.fixture(scope="module")
def two_workers():
    with dask_client(workers=2) as client:
        yield client


def test_crops_on_two_workers_equal_the_crops_of_one_process(sample_files, tmp_path, two_workers, monkeypatch):
    images, labels = sample_files
    args = ["crops", *map(str, images), "--labels", *map(str, labels), "--size", "40", "--preset", "macrophage"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    monkeypatch.setattr("napari_morphospace.core.cells.crop_job.dask_client", lambda **_: _same(two_workers))
    assert main([*args, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    one, two = load_crop_set(tmp_path / "one", in_memory=True), load_crop_set(tmp_path / "two", in_memory=True)
    assert len(one) == 40
    np.testing.assert_array_equal(two.images, one.images)
    pd.testing.assert_frame_equal(two.table, one.table)
    assert (two.channel_names, two.spacing, two.preprocess) == (one.channel_names, one.spacing, one.preprocess)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no part folders left


def test_embedding_on_two_workers_equals_one_process(tmp_path, two_workers, monkeypatch):
    from napari_morphospace.core.cells import crop_set as data

    monkeypatch.setattr(data, "SHARD_BYTES", 16 * 4 * 24 * 24 * 4)  # shards of 16 crops: 4 blocks, 4 tasks
    monkeypatch.setattr(data, "CHUNK_BYTES", 4 * 4 * 24 * 24 * 4)
    rng = np.random.default_rng(5)
    crops = rng.random((60, 4, 24, 24)).astype(np.float32)
    table = pd.DataFrame(
        {
            "crop_id": np.arange(60),
            "source": "a.tif",
            "label_id": np.arange(1, 61),
            "t": 0,
            "group": "a",
            "annotation": "",
            "y_start": 0,
            "y_stop": 24,
            "x_start": 0,
            "x_stop": 24,
        }
    )
    from napari_morphospace.core.cells.crop_set import CropSet, save_crop_set

    save_crop_set(CropSet(crops, table, ["a", "b", "c", "d"], (1.0, 1.0), None), tmp_path / "crops")
    settings = ModelSettings(model="beta-vae", latent_dim=4, base_channels=8)
    torch.manual_seed(0)
    model = build_model(settings, (4, 24, 24)).eval()
    save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=(4, 24, 24),
            channel_names=["a", "b", "c", "d"],
            preprocess=None,
            train_settings=TrainSettings(),
            provenance={},
            history=[],
        ),
        tmp_path / "model",
    )
    expected = embed(model, load_crop_set(tmp_path / "crops", in_memory=True), batch_size=7)
    streamed = embed(model, load_crop_set(tmp_path / "crops", in_memory=False), batch_size=7)
    pd.testing.assert_frame_equal(streamed, expected)  # read ahead from disk: the same rows
    parallel = embed_on_cluster(two_workers, tmp_path / "model", tmp_path / "crops", batch_size=7)
    pd.testing.assert_frame_equal(parallel, expected, check_exact=False, rtol=1e-6, atol=1e-6)


def test_a_scheduler_that_cannot_be_reached_is_a_clear_error():
    with pytest.raises(InputError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        with dask_client(scheduler="tcp://127.0.0.1:9", timeout_s=1):
            pass
    with pytest.raises(InputError, match="workers is 0"):
        with dask_client(workers=0):
            pass


class _same:
    """A context manager giving an existing client (the module's two workers) without closing it."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        return False
