"""Training under faults: checkpoint writes that fail or are killed, diverging losses, shared folders, strategies.

The command-line side (signals, exit codes, outputs checked before the first
epoch) is in ``tests/test_cli_train_faults.py``.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from test_training import StopAfter, ellipse_crop_set, last_state, settings, small_model

from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import BetaVAE
from napari_morphospace.core.training.engine import (
    TrainingDiverged,
    TrainingInterrupted,
    train,
)

#: 48 crops over 4 sources: one source (12 crops) validates, 36 train in batches of 8, the short last one dropped.
STEPS_PER_EPOCH = 36 // 8
VAL_BATCHES = 2  # 12 validation crops in batches of 8


def checkpoint(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in state.values())


def leftovers(folder: Path) -> list[str]:
    """Every file under ``folder`` that is not a finished checkpoint or the run file."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.suffix != ".ckpt" and p.name != "run.json"
    )


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture
def own_tmpdir(tmp_path, monkeypatch) -> Path:
    """A $TMPDIR of its own, to prove nothing is written (or left) there."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    return folder


def other_file_system(monkeypatch) -> None:
    """Behave as if every folder were its own file system: a rename between folders fails with EXDEV,
    as between a node-local /tmp and a shared checkpoint folder, and the copy that ``shutil.move`` falls back
    to is cut off half-way (a job killed or a disk filling up during the copy)."""
    real_rename, real_replace = os.rename, os.replace

    def across(real):
        def rename(src, dst, *args, **kwargs):
            if os.path.dirname(os.path.abspath(src)) != os.path.dirname(os.path.abspath(dst)):
                raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
            return real(src, dst, *args, **kwargs)

        return rename

    def copy_cut_off(src, dst, *args, **kwargs):
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[: len(data) // 2])
        raise OSError(errno.EIO, "copy interrupted", str(dst))

    monkeypatch.setattr(os, "rename", across(real_rename))
    monkeypatch.setattr(os, "replace", across(real_replace))
    monkeypatch.setattr(shutil, "copyfile", copy_cut_off)


# ---------------------------------------------------------------- checkpoint files


def test_checkpoints_are_written_beside_their_target_and_never_through_tmpdir(tmp_path, own_tmpdir, monkeypatch):
    other_file_system(monkeypatch)
    result = train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=2))
    assert checkpoint(result.last_checkpoint)["epoch"] == 1
    assert all_finite(last_state(result.best_checkpoint))
    assert files_in(own_tmpdir) == []
    assert leftovers(tmp_path / "ckpt") == []


def test_a_checkpoint_write_failing_half_way_keeps_the_previous_checkpoint(tmp_path, own_tmpdir, monkeypatch):
    first = train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=1))
    last = Path(first.last_checkpoint)
    before = last.read_bytes()
    real_save = torch.save

    def disk_fills_up(obj, f, *args, **kwargs):
        """Write half of the checkpoint to its file, then fail as a full disk does."""
        buffer = tempfile.SpooledTemporaryFile()
        real_save(obj, buffer, *args, **kwargs)
        buffer.seek(0)
        data = buffer.read()
        f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_fills_up)
    with pytest.raises(InputError, match="No space left on device") as err:
        train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=3), resume_from=last)
    assert str(last.parent) in str(err.value) and "intact" in str(err.value)
    assert last.read_bytes() == before  # the previous checkpoint survived, byte for byte
    assert leftovers(tmp_path / "ckpt") == [] and files_in(own_tmpdir) == []


KILLED_RUN = textwrap.dedent("""
    import io, os, shutil, signal, sys
    from pathlib import Path
    import torch
    sys.path.insert(0, {tests!r})
    from test_training import ellipse_crop_set, settings, small_model
    from test_training_faults import other_file_system
    from napari_morphospace.core.training.engine import train

    class Patch:  # what other_file_system needs of pytest's monkeypatch
        setattr = staticmethod(setattr)

    def kill_half_way(f):
        f.flush()
        os.truncate(f.fileno(), os.fstat(f.fileno()).st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    real_save, real_copy, copies = torch.save, shutil.copyfile, []

    def save(obj, f, *args, **kwargs):  # a checkpoint written straight to a file: killed in its second epoch
        real_save(obj, f, *args, **kwargs)
        if not isinstance(f, io.BytesIO) and isinstance(obj, dict) and obj.get("epoch") == 1:
            kill_half_way(f)

    def copy(src, dst, *args, **kwargs):  # a checkpoint copied from elsewhere: killed in its second epoch
        copies.append(dst)
        real_copy(src, dst, *args, **kwargs)
        if len(copies) > 2:  # epoch 0 copied best-epoch=0.ckpt and last.ckpt
            with open(dst, "r+b") as f:
                kill_half_way(f)
        return dst

    other_file_system(Patch)
    torch.save, shutil.copyfile = save, copy
    Path({ready!r}).touch()
    train(ellipse_crop_set(), small_model(), settings(Path({folder!r}), epochs=3))
""")


def test_kill_9_while_a_checkpoint_is_written_keeps_the_previous_one_and_the_run_resumes(tmp_path, own_tmpdir):
    """A real kill -9 of a training process in the middle of writing its second ``last.ckpt``."""
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), folder=str(tmp_path), ready=str(tmp_path / "ready"))
    env = {**os.environ, "TMPDIR": str(own_tmpdir), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert (tmp_path / "ready").exists(), run.stderr
    assert run.returncode == -9, run.stderr  # it really died by SIGKILL during the write
    last = tmp_path / "ckpt" / "last.ckpt"
    assert checkpoint(last)["epoch"] == 0 and all_finite(last_state(last))  # the previous checkpoint
    assert files_in(own_tmpdir) == []  # no orphan copy in $TMPDIR
    # The run resumes from it; the killed write's scratch file is cleaned up on the way.
    resumed = train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=3), resume_from=last)
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2]
    assert checkpoint(last)["epoch"] == 2 and leftovers(tmp_path / "ckpt") == []


# ---------------------------------------------------------------- SIGTERM


class SigtermAfter(StopAfter):
    """Sends this process SIGTERM (as SLURM or ``timeout`` would) at its ``n``-th check, i.e. during step ``n``."""

    def is_set(self) -> bool:
        self.checks += 1
        if self.checks == self.n:
            os.kill(os.getpid(), signal.SIGTERM)
        return False


def test_sigterm_mid_epoch_keeps_a_checkpoint_that_resumes_exactly(tmp_path):
    crop_set = ellipse_crop_set()
    flips = {"augment_flips": True, "augment_rot90": True}
    straight = train(crop_set, small_model(), settings(tmp_path / "a", epochs=3, **flips))
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 6") as err:
        train(crop_set, small_model(), settings(tmp_path / "b", epochs=3, **flips), stop_event=SigtermAfter(6))
    kept = checkpoint(err.value.last_checkpoint)
    assert kept["global_step"] == 6 and kept["epoch"] == 1  # two steps into the second epoch
    resumed = train(
        crop_set, small_model(), settings(tmp_path / "b", epochs=3, **flips), resume_from=err.value.last_checkpoint
    )
    # The interrupted epoch continues with the batches it had not trained yet: the same run as uninterrupted.
    assert checkpoint(resumed.last_checkpoint)["global_step"] == 3 * STEPS_PER_EPOCH
    a, b = last_state(straight.last_checkpoint), last_state(resumed.last_checkpoint)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-5, atol=1e-6, msg=name)
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2]
    assert resumed.history[2]["val_loss"] == pytest.approx(straight.history[2]["val_loss"], rel=1e-5)


# ---------------------------------------------------------------- last.ckpt is the last epoch


def test_last_checkpoint_follows_every_epoch_even_when_validation_does_not_improve(tmp_path, monkeypatch):
    real_loss = BetaVAE.loss

    def flat_validation_loss(self, x, out, **kwargs):
        terms = real_loss(self, x, out, **kwargs)
        if not self.training:  # epoch 0 sets the best value; no later epoch improves on it
            terms["loss"] = torch.tensor(1.0)
        return terms

    monkeypatch.setattr(BetaVAE, "loss", flat_validation_loss)
    result = train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=3))
    assert "epoch=0" in result.best_checkpoint
    last = checkpoint(result.last_checkpoint)
    assert last["epoch"] == 2  # the last epoch, not the last improving one
    assert last["global_step"] == 3 * STEPS_PER_EPOCH
    # Resuming to 4 epochs runs exactly one more epoch.
    resumed = train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=4), resume_from=result.last_checkpoint)
    assert [row["epoch"] for row in resumed.history] == [0, 1, 2, 3]
    assert checkpoint(resumed.last_checkpoint)["global_step"] == 4 * STEPS_PER_EPOCH


# ---------------------------------------------------------------- the non-finite guard


def test_an_exploding_learning_rate_keeps_finite_weights_and_never_a_nan_best(tmp_path):
    with pytest.raises(TrainingDiverged, match="non-finite") as err:
        train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=3, learning_rate=1e8))
    kept = Path(err.value.last_checkpoint)
    assert all_finite(last_state(kept))
    # The first update already blew up: validation of what was left was NaN, so there is no best epoch, and
    # last.ckpt is the state training started from.
    assert list((tmp_path / "ckpt").glob("best-*.ckpt")) == []
    assert checkpoint(kept)["global_step"] == 0
    # Resuming from the kept checkpoint with a sane learning rate, as the message advises, trains on.
    assert "resume" in str(err.value) and "learning rate" in str(err.value)
    # Clipping (1.0) and 32-bit precision are the defaults already: the advice does not send the user to them.
    assert "gradient_clip_val" not in str(err.value) and "precision" not in str(err.value)
    resumed = train(
        ellipse_crop_set(), small_model(), settings(tmp_path, epochs=3, learning_rate=1e-3), resume_from=kept
    )
    assert all(math.isfinite(row["val_loss"]) for row in resumed.history[-1:])
    assert all_finite(resumed.model.state_dict())


def test_a_nan_validation_loss_is_never_the_best_and_stops_training(tmp_path, monkeypatch):
    real_loss = BetaVAE.loss

    def nan_validation_in_the_second_epoch(self, x, out, **kwargs):
        terms = real_loss(self, x, out, **kwargs)
        if not self.training and self.validations >= VAL_BATCHES:
            terms["loss"] = terms["loss"] * math.nan
        if not self.training:
            type(self).validations += 1
        return terms

    monkeypatch.setattr(BetaVAE, "loss", nan_validation_in_the_second_epoch)
    monkeypatch.setattr(BetaVAE, "validations", 0, raising=False)
    with pytest.raises(TrainingDiverged, match="validation loss became non-finite.*epoch 2") as err:
        train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=4))
    assert [p.name for p in (tmp_path / "ckpt").glob("best-*.ckpt")] == ["best-epoch=0.ckpt"]
    assert checkpoint(err.value.last_checkpoint)["epoch"] == 0  # the epoch with a finite validation loss
    assert "best-epoch=0.ckpt the best epoch so far" in str(err.value)


def test_divergence_advice_names_only_the_remedies_not_in_use(tmp_path):
    from napari_morphospace.core.training.engine import _divergence_advice

    advice = _divergence_advice(settings(tmp_path, gradient_clip_val=None, precision="bf16-mixed", learning_rate=0.01))
    assert advice == (
        "Try: lower the learning rate (now 0.01), or set gradient_clip_val (e.g. 1.0), "
        "or use precision '32-true' (now 'bf16-mixed')"
    )


def test_the_guard_holds_when_steps_are_slow(tmp_path, monkeypatch):
    """Progress messages go out every 0.5 s at most; a non-finite step after a slow one used to crash them."""
    real_loss = BetaVAE.loss

    def slow_then_nan(self, x, out, **kwargs):
        terms = real_loss(self, x, out, **kwargs)
        if self.training and kwargs.get("step") == 3:
            time.sleep(0.6)
            terms["loss"] = terms["loss"] * math.nan
        return terms

    monkeypatch.setattr(BetaVAE, "loss", slow_then_nan)
    with pytest.raises(TrainingDiverged, match="step 3"):
        train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=2), on_update=lambda message: None)


# ---------------------------------------------------------------- checkpoint folders


def test_training_needs_a_checkpoint_folder(tmp_path):
    with pytest.raises(InputError, match="checkpoint_dir"):
        train(ellipse_crop_set(), small_model(), settings(tmp_path, checkpoint_dir=None))


def test_a_new_run_refuses_a_folder_holding_another_runs_checkpoints(tmp_path):
    first = train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=1))
    before = Path(first.last_checkpoint).read_bytes()
    with pytest.raises(InputError, match="already holds another training.s checkpoints") as err:
        train(ellipse_crop_set(), small_model(), settings(tmp_path, epochs=1, seed=5))
    assert str(tmp_path / "ckpt") in str(err.value) and "resume" in str(err.value)
    assert Path(first.last_checkpoint).read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best-epoch=0.ckpt", "last.ckpt", "run.json"]


def test_resuming_into_another_runs_folder_is_refused(tmp_path):
    a = train(ellipse_crop_set(), small_model(), settings(tmp_path / "a", epochs=1))
    train(ellipse_crop_set(), small_model(), settings(tmp_path / "b", epochs=1))
    with pytest.raises(InputError, match="already holds another training.s checkpoints"):
        train(ellipse_crop_set(), small_model(), settings(tmp_path / "b", epochs=2), resume_from=a.last_checkpoint)
    # Into a new folder it continues, and that folder then belongs to the resumed run.
    resumed = train(
        ellipse_crop_set(), small_model(), settings(tmp_path / "c", epochs=2), resume_from=a.last_checkpoint
    )
    assert [row["epoch"] for row in resumed.history] == [0, 1]


def test_spawned_strategies_are_refused_with_advice(tmp_path):
    with pytest.raises(InputError, match="ddp_spawn.*'ddp'"):
        train(ellipse_crop_set(), small_model(), settings(tmp_path, strategy="ddp_spawn", devices=2))
