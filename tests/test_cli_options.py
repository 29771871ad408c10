"""The command line answers at once, shows its defaults, reaches the crop and model settings, and names its flags."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from real_data import stardist_3d
from scipy import ndimage

from napari_morphospace.cli import main
from napari_morphospace.cli.crops import FLAGS as CROP_FLAGS
from napari_morphospace.cli.flags import name_flags
from napari_morphospace.core.cells.crop_set import load_crop_set
from napari_morphospace.core.cells.crops import CropSettings
from napari_morphospace.core.io.stacks import read_stack
from napari_morphospace.core.training.engine import TrainSettings


def test_import_help_and_bad_arguments_never_import_torch():
    # Run where nothing is imported yet: the console script's first steps, as a user's shell runs them.
    script = textwrap.dedent(
        """
        import sys
        from napari_morphospace.cli import main
        for argv in (["--help"], ["crops", "a.tif", "--size", "big", "--out", "x"], ["train", "--crops", "c"],
                     ["embed", "--bogus"], ["analysis", "--help"], ["sweep", "--help"], ["report", "--help"],
                     ["export", "--help"]):
            try:
                main(argv)
            except SystemExit as stop:
                assert stop.code in (0, 2), (argv, stop.code)
        heavy = sorted(m for m in ("torch", "lightning", "pandas", "matplotlib", "sklearn", "skimage", "dask")
                       if m in sys.modules)
        print("HEAVY", heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
    assert "invalid size_value value" not in result.stderr and "'big' is not a size" in result.stderr


def test_help_shows_the_settings_defaults_and_choices(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = TrainSettings()
    assert defaults.batch_size is None and defaults.epochs is None  # chosen from the crops: the help says how
    assert "crops per batch (per device); default: chosen from the number of training crops" in text
    assert (
        "--min-steps MIN_STEPS optimiser steps the automatic epoch count reaches at least (default: "
        f"{defaults.min_steps})" in text
    )
    assert "which VAE to train (one of: beta-vae, beta-tcvae, me-vae, cond-vae; default: beta-vae)" in text
    assert "--reconstruction" in text and "(one of: sse, bce, calibrated-gaussian;" in text
    assert "--objective" in text and "(one of: classic, reparameterised; default: classic)" in text

    with pytest.raises(SystemExit):
        main(["crops", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    crop = CropSettings()
    assert f"skip objects with fewer pixels (voxels) (default: {crop.min_area})" in text
    assert "--exclude-border, --no-exclude-border" in text
    assert (
        "--mask-neighbours, --no-mask-neighbours zero the pixels of other objects inside a crop (default: yes)" in text
    )
    assert f"(default: {crop.size})" in text and "16,64,64" in text


@pytest.mark.parametrize(
    ("argv", "expected", "config_key"),
    [
        (
            ["train", "--crops", "CROPS", "--out", "OUT", "--batch-size", "2"],
            "--batch-size is 2",
            "training.batch_size",
        ),
        (
            ["train", "--crops", "CROPS", "--out", "OUT", "--model", "vae"],
            "--model: 'vae' is not one of",
            "model.model",
        ),
        (
            ["train", "--crops", "CROPS", "--out", "OUT", "--objective", "reparameterised", "--beta", "4"],
            "use --objective classic for",
            "objective='classic'",
        ),
        (["crops", "IMAGE", "--labels", "LABELS", "--min-area", "-1", "--out", "OUT"], "--min-area (-1)", "min_area"),
        (["demo", "--ndim", "4", "--out", "OUT"], "--ndim: 4 is not one of 2, 3", "error: ndim"),
    ],
)
def test_refusals_name_the_flag_not_the_settings_field(tmp_path, capsys, argv, expected, config_key):
    argv = [str(tmp_path / a) if a in ("CROPS", "OUT", "IMAGE", "LABELS") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and config_key not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "OUT").exists()


def test_advice_names_switches_and_values_as_typed():
    message = (
        "3 objects touched the image border and were skipped (exclude_border=False keeps them); "
        "5 were cut (increase size or use mode='fit'); lower min_area"
    )
    assert name_flags(message, CROP_FLAGS) == (
        "3 objects touched the image border and were skipped (--no-exclude-border keeps them); "
        "5 were cut (increase size or use --mode fit); lower --min-area"
    )


def test_3d_crops_with_per_axis_size_masking_and_skips_from_the_command_line(tmp_path, capsys):
    image, mask = stardist_3d()  # real 3D nuclei: 31 x 61 x 57 voxels, 51 labelled nuclei, no pixel size
    out = tmp_path / "crops 3d"
    argv = [
        "crops",
        str(image),
        "--labels",
        str(mask),
        "--size",
        "8,24,24",
        "--min-area",
        "150",
        "--exclude-border",
        "--mask-background",
        "--no-mask-neighbours",
        "--out",
        str(out),
        "--save-config",
        str(tmp_path / "job.yaml"),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()

    labels = np.asarray(read_stack(mask).data)
    ids = np.unique(labels[labels > 0])
    areas = ndimage.sum_labels(np.ones_like(labels), labels, ids)
    border = np.zeros_like(labels, dtype=bool)
    border[[0, -1]] = border[:, [0, -1]] = border[:, :, [0, -1]] = True
    on_border = np.isin(ids, np.unique(labels[border]))
    small = areas < 150
    kept = ids[~small & ~on_border]

    crop_set = load_crop_set(out, in_memory=True)
    assert crop_set.images.shape == (len(kept), 1, 8, 24, 24)
    assert sorted(crop_set.table["label_id"]) == sorted(kept.tolist())
    # --mask-background: every voxel outside the cell is zero (its own voxels are not all zero).
    for row, crop in zip(crop_set.table.itertuples(), crop_set.images, strict=True):
        box = tuple(slice(max(getattr(row, f"{a}_start"), 0), getattr(row, f"{a}_stop")) for a in "zyx")
        offset = tuple(max(-getattr(row, f"{a}_start"), 0) for a in "zyx")
        region = labels[box]
        inside = crop[0][tuple(slice(o, o + n) for o, n in zip(offset, region.shape, strict=True))]
        assert np.all(inside[region != row.label_id] == 0) and inside[region == row.label_id].any()
    # The summary line counts the skipped objects and names the flags that keep them; no raw warning.
    summary = captured.out.strip().splitlines()[-1]
    assert f"wrote {len(kept)} crops (1x8x24x24)" in summary
    assert f"{int(small.sum())} objects were smaller than --min-area and skipped" in summary
    assert "--no-exclude-border" in summary
    assert "UserWarning" not in captured.err and "min_area" not in captured.out + captured.err
    job = yaml.safe_load((tmp_path / "job.yaml").read_text())
    assert job["crop"]["size"] == [8, 24, 24] and job["crop"]["mask_background"] is True
    assert job["crop"]["mask_neighbours"] is False and job["crop"]["exclude_border"] is True


def test_words_that_are_not_settings_and_config_file_keys_stay():
    from napari_morphospace.cli.train import FLAGS as TRAIN_FLAGS

    assert (
        name_flags("this crop set does not fit the model: it has 2 channels", TRAIN_FLAGS)
        == "this crop set does not fit the model: it has 2 channels"
    )
    # A value from a config file keeps the key the user wrote there.
    assert (
        name_flags("train.yaml.training.batch_size: expected an integer", TRAIN_FLAGS)
        == "train.yaml.training.batch_size: expected an integer"
    )
    assert (
        name_flags("model settings: beta must be non-negative", TRAIN_FLAGS)
        == "model settings: --beta must be non-negative"
    )
