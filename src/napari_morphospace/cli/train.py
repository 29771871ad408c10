"""``morphospace train``: train a VAE on a crop set and save a model bundle.

The same engine as the Train widget. Options override the values of
``--config`` (a YAML file with ``model:`` and ``training:`` sections, e.g.
saved by the widget or by ``--save-config``). Lightning's device options pass
through, so the same command trains on a laptop CPU, on several GPUs with
``--devices 4 --strategy ddp`` or on several nodes under SLURM with
``--num-nodes``. A requeued SLURM job continues its run from ``last.ckpt``.

Checkpoints go to ``--checkpoint-dir``, or to ``<out>-checkpoints`` beside
the bundle, which is removed once the bundle is written. Every output is
checked before the first epoch. SIGTERM (SLURM, Kubernetes, ``timeout``)
and Ctrl-C stop training at a step boundary, keep a resumable
``last.ckpt``, print the command that resumes it and exit with 143 and
130; no bundle is written for a run that did not finish.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..core.errors import InputError
from .flags import Flag, HelpFormatter, add_flags, apply_flags

if TYPE_CHECKING:
    from ..core.cells.crop_set import CropSet
    from ..core.training.checkpoints import CheckpointWriteError
    from ..core.training.engine import TrainConfig, TrainingDiverged, TrainMessage


def _devices(text: str) -> str | int | list[int]:
    """Parse ``--devices`` as Lightning does: 'auto', a count ("2"), or device ids ("0,2"; "1," is id 1 alone)."""
    if text == "auto":
        return text
    try:
        return [int(part) for part in text.split(",") if part] if "," in text else int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto', a count or ids like 0,1") from err


FLAGS = [
    Flag("--model", ("model.model",), "which VAE to train"),
    Flag("--latent-dim", ("model.latent_dim",), "number of latent dimensions (2-512)", int),
    Flag(
        "--beta",
        ("model.beta",),
        "the model's β: weight of the KL term (beta-vae, me-vae, cond-vae) or of the "
        "total correlation (beta-tcvae, its tc_beta)",
        float,
    ),
    Flag(
        "--objective",
        ("model.objective",),
        "rec + beta*KL (classic), or (1-beta)*rec + beta*KL with beta in [0, 1] (reparameterised)",
    ),
    Flag(
        "--reconstruction",
        ("model.reconstruction",),
        "reconstruction term: 0.5*SSE (sse), binary cross-entropy (bce), or a Gaussian whose variance is the "
        "batch's mean squared error (calibrated-gaussian)",
    ),
    Flag(
        "--epochs",
        ("training.epochs",),
        "number of epochs (per stage for cond-vae); default: enough for --min-steps optimiser steps",
        int,
    ),
    Flag("--min-steps", ("training.min_steps",), "optimiser steps the automatic epoch count reaches at least", int),
    Flag(
        "--batch-size",
        ("training.batch_size",),
        "crops per batch (per device); default: chosen from the number of training crops",
        int,
    ),
    Flag("--learning-rate", ("training.learning_rate",), "AdamW learning rate", float),
    Flag("--val-fraction", ("training.val_fraction",), "fraction of the crops held out for validation", float),
    Flag("--split", ("training.split",), "hold out whole source images, or random crops"),
    Flag("--seed", ("training.seed",), "random seed (split, shuffling, augmentation)", int),
    Flag("--accelerator", ("training.accelerator",), "device type"),
    Flag(
        "--devices",
        ("training.devices",),
        "a device count (e.g. 4) or device ids (e.g. 0,2; '1,' is cuda:1 alone)",
        _devices,
    ),
    Flag("--num-nodes", ("training.num_nodes",), "machines for multi-node training", int),
    Flag("--strategy", ("training.strategy",), "Lightning strategy: auto, ddp, ddp_spawn, ..."),
    Flag("--precision", ("training.precision",), "numeric precision"),
    Flag("--num-workers", ("training.num_workers",), "data-loading worker processes", int),
    Flag(
        "--checkpoint-dir",
        ("training.checkpoint_dir",),
        "folder for this run's checkpoints (default: <out>-checkpoints, removed after success)",
    ),
    Flag("--label-column", ("training.label_column",), "crop-table column with the cond-vae label"),
]


def _default_config() -> TrainConfig:
    from ..core.training.engine import TrainConfig

    return TrainConfig()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a VAE on a crop set and save a model bundle",
        description="Train a VAE on a crop set and write a model bundle (weights.safetensors + model.json). "
        "Options override the values of --config.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--crops", type=Path, required=True, help="crop-set folder (from 'morphospace crops')")
    parser.add_argument("--out", type=Path, required=True, help="model bundle folder to write")
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON with model: and training: sections")
    parser.add_argument("--save-config", type=Path, default=None, help="write the effective config as YAML")
    add_flags(parser, FLAGS, _default_config)
    parser.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="continue from a last.ckpt")
    parser.add_argument("--progress-bar", action="store_true", help="show Lightning's progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    parser.set_defaults(run=run, flags=FLAGS, options=[a for a in parser._actions if a.option_strings])


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of ``--config`` (or the defaults) with every given option applied on top."""
    from ..core.config import from_dict, load_config, to_dict
    from ..core.training.engine import TrainConfig

    data = to_dict(load_config(args.config, TrainConfig) if args.config else TrainConfig())
    apply_flags(data, args, FLAGS)
    if args.beta is not None and data["model"]["model"] == "beta-tcvae":
        # β of β-TCVAE (Chen et al. 2018) weighs the total correlation: the model's tc_beta.
        data["model"]["beta"], data["model"]["tc_beta"] = TrainConfig().model.beta, args.beta
    return from_dict(TrainConfig, data)


def print_progress(message: TrainMessage) -> None:
    """Print one line per finished epoch (per-step updates are for the live plot of the widget)."""
    from ..core.training.engine import TrainUpdate

    if isinstance(message, TrainUpdate) and message.val_losses is not None:
        train_terms = " ".join(f"{k}={v:.4g}" for k, v in message.train_losses.items())
        val_terms = " ".join(f"{k}={v:.4g}" for k, v in message.val_losses.items())
        stage = "" if message.stage == "model" else f"{message.stage} "
        print(f"{stage}epoch {message.epoch + 1}: train {train_terms} | val {val_terms}", flush=True)


def run(args: argparse.Namespace) -> int:
    from ..core.cells.crop_set import load_crop_set
    from ..core.config import save_config
    from ..core.outputs import check_output
    from ..core.training.bundle import check_bundle_target, save_bundle
    from ..core.training.checkpoints import (
        CheckpointWriteError,
        last_checkpoint_in,
        requeued_checkpoint,
    )
    from ..core.training.engine import (
        TrainingDiverged,
        TrainingInterrupted,
        train,
        trained_bundle,
    )

    config = config_from_args(args)
    if args.resume is not None and not args.resume.is_file():
        found = "is a folder" if args.resume.is_dir() else "does not exist"
        hint = f" (try {args.resume / 'last.ckpt'})" if (args.resume / "last.ckpt").is_file() else ""
        raise InputError(f"--resume {args.resume} {found}; give the checkpoint file, e.g. last.ckpt{hint}")
    if args.save_config:
        check_output(args.save_config, what="config file", kind="file", overwrite=True)
    check_bundle_target(args.out, args.overwrite)  # a bundle, never another folder, before the first epoch
    if args.save_config:
        try:
            save_config(config, args.save_config)
        except OSError as err:
            raise InputError(
                f"cannot write --save-config {args.save_config} ({err.strerror or err}); "
                "choose a file in a writable folder"
            ) from err
    crop_set = load_crop_set(args.crops)
    check_bundle_target(args.out, args.overwrite, needed_bytes=_bundle_bytes(config, crop_set))
    checkpoint_dir = Path(config.training.checkpoint_dir or default_checkpoint_dir(args.out))
    print(f"morphospace train: checkpoints go to {checkpoint_dir}", file=sys.stderr)
    resume = args.resume or requeued_checkpoint(checkpoint_dir)
    if resume is not None and args.resume is None:
        print(f"morphospace train: requeued SLURM job; continuing from {resume}", file=sys.stderr)
    settings = replace(config.training, checkpoint_dir=str(checkpoint_dir))
    stop = threading.Event()
    try:
        with _ctrl_c_stops(stop):
            result = train(
                crop_set,
                config.model,
                settings,
                on_update=print_progress,
                stop_event=stop,
                resume_from=resume,
                progress_bar=args.progress_bar,
            )
    except TrainingInterrupted as err:
        if err.is_global_zero:
            _say_stopped(str(err), args, err.last_checkpoint)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:  # a second Ctrl-C, in the middle of a step
        last = last_checkpoint_in(checkpoint_dir)
        _say_stopped(f"interrupted; {last or 'no checkpoint'} holds the last finished epoch", args, last)
        return 130
    except (TrainingDiverged, CheckpointWriteError) as err:
        raise InputError(f"{err}; resume with: {resume_command(args, _checkpoint_after(err, checkpoint_dir))}") from err
    if result.stopped_by_user:
        if result.is_global_zero:
            _say_stopped(f"interrupted; {result.last_checkpoint} holds the run's state", args, result.last_checkpoint)
        return 130
    if not result.is_global_zero:
        return 0
    bundle = trained_bundle(result, crop_set, train_settings=config.training, crop_set_origin=str(args.crops.resolve()))
    try:
        save_bundle(bundle, args.out, overwrite=args.overwrite)
    except InputError as err:  # the disk filled up during training, or the folder was made read-only
        raise InputError(
            f"{err}. The finished training stays in {checkpoint_dir}; once there is space, write the bundle with: "
            f"{resume_command(args, result.last_checkpoint)}"
        ) from err
    if config.training.checkpoint_dir is None:  # the bundle holds the model: nothing left to resume
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    state = "stopped early" if result.stopped_early else "finished"
    best = f"{result.best_val_loss:.4g}" if result.best_val_loss is not None else "n/a"
    print(f"training {state}; best validation loss {best}; model bundle written to {args.out}", file=sys.stderr)
    if result.diagnostics is not None:
        print("what the model learned (held-out crops):", file=sys.stderr)
        for line in result.diagnostics.lines():
            print(f"  {line}", file=sys.stderr)
    return 0


def default_checkpoint_dir(out: Path) -> Path:
    """``<out>-checkpoints``: beside the bundle, on storage every DDP process shares when the bundle's is."""
    return out.with_name(f"{out.name}-checkpoints")


def _checkpoint_after(err: TrainingDiverged | CheckpointWriteError, checkpoint_dir: Path) -> str | None:
    """The checkpoint to resume from after ``err``."""
    from ..core.training.checkpoints import last_checkpoint_in

    found = getattr(err, "last_checkpoint", None) or last_checkpoint_in(checkpoint_dir)
    return str(found) if found else None


@contextmanager
def _ctrl_c_stops(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C stops training after the current step (its checkpoint is written); a second aborts."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        # os.write, not print: the handler may run while the main thread is printing.
        os.write(2, b"morphospace train: stopping after this step (Ctrl-C again to abort)\n")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _say_stopped(what: str, args: argparse.Namespace, checkpoint: str | Path | None) -> None:
    print(f"morphospace train: {what}; no model bundle was written", file=sys.stderr)
    if checkpoint:
        print(f"  resume with: {resume_command(args, checkpoint)}", file=sys.stderr)


def resume_command(args: argparse.Namespace, checkpoint: str | Path | None) -> str:
    """This command line with ``--resume checkpoint``: every option as given, except --save-config."""
    words = ["morphospace", "train"]
    for action in args.options:
        value = getattr(args, action.dest, None)
        if action.dest in ("resume", "save_config", "help") or value is None or value is False:
            continue
        if value == action.default and action.default is not None:
            continue
        words.append(action.option_strings[-1])
        if value is not True:
            words.append(_option_text(value))
    if checkpoint:
        words += ["--resume", str(checkpoint)]
    return shlex.join(words)


def _option_text(value: Any) -> str:
    if isinstance(value, list):  # --devices ids: "0,2", and "1," for a single id
        return ",".join(map(str, value)) + ("," if len(value) == 1 else "")
    return str(value)


def _bundle_bytes(config: TrainConfig, crop_set: CropSet) -> int:
    """The size of the bundle this training will write: the model's tensors."""
    from ..core.models import build_model

    model = build_model(config.model, tuple(int(n) for n in crop_set.images.shape[1:]))
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())
