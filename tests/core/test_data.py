"""Crop sets survive a trip to disk unchanged, refuse damaged folders, and feed torch."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from napari_morphospace.core.cells import crop_set as data
from napari_morphospace.core.cells.crop_set import (
    CROP_TABLE_COLUMNS,
    CropSet,
    CropSetWriter,
    bbox_columns,
    concat_crop_sets,
    load_crop_set,
    save_crop_set,
)
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.training import dataset as dataset_module
from napari_morphospace.core.training.dataset import CropDataset


def make_crop_set(n: int = 5, shape: tuple[int, ...] = (2, 6, 7), seed: int = 0) -> CropSet:
    rng = np.random.default_rng(seed)
    ndim = len(shape) - 1
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": ["cells.tif"] * n,
            "label_id": np.arange(1, n + 1) * 3,
            "t": np.zeros(n, dtype=int),
            "group": ["control", "treated"] * (n // 2) + ["control"] * (n % 2),
            "annotation": [""] * n,
            **{c: rng.integers(-5, 50, n) for c in bbox_columns(ndim)},
            "area": rng.random(n) * 100,
        }
    )
    return CropSet(
        images=rng.random((n, *shape)).astype(np.float32),
        table=table,
        channel_names=["dna", "membrane"][: shape[0]],
        spacing=(0.1,) * ndim,
        preprocess={"crops": {"size": 6}, "pipeline": {"steps": [{"name": "resize", "params": {"shape": [6, 7]}}]}},
    )


def assert_same(loaded: CropSet, original: CropSet) -> None:
    np.testing.assert_array_equal(np.asarray(loaded.images), original.images)
    pd.testing.assert_frame_equal(loaded.table, original.table, check_dtype=False)
    assert loaded.channel_names == original.channel_names
    assert loaded.spacing == pytest.approx(original.spacing)
    assert loaded.preprocess == original.preprocess


@pytest.mark.parametrize("shape", [(2, 6, 7), (1, 3, 6, 7)])
def test_save_load_round_trip_2d_and_3d(tmp_path, shape):
    original = make_crop_set(shape=shape)
    path = save_crop_set(original, tmp_path / "set")
    assert sorted(p.name for p in path.iterdir()) == ["crop_set.json", "crops.csv", "crops.parquet", "images.zarr"]
    loaded = load_crop_set(path)
    assert isinstance(loaded.images, np.ndarray)
    assert_same(loaded, original)
    metadata = json.loads((path / "crop_set.json").read_text())
    assert metadata["format_version"] == data.FORMAT_VERSION and metadata["n_crops"] == 5 and metadata["created"]
    images = zarr.open_array(path / "images.zarr", mode="r")
    assert images.chunks[1:] == shape and images.shards[1:] == shape  # chunks and shards of whole crops


def test_a_large_set_is_a_few_shard_files_and_reads_back_exactly(tmp_path, monkeypatch):
    """Crops are stored in shards (one file per shard), not one file per crop; old sets still open."""
    monkeypatch.setattr(data, "CHUNK_BYTES", 2 * 6 * 7 * 4 * 4)  # 4 crops per chunk
    monkeypatch.setattr(data, "SHARD_BYTES", 2 * 6 * 7 * 4 * 16)  # 16 crops per shard
    original = make_crop_set(n=150)
    path = save_crop_set(original, tmp_path / "set")
    images = zarr.open_array(path / "images.zarr", mode="r")
    assert images.chunks[0] == 4 and images.shards[0] == 16
    shard_files = [f for f in (path / "images.zarr").rglob("*") if f.is_file() and f.name != "zarr.json"]
    assert len(shard_files) == 10  # ceil(150 / 16), not 150
    assert_same(load_crop_set(path), original)
    # object masks are stored in shards the same way (before: one file per chunk, 793 files for 101k crops)
    masks = np.random.default_rng(1).random((150, 6, 7)) > 0.5
    with_masks = save_crop_set(replace(original, masks=masks), tmp_path / "with masks")
    mask_files = [f for f in (with_masks / "masks.zarr").rglob("*") if f.is_file() and f.name != "zarr.json"]
    assert len(mask_files) == 10
    np.testing.assert_array_equal(np.asarray(load_crop_set(with_masks).masks), masks)
    # a crop set written one crop per chunk file (the first release) opens as before
    old = tmp_path / "old"
    old.mkdir()
    for name in ("crop_set.json", "crops.csv", "crops.parquet"):
        (old / name).write_bytes((path / name).read_bytes())
    zarr.create_array(store=str(old / "images.zarr"), data=original.images, chunks=(1, 2, 6, 7))
    assert_same(load_crop_set(old), original)


def test_lazy_load_keeps_images_on_disk(tmp_path, monkeypatch):
    original = make_crop_set()
    save_crop_set(original, tmp_path / "set")
    lazy = load_crop_set(tmp_path / "set", in_memory=False)
    assert isinstance(lazy.images, zarr.Array)
    assert_same(lazy, original)
    monkeypatch.setattr(data, "IN_MEMORY_LIMIT_BYTES", 100)  # the set is larger than this
    assert isinstance(load_crop_set(tmp_path / "set").images, zarr.Array)
    assert isinstance(load_crop_set(tmp_path / "set", in_memory=True).images, np.ndarray)


def test_saving_a_lazy_set_copies_it_in_blocks_and_checks_values(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK_BYTES", 2 * 6 * 7 * 4)  # 1 crop per chunk
    monkeypatch.setattr(data, "SHARD_BYTES", 3 * 2 * 6 * 7 * 4)  # 3 crops per shard
    original = make_crop_set(n=7)
    save_crop_set(original, tmp_path / "a")
    lazy = load_crop_set(tmp_path / "a", in_memory=False)
    reads = []
    monkeypatch.setattr(data, "check_crop_values", lambda block, *crop_ids: reads.append(len(block)))
    save_crop_set(lazy, tmp_path / "b")
    assert reads == [3, 3, 1]  # read and checked block by block, never whole
    assert_same(load_crop_set(tmp_path / "b"), original)


def test_existing_folders_are_only_replaced_when_asked_and_only_if_crop_sets(tmp_path):
    save_crop_set(make_crop_set(seed=1), tmp_path / "set")
    with pytest.raises(InputError, match="already exists"):
        save_crop_set(make_crop_set(seed=2), tmp_path / "set")
    replacement = make_crop_set(seed=2)
    save_crop_set(replacement, tmp_path / "set", overwrite=True)
    assert_same(load_crop_set(tmp_path / "set"), replacement)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.txt").write_text("precious")
    with pytest.raises(InputError, match="not a crop set"):
        save_crop_set(replacement, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "set"]  # no temporary folders left


def test_a_failure_mid_write_leaves_no_folder(tmp_path, monkeypatch):
    def broken_write(table, directory):
        raise OSError("disk full")

    monkeypatch.setattr(data, "_write_table", broken_write)
    with pytest.raises(InputError, match=r"cannot write .*set \(disk full\).*Nothing half-written"):
        save_crop_set(make_crop_set(), tmp_path / "set")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_old_set(tmp_path, monkeypatch):
    original = make_crop_set(seed=1)
    save_crop_set(original, tmp_path / "set")
    monkeypatch.setattr(data, "_write_table", lambda table, directory: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(InputError, match="disk full"):
        save_crop_set(make_crop_set(seed=2), tmp_path / "set", overwrite=True)
    assert_same(load_crop_set(tmp_path / "set"), original)
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_streaming_writer_appends_batches(tmp_path):
    original = make_crop_set(n=7)
    with CropSetWriter(
        tmp_path / "set", (2, 6, 7), ["dna", "membrane"], spacing=(0.1, 0.1), preprocess=original.preprocess
    ) as writer:
        for start in (0, 3, 5):
            stop = {0: 3, 3: 5, 5: 7}[start]
            writer.append(original.images[start:stop], original.table.iloc[start:stop])
        assert len(writer) == 7
        result = writer.close()
    assert_same(result, original)
    assert_same(load_crop_set(tmp_path / "set"), original)


def test_writer_refuses_mismatched_batches_and_an_exception_removes_everything(tmp_path):
    crop_set = make_crop_set()
    with pytest.raises(InputError, match="do not fit"):
        with CropSetWriter(tmp_path / "set", (2, 6, 7), ["dna", "membrane"]) as writer:
            writer.append(crop_set.images[:2], crop_set.table.iloc[:2])
            writer.append(np.zeros((1, 1, 6, 7), np.float32), crop_set.table.iloc[:1])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="3 crops but 2 table rows"):
        with CropSetWriter(tmp_path / "set", (2, 6, 7), ["dna", "membrane"]) as writer:
            writer.append(crop_set.images[:3], crop_set.table.iloc[:2])
    assert list(tmp_path.iterdir()) == []


def test_missing_damaged_and_unknown_folders_are_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_crop_set(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no crop_set.json"):
        load_crop_set(tmp_path / "empty")
    path = save_crop_set(make_crop_set(), tmp_path / "set")
    metadata = json.loads((path / "crop_set.json").read_text())
    (path / "crop_set.json").write_text(json.dumps({**metadata, "format_version": 99}))
    with pytest.raises(InputError, match="format version 99"):
        load_crop_set(path)
    (path / "crop_set.json").write_text("{not json")
    with pytest.raises(InputError, match="damaged"):
        load_crop_set(path)


def test_hand_modified_tables_are_detected(tmp_path):
    path = save_crop_set(make_crop_set(), tmp_path / "set")
    table = pd.read_parquet(path / "crops.parquet")
    table.loc[0, "annotation"] = "mitotic"
    table.to_csv(path / "crops.csv", index=False)
    with pytest.raises(InputError, match="differ"):
        load_crop_set(path)
    (path / "crops.parquet").unlink()  # the hand-edited CSV is now the only table
    assert load_crop_set(path).table.loc[0, "annotation"] == "mitotic"
    table.iloc[:3].to_csv(path / "crops.csv", index=False)
    with pytest.raises(InputError, match="3 rows but there are 5 crop images"):
        load_crop_set(path)
    (path / "crops.csv").unlink()
    with pytest.raises(InputError, match="neither"):
        load_crop_set(path)


def test_validate_names_the_problem():
    crop_set = make_crop_set()
    crop_set.validate()
    with pytest.raises(InputError, match="float32"):
        CropSet(crop_set.images.astype(np.float64), crop_set.table, crop_set.channel_names).validate()
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        CropSet(crop_set.images * 2, crop_set.table, crop_set.channel_names).validate()
    with pytest.raises(InputError, match="lacks column"):
        CropSet(crop_set.images, crop_set.table.drop(columns="x_stop"), crop_set.channel_names).validate()
    with pytest.raises(InputError, match="1 channel names for 2 channels"):
        CropSet(crop_set.images, crop_set.table, ["dna"]).validate()


def test_subset_keeps_crop_ids_for_numpy_and_lazy_sets(tmp_path):
    crop_set = make_crop_set()
    assert len(crop_set) == 5 and crop_set.spatial_ndim == 2
    part = crop_set.subset([4, 1])
    np.testing.assert_array_equal(part.images, crop_set.images[[4, 1]])
    assert list(part.table["crop_id"]) == [4, 1] and list(part.table.index) == [0, 1]
    save_crop_set(crop_set, tmp_path / "set")
    lazy_part = load_crop_set(tmp_path / "set", in_memory=False).subset([4, 1])
    assert isinstance(lazy_part.images, da.Array)
    np.testing.assert_array_equal(lazy_part.images.compute(), crop_set.images[[4, 1]])
    with pytest.raises(InputError, match="subset indices"):
        crop_set.subset([5])


def test_concat_of_numpy_and_lazy_sets_is_lazy(tmp_path):
    first, second = make_crop_set(seed=1), make_crop_set(seed=2)
    save_crop_set(second, tmp_path / "set")
    joined = concat_crop_sets([first, load_crop_set(tmp_path / "set", in_memory=False)])
    assert isinstance(joined.images, da.Array)
    np.testing.assert_array_equal(joined.images.compute(), np.concatenate([first.images, second.images]))
    assert list(joined.table["crop_id"]) == list(range(10))
    with pytest.raises(InputError, match="no crop sets"):
        concat_crop_sets([])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shape": (2, 5, 7)}, r"crop set 1 has crops of shape \(2, 5, 7\) but crop set 0 has \(2, 6, 7\)"),
        ({"channel_names": ["dna", "actin"]}, r"crop set 1 has channels \['dna', 'actin'\] but crop set 0 has"),
        ({"preprocess": {"crops": {"size": 8}}}, "crop set 1 was cropped with different crop or preprocessing"),
    ],
)
def test_joining_refuses_crops_of_another_format_in_memory_and_streamed(tmp_path, change, message):
    first, other = make_crop_set(), make_crop_set(shape=change.get("shape", (2, 6, 7)))
    other.channel_names = change.get("channel_names", other.channel_names)
    other.preprocess = change.get("preprocess", other.preprocess)
    with pytest.raises(InputError, match=message):
        concat_crop_sets([first, other])
    with pytest.raises(InputError, match=message):
        concat_crop_sets([first, other], output=tmp_path / "joined")
    assert not (tmp_path / "joined").exists() and list(tmp_path.iterdir()) == []


def test_crop_dataset_returns_float_tensors_with_labels_and_indices(tmp_path):
    crop_set = make_crop_set()
    plain = CropDataset(crop_set)
    assert len(plain) == 5
    image = plain[2]
    assert image.dtype == torch.float32 and image.shape == (2, 6, 7)
    np.testing.assert_array_equal(image.numpy(), crop_set.images[2])
    labelled = CropDataset(crop_set, label_column="group", return_index=True)
    assert labelled.classes == ["control", "treated"]
    _, label, index = labelled[1]
    assert (int(label), int(index)) == (1, 1)  # row 1 is "treated"
    with pytest.raises(InputError, match="no column 'condition'"):
        CropDataset(crop_set, label_column="condition")


def test_crop_dataset_on_disk_pickles_for_worker_processes(tmp_path):
    crop_set = make_crop_set(n=6)
    save_crop_set(crop_set, tmp_path / "set")
    dataset = CropDataset(load_crop_set(tmp_path / "set", in_memory=False), label_column="group")
    restored = pickle.loads(pickle.dumps(dataset))
    images, labels = next(iter(DataLoader(restored, batch_size=4)))
    assert images.shape == (4, 2, 6, 7)
    np.testing.assert_array_equal(images.numpy(), crop_set.images[:4])
    assert labels.tolist() == [0, 1, 0, 1]


def test_table_columns_contract():
    assert CROP_TABLE_COLUMNS == ["crop_id", "source", "label_id", "t", "group", "annotation"]
    assert bbox_columns(3) == ["z_start", "z_stop", "y_start", "y_stop", "x_start", "x_stop"]
    assert bbox_columns(2) == ["y_start", "y_stop", "x_start", "x_stop"]


def test_a_batch_from_disk_is_read_in_one_call_and_equals_memory(tmp_path, monkeypatch):
    """DataLoader asks for whole batches (``__getitems__``): shuffled, consecutive or repeated positions."""
    crop_set = make_crop_set(n=40)
    save_crop_set(crop_set, tmp_path / "set")
    on_disk = CropDataset(load_crop_set(tmp_path / "set", in_memory=False), label_column="group", return_index=True)
    reads, read_crops = [], data.read_crops
    monkeypatch.setattr(
        dataset_module,
        "read_crops",
        lambda images, positions: reads.append(len(positions)) or read_crops(images, positions),
    )
    for positions in ([7, 3, 39, 3, 0], list(range(10, 26))):
        items = on_disk.__getitems__(positions)
        np.testing.assert_array_equal(np.stack([i[0].numpy() for i in items]), crop_set.images[positions])
        assert [int(i[2]) for i in items] == positions
    assert reads == [5, 16]  # one read per batch, not one per crop
    loader = DataLoader(torch.utils.data.Subset(on_disk, list(range(40))), batch_size=8, shuffle=True)
    seen = torch.cat([batch[2] for batch in loader])
    assert sorted(seen.tolist()) == list(range(40)) and reads[2:] == [8] * 5
