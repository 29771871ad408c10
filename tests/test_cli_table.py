"""``morphospace table``: a CellProfiler table of the real BBBC007 fields as an analysis folder and its report."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from cellprofiler_table import FEATURES, write_cellprofiler_tables
from real_data import bbbc007_fields

from napari_morphospace.cli import main
from napari_morphospace.core.project.analysis_folder import open_analysis

WHICH = (0, 4, 9)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return write_cellprofiler_tables(tmp_path_factory.mktemp("cp"), WHICH)


def _fields():
    return [bbbc007_fields()[i] for i in WHICH]


def test_cellprofiler_table_becomes_an_analysis_with_a_report(tables, tmp_path, capsys):
    nuclei, _image_table = tables
    labels = [str(f[2]) for f in _fields()]
    images = [str(f[1]) for f in _fields()]
    out = tmp_path / "analysis"
    assert main(["table", str(nuclei), "--labels", *labels, "--images", *images, "--out", str(out)]) == 0
    table = pd.read_csv(nuclei)
    assert f"{len(table)} cells with {len(FEATURES)} features" in capsys.readouterr().out
    analysis = open_analysis(out, allow_external=True)  # the fields lie outside the folder: the user's consent
    assert analysis.problems == []
    latents = analysis.latents
    np.testing.assert_array_equal(latents["feature:AreaShape_Solidity"], table["AreaShape_Solidity"])
    assert [s.group for s in analysis.manifest.sources] == ["A9", "f96 (17)", "f9620"]
    assert main(["report", str(out), "--allow-external"]) == 0
    html = (out / "report.html").read_text()
    assert "Cohen" in html and "data:image/png;base64" in html
    # Measured features are named as the table names them, and have no posterior for a KL:
    shown = re.search(r"Distribution of the measured features ([^(]+) \(ranked by", html).group(1).split(", ")
    assert shown and set(shown) <= set(FEATURES)
    assert "not applicable to a feature table (no posterior)" in html and "logvar_" not in html


def test_label_ids_the_label_image_lacks_are_refused_with_nothing_written(tables, tmp_path, capsys):
    nuclei, _image_table = tables
    table = pd.read_csv(nuclei)
    table.loc[0, "ObjectNumber"] = 9999
    bad = tmp_path / "cp" / "MyExpt_Nuclei.csv"
    bad.parent.mkdir()
    table.to_csv(bad, index=False)
    (tmp_path / "cp" / "MyExpt_Image.csv").write_text(_image_table.read_text())
    out = tmp_path / "analysis"
    assert main(["table", str(bad), "--labels", *[str(f[2]) for f in _fields()], "--out", str(out)]) == 2
    assert "name label ids that layer 'A9 p10d_labels' does not have (9999)" in capsys.readouterr().err
    assert not out.exists()


def test_images_without_labels_are_refused(tables, tmp_path, capsys):
    assert main(["table", str(tables[0]), "--images", str(_fields()[0][1]), "--out", str(tmp_path / "a")]) == 2
    assert "give --labels too" in capsys.readouterr().err


def test_stats_compares_conditions_of_a_cellprofiler_table(tables, tmp_path, capsys):
    """``morphospace stats --table``: the measurements themselves, no label images needed, under their own names."""
    nuclei, _image_table = tables  # MyExpt_Image.csv beside it names the ImageNumbers
    out = tmp_path / "stats"
    assert (
        main(
            [
                "stats",
                "--table",
                str(nuclei),
                "--group-by",
                "Metadata_Condition",
                "--groups",
                "A9",
                "f9620",
                "--features",
                "AreaShape_*",
                "--permutations",
                "200",
                "--resamples",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = pd.read_csv(out / "inference.csv").set_index("dimension")
    assert list(result.index) == [c for c in FEATURES if c.startswith("AreaShape_")]
    table = pd.read_csv(nuclei)
    a = table.loc[table["Metadata_Condition"] == "A9", "AreaShape_Area"].to_numpy(float)
    b = table.loc[table["Metadata_Condition"] == "f9620", "AreaShape_Area"].to_numpy(float)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    assert result.loc["AreaShape_Area", "d"] == pytest.approx((a.mean() - b.mean()) / pooled, rel=1e-9)
    assert result.loc["AreaShape_Area", "mean_difference"] == pytest.approx(a.mean() - b.mean(), rel=1e-9)
    capsys.readouterr()
    assert main(["stats", "--table", str(nuclei), "--group-by", "Plate", "--out", str(tmp_path / "s2")]) == 2
    assert "the table has no column 'Plate' for the groups" in capsys.readouterr().err
