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
from typing import Any

from ..core.bundle import check_bundle_target
from ..core.config import from_dict, load_config, save_config, to_dict
from ..core.data import load_crop_set
from ..core.errors import InputError
from ..core.outputs import check_output
from ..core.training import TrainConfig, TrainMessage, TrainUpdate, save_trained_bundle, train

MODEL_CHOICES = ("beta-vae", "beta-tcvae", "me-vae", "cond-vae")
PRECISION_CHOICES = ("32-true", "bf16-mixed", "16-mixed")
ACCELERATOR_CHOICES = ("auto", "cpu", "gpu", "cuda", "mps")

# (option destination, config section, setting name)
_OVERRIDES = [
    ("model", "model", "model"), ("latent_dim", "model", "latent_dim"), ("beta", "model", "beta"),
    ("epochs", "training", "epochs"), ("batch_size", "training", "batch_size"),
    ("learning_rate", "training", "learning_rate"), ("seed", "training", "seed"),
    ("accelerator", "training", "accelerator"), ("devices", "training", "devices"),
    ("num_nodes", "training", "num_nodes"), ("strategy", "training", "strategy"),
    ("precision", "training", "precision"), ("num_workers", "training", "num_workers"),
    ("checkpoint_dir", "training", "checkpoint_dir"), ("label_column", "training", "label_column"),
]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a VAE on a crop set and save a model bundle",
        description="Train a VAE on a crop set and write a model bundle (weights.safetensors + model.json). "
        "Options override the values of --config.",
    )
    parser.add_argument("--crops", type=Path, required=True, help="crop-set folder (from 'morphospace crops')")
    parser.add_argument("--out", type=Path, required=True, help="model bundle folder to write")
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON with model: and training: sections")
    parser.add_argument("--save-config", type=Path, default=None, help="write the effective config as YAML")
    parser.add_argument("--model", choices=MODEL_CHOICES, default=None, help="which VAE to train")
    parser.add_argument("--latent-dim", type=int, default=None, help="number of latent dimensions (2-512)")
    parser.add_argument("--beta", type=float, default=None, help="weight of the KL term")
    parser.add_argument("--epochs", type=int, default=None, help="number of epochs (per stage for cond-vae)")
    parser.add_argument("--batch-size", type=int, default=None, help="crops per batch (per device)")
    parser.add_argument("--learning-rate", type=float, default=None, help="AdamW learning rate")
    parser.add_argument("--seed", type=int, default=None, help="random seed (split, shuffling, augmentation)")
    parser.add_argument("--accelerator", choices=ACCELERATOR_CHOICES, default=None, help="device type")
    parser.add_argument("--devices", type=_devices, default=None,
                        help="'auto', a device count (e.g. 4) or device ids (e.g. 0,2; '1,' is cuda:1 alone)")
    parser.add_argument("--num-nodes", type=int, default=None, help="machines for multi-node training")
    parser.add_argument("--strategy", default=None, help="Lightning strategy: auto, ddp, ddp_spawn, ...")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=None, help="numeric precision")
    parser.add_argument("--num-workers", type=int, default=None, help="data-loading worker processes")
    parser.add_argument("--checkpoint-dir", default=None, help="folder for Lightning checkpoints")
    parser.add_argument("--label-column", default=None, help="crop-table column with the cond-vae label")
    parser.add_argument("--resume", type=Path, default=None, metavar="CKPT", help="continue from a last.ckpt")
    parser.add_argument("--progress-bar", action="store_true", help="show Lightning's progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    parser.set_defaults(run=run)


def _devices(text: str) -> str | int | list[int]:
    """Parse ``--devices`` as Lightning does: 'auto', a count ("2"), or device ids ("0,2"; "1," is id 1 alone)."""
    if text == "auto":
        return text
    try:
        return [int(part) for part in text.split(",") if part] if "," in text else int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not 'auto', a count or ids like 0,1") from err


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The config of ``--config`` (or defaults) with every given option applied on top."""
    config = load_config(args.config, TrainConfig) if args.config else TrainConfig()
    data: dict[str, Any] = to_dict(config)
    for option, section, name in _OVERRIDES:
        value = getattr(args, option)
        if value is not None:
            data[section][name] = value
    return from_dict(TrainConfig, data, where="train config")


def print_progress(message: TrainMessage) -> None:
    """Print one line per finished epoch (per-step updates are for the live plot of the widget)."""
    if isinstance(message, TrainUpdate) and message.val_losses is not None:
        train_terms = " ".join(f"{k}={v:.4g}" for k, v in message.train_losses.items())
        val_terms = " ".join(f"{k}={v:.4g}" for k, v in message.val_losses.items())
        stage = "" if message.stage == "model" else f"{message.stage} "
        print(f"{stage}epoch {message.epoch + 1}: train {train_terms} | val {val_terms}", flush=True)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.resume is not None and not args.resume.is_file():
        found = "is a folder" if args.resume.is_dir() else "does not exist"
        hint = f" (try {args.resume / 'last.ckpt'})" if (args.resume / "last.ckpt").is_file() else ""
        raise InputError(f"--resume {args.resume} {found}; give the checkpoint file, e.g. last.ckpt{hint}")
    if args.save_config:
        check_output(args.save_config, what="config file", kind="file", overwrite=True)
    check_bundle_target(args.out, args.overwrite)  # a bundle, never another folder, before the first epoch
    if args.save_config:
        save_config(config, args.save_config)
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
