"""The HTML report: every section with real, decodable figures for a tiny demo run; "not available" without a model."""

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_morphospace.core.cells.crop_set import CropSet, bbox_columns
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.figures.training import training_curves_figure
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.analysis_folder import (
    create_analysis,
    open_analysis,
    save_analysis,
)
from napari_morphospace.core.project.demo import DemoSettings, run_demo
from napari_morphospace.core.project.report import (
    SECTIONS,
    _source_label_images,
    check_known_answer,
    factor_columns,
    settings_rows,
    write_report,
)
from napari_morphospace.core.training.bundle import new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings

TINY = DemoSettings(n_cells=16, epochs=1, latent_dim=4, batch_size=8, threads=1)
_IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    run_demo(out, TINY)
    return out


def sections_of(text: str) -> dict[str, str]:
    """Section title -> its HTML, split at the <h2> headings of <section> elements."""
    parts = re.findall(r'<section id="s\d+"><h2>(.*?)</h2>(.*?)</section>', text, flags=re.S)
    return {title: body for title, body in parts}


def png_sizes(body: str) -> list[tuple[int, int]]:
    sizes = []
    for data in _IMG.findall(body):
        raw = base64.b64decode(data, validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
        with Image.open(io.BytesIO(raw)) as image:
            sizes.append(image.size)
    return sizes


def test_report_of_a_demo_run_has_every_section_with_figures(demo_folder):
    text = (demo_folder / "report.html").read_text()  # written by run_demo with write_report
    sections = sections_of(text)
    assert list(sections) == [s.replace("'", "&#x27;") for s in SECTIONS]
    with_figures = {
        "Data and preprocessing": 1,
        "Training": 1,
        "Per-dimension KL": 1,
        "Group differences (Cohen&#x27;s d)": 1,
        "Top dimensions: KDE and violin plots": 2,
        "Latent traversals": 2,
        "Difference maps": 1,
        "Grad-CAM": 1,
    }
    for title, count in with_figures.items():
        sizes = png_sizes(sections[title])
        assert len(sizes) == count, title
        assert all(w > 50 and h > 50 for w, h in sizes), (title, sizes)
    for title, body in sections.items():
        assert "not available" not in body or title in ("Classifier", "Tracks through latent space"), (
            title,
            body[:300],
        )
    assert "no track ids" in sections["Tracks through latent space"]  # the demo's cells are still images
    assert "no classifier was trained" in sections["Classifier"]
    learned = sections["What the model learned"]
    assert "active units" in learned and "held-out reconstruction SSIM" in learned
    assert "<td>area</td>" in learned and "pixel PCA" in learned and "ratio" in learned  # probe from the labels
    assert re.search(r"Check \|ρ\| &gt; 0.5: (PASSED|FAILED)", sections["Known answer"])
    assert (
        "MIG" in sections["Disentanglement (MIG and DCI)"]
        and "<td>size</td>" in sections["Disentanglement (MIG and DCI)"]
    )
    versions = sections["Versions and settings"]
    assert (
        "<td>latent_dim</td><td>4</td>" in versions and "<td>preprocess.steps[0].name</td><td>resize</td>" in versions
    )
    assert "<pre>" not in text and "&quot;" not in versions  # settings, provenance and metrics are tables, not JSON
    assert 'src="http' not in text and "<link" not in text and "<script" not in text  # self-contained


def test_probe_finds_the_label_images_under_the_names_the_cells_widget_gives_sources(demo_folder):
    # The command line names a crop's source by its image file, the Cells widget by its labels layer, which
    # File > Open names after the label file: the probe must find the label image under both names.
    analysis = open_analysis(demo_folder)
    labels, _ = _source_label_images(analysis)
    for source in analysis.manifest.sources:
        label_file = analysis.labels_path(source)
        assert labels[label_file.stem].shape == labels[Path(source.image.absolute).name].shape


def test_a_bundle_written_back_from_memory_keeps_its_diagnostics(demo_folder, tmp_path):
    from napari_morphospace.core.training.bundle import load_bundle, save_bundle

    bundle = open_analysis(demo_folder).bundle
    assert bundle.diagnostics is not None
    again = load_bundle(save_bundle(bundle, tmp_path / "again"))
    assert again.diagnostics == bundle.diagnostics
    assert again.config == bundle.config


def test_existing_report_is_kept_without_overwrite(tmp_path):
    target = tmp_path / "r.html"
    target.write_text("mine")
    create_analysis(tmp_path / "a")
    with pytest.raises(InputError, match="already exists"):
        write_report(tmp_path / "a", target)
    assert target.read_text() == "mine"


def test_folder_without_a_model_lists_sections_as_not_available_and_escapes_names(tmp_path):
    folder = tmp_path / "a"
    manifest = create_analysis(folder)
    rng = np.random.default_rng(1)
    groups = ["<script>alert(1)</script>"] * 4 + ["treated & co"] * 4
    table = pd.DataFrame(
        {
            "crop_id": range(8),
            "source": "x.tif",
            "label_id": range(1, 9),
            "t": 0,
            "group": groups,
            "annotation": "",
            **{c: 0 for c in bbox_columns(2)},
        }
    )
    save_analysis(manifest, crop_set=CropSet(rng.random((8, 1, 16, 16), dtype=np.float32), table, ["c0"]))
    text = write_report(folder, folder / "report.html").read_text()
    sections = sections_of(text)
    assert list(sections)[0] == "Data and preprocessing" and len(png_sizes(sections["Data and preprocessing"])) == 1
    for title in ("Training", "Per-dimension KL", "Latent traversals", "Difference maps", "Grad-CAM", "Known answer"):
        assert '<p class="na">not available: ' in sections[title], title
    assert "no model bundle" in sections["Training"] and "no latent table" in sections["Per-dimension KL"]
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "treated &amp; co" in text


def test_known_answer_check_finds_the_dimension_that_follows_a_shifted_factor():
    rng = np.random.default_rng(0)
    n = 60
    group = np.repeat(["control", "treated"], n)
    size = np.concatenate([rng.normal(10, 1, n), rng.normal(12, 1, n)])
    latents = pd.DataFrame(
        {
            "crop_id": range(2 * n),
            "label_id": np.tile(np.arange(1, n + 1), 2),
            "group": group,
            "mu_0": rng.normal(size=2 * n),
            "mu_1": -size + rng.normal(0, 0.3, 2 * n),
        }
    )
    factors = pd.DataFrame(
        {"group": group, "label_id": latents["label_id"], "size": size, "texture": rng.uniform(size=2 * n)}
    )
    check = check_known_answer(latents, factors, ["size", "texture"])
    assert check["dimension"] == 1 and check["cohens_d"] < -1
    assert check["best_factor"] == "size" and check["best_rho"] < -0.8 and check["passed"]
    unrelated = factors.assign(size=rng.uniform(size=2 * n))
    assert not check_known_answer(latents, unrelated, ["size", "texture"])["passed"]


def test_classifier_metrics_saved_with_the_analysis_appear_in_the_report(demo_folder, tmp_path):
    """A metrics document (core.classifier.report.metrics_document) saved as classifier.json is tabulated."""
    import shutil

    folder = tmp_path / "with-classifier"
    shutil.copytree(demo_folder, folder)
    fold = {
        "balanced_accuracy": 0.875,
        "macro_f1": 0.8,
        "mcc": 0.75,
        "auroc": None,
        "n_crops": 8,
        "confusion": [[3, 1], [0, 4]],
        "average_precision": {"control": 0.9, "treated": 0.95},
    }
    document = {
        "label_column": "group",
        "classes": ["control", "treated"],
        "stopped": False,
        "folds": [fold],
        "pooled": {**fold, "balanced_accuracy": 0.9375},
        "settings": {"fusion": "late"},
        "fold_mean": {"balanced_accuracy": 0.875, "macro_f1": 0.8, "mcc": 0.75, "auroc": None},
        "fold_sd": {"balanced_accuracy": 0.125, "macro_f1": 0.05, "mcc": 0.25, "auroc": None},
        "channel_weights": {"membrane": 0.2, "nucleus": 0.8},
        "channel_evidence": {
            "control": {"membrane": 0.25, "nucleus": 0.75},
            "treated": {"membrane": 0.6, "nucleus": 0.4},
        },
    }
    save_analysis(folder, classifier=document)
    write_report(folder, folder / "report.html", overwrite=True)
    section = sections_of((folder / "report.html").read_text())["Classifier"]
    assert "not available" not in section
    assert "<td>pooled</td><td>0.9375</td><td>0.8</td><td>0.75</td>" in section
    assert "<td>control</td><td>3</td><td>1</td>" in section  # confusion, true class in rows
    assert "<td>treated</td><td>0.6</td><td>0.4</td>" in section  # channel evidence
    assert "<td>fold SD</td><td>0.125</td><td>0.05</td><td>0.25</td><td>None</td>" in section
    assert "late fusion" in section and "<td>0.2</td><td>0.8</td>" in section  # the channel weights


def test_one_condition_gets_every_analysis_except_the_group_comparisons(tmp_path):
    # Exploring one condition is the usual case: dimensions are ranked by their KL to the prior instead of |d|.
    rng = np.random.default_rng(3)
    n, logvar = 160, np.array([-1.0, -0.5, -3.0, 0.0])
    mu = rng.normal(0, 0.1, (n, 4))
    kl = 0.5 * np.mean(mu**2 + np.exp(logvar) - logvar - 1, axis=0)  # the closed form, by hand
    assert list(np.argsort(-kl)) == [2, 0, 1, 3]
    table = pd.DataFrame(
        {
            "crop_id": range(n),
            "source": "A9 p10d.tif",
            "label_id": range(1, n + 1),
            "t": 0,
            "group": "A9",
            "annotation": "",
            **{c: 0 for c in bbox_columns(2)},
        }
    )
    latents = table.assign(**{f"mu_{k}": mu[:, k] for k in range(4)}, **{f"logvar_{k}": logvar[k] for k in range(4)})
    settings = ModelSettings(latent_dim=4)
    bundle = save_bundle(
        new_bundle(
            build_model(settings, (1, 16, 16)),
            model_settings=settings,
            input_shape=(1, 16, 16),
            channel_names=["c0"],
            preprocess=None,
            train_settings=TrainSettings(),
            provenance={},
            history=[{"epoch": 0, "train_loss": 2.0, "val_loss": 3.0}],
        ),
        tmp_path / "bundle",
    )
    factors = tmp_path / "factors.csv"
    pd.DataFrame(
        {"group": "A9", "label_id": table["label_id"], "size": 10 * mu[:, 2] + 5, "elongation": mu[:, 0]}
    ).to_csv(factors, index=False)
    folder = tmp_path / "one condition"
    save_analysis(
        create_analysis(folder),
        crop_set=CropSet(rng.random((n, 1, 16, 16), dtype=np.float32), table, ["c0"]),
        model=bundle,
        latents=latents,
        factors=factors,
    )
    opened = open_analysis(folder, allow_external=True)  # the factor table lies outside the folder
    sections = sections_of(write_report(opened, folder / "report.html").read_text())

    expected_figures = {
        "Per-dimension KL": 1,
        "Top dimensions: KDE and violin plots": 2,
        "Latent traversals": 1,
        "Difference maps": 1,
        "Grad-CAM": 1,
    }
    for title, count in expected_figures.items():
        assert "not available" not in sections[title] and len(png_sizes(sections[title])) == count, title
    first_row = re.search(
        r"<th>KL \[nats\]</th></tr></thead><tbody><tr><td>(.*?)</td><td>(.*?)</td>", sections["Per-dimension KL"]
    )
    assert first_row.groups() == ("dim 2", f"{kl[2]:.4g}")
    for title in ("Top dimensions: KDE and violin plots", "Latent traversals", "Difference maps"):
        assert (
            "top dimensions [2, 0, 1] (ranked by KL to the prior)" in sections[title]
            or "each top dimension (ranked by KL to the prior)" in sections[title]
        ), title
    assert re.findall(r"<td>dim (\d)</td>", sections["Difference maps"]) == ["2", "0", "1"]
    assert "μ2" in sections["Grad-CAM"]
    # Only the comparisons say they need two groups, and say why.
    for title in ("Group differences (Cohen&#x27;s d)", "Known answer"):
        assert (
            "not available: the cells form one group (&#x27;A9&#x27;); Cohen&#x27;s d compares two groups"
            in sections[title]
        )
    # Disentanglement needs factors, not groups: each factor's most important dimension is the one made from it.
    rows = dict(
        re.findall(
            r"<tr><td>(size|elongation)</td>(?:<td>[^<]*</td>){2}<td>(\d)</td></tr>",
            sections["Disentanglement (MIG and DCI)"],
        )
    )
    assert rows == {"size": "2", "elongation": "0"}


def test_loss_curves_have_a_log_axis_where_the_values_are_positive():
    history = [
        {"epoch": e, "train_loss": 500 / (e + 1), "val_loss": 600 / (e + 1), "train_tc": 0.5 - e} for e in range(6)
    ]
    figure = training_curves_figure(history)
    scales = {ax.get_title(): ax.get_yscale() for ax in figure.axes}
    assert scales == {"loss": "log", "tc": "linear"}  # an estimated TC term can go below 0


def test_settings_become_rows_of_a_table():
    data = {
        "crop": {"size": [16, 64, 64], "mask": True, "channels": None},
        "steps": [{"name": "resize", "shape": [8, 8]}],
    }
    assert settings_rows(data) == [
        ("crop.size", "16, 64, 64"),
        ("crop.mask", "yes"),
        ("crop.channels", "—"),
        ("steps[0].name", "resize"),
        ("steps[0].shape", "8, 8"),
    ]


def test_factor_columns_are_the_varying_numbers_that_describe_cells():
    """Ids (the cell table's ID_COLUMNS), the group and centroids are not factors; constant and text columns neither."""
    factors = pd.DataFrame(
        {
            "group": ["a", "b", "a"],
            "label_id": [1, 2, 3],
            "crop_id": [0, 1, 2],
            "t": [0, 0, 1],
            "track_id": [5, 6, 7],
            "centroid_y": [1.0, 2.0, 3.0],
            "size": [1.0, 2.0, 4.0],
            "shape": [0.1, 0.1, 0.1],
            "note": ["x", "y", "z"],
        }
    )
    assert factor_columns(factors) == ["size"]
