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
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ... import __version__
from ..cells.crop_set import CropSet
from ..config import from_dict, shown, to_dict
from ..errors import InputError
from ..files import atomic_folder
from ..models import ModelSettings, MorphoVAE, StackedConditionalVAE, build_model
from ..outputs import check_output, names_format
from .diagnostics import TrainingDiagnostics

FORMAT_NAME = "napari-morphospace model bundle"
FORMAT_VERSION = 1
WEIGHTS_NAME = "weights.safetensors"
CONFIG_NAME = "model.json"


@dataclass
class Bundle:
    """A model bundle: the model and what it was trained on, loaded (eval mode) or made by :func:`new_bundle`."""

    model: MorphoVAE | StackedConditionalVAE
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
    def diagnostics(self) -> TrainingDiagnostics | None:
        """What the model learned, measured at the end of its training (None for older bundles)."""
        data = self.config.get("diagnostics")
        return TrainingDiagnostics.from_dict(data) if data else None

    @property
    def label_classes(self) -> list[Any]:
        """Values of the training ``label_column`` in one-hot order (conditional model), else empty."""
        return list(self.config.get("label_classes") or [])


def new_bundle(
    model: MorphoVAE | StackedConditionalVAE,
    *,
    model_settings: ModelSettings,
    input_shape: tuple[int, ...],
    channel_names: list[str],
    preprocess: dict[str, Any] | None,
    train_settings: Any,
    provenance: dict[str, Any],
    history: list[dict[str, float]],
    label_classes: list[Any] | None = None,
    diagnostics: TrainingDiagnostics | None = None,
) -> Bundle:
    """``model`` and its ``model.json`` as a bundle in memory (``folder`` None); :func:`save_bundle` writes it.

    Parameters
    ----------
    model : MorphoVAE or StackedConditionalVAE
        A model built by ``build_model(model_settings, input_shape)``.
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
    diagnostics : TrainingDiagnostics, optional
        The end-of-training diagnostics, stored as ``diagnostics``.
    """
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
        "diagnostics": None if diagnostics is None else _json_safe(diagnostics.to_dict()),
        "versions": {
            "napari-morphospace": __version__,
            "torch": torch.__version__,
            "lightning": version("lightning"),  # read from the metadata: importing Lightning takes seconds
            "numpy": np.__version__,
        },
    }
    return Bundle(
        model=model,
        model_settings=model_settings,
        input_shape=tuple(int(n) for n in input_shape),
        channel_names=list(channel_names),
        preprocess=preprocess,
        config=config,
    )


def save_bundle(bundle: Bundle, directory: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a bundle (made by :func:`new_bundle`, or loaded) as a bundle folder, atomically.

    The folder is written next to ``directory`` under a temporary name and
    renamed into place, so an interrupted save never leaves a half bundle.
    An existing folder is replaced only with ``overwrite`` and only when it
    is a bundle.
    """
    directory = check_bundle_target(directory, overwrite)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in bundle.model.state_dict().items()}
    with atomic_folder(directory) as scratch:
        save_file(state, str(scratch / WEIGHTS_NAME), metadata={"format": FORMAT_NAME})
        (scratch / CONFIG_NAME).write_text(json.dumps(bundle.config, indent=2, allow_nan=True))
        check_bundle_target(directory, overwrite)
    return directory


def is_bundle_folder(path: str | os.PathLike) -> bool:
    """True for a folder whose ``model.json`` is a model bundle's (what ``overwrite`` may replace)."""
    return names_format(Path(path) / CONFIG_NAME, FORMAT_NAME)


def check_bundle_target(directory: str | os.PathLike, overwrite: bool, *, needed_bytes: int = 0) -> Path:
    """Refuse a bundle folder before training: existing (without ``overwrite``), not a bundle, or not writable
    (read-only, or a disk with less than ``needed_bytes`` free)."""
    return check_output(
        directory,
        what="model bundle",
        kind="folder",
        overwrite=overwrite,
        is_ours=is_bundle_folder,
        needed_bytes=needed_bytes,
    )


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
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise InputError(f"{config_path} is not valid JSON ({err}); the bundle is damaged, save it again") from err
    if not isinstance(config, dict):
        raise InputError(
            f"{config_path} holds {type(config).__name__}, not a bundle description; the bundle is damaged, "
            "save it again"
        )
    if config.get("format") != FORMAT_NAME or config.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{config_path} has format {shown(config.get('format'))} version {shown(config.get('format_version'))}; "
            f"this napari-morphospace ({__version__}) reads {FORMAT_NAME!r} version {FORMAT_VERSION}. "
            "Update napari-morphospace or re-save the model with this version"
        )
    model_settings, input_shape, channel_names = _checked_config(config, config_path)
    try:
        model = build_model(model_settings, input_shape)
    except (ValueError, RuntimeError) as err:
        raise InputError(
            f"{config_path}: the model cannot be built for input shape {input_shape} ({err}); "
            "the bundle was edited by hand, save it again"
        ) from err
    model.load_state_dict(_read_weights(weights_path, model), strict=True)
    try:
        model.to(map_location).eval()
    except (RuntimeError, AssertionError, ValueError) as err:
        raise InputError(
            f"cannot put the model on device {str(map_location)!r} ({err}); choose a device this machine has "
            "(cpu, or cuda:0 when torch.cuda.is_available())"
        ) from err
    return Bundle(
        model=model,
        model_settings=model_settings,
        input_shape=input_shape,
        channel_names=channel_names,
        preprocess=config.get("preprocess"),
        config=config,
        folder=Path(directory),
    )


def _checked_config(config: dict[str, Any], path: Path) -> tuple[ModelSettings, tuple[int, ...], list[str]]:
    """The model settings, input shape and channel names of ``model.json``, each checked before use."""
    missing = [key for key in ("model_settings", "input_shape", "channel_names") if key not in config]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}; the bundle is damaged or was edited, save it again")
    # Bundles written before the ``norm`` setting existed used BatchNorm; newer ones record it.
    settings_values = {"norm": "batch", **config["model_settings"]}
    model_settings = from_dict(ModelSettings, settings_values, where=f"{CONFIG_NAME} model_settings")
    shape = config["input_shape"]
    if (
        not isinstance(shape, list)
        or len(shape) not in (3, 4)
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise InputError(
            f"{path}: input_shape is {shown(shape)}, not (C, [Z,] Y, X) positive whole numbers; "
            "the bundle was edited by hand, save it again"
        )
    names = config["channel_names"]
    if not isinstance(names, list) or len(names) != shape[0] or not all(isinstance(n, str) for n in names):
        raise InputError(
            f"{path}: channel_names is {shown(names)}, not {shape[0]} channel name(s); "
            "the bundle was edited by hand, save it again"
        )
    preprocess = config.get("preprocess")
    if preprocess is not None and not isinstance(preprocess, dict):
        raise InputError(
            f"{path}: preprocess is {shown(preprocess)}, not a mapping; the bundle was edited by hand, save it again"
        )
    return model_settings, tuple(shape), list(names)


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


class PreprocessingMismatch(InputError):
    """The crops were made with other crop or preprocessing settings than the model's training crops."""


# Crop settings that choose which objects become crops, not how a crop looks: they may differ.
_SELECTION_SETTINGS = ("min_area", "exclude_border", "min_foreground", "patch_stride")


def preprocessing_differences(trained: dict[str, Any] | None, crops: dict[str, Any] | None) -> list[str]:
    """How the crops' recorded preprocessing differs from the model's, one ``"key: model … crops …"`` per setting.

    Settings that only select objects (``min_area``, ``exclude_border``...) are
    ignored. When either side records nothing (crops made in memory by other
    code, an old bundle) there is nothing to compare and the list is empty.
    """
    if not isinstance(trained, dict) or not isinstance(crops, dict):
        return []
    return _differences(trained, crops, "")


_NOT_SET = object()


def _differences(trained: Any, crops: Any, prefix: str) -> list[str]:
    """Settings that differ, descending into mappings both sides have (``crops.normalise``, ``pipeline``...)."""
    if isinstance(trained, dict) and isinstance(crops, dict):
        found = []
        for key in sorted(set(trained) | set(crops), key=str):
            if str(key) not in _SELECTION_SETTINGS:
                found += _differences(
                    trained.get(key, _NOT_SET), crops.get(key, _NOT_SET), f"{prefix}.{key}" if prefix else str(key)
                )
        return found
    if _plain(trained) == _plain(crops):
        return []
    return [f"{prefix}: model {_short(trained)}, crops {_short(crops)}"]


def _plain(value: Any) -> Any:
    """JSON builtins (tuples as lists), so a setting read back from a file equals the one in memory."""
    return value if value is _NOT_SET else json.loads(json.dumps(value, default=str))


def _short(value: Any) -> str:
    if value is _NOT_SET:
        return "(not set)"
    text = json.dumps(_plain(value))
    return text if len(text) <= 80 else text[:77] + "..."


def check_compatible(bundle: Bundle, crop_set: CropSet, *, allow_preprocessing_mismatch: bool = False) -> list[str]:
    """Refuse a crop set whose channels, crop shape or preprocessing differ from the bundle's training data.

    The model only means something on crops made like its training crops:
    same channels in the same order, the same crop size, and the same crop
    and preprocessing settings (``model.json`` records them; normalisation and
    neighbour masking change what the encoder sees as much as the channels do).
    Channels and shape are always refused; with ``allow_preprocessing_mismatch``
    differing preprocessing is returned for the caller to warn about.

    Returns
    -------
    list of str
        The preprocessing differences that were allowed (empty when none).

    Raises
    ------
    InputError
        Channels or crop shape differ.
    PreprocessingMismatch
        The preprocessing differs and ``allow_preprocessing_mismatch`` is false.
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
            "this crop set does not fit the model: it has "
            + "; and ".join(problems)
            + ". Make the crops with the model's channels, crop size and preprocessing (saved in its model.json)"
        )
    differences = preprocessing_differences(bundle.preprocess, crop_set.preprocess)
    if differences and not allow_preprocessing_mismatch:
        raise PreprocessingMismatch(
            "these crops were made differently from the model's training crops ("
            + "; ".join(differences)
            + "); make the crops with the settings in the model's model.json, or allow the difference "
            "(--allow-preprocessing-mismatch on the command line, 'accept other preprocessing' in the Embed widget)"
        )
    return differences


__all__ = [
    "Bundle",
    "FORMAT_VERSION",
    "PreprocessingMismatch",
    "check_bundle_target",
    "check_compatible",
    "is_bundle_folder",
    "load_bundle",
    "new_bundle",
    "preprocessing_differences",
    "save_bundle",
    "state_dict_mismatch",
]
