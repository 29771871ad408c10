"""The bad-input suite: every bad input ends in one line, exit status 2, nothing written and nothing lost.

Each case is a row of :data:`REFUSALS`: what is wrong (made in a copy of a
small workspace with images, labels, a crop set, a model bundle, latents and
an analysis folder), the command line, and the words the one-line message
must contain. :func:`test_refused` runs it in-process through
``napari_morphospace.cli.main`` and checks the outcome the same way for every
case: exit status 2, exactly one ``error:`` line on stderr (warnings may
precede it, each on one line), no traceback, and the workspace byte for byte
as it was (nothing half-written, nothing deleted). :data:`ACCEPTED` lists
inputs that are odd but usable: they must succeed with a warning line.
Analysis-folder cases also check that nothing outside the folder was read
(a secret file's contents never reach the report).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from napari_morphospace.cli import main
from napari_morphospace.core import outputs
from napari_morphospace.core.analysis.embed import embed
from napari_morphospace.core.cells.crop_job import CropJob, run_crop_job
from napari_morphospace.core.cells.crops import CropSettings
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.analysis_folder import (
    create_analysis,
    save_analysis,
)
from napari_morphospace.core.training.bundle import new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings

SECRET = "TOP-SECRET-3f9c1e"


# --------------------------------------------------------------------------- the workspace


def _cells(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 64x64 uint16 image with three bright square cells and its labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((64, 64), np.uint16)
    for i, (y, x) in enumerate([(10, 10), (30, 40), (48, 16)], start=1):
        labels[y : y + 9, x : x + 9] = i
    image = (labels > 0) * 3000 + rng.integers(0, 200, labels.shape)
    return image.astype(np.uint16), labels


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Images and labels, a crop set made from them, a model bundle for it, latents, an analysis folder."""
    root = tmp_path_factory.mktemp("template")
    for name, seed in (("control", 0), ("treated", 1)):
        image, labels = _cells(seed)
        tifffile.imwrite(root / f"{name}.tif", image)
        tifffile.imwrite(root / f"{name}_labels.tif", labels)
    job = CropJob(
        images=[str(root / "control.tif"), str(root / "treated.tif")],
        labels=[str(root / "control_labels.tif"), str(root / "treated_labels.tif")],
        groups=["control", "treated"],
        crop=CropSettings(size=16),
    )
    crop_set = run_crop_job(job, root / "crops")
    settings = ModelSettings(latent_dim=2, base_channels=4)
    model = build_model(settings, (1, 16, 16)).eval()
    save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=(1, 16, 16),
            channel_names=list(crop_set.channel_names),
            preprocess=crop_set.preprocess,
            train_settings=TrainSettings(epochs=1),
            provenance={},
            history=[],
        ),
        root / "model",
    )
    latents = embed(model, crop_set)
    latents.to_csv(root / "latents.csv", index=False)
    analysis = root / "analysis"
    manifest = create_analysis(analysis)
    save_analysis(manifest, crop_set=crop_set, model=root / "model", latents=latents)
    (root / "secret.json").write_text(json.dumps({"auths": {"registry": SECRET}}))
    return root


@pytest.fixture
def work(template, tmp_path) -> Path:
    """A fresh copy of the workspace for one case."""
    copy = tmp_path / "work"
    shutil.copytree(template, copy, symlinks=True)
    return copy


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file and folder under ``root`` with its size and the first bytes of its content."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():  # folders, links, pipes: present, not read
            state[str(path.relative_to(root))] = (-1, b"")
        else:
            state[str(path.relative_to(root))] = (path.stat().st_size, path.read_bytes()[:4096])
    return state


def readonly_folder(work: Path) -> Path:
    """A folder this process cannot write into (as root, a place in /sys, which refuses even root)."""
    if os.geteuid() != 0:
        folder = work / "readonly"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys/morphospace-bad-input")
    try:
        outputs.check_writable(folder, what="test")
    except Exception:
        return folder
    pytest.skip("no read-only folder available on this machine")


# --------------------------------------------------------------------------- damage


def write_model_json(work: Path, change: Callable[[dict], object]) -> None:
    path = work / "model" / "model.json"
    config = json.loads(path.read_text())
    result = change(config)
    path.write_text(json.dumps(config if result is None else result))


def edit_crop_table(work: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Change crops.parquet and crops.csv alike, as a careful hand edit would."""
    table = change(pd.read_parquet(work / "crops" / "crops.parquet"))
    table.to_parquet(work / "crops" / "crops.parquet", index=False)
    table.to_csv(work / "crops" / "crops.csv", index=False, na_rep="NaN")


def write_crop_values(work: Path, index: int, value: float) -> None:
    import zarr

    images = zarr.open_array(str(work / "crops" / "images.zarr"), mode="r+")
    crop = images[index]
    crop[..., 0, 0] = value
    images[index] = crop


def first_data_file(w: Path) -> Path:
    """The first shard (or chunk) file of the workspace crop set's images."""
    return next(p for p in sorted((w / "crops" / "images.zarr" / "c").rglob("*")) if p.is_file())


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def edit_analysis(work: Path, change: Callable[[dict], None]) -> None:
    path = work / "analysis" / "analysis.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def tiff_with_description(path: Path, description: str) -> None:
    tifffile.imwrite(path, np.zeros((2, 16, 16), np.uint16), description=description, metadata=None)


def ome_xml(**pixels: str) -> str:
    attributes = " ".join(f'{k}="{v}"' for k, v in {"PhysicalSizeX": "0.5", **pixels}.items())
    return (
        '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        f'<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="16" SizeY="16" '
        f'SizeC="2" SizeZ="1" SizeT="1" {attributes}><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        '<Channel ID="Channel:0:1" SamplesPerPixel="1"/><TiffData/></Pixels></Image></OME>'
    )


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    """One bad input: ``setup(work)`` damages the workspace and returns the arguments; ``message`` is a regex."""

    name: str
    setup: Callable[[Path], list[str]]
    message: str
    patch: Callable[[pytest.MonkeyPatch], None] | None = None
    check: Callable[[Path], None] | None = None
    changes: list[str] = field(default_factory=list)  # paths (relative to work) the case may create or change


def crops_args(w: Path, *extra: str, out: str = "new_crops") -> list[str]:
    return [
        "crops",
        str(w / "control.tif"),
        "--labels",
        str(w / "control_labels.tif"),
        "--size",
        "16",
        "--out",
        str(w / out),
        *extra,
    ]


def crops_of(w: Path, image: Path, labels: Path | None = None, *extra: str) -> list[str]:
    return [
        "crops",
        str(image),
        "--labels",
        str(labels or w / "control_labels.tif"),
        "--size",
        "16",
        "--out",
        str(w / "new_crops"),
        *extra,
    ]


def train_args(w: Path, *extra: str, out: str = "new_model") -> list[str]:
    return [
        "train",
        "--crops",
        str(w / "crops"),
        "--out",
        str(w / out),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--latent-dim",
        "2",
        "--accelerator",
        "cpu",
        *extra,
    ]


def embed_args(w: Path, *extra: str, out: str = "new_latents.csv") -> list[str]:
    return ["embed", "--model", str(w / "model"), "--crops", str(w / "crops"), "--out", str(w / out), *extra]


def export_args(w: Path, *extra: str) -> list[str]:
    return ["export", "--crops", str(w / "crops"), "--out", str(w / "export"), *extra]


def report_args(w: Path, *extra: str) -> list[str]:
    return ["report", str(w / "analysis"), "--out", str(w / "report.html"), *extra]


def empty_crop_set(w: Path) -> Path:
    from napari_morphospace.core.cells.crop_set import (
        CropSet,
        bbox_columns,
        save_crop_set,
    )

    table = pd.DataFrame(columns=["crop_id", "source", "label_id", "t", "group", "annotation", *bbox_columns(2)])
    return save_crop_set(CropSet(np.zeros((0, 1, 16, 16), np.float32), table, ["ch0"]), w / "empty")


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def with_file(path_in_work: str, data: str | bytes, args: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    def setup(w: Path) -> list[str]:
        write(w / path_in_work, data)
        return args(w)

    return setup


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 4096))


def no_anndata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anndata", None)


def config(w: Path, name: str, data: dict | str) -> Path:
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    return write(w / name, text)


def foreign_folder(w: Path, name: str) -> Path:
    folder = w / name
    folder.mkdir()
    (folder / "thesis.docx").write_text("years of work")
    return folder


def secret_absent(name: str) -> Callable[[Path], None]:
    def check(w: Path) -> None:
        report = w / name
        assert not report.exists() or SECRET not in report.read_text()

    return check


REFUSALS = [
    # ----------------------------------------------------------------- readers (through crops)
    Case("image missing", lambda w: crops_of(w, w / "nope.tif"), r"file not found: .*nope\.tif"),
    Case("image is a folder", lambda w: crops_of(w, w / "crops"), r"crops is a folder; choose an image file"),
    Case(
        "image is text",
        with_file("text.tif", "hello, not a tiff", lambda w: crops_of(w, w / "text.tif")),
        r"cannot read text\.tif as TIFF",
    ),
    Case(
        "image truncated",
        lambda w: crops_of(w, write(w / "cut.tif", (w / "control.tif").read_bytes()[:3000])),
        r"cut\.tif.*truncated",
    ),
    Case(
        "image of unknown type",
        with_file("cells.png", b"\x89PNG\r\n", lambda w: crops_of(w, w / "cells.png")),
        r"unknown file extension \.png",
    ),
    Case(
        "empty image file",
        with_file("empty.tif", b"", lambda w: crops_of(w, w / "empty.tif")),
        r"cannot read empty\.tif as TIFF",
    ),
    Case("labels missing", lambda w: crops_of(w, w / "control.tif", w / "gone.tif"), r"file not found: .*gone\.tif"),
    Case(
        "labels of float values",
        lambda w: (
            tifffile.imwrite(w / "f.tif", np.ones((64, 64), np.float32)),
            crops_of(w, w / "control.tif", w / "f.tif"),
        )[1],
        r"holds float32 values, not integer labels",
    ),
    Case(
        "labels of another shape",
        lambda w: (
            tifffile.imwrite(w / "small.tif", np.ones((32, 32), np.uint16)),
            crops_of(w, w / "control.tif", w / "small.tif"),
        )[1],
        r"labels have shape \(32, 32\) but the image has shape \(64, 64\)",
    ),
    Case(
        "labels without objects",
        lambda w: (
            tifffile.imwrite(w / "zero.tif", np.zeros((64, 64), np.uint16)),
            crops_of(w, w / "control.tif", w / "zero.tif"),
        )[1],
        r"labels contain no objects",
    ),
    Case("axes that do not fit", lambda w: crops_args(w, "--axes", "CZYX"), r"--axes CZYX does not fit the file"),
    Case("axes with a wrong letter", lambda w: crops_args(w, "--axes", "QX"), r"--axes QX does not fit the file"),
    Case(
        "non-UTF-8 file name",
        lambda w: (
            shutil.copy(w / "control.tif", os.fsencode(w) + b"/caf\xe9.tif"),
            crops_of(w, Path(os.fsdecode(os.fsencode(w) + b"/caf\xe9.tif"))),
        )[1],
        r"is not valid UTF-8 text.*rename the file",
        changes=["caf\udce9.tif"],
    ),
    # ----------------------------------------------------------------- crops: settings and outputs
    Case(
        "crop size too large for memory",
        lambda w: crops_args(w, "--size", "40000"),
        r"crops of 40000 x 40000 pixels .* more than the .* GiB of memory available; choose a smaller crop size",
    ),
    Case("crop size 0", lambda w: crops_args(w, "--size", "0"), r"crop size 0 must be a positive int"),
    Case(
        "one label image for two images",
        lambda w: [
            "crops",
            str(w / "control.tif"),
            str(w / "treated.tif"),
            "--labels",
            str(w / "control_labels.tif"),
            "--out",
            str(w / "o"),
        ],
        r"2 image\(s\) but 1 label image\(s\)",
    ),
    Case(
        "resize to a zero size",
        lambda w: crops_args(
            w,
            "--config",
            str(config(w, "job.yaml", {"preprocess": {"steps": [{"name": "resize", "params": {"shape": [0, -5]}}]}})),
        ),
        r"resize shape must be positive integers.*\[0, -5\]",
    ),
    Case(
        "unknown preprocessing step",
        lambda w: crops_args(
            w, "--config", str(config(w, "job.yaml", {"preprocess": {"steps": [{"name": "sharpen_a_lot"}]}}))
        ),
        r"unknown preprocessing step 'sharpen_a_lot'",
    ),
    Case(
        "clahe clip limit of text",
        lambda w: crops_args(
            w,
            "--config",
            str(
                config(w, "job.yaml", {"preprocess": {"steps": [{"name": "clahe", "params": {"clip_limit": "high"}}]}})
            ),
        ),
        r"clahe clip_limit must be a number",
    ),
    Case(
        "config with a python tag",
        lambda w: crops_args(
            w, "--config", str(config(w, "job.yaml", "crop: !!python/object/apply:os.system ['touch pwned']\n"))
        ),
        r"job\.yaml is not valid YAML \(could not determine a constructor",
    ),
    Case(
        "config that is a list",
        lambda w: crops_args(w, "--config", str(config(w, "job.yaml", "- 1\n- 2\n"))),
        r"expected a mapping of settings, got list",
    ),
    Case(
        "config with an unknown key",
        lambda w: crops_args(w, "--config", str(config(w, "job.yaml", {"sizes": 3}))),
        r"unknown setting\(s\) sizes",
    ),
    Case(
        "config file missing",
        lambda w: crops_args(w, "--config", str(w / "none.yaml")),
        r"cannot read config file .*none\.yaml",
    ),
    Case(
        "config file binary",
        with_file("job.yaml", b"\xff\xfe\x00\x01", lambda w: crops_args(w, "--config", str(w / "job.yaml"))),
        r"job\.yaml is not text",
    ),
    Case(
        "crops --out is a file",
        with_file("out.txt", "notes", lambda w: crops_args(w, out="out.txt")),
        r"out\.txt is a file, but the crop set is a folder",
    ),
    Case("crops --out exists", lambda w: crops_args(w, out="crops"), r"crops already exists; .* --overwrite"),
    Case(
        "crops --overwrite on a foreign folder",
        lambda w: (foreign_folder(w, "thesis"), crops_args(w, "--overwrite", out="thesis"))[1],
        r"thesis is not a crop set written by napari-morphospace, so it is not replaced even with --overwrite",
    ),
    Case(
        "crops --out read-only",
        lambda w: crops_args(w, out=str(readonly_folder(w) / "crops")),
        r"cannot write the crop set in .*read-only",
    ),
    Case("crops on a full disk", lambda w: crops_args(w), r"the disk holding .* is full", patch=full_disk),
    Case(
        "crops --save-config is a folder",
        lambda w: crops_args(w, "--save-config", str(w / "crops")),
        r"crops is a folder, but the config file is a file",
    ),
    Case(
        "crops --save-config is a pipe",
        lambda w: (os.mkfifo(w / "fifo"), crops_args(w, "--save-config", str(w / "fifo")))[1],
        r"fifo is not a regular file \(a device, pipe or socket\)",
    ),
    Case(
        "crops --save-config read-only",
        lambda w: crops_args(w, "--save-config", str(readonly_folder(w) / "j.yaml")),
        r"cannot write the config file in .*read-only",
    ),
    # ----------------------------------------------------------------- train
    Case(
        "train --crops missing",
        lambda w: train_args(w) + ["--crops", str(w / "nothing")],
        r"crop set folder .*nothing does not exist",
    ),
    Case(
        "train --crops is a file",
        lambda w: train_args(w) + ["--crops", str(w / "control.tif")],
        r"crop set folder .*control\.tif is a file, not a folder",
    ),
    Case(
        "train --resume is a folder",
        lambda w: train_args(w, "--resume", str(w / "crops")),
        r"--resume .*crops is a folder; give the checkpoint file",
    ),
    Case(
        "train --overwrite on a foreign folder",
        lambda w: (foreign_folder(w, "data"), train_args(w, "--overwrite", out="data"))[1],
        r"data is not a model bundle written by napari-morphospace, so it is not replaced",
    ),
    Case("train --out exists", lambda w: train_args(w, out="model"), r"model already exists"),
    Case(
        "train --out is a file",
        lambda w: train_args(w, out="control.tif"),
        r"control\.tif is a file, but the model bundle",
    ),
    Case(
        "train beta: .inf",
        lambda w: train_args(w, "--config", str(config(w, "t.yaml", "model:\n  beta: .inf\n"))),
        r"beta: expected a finite number, got inf",
    ),
    Case(
        "train latent dim 1", lambda w: train_args(w) + ["--latent-dim", "1"], r"--latent-dim must be between 2 and 512"
    ),
    Case("train on a full disk", lambda w: train_args(w), r"the disk holding .* is full", patch=full_disk),
    # ----------------------------------------------------------------- embed: the model bundle
    Case("model folder missing", lambda w: embed_args(w) + ["--model", str(w / "gone")], r"gone is not a model bundle"),
    Case(
        "model.json is a list",
        lambda w: (write_model_json(w, lambda c: []), embed_args(w))[1],
        r"model\.json holds list, not a bundle description",
    ),
    Case(
        "model.json lacks input_shape",
        lambda w: (write_model_json(w, lambda c: c.pop("input_shape") and None), embed_args(w))[1],
        r"model\.json lacks input_shape",
    ),
    Case(
        "model.json input_shape of text",
        lambda w: (write_model_json(w, lambda c: c.update(input_shape=[1, "16", 16])), embed_args(w))[1],
        r"input_shape is \[1, '16', 16\], not",
    ),
    Case(
        "model.json nested 100000 deep",
        with_file("model/model.json", nested(100000), embed_args),
        r"model\.json is not valid JSON",
    ),
    Case(
        "model.json not JSON",
        with_file("model/model.json", "{'python': True}", embed_args),
        r"model\.json is not valid JSON",
    ),
    Case(
        "weights that are a pickle",
        with_file("model/weights.safetensors", b"\x80\x04\x95pickle", embed_args),
        r"is not a valid safetensors file .*never pickled files",
    ),
    Case(
        "model of other channels",
        lambda w: (write_model_json(w, lambda c: c.update(channel_names=["dna"])), embed_args(w))[1],
        r"does not fit the model: it has channels",
    ),
    Case(
        "crops made with other preprocessing",
        lambda w: (
            write_model_json(w, lambda c: c["preprocess"]["crops"].update(normalise="dtype", mask_neighbours=False)),
            embed_args(w),
        )[1],
        r"made differently from the model's training crops \(crops\.mask_neighbours: model false, crops true; "
        r"crops\.normalise: model \"dtype\", crops \"percentiles\"\).*--allow-preprocessing-mismatch",
    ),
    Case(
        "embed --device cuda:0 without CUDA",
        lambda w: embed_args(w, "--device", "cuda:0"),
        r"device 'cuda:0' needs CUDA, which this machine .* lacks; use --device cpu",
    ),
    Case(
        "embed --device nonsense",
        lambda w: embed_args(w, "--device", "warp-drive"),
        r"'warp-drive' is not a torch device name",
    ),
    # ----------------------------------------------------------------- embed: damaged crop sets
    Case(
        "crop data file deleted",
        lambda w: (first_data_file(w).unlink(), embed_args(w))[1],
        r"found no finite value and NaN or inf values in the crop\(s\) with crop_id 0, 1, 2, 3, 4 and 1 more "
        r"\(a chunk file lost from images\.zarr reads as NaN\)",
    ),
    Case(
        "crop data file deleted from an older set",
        lambda w: (
            write(
                w / "crops" / "images.zarr" / "zarr.json",
                json.dumps({**json.loads((w / "crops" / "images.zarr" / "zarr.json").read_text()), "fill_value": 0.0}),
            ),
            first_data_file(w).unlink(),
            embed_args(w),
        )[2],
        r"1 of 1 data file\(s\) of images\.zarr are missing",
    ),
    Case(
        "crop with NaN",
        lambda w: (write_crop_values(w, 3, float("nan")), embed_args(w))[1],
        r"and NaN or inf values in the crop\(s\) with crop_id 3 ",
    ),
    Case(
        "crop out of range",
        lambda w: (write_crop_values(w, 1, 7.0), embed_args(w))[1],
        r"found [\d.]+\.\.7\.0 in the crop\(s\) with crop_id 1 ",
    ),
    Case(
        "crop images with a pickle codec",
        lambda w: (
            write(
                w / "crops" / "images.zarr" / "zarr.json",
                json.dumps(
                    {
                        **json.loads((w / "crops" / "images.zarr" / "zarr.json").read_text()),
                        "codecs": [{"name": "numcodecs.pickle"}],
                    }
                ),
            ),
            embed_args(w),
        )[1],
        r"cannot open the crop images images\.zarr \(Unknown codec: 'numcodecs\.pickle'\)",
    ),
    Case(
        "crop table rows reordered",
        lambda w: (edit_crop_table(w, lambda t: t.iloc[::-1].reset_index(drop=True)), embed_args(w))[1],
        r"are not in the order of the crop images",
    ),
    Case(
        "crop table ids not whole numbers",
        lambda w: (edit_crop_table(w, lambda t: t.assign(crop_id=t["crop_id"] + 0.5)), embed_args(w))[1],
        r"crop_id values must be whole numbers",
    ),
    Case(
        "crop_set.json of the wrong shape",
        lambda w: (
            write(
                w / "crops" / "crop_set.json",
                json.dumps({**json.loads((w / "crops" / "crop_set.json").read_text()), "crop_shape": "16x16"}),
            ),
            embed_args(w),
        )[1],
        r"crop_shape is '16x16', which is not what a crop set records",
    ),
    Case(
        "crops.csv edited by hand",
        lambda w: (
            write(w / "crops" / "crops.csv", (w / "crops" / "crops.csv").read_text().replace("control", "treated", 1)),
            embed_args(w),
        )[1],
        r"crops\.csv and crops\.parquet differ",
    ),
    # ----------------------------------------------------------------- embed: outputs
    Case(
        "embed --out is a folder",
        lambda w: embed_args(w, out="crops.csv") if (w / "crops.csv").mkdir() is None else [],
        r"crops\.csv is a folder, but the table is a file",
    ),
    Case(
        "embed --out is a pipe",
        lambda w: (os.mkfifo(w / "fifo.csv"), embed_args(w, out="fifo.csv"))[1],
        r"fifo\.csv is not a regular file",
    ),
    Case(
        "embed --out of another type",
        lambda w: embed_args(w, out="latents.txt"),
        r"latents\.txt: the table is written as",
    ),
    Case("embed --out exists", lambda w: embed_args(w, out="latents.csv"), r"latents\.csv already exists"),
    Case(
        "embed --out read-only",
        lambda w: embed_args(w, out=str(readonly_folder(w) / "l.csv")),
        r"cannot write the table in .*read-only",
    ),
    Case("embed --batch-size 0", lambda w: embed_args(w, "--batch-size", "0"), r"batch_size is 0; use at least 1"),
    # ----------------------------------------------------------------- export
    Case(
        "export latents missing",
        lambda w: export_args(w, "--latents", str(w / "none.csv")),
        r"the table .*none\.csv does not exist",
    ),
    Case(
        "export latents binary",
        with_file("bin.parquet", os.urandom(256), lambda w: export_args(w, "--latents", str(w / "bin.parquet"))),
        r"cannot read the table .*bin\.parquet",
    ),
    *[
        Case(
            f"export latents {what}",
            with_file(name, text, lambda w, name=name: export_args(w, "--latents", str(w / name))),
            message,
        )
        for what, name, text, message in [
            (
                "with NaN",
                "nan.csv",
                "crop_id,mu_0,mu_1\n0,0.1,NaN\n1,0.2,0.3\n",
                r"nan\.csv: the mu_\* values of crop_id 0 are missing, NaN",
            ),
            (
                "with repeated ids",
                "dup.csv",
                "crop_id,mu_0\n1,0.1\n1,0.2\n",
                r"dup\.csv has repeated crop_id values \(e\.g\. 1\)",
            ),
            ("without crop ids", "noid.csv", "id,mu_0\n1,0.1\n", r"noid\.csv has no crop_id and mu_0"),
            ("with NaN ids", "nanid.csv", "crop_id,mu_0\nNaN,0.1\n", r"crop_id nan is not a whole number"),
        ]
    ],
    Case(
        "export per class without annotations",
        lambda w: export_args(w, "--which", "per-class"),
        r"no crop is annotated, so a per-class export would write nothing",
    ),
    Case(
        "export --anndata without anndata",
        lambda w: export_args(
            w, "--latents", str(w / "latents.csv"), "--table", str(w / "t.csv"), "--anndata", str(w / "a.h5ad")
        ),
        r"writing \.h5ad needs the optional package anndata",
        patch=no_anndata,
    ),
    Case(
        "export --overwrite on a foreign folder",
        lambda w: (foreign_folder(w, "export"), export_args(w, "--overwrite"))[1],
        r"export is not an export folder written by napari-morphospace",
    ),
    Case(
        "export --table is a folder",
        lambda w: export_args(w, "--table", str(w / "crops")),
        r"crops: the table is written as \.csv or \.parquet",
    ),
    Case(
        "export --ids of words",
        with_file("ids.txt", "three\n", lambda w: export_args(w, "--which", "selected", "--ids", str(w / "ids.txt"))),
        r"ids\.txt line 1: 'three' is not a crop id",
    ),
    Case(
        "export --ids unknown",
        with_file("ids.txt", "99\n", lambda w: export_args(w, "--which", "selected", "--ids", str(w / "ids.txt"))),
        r"crop id\(s\) 99 are not in the crop set",
    ),
    Case("export on a full disk", lambda w: export_args(w), r"the disk holding .* is full", patch=full_disk),
    Case(
        "export --ids without ids",
        with_file(
            "none.txt", "# none\n", lambda w: export_args(w, "--which", "selected", "--ids", str(w / "none.txt"))
        ),
        r"none\.txt lists no crop ids",
    ),
    Case(
        "export of an empty crop set",
        lambda w: ["export", "--crops", str(empty_crop_set(w)), "--out", str(w / "x")],
        r"the crop set holds no crops, so there is nothing to export",
    ),
    Case("export --no-crops alone", lambda w: export_args(w, "--no-crops"), r"--no-crops leaves nothing to write"),
    # ----------------------------------------------------------------- report and analysis folders
    Case(
        "report of a folder that is not an analysis",
        lambda w: ["report", str(w / "crops"), "--out", str(w / "r.html")],
        r"is not an analysis folder: it has no analysis\.json",
    ),
    Case(
        "analysis.json broken",
        with_file("analysis/analysis.json", '{"format": ', report_args),
        r"analysis\.json cannot be read",
    ),
    Case(
        "analysis.json nested 100000 deep",
        with_file("analysis/analysis.json", nested(100000), report_args),
        r"analysis\.json cannot be read \(RecursionError",
    ),
    Case(
        "analysis.json from a newer version",
        lambda w: (edit_analysis(w, lambda d: d.update(format_version=99)), report_args(w))[1],
        r"reads up to version 1\. Update",
    ),
    Case(
        "report --out existing",
        lambda w: (write(w / "report.html", "<html>mine</html>"), report_args(w))[1],
        r"report\.html already exists",
    ),
    Case(
        "report --overwrite on a foreign file",
        lambda w: (write(w / "report.html", "<html>my notes</html>"), report_args(w, "--overwrite"))[1],
        r"report\.html is not a report written by napari-morphospace",
    ),
    Case(
        "report --out is a folder",
        lambda w: ["report", str(w / "analysis"), "--out", str(w / "crops")],
        r"crops: the report is an HTML file",
    ),
    Case(
        "report --out read-only",
        lambda w: ["report", str(w / "analysis"), "--out", str(readonly_folder(w) / "r.html")],
        r"cannot write the report in .*read-only",
    ),
    Case(
        "sweep --out is a file",
        lambda w: [
            "sweep",
            "--config",
            str(config(w, "sweep.yaml", {"grid": {"beta": [0.5]}})),
            "--crops",
            str(w / "crops"),
            "--out",
            str(w / "control.tif"),
        ],
        r"control\.tif is a file, but the sweep folder is a folder",
    ),
    Case(
        "demo --overwrite on a foreign folder",
        lambda w: (foreign_folder(w, "demo"), ["demo", "--headless", "--out", str(w / "demo"), "--overwrite"])[1],
        r"demo is not a demo output folder written by napari-morphospace",
    ),
]


def _command(args: list[str]) -> str:
    return args[0]


@pytest.mark.parametrize("case", REFUSALS, ids=[c.name for c in REFUSALS])
def test_refused(case: Case, work: Path, capsys, monkeypatch):
    args = case.setup(work)
    before = snapshot(work)
    if case.patch is not None:
        case.patch(monkeypatch)
    code = main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, f"exit status {code}; stderr: {err}"
    assert "Traceback" not in err
    assert all(line.startswith(f"morphospace {_command(args)}: ") for line in lines), err
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, err
    assert __import__("re").search(case.message, errors[0]), errors[0]
    after = snapshot(work)
    changed = {k for k in set(before) ^ set(after) | {k for k in before if k in after and before[k] != after[k]}}
    assert changed <= set(case.changes), f"the refusal changed {sorted(changed)}"
    if case.check is not None:
        case.check(work)


# --------------------------------------------------------------------------- odd but usable input


@dataclass
class Accepted:
    """An odd input that must work: exit 0, and a one-line warning matching ``warning`` (or none when empty)."""

    name: str
    setup: Callable[[Path], list[str]]
    warning: str
    check: Callable[[Path], None] | None = None


def open_folder_report(w: Path, *extra: str) -> list[str]:
    return ["report", str(w / "analysis"), "--out", str(w / "r.html"), *extra]


def copied_analysis_without_crops(w: Path) -> list[str]:
    shutil.copytree(w / "analysis", w / "copy")
    shutil.rmtree(w / "copy" / "crops")
    return ["report", str(w / "copy"), "--out", str(w / "r.html")]


def symlinked_part(w: Path) -> list[str]:
    shutil.move(w / "analysis" / "crops", w / "elsewhere_crops")
    (w / "analysis" / "crops").symlink_to(w / "elsewhere_crops")
    return open_folder_report(w)


def crop_job_pointing_at_a_secret(w: Path) -> list[str]:
    edit_analysis(w, lambda d: d.update(crop_job={"path": "../secret.json", "absolute": str(w / "secret.json")}))
    return open_folder_report(w)


def latents_outside(w: Path) -> list[str]:
    write(w / "outside.csv", (w / "analysis" / "latents.csv").read_text())
    edit_analysis(w, lambda d: d.update(latents={"path": "../outside.csv", "absolute": str(w / "outside.csv")}))
    return open_folder_report(w)


def constant_image(w: Path) -> list[str]:
    tifffile.imwrite(w / "flat.tif", np.full((64, 64), 7, np.uint16))
    return crops_of(w, w / "flat.tif")


def report_has(*texts: str, absent: tuple[str, ...] = ()) -> Callable[[Path], None]:
    def check(w: Path) -> None:
        html = (w / "r.html").read_text()
        assert SECRET not in html
        for text in texts:
            assert text in html, text
        for text in absent:
            assert text not in html, text

    return check


def export_twice(w: Path) -> list[str]:
    assert main(export_args(w)) == 0
    return export_args(w, "--format", "tiff", "--overwrite")


def only_the_new_export(w: Path) -> None:
    assert sorted(p.name for p in (w / "export").iterdir()) == [f"crop_{i:06d}.tif" for i in range(6)] + [
        "manifest.csv"
    ]


ACCEPTED = [
    Accepted("export --overwrite in another format", export_twice, "", check=only_the_new_export),
    Accepted(
        "OME PhysicalSizeX not a number",
        lambda w: (
            tiff_with_description(w / "m.ome.tif", ome_xml(PhysicalSizeX="notanumber")),
            [
                "crops",
                str(w / "m.ome.tif"),
                "--objects",
                "patches",
                "--patch-size",
                "8",
                "--min-foreground",
                "0",
                "--out",
                str(w / "p"),
            ],
        )[1],
        r"OME PhysicalSizeX='notanumber' is not a positive number; that size is unknown",
    ),
    Accepted(
        "OME-XML with entities",
        lambda w: (
            tiff_with_description(
                w / "e.ome.tif",
                '<?xml version="1.0"?><!DOCTYPE OME ['
                '<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                + ome_xml().split("?>", 1)[1].replace("Type=", 'Name="&b;" Type='),
            ),
            [
                "crops",
                str(w / "e.ome.tif"),
                "--objects",
                "patches",
                "--patch-size",
                "8",
                "--min-foreground",
                "0",
                "--out",
                str(w / "p"),
            ],
        )[1],
        r"declares a document type or entities, which are never read",
    ),
    Accepted(
        "OME-XML not well-formed",
        lambda w: (
            tiff_with_description(w / "b.ome.tif", ome_xml().replace("<Image ", "<Image <<")),
            [
                "crops",
                str(w / "b.ome.tif"),
                "--objects",
                "patches",
                "--patch-size",
                "8",
                "--min-foreground",
                "0",
                "--out",
                str(w / "p"),
                "--axes",
                "CYX",
            ],
        )[1],
        r"OME-XML is not well-formed",
    ),
    Accepted(
        "three planes without axes",
        lambda w: (
            tifffile.imwrite(w / "planes.tif", np.stack([_cells(0)[0]] * 3), photometric="minisblack", metadata=None),
            [
                "crops",
                str(w / "planes.tif"),
                "--objects",
                "patches",
                "--patch-size",
                "8",
                "--min-foreground",
                "0",
                "--out",
                str(w / "p"),
            ],
        )[1],
        r"3 planes without axes metadata were read as Z .*--axes CYX",
    ),
    Accepted("constant image", constant_image, r"gave crops that are entirely 0"),
    Accepted(
        "bool labels (a mask: one object)",
        lambda w: (
            tifffile.imwrite(w / "mask.tif", np.ones((64, 64), bool)),
            crops_of(w, w / "control.tif", w / "mask.tif"),
        )[1],
        r"1 (of 1 )?objects were larger than the crop and were cut",
    ),
    Accepted(
        "bool image", lambda w: (tifffile.imwrite(w / "b.tif", _cells(0)[1] > 0), crops_of(w, w / "b.tif"))[1], ""
    ),
    Accepted("crops --overwrite of a crop set", lambda w: crops_args(w, "--overwrite", out="crops"), ""),
    Accepted(
        "preprocessing mismatch allowed",
        lambda w: (
            write_model_json(w, lambda c: c["preprocess"]["crops"].update(mask_neighbours=False)),
            embed_args(w, "--allow-preprocessing-mismatch"),
        )[1],
        r"embedding crops made differently from the model's training crops: crops\.mask_neighbours",
    ),
    Accepted(
        "analysis sources: 5",
        lambda w: (edit_analysis(w, lambda d: d.update(sources=5)), open_folder_report(w))[1],
        r"sources is 5, not a list of source images",
    ),
    Accepted(
        "analysis latents with NaN ids",
        lambda w: (
            write(w / "analysis" / "latents.csv", "crop_id,mu_0\nNaN,1\n"),
            (w / "analysis" / "latents.parquet").unlink(),
            edit_analysis(w, lambda d: d.update(latents={"path": "latents.csv", "absolute": ""})),
            open_folder_report(w),
        )[3],
        r"crop_id nan is not a whole number",
    ),
    Accepted(
        "analysis model.json is a list",
        lambda w: (write(w / "analysis" / "model" / "model.json", "[]"), open_folder_report(w))[1],
        r"model\.json holds list, not a bundle description",
    ),
    Accepted(
        "analysis selections nested deep",
        lambda w: (
            write(w / "analysis" / "selections.json", nested(100000)),
            edit_analysis(w, lambda d: d.update(selections={"path": "selections.json", "absolute": ""})),
            open_folder_report(w),
        )[2],
        r"selections .* cannot be read",
    ),
    Accepted(
        "crop job pointing at a secret",
        crop_job_pointing_at_a_secret,
        r"crop job \.\./secret\.json lies at .*outside the analysis folder",
        check=report_has(absent=("registry",)),
    ),
    Accepted(
        "crop job pointing at a secret, allowed",
        lambda w: crop_job_pointing_at_a_secret(w) + ["--allow-external"],
        "",
        check=report_has("cannot be read", absent=("registry", "auths")),
    ),
    Accepted(
        "latents outside the folder",
        latents_outside,
        r"latent table \.\./outside\.csv lies at .*not read; open it with --allow-external",
        check=report_has("lies at"),
    ),
    Accepted("latents outside the folder, allowed", lambda w: latents_outside(w) + ["--allow-external"], ""),
    Accepted(
        "symlinked crop set",
        symlinked_part,
        r"crop set crops leads through a link to .*elsewhere_crops, outside the analysis folder",
    ),
    Accepted(
        "copied folder with deleted crops",
        copied_analysis_without_crops,
        r"crop set crops is missing; its copy was recorded at .*analysis/crops, outside the analysis folder",
    ),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.name for c in ACCEPTED])
def test_accepted_with_a_warning(case: Accepted, work: Path, capsys):
    args = case.setup(work)
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    # Warnings about one file go to stderr; the crop builder's per-object notes are summed into the summary line.
    warnings = [line for line in lines if ": warning: " in line] + [line for line in out.splitlines() if "; " in line]
    if case.warning:
        assert any(__import__("re").search(case.warning, line) for line in warnings), err
    else:
        assert not [w for w in warnings if "made differently" in w or "outside" in w], err
    if case.check is not None:
        case.check(work)


# --------------------------------------------------------------------------- real processes


def _morphospace(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_morphospace", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_a_real_process_exits_2_with_one_line_and_no_traceback(work):
    done = _morphospace("train", "--crops", str(work / "control.tif"), "--out", str(work / "m"), cwd=work)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"morphospace train: error: crop set folder {work / 'control.tif'} is a file, not a folder; choose the folder "
        "written by 'morphospace crops' (or make crops first)"
    ]


def test_scratch_of_a_killed_crops_run_is_removed_by_the_next_run(work):
    """A crops run killed with SIGKILL leaves its scratch folder; the next run beside it removes it."""
    code = (
        "import os, sys, signal\n"
        "from napari_morphospace.core.cells import crop_set as data\n"
        "def killed(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "data.CropSetWriter.append = killed\n"
        "from napari_morphospace.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = crops_args(work, out="killed")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == -9
    left = [p.name for p in work.iterdir() if p.name.startswith(".killed.")]
    assert len(left) == 1 and left[0].endswith(".tmp")
    assert main(crops_args(work, out="again")) == 0
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]
    assert (work / "again" / "crop_set.json").is_file() and not (work / "killed").exists()


def test_tmp_files_of_a_killed_export_are_removed_by_the_next_export(work, capsys):
    """A killed export leaves 0-byte .tmp files beside its crop files; the next export into that folder removes them."""
    code = (
        "import os, sys, signal\n"
        "from napari_morphospace.core.io import stacks as io\n"
        "def killed(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "io.tifffile.imwrite = killed\n"
        "from napari_morphospace.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *export_args(work)], capture_output=True, text=True, timeout=300)
    assert done.returncode == -9
    left = [p for p in (work / "export").iterdir()]
    assert len(left) == 1 and left[0].name.endswith(".tmp") and left[0].stat().st_size == 0
    assert main(export_args(work, "--overwrite")) == 0
    assert sorted(p.name for p in (work / "export").iterdir()) == [f"crop_{i:06d}.ome.tif" for i in range(6)] + [
        "manifest.csv"
    ]


def test_suite_size():
    """The closing note quotes these numbers."""
    print(f"\nbad-input suite: {len(REFUSALS)} refusals, {len(ACCEPTED)} accepted with a warning, 3 real processes")
    assert len(REFUSALS) + len(ACCEPTED) >= 60
