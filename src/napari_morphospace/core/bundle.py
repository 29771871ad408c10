"""Model bundles: a folder anyone can load without running code from it.

A bundle is::

    weights.safetensors   the model's state dict (safetensors: tensors only, no pickle)
    model.json            format version, architecture settings, latent size,
                          input shape, channel names, preprocessing config,
                          training settings, data provenance, library versions

Loading rebuilds the model with ``build_model`` from ``model.json`` and fills
it from the safetensors file, so a bundle can never execute code, and every
tensor must match the rebuilt architecture exactly. The preprocessing config
travels with the weights, so inference cannot silently preprocess differently
from training.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import __version__
from .config import from_dict, to_dict
from .data import CropSet
from .errors import InputError
from .models import ModelSettings, build_model

FORMAT_NAME = "napari-morphospace model bundle"
FORMAT_VERSION = 1
WEIGHTS_NAME = "weights.safetensors"
CONFIG_NAME = "model.json"


@dataclass
class Bundle:
    """A loaded model bundle: the rebuilt model (eval mode) and what it was trained on."""

    model: torch.nn.Module
    model_settings: ModelSettings
    input_shape: tuple[int, ...]
    channel_names: list[str]
    preprocess: dict[str, Any] | None
    config: dict[str, Any]
    folder: Path | None = None  # where it was loaded from; None for a bundle only in memory

    @property
    def latent_dim(self) -> int:
        return self.model_settings.latent_dim

    @property
    def label_classes(self) -> list[Any]:
        """Values of the training ``label_column`` in one-hot order (conditional model), else empty."""
        return list(self.config.get("label_classes") or [])


def save_bundle(
    model: torch.nn.Module,
    directory: str | os.PathLike,
    *,
    model_settings: ModelSettings,
    input_shape: tuple[int, ...],
    channel_names: list[str],
    preprocess: dict[str, Any] | None,
    train_settings: Any,
    provenance: dict[str, Any],
    history: list[dict[str, float]],
    label_classes: list[Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` and its configuration as a bundle folder, atomically.

    Parameters
    ----------
    model : torch.nn.Module
        A model built by ``build_model(model_settings, input_shape)``.
    directory : path
        The bundle folder to create.
    input_shape : tuple of int
        ``(C, [Z,] Y, X)`` of one crop.
    preprocess : dict or None
        The crop set's preprocessing config, replayed before inference.
    train_settings : dataclass
        A ``TrainSettings``, recorded as it was used.
    provenance : dict
        Where the training data came from (crop set path, crop count, groups, sources).
    history : list of dict
        Per-epoch losses.
    label_classes : list, optional
        Values of the label column in one-hot order (conditional model).
    overwrite : bool
        Replace an existing folder. Without it an existing folder is refused.

    The folder is written next to ``directory`` under a temporary name and
    renamed into place, so an interrupted save never leaves a half bundle.
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise InputError(f"{directory} already exists; choose another folder or pass overwrite=True (--overwrite)")
    if len(channel_names) != input_shape[0]:
        raise InputError(f"{len(channel_names)} channel names for an input of {input_shape[0]} channels")
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_settings": to_dict(model_settings),
        "latent_dim": model_settings.latent_dim,
        "input_shape": [int(n) for n in input_shape],
        "channel_names": list(channel_names),
        "preprocess": preprocess,
        "label_classes": _json_safe(list(label_classes or [])),
        "train_settings": to_dict(train_settings),
        "provenance": _json_safe(provenance),
        "history": _json_safe(history),
        "versions": {
            "napari-morphospace": __version__,
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "numpy": np.__version__,
        },
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT_NAME})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, allow_nan=True))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _json_safe(value: Any) -> Any:
    """Turn numpy scalars and paths inside nested containers into JSON builtins."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def load_bundle(directory: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Bundle:
    """Rebuild the model of a bundle folder, in eval mode, without unpickling anything.

    Raises
    ------
    InputError
        When the folder is not a bundle, has an unknown format version, or its
        weights are not a safetensors file that matches the architecture
        exactly (missing, extra or mis-shaped tensors).
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise InputError(
            f"{directory} is not a model bundle: it needs {CONFIG_NAME} and {WEIGHTS_NAME}; "
            "choose the folder written by 'morphospace train' or the Train widget"
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{config_path} is not valid JSON ({err}); the bundle is damaged, save it again") from err
    if config.get("format") != FORMAT_NAME or config.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{config_path} has format {config.get('format')!r} version {config.get('format_version')!r}; "
            f"this napari-morphospace ({__version__}) reads {FORMAT_NAME!r} version {FORMAT_VERSION}. "
            "Update napari-morphospace or re-save the model with this version"
        )
    model_settings = from_dict(ModelSettings, config["model_settings"], where=f"{CONFIG_NAME} model_settings")
    input_shape = tuple(int(n) for n in config["input_shape"])
    model = build_model(model_settings, input_shape)
    model.load_state_dict(_read_weights(weights_path, model), strict=True)
    model.to(map_location).eval()
    return Bundle(
        model=model,
        model_settings=model_settings,
        input_shape=input_shape,
        channel_names=list(config["channel_names"]),
        preprocess=config.get("preprocess"),
        config=config,
        folder=Path(directory),
    )


def _read_weights(path: Path, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Read a safetensors file and check it holds exactly the tensors ``model`` expects."""
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise InputError(
            f"{path} is not a valid safetensors file ({err}); bundles only load safetensors weights, "
            "never pickled files. Re-save the model with napari-morphospace"
        ) from err
    mismatch = state_dict_mismatch(state, model)
    if mismatch:
        raise InputError(
            f"{path} does not match the architecture in {CONFIG_NAME}: {mismatch}. "
            "The bundle was edited or mixed with another model's files; use the folder as it was saved"
        )
    return state


def state_dict_mismatch(state: dict[str, torch.Tensor], model: torch.nn.Module) -> str:
    """How ``state`` differs from ``model.state_dict()`` (missing, unexpected, mis-shaped tensors); "" when it fits."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in state.items()}
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    wrong = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
    details = []
    if missing:
        details.append(f"missing {', '.join(missing[:5])}")
    if extra:
        details.append(f"unexpected {', '.join(extra[:5])}")
    if wrong:
        details.append("wrong shape " + ", ".join(f"{n} {found[n]} (expected {expected[n]})" for n in wrong[:5]))
    return "; ".join(details)


def check_compatible(bundle: Bundle, crop_set: CropSet) -> None:
    """Refuse a crop set whose channels or crop shape differ from the bundle's training data.

    The model only means something on crops made like its training crops:
    same channels in the same order and the same crop size. The message names
    both so the user can re-make the crops (same preprocessing, size, channels).
    """
    shape = tuple(int(n) for n in crop_set.images.shape[1:])
    problems = []
    if shape[0] != bundle.input_shape[0] or list(crop_set.channel_names) != bundle.channel_names:
        problems.append(
            f"channels {list(crop_set.channel_names)} ({shape[0]}) but the model was trained on "
            f"{bundle.channel_names} ({bundle.input_shape[0]})"
        )
    if shape[1:] != bundle.input_shape[1:]:
        problems.append(f"crops of shape {shape[1:]} but the model expects {bundle.input_shape[1:]}")
    if problems:
        raise InputError(
            "this crop set does not fit the model: it has " + "; and ".join(problems)
            + ". Make the crops with the model's channels, crop size and preprocessing (saved in its model.json)"
        )


__all__ = ["Bundle", "FORMAT_VERSION", "save_bundle", "load_bundle", "check_compatible", "state_dict_mismatch"]
