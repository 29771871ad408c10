"""``morphospace train`` under faults: SIGTERM, Ctrl-C, unwritable or full outputs, where checkpoints go, DDP.

Signals are sent to a real ``morphospace train`` process (the console script),
and the resume command it prints is run as printed.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from test_cli_train_embed import disk_crop_set

from napari_morphospace.cli import main
from napari_morphospace.core.cells.crop_set import save_crop_set
from napari_morphospace.core.training.bundle import load_bundle

MORPHOSPACE = str(Path(sys.executable).parent / "morphospace")
TINY = ["--model", "beta-vae", "--latent-dim", "3", "--batch-size", "8", "--accelerator", "cpu"]


@pytest.fixture
def crops(tmp_path) -> Path:
    folder = tmp_path / "crops"
    save_crop_set(disk_crop_set(48, group="control", radius=3, seed=0), folder)
    return folder


@pytest.fixture
def own_tmpdir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write to, not even root (the tests may run as root, who ignores permissions)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if os.access(folder, os.W_OK):  # root: mark it immutable instead
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            folder.chmod(0o755)
            pytest.skip("cannot make a read-only folder here (root without chattr)")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


# ---------------------------------------------------------------- where checkpoints go


def test_checkpoints_go_beside_the_bundle_and_are_removed_after_success(tmp_path, crops, own_tmpdir, capsys):
    out = tmp_path / "models" / "controls"
    assert main(["train", "--crops", str(crops), "--out", str(out), "--epochs", "2", *TINY]) == 0
    err = capsys.readouterr().err
    checkpoints = tmp_path / "models" / "controls-checkpoints"
    assert f"checkpoints go to {checkpoints}" in err
    assert not checkpoints.exists()  # the bundle holds the model; nothing is left to resume
    assert files_in(own_tmpdir) == []
    model_json = (out / "model.json").read_text()
    assert "controls-checkpoints" not in model_json and str(own_tmpdir) not in model_json
    assert len(json.loads(model_json)["history"]) == 2


def test_a_chosen_checkpoint_folder_is_kept(tmp_path, crops, capsys):
    out, folder = tmp_path / "model", tmp_path / "ckpt"
    assert (
        main(
            ["train", "--crops", str(crops), "--out", str(out), "--epochs", "2", *TINY, "--checkpoint-dir", str(folder)]
        )
        == 0
    )
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 1
    assert f"checkpoints go to {folder}" in capsys.readouterr().err


# ---------------------------------------------------------------- outputs checked before the first epoch


def refused_before_training(capsys, argv: list[str], words: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "epoch 1" not in captured.out  # not a single epoch ran
    message = captured.err.strip().splitlines()[-1]
    assert message.startswith("morphospace train: error:") and words in message, captured.err
    return message


def test_an_unwritable_out_is_refused_before_the_first_epoch(tmp_path, crops, read_only_folder, capsys):
    refused_before_training(
        capsys,
        [
            "train",
            "--crops",
            str(crops),
            "--out",
            str(read_only_folder / "model"),
            "--epochs",
            "2",
            *TINY,
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
        ],
        "read-only",
    )
    assert not (tmp_path / "ckpt").exists()


def test_an_out_below_a_file_is_refused_before_the_first_epoch(tmp_path, crops, capsys):
    (tmp_path / "notes.txt").write_text("not a folder")
    refused_before_training(
        capsys,
        ["train", "--crops", str(crops), "--out", str(tmp_path / "notes.txt" / "model"), "--epochs", "2", *TINY],
        "is a file",
    )


def test_a_full_disk_is_refused_before_the_first_epoch(tmp_path, crops, capsys, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=100_000))
    refused_before_training(
        capsys, ["train", "--crops", str(crops), "--out", str(tmp_path / "model"), "--epochs", "2", *TINY], "full"
    )


def test_an_unwritable_checkpoint_folder_is_refused_before_the_first_epoch(tmp_path, crops, read_only_folder, capsys):
    refused_before_training(
        capsys,
        [
            "train",
            "--crops",
            str(crops),
            "--out",
            str(tmp_path / "model"),
            "--epochs",
            "2",
            *TINY,
            "--checkpoint-dir",
            str(read_only_folder / "ckpt"),
        ],
        "cannot write the checkpoints",
    )
    assert not (tmp_path / "model").exists()


# ---------------------------------------------------------------- signals


class Training:
    """A ``morphospace train`` process whose epoch lines are read as they come."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        self.process = subprocess.Popen(
            [MORPHOSPACE, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.epoch_done = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("epoch "):
                self.epoch_done.set()

    def send_after_first_epoch(self, signum: int) -> tuple[int, str]:
        assert self.epoch_done.wait(timeout=240), "".join(self.lines) + self.process.stderr.read()
        self.process.send_signal(signum)
        stderr = self.process.stderr.read()
        code = self.process.wait(timeout=240)
        self.reader.join(timeout=10)
        return code, stderr


def resume_command(stderr: str) -> list[str]:
    """The resume command the process printed, with the console script of this environment."""
    line = next(line for line in stderr.splitlines() if "resume with:" in line)
    words = shlex.split(line.split("resume with:", 1)[1])
    assert words[:2] == ["morphospace", "train"]
    return [MORPHOSPACE, *words[1:]]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "words"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_exits_non_zero_keeps_a_checkpoint_and_the_printed_command_resumes(
    tmp_path, crops, signum, code, words
):
    argv = ["train", "--crops", "crops", "--out", "model", "--epochs", "30", *TINY]
    status, stderr = Training(argv, cwd=tmp_path).send_after_first_epoch(signum)
    assert status == code, stderr
    assert words in stderr and "Traceback" not in stderr
    last = tmp_path / "model-checkpoints" / "last.ckpt"
    assert str(Path("model-checkpoints") / "last.ckpt") in stderr
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["global_step"] > 0 and all(torch.isfinite(v).all() for v in state["state_dict"].values())
    assert not (tmp_path / "model").exists()  # no bundle from a run that did not finish

    # The same command without --resume refuses to start over on top of the stopped run.
    rerun = subprocess.run([MORPHOSPACE, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 2 and "Traceback" not in rerun.stderr
    assert "already holds another training's checkpoints" in rerun.stderr

    # The printed command continues the run to its 30 epochs, under a shorter limit here.
    command = resume_command(stderr)
    command[command.index("--epochs") + 1] = "3"
    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    history = load_bundle(tmp_path / "model").config["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2]


#: What SLURM sets for a one-task job (Lightning then uses its SLURM environment and requeue handlers).
SLURM_JOB = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "train",
    "SLURM_NTASKS": "1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
}


@pytest.mark.slow
def test_a_requeued_slurm_job_continues_its_run_with_the_same_command(tmp_path, crops):
    argv = ["train", "--crops", "crops", "--out", "model", "--epochs", "4", *TINY]
    status, stderr = Training(argv, cwd=tmp_path, env=SLURM_JOB).send_after_first_epoch(signal.SIGTERM)
    assert status == 143, stderr
    stopped_at = torch.load(tmp_path / "model-checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    # SLURM starts the requeued job with the same command and counts the restart.
    env = {**os.environ, "OMP_NUM_THREADS": "1", **SLURM_JOB, "SLURM_RESTART_COUNT": "1"}
    requeued = subprocess.run([MORPHOSPACE, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert requeued.returncode == 0, requeued.stderr
    assert "requeued SLURM job; continuing from model-checkpoints/last.ckpt" in requeued.stderr
    history = load_bundle(tmp_path / "model").config["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2, 3] and stopped_at >= 4


# ---------------------------------------------------------------- several processes


@pytest.mark.slow
def test_ddp_processes_share_one_checkpoint_folder_and_write_one_bundle(tmp_path, crops, own_tmpdir):
    argv = [
        "train",
        "--crops",
        "crops",
        "--out",
        "model",
        "--epochs",
        "2",
        *TINY,
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--checkpoint-dir",
        "ckpt",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(own_tmpdir)}
    run = subprocess.run([MORPHOSPACE, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    best, *rest = sorted(p.name for p in (tmp_path / "ckpt").iterdir())  # one run's files, written once
    assert best.startswith("best-epoch=") and rest == ["last.ckpt", "run.json"]
    assert [row["epoch"] for row in load_bundle(tmp_path / "model").config["history"]] == [0, 1]
    assert files_in(own_tmpdir) == []


def test_a_bundle_that_cannot_be_written_after_training_is_not_lost(tmp_path, crops, capsys, monkeypatch):
    """The disk fills up during training: the message says where the model is and the command that writes it."""
    import napari_morphospace.core.training.bundle as bundle

    real_save = bundle.save_file

    def disk_full(*args, **kwargs):  # the weights file is the bundle's first write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle, "save_file", disk_full)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--crops", "crops", "--out", "model", "--epochs", "2", *TINY]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot write model (No space left on device)" in err and "Traceback" not in err
    assert "The finished training stays in model-checkpoints" in err
    assert (tmp_path / "model-checkpoints" / "last.ckpt").is_file() and not (tmp_path / "model").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []  # no scratch left
    # Space is back: the printed command writes the bundle from the finished run, without training again.
    monkeypatch.setattr(bundle, "save_file", real_save)
    command = shlex.split(err.split("write the bundle with:", 1)[1].strip())
    assert main(command[1:]) == 0
    out = capsys.readouterr().out
    assert "epoch" not in out  # nothing was trained again
    assert [row["epoch"] for row in load_bundle(tmp_path / "model").config["history"]] == [0, 1]
    assert not (tmp_path / "model-checkpoints").exists()
