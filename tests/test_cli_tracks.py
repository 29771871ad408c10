"""Tracked cells end to end: track ids from files through crops, latents, layer features, exports, the analysis
folder, the report and ``morphospace tracks``, on a synthetic time-lapse whose cells grow at known rates."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from tracked_movie import CELLS, movie, radius, track_points

from napari_morphospace.cli import main
from napari_morphospace.core.analysis.cell_table import LabelsInfo, join_latents
from napari_morphospace.core.analysis.embed import embed
from napari_morphospace.core.cells.crop_set import TRACK_ID, load_crop_set
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.analysis_folder import (
    create_analysis,
    open_analysis,
    save_analysis,
)
from napari_morphospace.core.project.export import (
    export_anndata,
    export_table,
    read_table,
)
from napari_morphospace.core.project.report import write_report
from napari_morphospace.core.training.bundle import load_bundle, new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings


@pytest.fixture(scope="module")
def movie_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("movie")
    image, labels = movie()
    tifffile.imwrite(folder / "movie.tif", image, imagej=True, metadata={"axes": "TYX"})
    tifffile.imwrite(folder / "movie_labels.tif", labels, imagej=True, metadata={"axes": "TYX"})
    # a tracker's table of the same cells (track id, frame, y, x), ids renumbered: track = 10 * label
    pd.DataFrame(track_points(), columns=["TRACK_ID", "FRAME", "POSITION_Y", "POSITION_X"]).to_csv(
        folder / "tracks.csv", index=False
    )
    return folder


def _small_bundle(folder, latent_dim: int = 3):
    settings = ModelSettings(model="beta-vae", latent_dim=latent_dim, base_channels=4)
    torch.manual_seed(0)
    model = build_model(settings, (1, 32, 32)).eval()
    return save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=(1, 32, 32),
            channel_names=["ch0"],
            preprocess=None,
            train_settings=TrainSettings(epochs=1),
            provenance={},
            history=[],
        ),
        folder,
    )


def test_label_ids_that_persist_become_track_ids_and_travel_everywhere(movie_files, tmp_path, capsys):
    out = tmp_path / "crops"
    files = [str(movie_files / "movie.tif"), "--labels", str(movie_files / "movie_labels.tif")]
    assert main(["crops", *files, "--size", "32", "--track-ids", "labels", "--out", str(out)]) == 0
    assert "22 of 22 crops lie on 4 tracks" in capsys.readouterr().out
    crop_set = load_crop_set(out, in_memory=True)
    table = crop_set.table
    assert (table[TRACK_ID] == table["label_id"]).all() and table[TRACK_ID].dtype == np.int64
    assert table.groupby(TRACK_ID)["t"].apply(list).to_dict() == {
        1: list(range(6)),
        2: list(range(6)),
        3: list(range(6)),
        4: list(range(2, 6)),
    }

    latents = embed(load_bundle(_small_bundle(tmp_path / "model")), crop_set)
    assert (latents[TRACK_ID] == latents["label_id"]).all()
    # onto the time-lapse Labels layer's features, row by (frame, label id)
    join = join_latents(latents, [LabelsInfo(name=str(movie_files / "movie.tif"), has_time=True)])
    features = next(iter(join.tables.values()))
    assert (features[TRACK_ID] == features["index"]).all() and len(features) == 22
    # exports keep the column, as whole numbers
    for suffix in (".csv", ".parquet"):
        back = read_table(export_table(latents, tmp_path / f"cells{suffix}"))
        assert back[TRACK_ID].tolist() == latents[TRACK_ID].tolist()


def test_anndata_export_keeps_track_ids(tmp_path):
    anndata = pytest.importorskip("anndata")  # the optional [anndata] extra
    latents = pd.DataFrame({"crop_id": [0, 1, 2], "t": [0, 1, 0], TRACK_ID: [5, 5, -1], "mu_0": [0.0, 1.0, 2.0]})
    adata = anndata.read_h5ad(export_anndata(latents, tmp_path / "cells.h5ad"))
    assert adata.obs[TRACK_ID].tolist() == [5, 5, -1]


def test_a_trackers_table_gives_the_same_tracks_as_the_labels(movie_files, tmp_path, capsys):
    out = tmp_path / "crops"
    files = [str(movie_files / "movie.tif"), "--labels", str(movie_files / "movie_labels.tif")]
    assert main(["crops", *files, "--size", "32", "--tracks", str(movie_files / "tracks.csv"), "--out", str(out)]) == 0
    table = load_crop_set(out).table
    assert (table[TRACK_ID] == 10 * table["label_id"]).all()


def test_tracks_files_must_match_the_images(movie_files, tmp_path, capsys):
    files = [str(movie_files / "movie.tif"), "--labels", str(movie_files / "movie_labels.tif")]
    assert main(["crops", *files, "--track-ids", "tracks", "--out", str(tmp_path / "c")]) == 2
    assert "1 image(s) but 0 tracks file(s)" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert main(["crops", *files, "--tracks", str(bad), "--out", str(tmp_path / "c")]) == 2
    assert "tracks need 4 or 5 numeric columns" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_tracks_command_and_report_on_an_analysis_folder(movie_files, tmp_path, capsys):
    crops = tmp_path / "crops"
    files = [str(movie_files / "movie.tif"), "--labels", str(movie_files / "movie_labels.tif")]
    assert main(["crops", *files, "--size", "32", "--track-ids", "labels", "--out", str(crops)]) == 0
    crop_set = load_crop_set(crops, in_memory=True)
    # latents with known paths: mu_0 = radius of the cell, so speed = growth per frame, straightness 1
    latents = crop_set.table.assign(
        mu_0=radius(crop_set.table["label_id"], crop_set.table["t"]), mu_1=0.0, logvar_0=0.0, logvar_1=0.0
    )
    latents["group"] = np.where(latents["label_id"] % 2 == 1, "odd", "even")
    folder = tmp_path / "analysis"
    create_analysis(folder)
    big = latents.loc[latents["mu_0"] >= 8.0, "crop_id"].tolist()
    save_analysis(folder, crop_set=crops, latents=latents, selections={"big": big})
    opened = open_analysis(folder, load_model=False, allow_external=True)  # the crop set lies beside it
    assert opened.latents[TRACK_ID].tolist() == latents[TRACK_ID].tolist()
    assert opened.crop_set.table[TRACK_ID].tolist() == latents[TRACK_ID].tolist()
    capsys.readouterr()

    assert (
        main(
            [
                "tracks",
                str(folder),
                "--region-selection",
                "big",
                "--frame-interval",
                "2",
                "--out",
                str(tmp_path / "tracks.csv"),
                "--figure",
                str(tmp_path / "paths.png"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "22 of 22 crops lie on 4 tracks" in out and "odd against even" in out
    statistics = pd.read_csv(tmp_path / "tracks.csv").set_index(TRACK_ID)
    growth = pd.Series({label: g for label, (_, _, _, g) in CELLS.items()})
    np.testing.assert_allclose(statistics["mean_speed"], growth / 2.0)  # per time unit, 2 per frame
    np.testing.assert_allclose(statistics["path_length"], growth * [5, 5, 5, 3])
    # radius 8 is reached by cell 1 at frame 4 (8 time units), by cell 4 (radius 7, 8.5 at frames 2, 3) one frame
    # after it appears
    assert statistics.loc[1, "time_to_region"] == 8.0 and statistics.loc[4, "time_to_region"] == 2.0
    assert statistics.loc[[2, 3], "time_to_region"].isna().all()
    assert (tmp_path / "paths.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["tracks", str(folder), "--region-selection", "nope"]) == 2
    assert "no named selection 'nope'" in capsys.readouterr().err
    assert main(["tracks", str(folder), "--groups", "odd", "treated"]) == 0
    assert "groups of tracks not compared: no track has group 'treated'" in capsys.readouterr().out
    # a table from elsewhere whose track ids are in a tracker's column
    table = tmp_path / "theirs.csv"
    latents.drop(columns=TRACK_ID).assign(TRACK_ID=latents["label_id"] + 100).to_csv(table, index=False)
    assert main(["tracks", str(table), "--track-column", "TRACK_ID", "--out", str(tmp_path / "t2.csv")]) == 0
    assert sorted(pd.read_csv(tmp_path / "t2.csv")[TRACK_ID]) == [101, 102, 103, 104]

    report = write_report(open_analysis(folder, load_model=False), tmp_path / "report.html").read_text()
    section = re.search(r"<h2>Tracks through latent space</h2>(.*?)</section>", report, flags=re.S).group(1)
    assert "not available" not in section and section.count("<img") == 1
    assert "22 of 22 crops lie on 4 tracks" in section and "permutation p-value" in section
