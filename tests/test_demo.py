"""``morphospace demo --headless`` end to end in a tiny configuration: analysis folder, statistics and report."""

import json

import torch

from napari_morphospace.cli import main
from napari_morphospace.core.project.analysis_folder import open_analysis

TINY = ["--n-cells", "16", "--epochs", "1", "--latent-dim", "4", "--batch-size", "8", "--threads", "1"]


def test_headless_demo_writes_an_analysis_folder_and_a_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--headless", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert f"analysis folder {out}/" in printed and "report.html" in printed
    assert "known answer PASSED" in printed or "known answer FAILED" in printed
    assert torch.get_num_threads() == 1  # the demo's own thread setting is undone

    analysis = open_analysis(out)
    assert analysis.problems == []
    assert len(analysis.crop_set) == 32 and analysis.crop_set.images.shape[1:] == (3, 32, 32)
    assert list(analysis.latents["crop_id"]) == list(analysis.crop_set.table["crop_id"])
    assert analysis.bundle.latent_dim == 4 and len(analysis.bundle.config["history"]) == 1
    assert len(analysis.factors) == 32 and [s.group for s in analysis.manifest.sources] == ["control", "treated"]

    summary = json.loads((out / "demo.json").read_text())
    assert set(summary["seconds"]) == {"sample", "crops", "train", "embed", "statistics", "report"}
    statistics = json.loads((out / "statistics.json").read_text())
    assert (
        len(statistics["cohens_d"]) == 4 and statistics["known_answer"]["dimension"] == statistics["top_dimensions"][0]
    )
    report = (out / "report.html").read_text()
    assert report.count('<img src="data:image/png;base64,') >= 10
    assert not list(out.glob("**/*.ckpt")), "Lightning checkpoints (pickles) must not end up in the analysis folder"


def test_the_default_demo_finds_its_known_answer(tmp_path, capsys):
    """The README's first command, headless: the dimension that separates treated from control follows size."""
    assert main(["demo", "--headless", "--out", str(tmp_path / "demo")]) == 0
    assert "known answer PASSED" in capsys.readouterr().out
    answer = json.loads((tmp_path / "demo" / "statistics.json").read_text())["known_answer"]
    assert answer["best_factor"] == "size" and answer["best_rho"] > 0.5


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["demo", "--headless", "--out", str(tmp_path), *TINY]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["demo", "--headless", "--out", str(tmp_path), "--overwrite", *TINY]) == 2
    assert "is not a demo output folder written by napari-morphospace" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"
