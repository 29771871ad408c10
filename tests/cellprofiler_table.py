"""A CellProfiler-like measurement table of the real BBBC007 fields, computed with scikit-image.

CellProfiler's ExportToSpreadsheet writes one table per object set
(``<prefix>Nuclei.csv``: ``ImageNumber``, ``ObjectNumber``, then
``AreaShape_*``, ``Intensity_*_<channel>``, ``Location_*``...) and one image
table (``<prefix>Image.csv``: ``ImageNumber``, ``FileName_<channel>``,
``PathName_<channel>``, ``Metadata_*``). These helpers measure the real
nuclei with ``skimage.measure.regionprops_table`` and write both tables in
that layout, so the tests, the docs script and a user's CellProfiler run
meet the same column names. Shared by core and widget tests and by
``docs/external_tables_screenshots.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from real_data import bbbc007_fields
from skimage.measure import regionprops_table

#: regionprops property -> CellProfiler column.
COLUMNS = {
    "label": "ObjectNumber",
    "area": "AreaShape_Area",
    "perimeter": "AreaShape_Perimeter",
    "eccentricity": "AreaShape_Eccentricity",
    "solidity": "AreaShape_Solidity",
    "axis_major_length": "AreaShape_MajorAxisLength",
    "axis_minor_length": "AreaShape_MinorAxisLength",
    "intensity_mean": "Intensity_MeanIntensity_DNA",
    "intensity_max": "Intensity_MaxIntensity_DNA",
    "centroid-0": "Location_Center_Y",
    "centroid-1": "Location_Center_X",
}
FEATURES = [c for c in COLUMNS.values() if c.startswith(("AreaShape_", "Intensity_"))]


def measure(image: Path, labels: Path) -> pd.DataFrame:
    """The CellProfiler-named measurements of every nucleus of one field (one row per label id)."""
    props = regionprops_table(
        tifffile.imread(labels),
        intensity_image=tifffile.imread(image),
        properties=[
            "label",
            "area",
            "perimeter",
            "eccentricity",
            "solidity",
            "axis_major_length",
            "axis_minor_length",
            "intensity_mean",
            "intensity_max",
            "centroid",
        ],
    )
    return pd.DataFrame(props).rename(columns=COLUMNS)


def write_cellprofiler_tables(
    folder: Path, which: tuple[int, ...] | None = None, prefix: str = "MyExpt_"
) -> tuple[Path, Path]:
    """Write ``<prefix>Nuclei.csv`` and ``<prefix>Image.csv`` for the BBBC007 fields at positions ``which``."""
    fields = bbbc007_fields()
    fields = fields if which is None else [fields[i] for i in which]
    objects, images = [], []
    for number, (condition, image, labels) in enumerate(fields, start=1):
        measured = measure(image, labels)
        measured.insert(0, "ImageNumber", number)
        measured["Metadata_Condition"] = condition
        objects.append(measured)
        images.append(
            {
                "ImageNumber": number,
                "FileName_DNA": image.name,
                "PathName_DNA": str(image.parent),
                "Metadata_Condition": condition,
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    nuclei, image_table = folder / f"{prefix}Nuclei.csv", folder / f"{prefix}Image.csv"
    pd.concat(objects, ignore_index=True).to_csv(nuclei, index=False)
    pd.DataFrame(images).to_csv(image_table, index=False)
    return nuclei, image_table


def label_ids(labels: Path) -> np.ndarray:
    ids = np.unique(tifffile.imread(labels))
    return ids[ids > 0]
