"""Exports re-import identically (pixels, pixel sizes, channel names, tables) and never escape or clobber."""

import os
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_morphospace.core.cells.crop_set import CropSet, bbox_columns
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.io.stacks import read_stack
from napari_morphospace.core.project.export import (
    MANIFEST_NAME,
    analysis_table,
    class_folder_names,
    export_anndata,
    export_crops,
    export_figures,
    export_table,
    read_table,
    safe_name,
)

ODD_NAMES = ["a/b", "..", "ünïcødé", "two  words", "a_b", "../../etc", "CON"]


def _crop_set(ndim: int = 2, n: int = 7) -> CropSet:
    rng = np.random.default_rng(ndim)
    shape = (n, 2) + ((3,) if ndim == 3 else ()) + (6, 5)
    table = pd.DataFrame(
        {
            "crop_id": np.arange(100, 100 + n),
            "source": ["cells.tif"] * n,
            "label_id": np.arange(1, n + 1),
            "t": 0,
            "group": ["control", "treated"] * (n // 2) + ["control"] * (n % 2),
            "annotation": (ODD_NAMES + [""] * n)[:n],
            **{c: rng.integers(0, 50, n) for c in bbox_columns(ndim)},
        }
    )
    spacing = (0.5, 0.25, 0.2)[3 - ndim :]
    return CropSet(rng.random(shape).astype(np.float32), table, ["dna", "membrane"], spacing)


def _latents(crop_set: CropSet) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = len(crop_set)
    latents = pd.DataFrame({"crop_id": crop_set.table["crop_id"]})
    for prefix, width in (("mu_", 3), ("logvar_", 3), ("PCA_", 2), ("UMAP_", 2)):
        for i in range(width):
            latents[f"{prefix}{i}"] = rng.normal(size=n).astype(np.float32)
    latents["cluster"] = np.arange(n) % 2
    return latents.merge(crop_set.table, on="crop_id")


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("file_format", ["ome-tiff", "tiff"])
def test_crops_round_trip(tmp_path, ndim, file_format):
    crop_set = _crop_set(ndim)
    files = export_crops(crop_set, tmp_path, format=file_format)
    suffix = ".ome.tif" if file_format == "ome-tiff" else ".tif"
    assert [f.name for f in files] == [f"crop_{i:06d}{suffix}" for i in range(100, 107)]
    axes = "CZYX" if ndim == 3 else "CYX"
    for i, path in enumerate(files):
        stack = read_stack(path)
        assert stack.axes == axes
        np.testing.assert_array_equal(stack.data, crop_set.images[i])
        assert stack.data.dtype == np.float32
        assert stack.channel_names == ["dna", "membrane"]
        assert stack.scale == dict(zip(axes[1:], crop_set.spacing, strict=True))
        assert set(stack.units.values()) == {"µm"}
    # tifffile alone (another tool) reads the same pixels.
    with tifffile.TiffFile(files[3]) as tif:
        raw, raw_axes = tif.series[0].asarray(), tif.series[0].axes
    order = [raw_axes.index(a) for a in axes]
    np.testing.assert_array_equal(np.transpose(raw, order), crop_set.images[3])
    manifest = pd.read_csv(tmp_path / MANIFEST_NAME, keep_default_na=False)
    assert manifest["file"].tolist() == [f.name for f in files]
    assert manifest["crop_id"].tolist() == list(range(100, 107))


def test_per_class_folders_with_odd_names_stay_inside(tmp_path):
    crop_set = _crop_set(n=9)
    out = tmp_path / "export"
    files = export_crops(crop_set, out, which="per-class")
    assert len(files) == len(ODD_NAMES)  # the two unannotated crops are not written
    for path in files:
        assert path.resolve().is_relative_to(out.resolve())
        assert path.parent.parent == out.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # nothing climbed out
    folders = class_folder_names(ODD_NAMES)
    assert folders["a/b"] == "a_b" and folders["a_b"] == "a_b_2"  # distinct folders for distinct classes
    assert folders[".."] == "_" and folders["ünïcødé"] == "ünïcødé" and folders["two  words"] == "two_words"
    assert folders["../../etc"] == "_.._etc" and folders["CON"] == "CON_"
    manifest = pd.read_csv(out / MANIFEST_NAME, keep_default_na=False)
    for name, file in zip(manifest["annotation"], manifest["file"], strict=True):
        assert file.split("/")[0] == folders[name]
        np.testing.assert_array_equal(
            read_stack(out / file).data, crop_set.images[crop_set.table.index[crop_set.table["annotation"] == name][0]]
        )


def test_safe_name_never_leaves_its_folder():
    for name in ["..", ".", "/", "\\", "a/../../b", "\x00", " ", "..\\..\\x", "a" * 500]:
        safe = safe_name(name)
        assert safe and "/" not in safe and "\\" not in safe and safe not in (".", "..")
        assert not safe.startswith(".") and len(safe.encode()) <= 100


def test_selected_and_annotations_argument(tmp_path):
    crop_set = _crop_set()
    files = export_crops(crop_set, tmp_path / "sel", which="selected", crop_ids=[104, 101])
    assert [f.name for f in files] == ["crop_000101.ome.tif", "crop_000104.ome.tif"]
    with pytest.raises(InputError, match="999"):
        export_crops(crop_set, tmp_path / "bad", which="selected", crop_ids=[999])
    with pytest.raises(InputError, match="crop ids"):
        export_crops(crop_set, tmp_path / "none", which="selected")
    annotations = pd.Series({100: "x", 106: "x", 103: ""})
    files = export_crops(crop_set, tmp_path / "cls", which="per-class", annotations=annotations)
    assert [str(f.relative_to(tmp_path / "cls")) for f in files] == ["x/crop_000100.ome.tif", "x/crop_000106.ome.tif"]


def test_no_overwrite_without_flag(tmp_path):
    crop_set = _crop_set()
    export_crops(crop_set, tmp_path)
    before = (tmp_path / "crop_000100.ome.tif").read_bytes()
    changed = CropSet(crop_set.images * 0.5, crop_set.table, crop_set.channel_names, crop_set.spacing)
    with pytest.raises(InputError, match="already exist.*overwrit"):
        export_crops(changed, tmp_path)
    assert (tmp_path / "crop_000100.ome.tif").read_bytes() == before
    export_crops(changed, tmp_path, overwrite=True)
    np.testing.assert_array_equal(read_stack(tmp_path / "crop_000100.ome.tif").data, changed.images[0])
    table = tmp_path / "t.csv"
    export_table(crop_set.table, table)
    with pytest.raises(InputError, match="already exist"):
        export_table(crop_set.table.head(1), table)
    assert len(read_table(table)) == len(crop_set)


def test_read_only_or_full_disk_gives_input_error_and_no_half_file(tmp_path, monkeypatch):
    crop_set = _crop_set()
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if os.access(read_only, os.W_OK):  # root ignores permissions: simulate the read-only folder instead

            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr("tempfile.mkstemp", refuse)
        with pytest.raises(InputError, match=f"cannot write {read_only}.*(Permission denied|Read-only)"):
            export_crops(crop_set, read_only)
        with pytest.raises(InputError, match="cannot write .*t.parquet"):
            export_table(crop_set.table, read_only / "t.parquet")
    finally:
        read_only.chmod(0o755)
        monkeypatch.undo()
    assert list(read_only.iterdir()) == []

    # Full disk while writing the third crop: the first two are complete, no temp file, no manifest.
    import napari_morphospace.core.project.export as export_module

    real_write = export_module.write_stack
    calls = []

    def fill_disk(path, stack, *, overwrite=False):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_write(path, stack, overwrite=overwrite)

    monkeypatch.setattr(export_module, "write_stack", fill_disk)
    full = tmp_path / "full"
    with pytest.raises(InputError, match="crop_000102.ome.tif.*No space left"):
        export_crops(crop_set, full)
    assert sorted(p.name for p in full.iterdir()) == ["crop_000100.ome.tif", "crop_000101.ome.tif"]
    np.testing.assert_array_equal(read_stack(full / "crop_000101.ome.tif").data, crop_set.images[1])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trip(tmp_path, suffix):
    crop_set = _crop_set()
    latents = _latents(crop_set)
    annotations = pd.Series({100: "new", 105: "other"})
    table = analysis_table(
        crop_set.table, latents[["crop_id", "mu_0", "mu_1", "mu_2", "PCA_0", "cluster"]], annotations
    )
    assert list(table.columns[: len(crop_set.table.columns)]) == list(crop_set.table.columns)
    assert table["annotation"].tolist() == ["new", "", "", "", "", "other", ""]
    path = export_table(table, tmp_path / f"cells{suffix}")
    back = read_table(path)
    if suffix == ".csv":
        back = back.astype(table.dtypes.to_dict())
    pd.testing.assert_frame_equal(back, table, check_dtype=suffix == ".parquet")
    for column in ("mu_0", "PCA_0"):  # float32 latents survive CSV bit for bit
        np.testing.assert_array_equal(back[column].to_numpy(np.float32), table[column].to_numpy(np.float32))


def test_analysis_table_fills_missing_latents_with_nan():
    crop_set = _crop_set()
    latents = _latents(crop_set).iloc[:3]
    table = analysis_table(crop_set.table, latents)
    assert table["mu_0"].notna().tolist() == [True] * 3 + [False] * 4
    assert table["annotation"].tolist() == crop_set.table["annotation"].tolist()


def test_anndata_missing_gives_install_message(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "anndata", None)  # import anndata -> ImportError
    with pytest.raises(InputError, match=r"pip install 'napari-morphospace\[anndata\]'"):
        export_anndata(_latents(_crop_set()), tmp_path / "x.h5ad")
    assert not (tmp_path / "x.h5ad").exists()


def test_anndata_round_trip(tmp_path):
    anndata = pytest.importorskip("anndata")
    crop_set = _crop_set()
    latents = _latents(crop_set)
    path = export_anndata(latents, tmp_path / "cells.h5ad")
    adata = anndata.read_h5ad(path)
    mu = latents[["mu_0", "mu_1", "mu_2"]].to_numpy(np.float32)
    np.testing.assert_array_equal(adata.X, mu)
    np.testing.assert_array_equal(adata.obsm["X_latent"], mu)
    np.testing.assert_array_equal(adata.obsm["X_logvar"], latents[["logvar_0", "logvar_1", "logvar_2"]].to_numpy())
    np.testing.assert_array_equal(adata.obsm["X_pca"], latents[["PCA_0", "PCA_1"]].to_numpy())
    np.testing.assert_array_equal(adata.obsm["X_umap"], latents[["UMAP_0", "UMAP_1"]].to_numpy())
    assert list(adata.obs_names) == [str(i) for i in latents["crop_id"]]
    assert list(adata.var_names) == ["mu_0", "mu_1", "mu_2"]
    assert adata.obs["annotation"].astype(str).tolist() == latents["annotation"].tolist()
    assert adata.obs["group"].astype(str).tolist() == latents["group"].tolist()
    np.testing.assert_array_equal(adata.obs["y_start"].to_numpy(), latents["y_start"].to_numpy())
    with pytest.raises(InputError, match="already exist"):
        export_anndata(latents, path)


def test_figures_png_and_svg(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    files = export_figures({"kde/top dims": figure}, tmp_path)
    plt.close(figure)
    assert [f.name for f in files] == ["kde_top_dims.png", "kde_top_dims.svg"]
    assert files[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in files[1].read_bytes()[:500]
    with pytest.raises(InputError, match="already exist"):
        export_figures({"kde/top dims": figure}, tmp_path)


@pytest.mark.parametrize("file_format", ["ome-tiff", "tiff"])
def test_crops_of_a_file_without_pixel_size_claim_none(tmp_path, file_format):
    # A plain TIFF (as BBBC007's fields) has no pixel size: its crops must not claim 1 µm;
    # a calibrated file keeps its size.
    from napari_morphospace.core.cells.crops import CropSettings, crops_from_labels
    from napari_morphospace.core.io.stacks import Stack, write_stack

    labels = np.zeros((40, 40), np.uint16)
    labels[10:20, 12:22] = 1
    tifffile.imwrite(tmp_path / "plain.tif", labels * 300)
    write_stack(
        tmp_path / "calibrated.ome.tif",
        Stack(labels * 300, "YX", {"Y": 0.25, "X": 0.5}, ["dna"], units={"Y": "µm", "X": "µm"}),
    )
    for name, spacing in (("plain.tif", ()), ("calibrated.ome.tif", (0.25, 0.5))):
        crop_set = crops_from_labels(read_stack(tmp_path / name), labels, CropSettings(size=16))
        assert crop_set.spacing == spacing
        written = export_crops(crop_set, tmp_path / f"export {name}", format=file_format)
        with tifffile.TiffFile(written[0]) as tif:
            metadata = tif.ome_metadata if file_format == "ome-tiff" else str(tif.imagej_metadata)
            resolution = tif.pages[0].tags.get("XResolution")
        if spacing:
            assert "µm" in metadata or "um" in metadata
            assert read_stack(written[0]).scale == {"Y": 0.25, "X": 0.5}
        else:
            assert "PhysicalSize" not in metadata and "µm" not in metadata and "unit" not in metadata
            assert resolution is None or resolution.value in ((1, 1), (0, 1))


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_exported_files_and_folders_follow_the_umask(tmp_path, umask):
    # Files are written through private temporary files (0600); once complete they get the normal mode.
    old = os.umask(umask)
    try:
        crop_set = _crop_set()
        export_crops(crop_set, tmp_path / "crops" / "ome", which="per-class")
        export_crops(crop_set, tmp_path / "crops" / "imagej", format="tiff")
        export_table(crop_set.table, tmp_path / "tables" / "cells.parquet")
        export_table(crop_set.table, tmp_path / "tables" / "cells.csv")
    finally:
        os.umask(old)
    paths = list((tmp_path / "crops").rglob("*")) + list((tmp_path / "tables").rglob("*"))
    assert len(paths) > 10
    for path in paths:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert path.stat().st_mode & 0o777 == expected, f"{path.name}: {oct(path.stat().st_mode & 0o777)}"
