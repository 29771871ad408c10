"""``morphospace train``: train a VAE on a crop set and save a model bundle.

The same engine as the Train widget. Options override the values of
``--config`` (a YAML file with ``model:`` and ``training:`` sections, e.g.
saved by the widget or by ``--save-config``). Lightning's device options pass
through, so the same command trains on a laptop CPU, on several GPUs with
``--devices 4 --strategy ddp`` or on several nodes under SLURM with
``--num-nodes``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import InputError
from .flags import Flag, HelpFormatter, add_flags, apply_flags

if TYPE_CHECKING:
    from ..core.training import TrainConfig, TrainMessage


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
    Flag("--beta", ("model.beta",), "weight of the KL term", float),
    Flag("--objective", ("model.objective",),
         "rec + beta*KL (classic), or (1-beta)*rec + beta*KL with beta in [0, 1] (reparameterised)"),
    Flag("--reconstruction", ("model.reconstruction",), "reconstruction term: 0.5*SSE (sse) or binary cross-entropy (bce)"),
    Flag("--epochs", ("training.epochs",), "number of epochs (per stage for cond-vae)", int),
    Flag("--batch-size", ("training.batch_size",), "crops per batch (per device)", int),
    Flag("--learning-rate", ("training.learning_rate",), "AdamW learning rate", float),
    Flag("--val-fraction", ("training.val_fraction",), "fraction of the crops held out for validation", float),
    Flag("--split", ("training.split",), "hold out whole source images, or random crops"),
    Flag("--seed", ("training.seed",), "random seed (split, shuffling, augmentation)", int),
    Flag("--accelerator", ("training.accelerator",), "device type"),
    Flag("--devices", ("training.devices",), "a device count (e.g. 4) or device ids (e.g. 0,2; '1,' is cuda:1 alone)",
         _devices),
    Flag("--num-nodes", ("training.num_nodes",), "machines for multi-node training", int),
    Flag("--strategy", ("training.strategy",), "Lightning strategy: auto, ddp, ddp_spawn, ..."),
    Flag("--precision", ("training.precision",), "numeric precision"),
    Flag("--num-workers", ("training.num_workers",), "data-loading worker processes", int),
    Flag("--checkpoint-dir", ("training.checkpoint_dir",), "folder for Lightning checkpoints (default: a temporary folder)"),
    Flag("--label-column", ("training.label_column",), "crop-table column with the cond-vae label"),
]  # fmt: skip


def _default_config() -> TrainConfig:
    from ..core.training import TrainConfig

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
    parser.set_defaults(run=run, flags=FLAGS)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of ``--config`` (or the defaults) with every given option applied on top."""
    from ..core.config import from_dict, load_config, to_dict
    from ..core.training import TrainConfig

    data = to_dict(load_config(args.config, TrainConfig) if args.config else TrainConfig())
    apply_flags(data, args, FLAGS)
    return from_dict(TrainConfig, data)


def print_progress(message: TrainMessage) -> None:
    """Print one line per finished epoch (per-step updates are for the live plot of the widget)."""
    from ..core.training import TrainUpdate

    if isinstance(message, TrainUpdate) and message.val_losses is not None:
        train_terms = " ".join(f"{k}={v:.4g}" for k, v in message.train_losses.items())
        val_terms = " ".join(f"{k}={v:.4g}" for k, v in message.val_losses.items())
        stage = "" if message.stage == "model" else f"{message.stage} "
        print(f"{stage}epoch {message.epoch + 1}: train {train_terms} | val {val_terms}", flush=True)


def run(args: argparse.Namespace) -> int:
    from ..core.config import save_config
    from ..core.data import load_crop_set
    from ..core.training import save_trained_bundle, train

    config = config_from_args(args)
    if args.save_config:
        save_config(config, args.save_config)
    if args.out.exists() and not args.overwrite:
        raise InputError(f"{args.out} already exists; choose another --out or pass --overwrite")
    crop_set = load_crop_set(args.crops)
    result = train(crop_set, config.model, config.training, on_update=print_progress, resume_from=args.resume,
                   progress_bar=args.progress_bar)
    if not result.is_global_zero:
        return 0
    save_trained_bundle(result, crop_set, args.out, train_settings=config.training,
                        crop_set_origin=str(args.crops.resolve()), overwrite=args.overwrite)  # fmt: skip
    state = "stopped early" if result.stopped_early else "finished"
    best = f"{result.best_val_loss:.4g}" if result.best_val_loss is not None else "n/a"
    print(f"training {state}; best validation loss {best}; model bundle written to {args.out}", file=sys.stderr)
    return 0
