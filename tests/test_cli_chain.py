"""The README's command-line chain, as written there, on real microscopy: crops -> ... -> report -> export.

Real BBBC007 nuclei fields under the README's file names, which contain
spaces; the commands are split as a shell splits them and run in order
(training shortened to 2 epochs). The chain must end in an HTML report with
the analyses, write files colleagues can read (the umask decides), invent no
pixel size and print no library noise.
"""

import html
import os
import shlex
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from real_data import bbbc007_fields

from napari_morphospace.cli import main
from napari_morphospace.core.cells.crop_set import load_crop_set
from napari_morphospace.core.project.analysis_folder import open_analysis

pytestmark = pytest.mark.slow


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _section(page: str, title: str) -> str:
    start = page.index(f"<h2>{html.escape(title)}</h2>")
    return page[start : page.index("</section>", start)]


def readme_commands() -> list[list[str]]:
    """The ``morphospace`` commands of the README's command-line example, split as a POSIX shell splits them."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("## Command line") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```", section.index("```bash") + 7)]
    lines = block.replace("\\\n", " ").strip().splitlines()
    return [shlex.split(line, comments=True) for line in lines]


def test_the_readme_chain_ends_in_a_report_on_real_fields(tmp_path, monkeypatch, capsys, umask_022):
    commands = readme_commands()
    assert [c[1] for c in commands] == ["crops", "train", "embed", "analysis", "report", "export"]
    # Real fields under the README's file names (with spaces): two A9 fields as control, one f96 (17) field as treated.
    a9 = [f for f in bbbc007_fields() if f[0] == "A9"]
    f96 = [f for f in bbbc007_fields() if f[0] == "f96 (17)"]
    fields = {"control 1": a9[0], "control 2": a9[1], "treated 1": f96[0]}
    work = tmp_path / "my project"
    work.mkdir()
    for name, (_, image, labels) in fields.items():
        shutil.copy(image, work / f"{name}.tif")
        shutil.copy(labels, work / f"{name}_labels.tif")
    monkeypatch.chdir(work)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for command in commands:
            assert command[0] == "morphospace"
            argv = command[1:] + (["--epochs", "2", "--latent-dim", "4"] if command[1] == "train" else [])
            assert main(argv) == 0, argv
    out = capsys.readouterr()
    noise = [
        f"{w.category.__name__}: {w.message} ({w.filename})"
        for w in caught
        if issubclass(w.category, (DeprecationWarning, FutureWarning)) or "lightning" in w.filename
    ]
    assert noise == []
    assert "Warning" not in out.err and "morphospace report analysis" in out.err
    crops, analysis = work / "crops", work / "analysis"

    # The analysis folder holds its own copies and refers to the real sources with their labels and groups.
    opened = open_analysis(analysis, allow_external=True)  # the sources lie outside the folder: the user's consent
    assert opened.problems == []
    crop_set = load_crop_set(crops)
    assert (analysis / "crops").is_dir() and (analysis / "model" / "model.json").is_file()
    assert len(opened.crop_set) == len(crop_set) and len(opened.latents) == len(crop_set)
    assert [
        (s.group, os.path.basename(s.image.absolute), os.path.basename(s.labels.absolute))
        for s in opened.manifest.sources
    ] == [(name.split()[0], f"{name}.tif", f"{name}_labels.tif") for name in fields]

    # The report has the analyses of two conditions, and says what the crop job was.
    page = (analysis / "report.html").read_text()
    for title in (
        "Per-dimension KL",
        "Group differences (Cohen's d)",
        "Latent traversals",
        "Difference maps",
        "Grad-CAM",
    ):
        section = _section(page, title)
        assert "not available" not in section and "<img" in section, title
    assert "treated" in _section(page, "Group differences (Cohen's d)")
    assert "control 2_labels.tif" in _section(page, "Versions and settings")

    # Everything written is readable by colleagues (umask 022), temporary files included that became final.
    for path in [work, *work.rglob("*")]:
        expected = 0o755 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == expected, f"{path} has mode {oct(path.stat().st_mode & 0o777)}"

    # BBBC007 files give no pixel size: the exported crops claim none.
    exported = sorted((work / "export").glob("*.ome.tif"))
    assert len(exported) == len(crop_set)
    ome = tifffile.TiffFile(exported[0]).ome_metadata
    assert "PhysicalSizeX" not in ome and "µm" not in ome
    table = pd.read_csv(work / "cells.csv")
    assert list(table["crop_id"]) == list(crop_set.table["crop_id"]) and np.isfinite(table["mu_0"]).all()
    counts = crop_set.table["group"].value_counts()
    assert (
        f"wrote {len(crop_set)} crops (1x64x64) to crops: control {counts['control']}, treated {counts['treated']}"
        in out.out
    )
