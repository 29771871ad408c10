"""Training checkpoints on disk: written whole or not at all, one run per folder, a true ``last.ckpt``.

A training run keeps its checkpoints in one folder the user is told about::

    run.json              which run owns the folder (id, start time); a second training is refused
    last.ckpt             the state after the latest epoch (and after a stop or SIGTERM): resume from it
    best-epoch=N.ckpt     the epoch with the lowest finite validation loss
    reference/, target/   the same per stage, for the conditional model

Every file is written to a hidden scratch file beside its target and renamed
into place (:class:`AtomicCheckpointIO`), so a kill -9, a full disk or a job
time limit during a write leaves the previous checkpoint intact. Lightning's
own writer went through ``$TMPDIR`` and *moved* the file, a copy when
``$TMPDIR`` is on another file system (node-local ``/tmp``, shared checkpoint
folder), which left truncated checkpoints under their final names.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..errors import InputError
from ..files import atomic_path, remove_stale_scratch
from ..outputs import check_writable

RUN_FILE = "run.json"
LAST_NAME = "last.ckpt"
#: Checkpoints hold the weights and two Adam moments per weight.
CHECKPOINT_COPIES = 3


class CheckpointWriteError(InputError):
    """A checkpoint could not be written (full disk, folder made read-only); the previous one is intact."""


# ---------------------------------------------------------------- writing


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing beside the target and renaming it into place.

    A rename within one folder is atomic: the target holds the previous
    checkpoint or the new one, whole, whatever interrupts the write. The
    file is flushed to disk before the rename, so a crash of the machine
    cannot leave the new name pointing at unwritten blocks either. Lightning
    calls this on global rank 0 only.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(path, failed=_checkpoint_write_failed) as scratch, open(scratch, "wb") as file:
            torch.save(checkpoint, file)


def _checkpoint_write_failed(path: Path, err: OSError) -> CheckpointWriteError:
    return CheckpointWriteError(
        f"could not write the checkpoint {path} ({err.strerror or err}); the checkpoints already in "
        f"{path.parent} are intact. Free disk space or make the folder writable, then resume"
    )


def last_checkpoint_in(folder: Path) -> Path | None:
    """The ``last.ckpt`` to resume a run in ``folder`` from (the later stage first for the conditional model)."""
    for candidate in (folder / "target" / LAST_NAME, folder / "reference" / LAST_NAME, folder / LAST_NAME):
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------- one run per folder


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def checkpoint_run_id(checkpoint: dict[str, Any]) -> str | None:
    """The run a checkpoint of this engine belongs to (``None`` for checkpoints written before runs had ids)."""
    return checkpoint.get("morphospace_run")


def claim_folder(folder: Path, run_id: str, *, resume_from: Path | None, needed_bytes: int) -> None:
    """Make ``folder`` the checkpoint folder of run ``run_id``, or refuse it with a message saying why.

    Two trainings writing into one folder overwrite each other's
    ``last.ckpt``, so a folder holding another run's checkpoints is refused.
    A run resumed from a checkpoint keeps its id and may continue in its own
    folder (or a new one); checkpoints from before run ids are adopted when
    resuming from one of them. Also refuses a folder that cannot be written
    or whose disk lacks ``needed_bytes``, and removes scratch files of
    writers that were killed.
    """
    check_writable(folder, what="checkpoints", needed_bytes=needed_bytes)
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / RUN_FILE
    owner = _read_run_file(record)
    resuming_here = resume_from is not None and folder.resolve() in resume_from.resolve().parents
    if owner is not None and owner.get("run_id") != run_id:
        started = f", started {owner['started']}" if owner.get("started") else ""
        raise InputError(
            f"the checkpoint folder already holds another training's checkpoints (run {owner.get('run_id')}"
            f"{started}), which this one would overwrite: {folder}. Choose an empty checkpoint folder, or "
            f"resume that training from {last_checkpoint_in(folder) or folder / LAST_NAME}"
        )
    if owner is None and not resuming_here and any([*folder.glob("*.ckpt"), *folder.glob("*/*.ckpt")]):
        raise InputError(
            f"the checkpoint folder already holds another training's checkpoints, which this one would "
            f"overwrite: {folder}. Choose an empty checkpoint folder, or resume that training from "
            f"{last_checkpoint_in(folder) or folder / LAST_NAME}"
        )
    for stage_folder in (folder, *[p for p in folder.iterdir() if p.is_dir()]):
        remove_stale_scratch(stage_folder)
    if owner is None:
        try:
            with open(record, "x") as file:  # exclusive: of two trainings starting together, one gets the folder
                json.dump(
                    {
                        "run_id": run_id,
                        "started": datetime.now().isoformat(timespec="seconds"),
                        "slurm_job": slurm_job_id(),
                    },
                    file,
                )
        except FileExistsError as err:
            raise InputError(
                f"another training took checkpoint folder {folder} at the same moment; "
                "choose an empty checkpoint folder"
            ) from err


def slurm_job_id() -> str | None:
    """The SLURM job (``<job>`` or ``<array job>_<task>``) this process runs in; ``None`` outside SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None:
        return f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def requeued_checkpoint(folder: Path) -> Path | None:
    """The ``last.ckpt`` a requeued SLURM job continues from, when ``folder`` holds this job's run.

    SLURM starts a requeued job (Lightning's auto-requeue on the
    ``--signal`` warning, or ``scontrol requeue``) with the same command, and
    counts restarts in ``SLURM_RESTART_COUNT``. Lightning's own requeue
    checkpoint (``hpc_ckpt_N.ckpt``) is written from inside a signal handler,
    possibly in the middle of a step; ``last.ckpt``, written at a step
    boundary on the SIGTERM that ends the job, is used instead.
    """
    job = slurm_job_id()
    if job is None or int(os.environ.get("SLURM_RESTART_COUNT") or 0) < 1:
        return None
    try:
        owner = _read_run_file(folder / RUN_FILE)
    except InputError:
        return None
    if owner is None or owner.get("slurm_job") != job:
        return None
    return last_checkpoint_in(folder)


def _read_run_file(record: Path) -> dict[str, Any] | None:
    if not record.exists():
        return None
    try:
        owner = json.loads(record.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"{record} cannot be read ({err}); if no training uses {record.parent}, delete that file or the "
            "folder's checkpoints, or choose another checkpoint folder"
        ) from err
    if not isinstance(owner, dict):
        raise InputError(f"{record} is not a run file of napari-morphospace; choose another checkpoint folder")
    return owner


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """The size of one checkpoint of ``model``: its tensors, and two Adam moments per weight."""
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return CHECKPOINT_COPIES * parameters + buffers


# ---------------------------------------------------------------- callbacks


class RunCheckpoints(Checkpoint):
    """Owns a run's checkpoint folder and keeps its ``last.ckpt`` the latest state worth resuming from.

    Lightning's ``ModelCheckpoint`` writes "last" only when it also saves a
    best checkpoint, so after epochs that did not improve, ``last.ckpt`` was
    older than the run and resuming silently repeated epochs. Here it is
    written when training starts, at the end of every epoch whose validation
    loss is finite (a Stop or the non-finite guard ends the epoch early, so
    they are covered) and when Lightning stops on SIGTERM (at a step
    boundary). An epoch with a non-finite validation loss keeps the previous
    ``last.ckpt`` and stops training (``nonfinite_val_epoch``). Every
    checkpoint carries the run id. The folder is claimed by global rank 0
    before the first epoch and every rank learns the outcome, so all
    processes refuse together.
    """

    def __init__(
        self, run_folder: Path, stage_folder: Path, run_id: str, *, resume_from: Path | None, model: torch.nn.Module
    ) -> None:
        self.run_folder, self.last = run_folder, stage_folder / LAST_NAME
        self.run_id, self.resume_from = run_id, resume_from
        # The best and last checkpoints and one being written beside them.
        self.needed_bytes = 3 * checkpoint_bytes(model)
        self.nonfinite_val_epoch: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        problem = None
        if trainer.is_global_zero:
            try:
                claim_folder(self.run_folder, self.run_id, resume_from=self.resume_from, needed_bytes=self.needed_bytes)
            except InputError as err:
                problem = str(err)
        problem = trainer.strategy.broadcast(problem)
        if problem:
            raise InputError(problem)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Something to fall back to when the first epoch already diverges.
        if not trainer.strategy.broadcast(self.last.exists()):
            trainer.save_checkpoint(self.last)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        val_loss = trainer.callback_metrics.get("val_loss")
        if val_loss is not None and not bool(torch.isfinite(val_loss)):
            self.nonfinite_val_epoch = trainer.current_epoch
            trainer.should_stop = True
            return
        trainer.save_checkpoint(self.last)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Lightning raises SIGTERMException between steps, so the state is whole. A Ctrl-C can arrive in the
        # middle of an optimiser step: nothing is saved then, and the last epoch's checkpoint stays.
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.last)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint["morphospace_run"] = self.run_id


class BestCheckpoint(ModelCheckpoint):
    """The best checkpoint by validation loss, which never takes a non-finite loss for the best.

    ``ModelCheckpoint`` stores a NaN score as infinity, so a first epoch whose
    validation loss was NaN was saved as the best model.
    """

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is not None and not bool(torch.isfinite(current)):
            return False
        return super().check_monitor_top_k(trainer, current)
