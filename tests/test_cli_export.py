"""``morphospace export`` end to end: crops, table, AnnData; refusals exit 2 with one line and write nothing."""

import numpy as np
import pandas as pd
import pytest

import napari_morphospace.cli as cli
from napari_morphospace.core.cells.crop_set import CropSet, load_crop_set, save_crop_set
from napari_morphospace.core.io.stacks import read_stack
from napari_morphospace.core.project.annotations import AnnotationStore


@pytest.fixture
def main():
    return cli.main


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    n = 5
    table = pd.DataFrame(
        {
            "crop_id": np.arange(n),
            "source": "cells.tif",
            "label_id": np.arange(1, n + 1),
            "t": 0,
            "group": ["control", "treated", "control", "treated", "control"],
            "annotation": "",
            "y_start": 0,
            "y_stop": 8,
            "x_start": 0,
            "x_stop": 8,
        }
    )
    crop_set = CropSet(rng.random((n, 2, 8, 8)).astype(np.float32), table, ["dna", "actin"], (0.3, 0.3))
    save_crop_set(crop_set, tmp_path / "crops")
    latents = table[["crop_id"]].assign(
        mu_0=rng.normal(size=n).astype(np.float32), mu_1=rng.normal(size=n).astype(np.float32)
    )
    latents.to_parquet(tmp_path / "latents.parquet")
    store = AnnotationStore(table["crop_id"], tmp_path / "analysis")
    store.add_class("big cells")
    store.add_class("a/b")
    store.assign([0, 3], "big cells")
    store.assign([4], "a/b")
    store.close()
    return tmp_path


def test_per_class_export_with_table(main, folders, capsys):
    out = folders / "out"
    code = main(
        [
            "export",
            "--crops",
            str(folders / "crops"),
            "--latents",
            str(folders / "latents.parquet"),
            "--annotations",
            str(folders / "analysis"),
            "--out",
            str(out),
            "--which",
            "per-class",
            "--table",
            str(folders / "cells.csv"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.tif")) == [
        "a_b/crop_000004.ome.tif",
        "big_cells/crop_000000.ome.tif",
        "big_cells/crop_000003.ome.tif",
    ]
    crop_set = load_crop_set(folders / "crops")
    stack = read_stack(out / "big_cells" / "crop_000003.ome.tif")
    np.testing.assert_array_equal(stack.data, crop_set.images[3])
    assert stack.channel_names == ["dna", "actin"] and stack.scale == {"Y": 0.3, "X": 0.3}
    table = pd.read_csv(folders / "cells.csv", keep_default_na=False)
    assert table["annotation"].tolist() == ["big cells", "", "", "big cells", "a/b"]
    np.testing.assert_array_equal(
        table["mu_1"].to_numpy(np.float32), pd.read_parquet(folders / "latents.parquet")["mu_1"].to_numpy()
    )
    assert {"crop_id", "source", "group", "y_start", "x_stop", "mu_0"} <= set(table.columns)


def test_selected_ids_and_overwrite_flag(main, folders, capsys):
    (folders / "ids.txt").write_text("# chosen cells\n2\n\n4\n")
    args = [
        "export",
        "--crops",
        str(folders / "crops"),
        "--out",
        str(folders / "sel"),
        "--which",
        "selected",
        "--ids",
        str(folders / "ids.txt"),
        "--format",
        "tiff",
    ]
    assert main(args) == 0
    assert sorted(p.name for p in (folders / "sel").glob("*.tif")) == ["crop_000002.tif", "crop_000004.tif"]
    before = (folders / "sel" / "crop_000002.tif").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert (folders / "sel" / "crop_000002.tif").stat().st_mtime_ns == before
    assert main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--which", "selected"], "needs --ids"),
        (["--anndata", "x.h5ad"], "needs --latents"),
        (["--table", "x.xlsx", "--no-crops"], ".csv or .parquet"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(main, folders, capsys, extra, message):
    code = main(["export", "--crops", str(folders / "crops"), "--out", str(folders / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (folders / "o").exists()


def test_anndata_from_cli(main, folders):
    anndata = pytest.importorskip("anndata")
    code = main(
        [
            "export",
            "--crops",
            str(folders / "crops"),
            "--latents",
            str(folders / "latents.parquet"),
            "--out",
            str(folders / "o"),
            "--no-crops",
            "--anndata",
            str(folders / "cells.h5ad"),
        ]
    )
    assert code == 0
    adata = anndata.read_h5ad(folders / "cells.h5ad")
    np.testing.assert_array_equal(
        adata.obsm["X_latent"], pd.read_parquet(folders / "latents.parquet")[["mu_0", "mu_1"]].to_numpy()
    )
    assert not (folders / "o").exists()
