"""``morphospace stats`` end to end: a latent table with a known shift in, the CSV/JSON tables out; refusals exit 2."""

import json

import numpy as np
import pandas as pd
import pytest

import napari_morphospace.cli as cli
from napari_morphospace.core.analysis.inference import simulate_conditions


@pytest.fixture
def latents(tmp_path):
    """Treated cells shifted by 1 SD in mu_1 only; 5 images per condition, 30 cells each."""
    rng = np.random.default_rng(0)
    a, b, images_a, images_b = simulate_conditions(rng, images=5, cells_per_image=30, dims=4, shift=[0.0, 1.0])
    table = pd.DataFrame(np.concatenate([a, b]), columns=[f"mu_{i}" for i in range(4)])
    table.insert(0, "crop_id", np.arange(len(table)))
    table["group"] = ["treated"] * len(a) + ["control"] * len(b)
    table["source"] = [f"{name} field.tif" for name in np.concatenate([images_a, images_b])]
    path = tmp_path / "latents.csv"
    table.to_csv(path, index=False)
    return path


def _run(capsys, *args):
    code = cli.main(["stats", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_stats_writes_the_table_and_json_and_finds_the_shifted_dimension(latents, tmp_path, capsys):
    out = tmp_path / "stats"
    code, stdout, stderr = _run(
        capsys,
        "--latents",
        latents,
        "--groups",
        "treated",
        "control",
        "--out",
        out,
        "--permutations",
        500,
        "--resamples",
        300,
    )
    assert code == 0, stderr
    table = pd.read_csv(out / "inference.csv")
    assert list(table.columns) == [
        "dimension",
        "mean_difference",
        "mean_difference_low",
        "mean_difference_high",
        "d",
        "d_low",
        "d_high",
        "p",
        "q",
        "significant",
    ]
    assert table.loc[table["significant"], "dimension"].tolist() == ["mu_1"]
    row = table.set_index("dimension").loc["mu_1"]
    assert row["d_low"] < row["d"] < row["d_high"] and row["d"] > 0.7 and row["p"] == pytest.approx(1 / 501)
    result = json.loads((out / "inference.json").read_text())
    assert (result["a"], result["b"], result["unit"], result["cells"]) == (
        "treated",
        "control",
        "cell",
        {"a": 150, "b": 150},
    )
    assert result["distance"]["kind"] == "energy" and result["distance"]["p"] < 0.01
    assert result["settings"]["permutations"] == 500 and result["dimensions"][1]["dimension"] == "mu_1"
    assert "5 image(s) of 'treated' and 5 of 'control': test per image" in stdout

    code, _, stderr = _run(capsys, "--latents", latents, "--groups", "treated", "control", "--out", out)
    assert code == 2 and "already has inference.csv, inference.json" in stderr


def test_stats_by_image_permutes_whole_images(latents, tmp_path, capsys):
    out = tmp_path / "per-image"
    code, stdout, stderr = _run(
        capsys,
        "--latents",
        latents,
        "--groups",
        "treated",
        "control",
        "--by-image",
        "--out",
        out,
        "--resamples",
        200,
        "--distance",
        "mmd",
    )
    assert code == 0, stderr
    result = json.loads((out / "inference.json").read_text())
    assert (result["unit"], result["units"], result["arrangements"], result["exact"]) == (
        "image",
        {"a": 5, "b": 5},
        252,
        True,
    )
    assert result["distance"]["kind"] == "mmd" and result["distance"]["bandwidth"] > 0
    assert "252 all relabellings of the images" in stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--groups", "treated", "mutant"], "has no group 'mutant'; its groups are control, treated"),
        (["--group-by", "condition"], "has no column 'condition'"),
        (["--permutations", "5"], "permutations is 5; use at least 100"),
        (["--by-image", "--image-column", "field"], "no 'field' column naming their image"),
    ],
)
def test_stats_refusals_are_one_line_and_write_nothing(latents, tmp_path, capsys, extra, message):
    out = tmp_path / "refused"
    code, _, stderr = _run(capsys, "--latents", latents, "--out", out, *extra)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_stats_with_three_groups_asks_which_two(latents, tmp_path, capsys):
    table = pd.read_csv(latents)
    table.loc[:9, "group"] = "mock"
    table.to_csv(latents, index=False)
    code, _, stderr = _run(capsys, "--latents", latents, "--out", tmp_path / "out")
    assert (
        code == 2 and "has 3 group(s) (control, mock, treated); choose the two to compare with --groups A B" in stderr
    )
