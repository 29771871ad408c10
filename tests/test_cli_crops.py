"""``morphospace crops`` end to end on synthetic files with known cells, and its refusals."""

import numpy as np
import pytest
import yaml

from napari_morphospace.cli import main
from napari_morphospace.core.cells.crop_set import load_crop_set
from napari_morphospace.core.cells.sample_data import SampleSettings, make_sample_data
from napari_morphospace.core.io.stacks import read_stack
from napari_morphospace.core.project.demo import write_sample_files


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample")
    sample = make_sample_data(SampleSettings(n_cells=12, seed=3))
    images, labels = write_sample_files(sample, folder)
    return sample, images, labels


def test_crops_from_files_map_back_to_their_source_pixels(sample_files, tmp_path, capsys):
    sample, images, labels = sample_files
    out = tmp_path / "crops"
    args = [str(p) for p in images] + ["--labels", *map(str, labels), "--group", "control", "--group", "treated"]
    assert main(["crops", *args, "--size", "48", "--out", str(out), "--save-config", str(tmp_path / "job.yaml")]) == 0
    assert "wrote 24 crops (3x48x48)" in capsys.readouterr().out

    crop_set = load_crop_set(out, in_memory=True)
    assert crop_set.images.shape == (24, 3, 48, 48)
    assert crop_set.table["group"].value_counts().to_dict() == {"control": 12, "treated": 12}
    assert list(crop_set.table["label_id"][:12]) == list(range(1, 13))
    # Every crop is its bounding box of the source, scaled once per source and channel
    # from the 0.1/99.9 percentiles (the default), with neighbouring cells masked out.
    for row_index in (0, 13):
        row = crop_set.table.iloc[row_index]
        stack = read_stack(row["source"])
        y0, y1, x0, x1 = (int(row[c]) for c in ("y_start", "y_stop", "x_start", "x_stop"))
        assert (y1 - y0, x1 - x0) == (48, 48)
        source = stack.data.astype(float)
        low, high = np.percentile(source, [0.1, 99.9], axis=(1, 2))
        region = source[:, max(y0, 0) : y1, max(x0, 0) : x1]
        expected = np.clip((region - low[:, None, None]) / (high - low)[:, None, None], 0, 1)
        crop = crop_set.images[row_index][:, max(0, -y0) :, max(0, -x0) :]
        labels_region = sample.labels[row_index // 12][max(y0, 0) : y1, max(x0, 0) : x1]
        neighbours = (labels_region != 0) & (labels_region != row["label_id"])
        np.testing.assert_allclose(crop[:, ~neighbours], expected[:, ~neighbours], atol=1e-6)
        assert np.all(crop[:, neighbours] == 0)

    job = yaml.safe_load((tmp_path / "job.yaml").read_text())
    assert job["groups"] == ["control", "treated"] and job["crop"]["size"] == 48


def test_config_file_reproduces_the_same_crop_set(sample_files, tmp_path):
    _, images, labels = sample_files
    first, second = tmp_path / "a", tmp_path / "b"
    config = tmp_path / "job.yaml"
    args = [str(images[0]), "--labels", str(labels[0]), "--size", "32", "--preset", "statistical-cell"]
    assert main(["crops", *args, "--out", str(first), "--save-config", str(config)]) == 0
    assert main(["crops", "--config", str(config), "--out", str(second)]) == 0
    a, b = load_crop_set(first, in_memory=True), load_crop_set(second, in_memory=True)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.preprocess == b.preprocess and a.preprocess["pipeline"]["steps"][0]["name"] == "subtract_mode"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--labels"], "expected at least one argument"),
        (["--size", "0"], "crop size 0 must be a positive int"),
        (["--group", "a", "--group", "b", "--group", "c"], "give one group per image"),
    ],
)
def test_bad_options_stop_with_a_message_and_write_nothing(sample_files, tmp_path, capsys, extra, message):
    _, images, labels = sample_files
    out = tmp_path / "crops"
    base = [str(images[0]), str(images[1])] + (
        ["--labels", str(labels[0]), str(labels[1])] if extra[0] != "--labels" else []
    )
    with pytest.raises(SystemExit) if extra == ["--labels"] else _no_raise():
        code = main(["crops", *base, *extra, "--out", str(out)])
        assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_labels_that_do_not_match_the_image_are_refused(sample_files, tmp_path, capsys):
    _, images, _ = sample_files
    wrong = tmp_path / "wrong_labels.tif"
    import tifffile

    tifffile.imwrite(wrong, np.ones((10, 10), np.uint16))
    assert main(["crops", str(images[0]), "--labels", str(wrong), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "shape" in err and "(10, 10)" in err
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".crops-")], "scratch folder left behind"


def test_existing_output_needs_overwrite(sample_files, tmp_path, capsys):
    _, images, labels = sample_files
    out = tmp_path / "crops"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["crops", str(images[0]), "--labels", str(labels[0]), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
