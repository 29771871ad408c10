"""BioImage Model Zoo packages of a model bundle: export (validated and test-run) and import back.

A trained VAE becomes **two** bioimage.io model descriptions, so that both
halves work downstream on their own and together (a traversal is encoder →
change one latent value → decoder)::

    FOLDER/encoder.zip   crops (b, c, [z,] y, x)  ->  "mu", "logvar" (b, D)
    FOLDER/decoder.zip   latents "z" (b, D)        ->  "image" (b, c, [z,] y, x) in [0, 1]

Each package holds the weights twice: as ``pytorch_state_dict`` (the original:
a plain state dict of tensors, whose architecture is :class:`ZooEncoder` /
:class:`ZooDecoder` imported from this package) and as ``torchscript`` (traced
from it, for consumers without napari-morphospace), plus test tensors computed
by our model, a cover, a README with the preprocessing and the citations, and
the bundle's ``model.json`` under ``config["napari-morphospace"]``.

Export writes into a hidden scratch folder next to the target, validates both
packages with ``bioimageio.spec`` and test-runs them with ``bioimageio.core``
(every weight format must reproduce the test outputs), and only then renames
the folder into place; on failure nothing is left behind and the error names
the validator's first complaints.

Import reads only the ``pytorch_state_dict`` entry, with ``torch.load(...,
weights_only=True)``, after checking its SHA-256 against ``rdf.yaml``; it never
runs TorchScript or imports code named by the package, and it accepts only
packages this module exported (``config["napari-morphospace"]``). The result is
an ordinary model bundle.

``bioimageio.spec``/``bioimageio.core`` are an optional extra needed only for
export: ``pip install "napari-morphospace[zoo]"``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import keyword
import os
import re
import shutil
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ... import __version__
from ..analysis.embed import embed
from ..analysis.statistics import kl_per_dimension
from ..analysis.traversal import traversal_grid
from ..cells.crop_set import CropSet
from ..cells.preprocess import PreprocessPipeline, PreprocessStep, apply_pipeline
from ..config import from_dict
from ..errors import InputError
from ..figures.cover import decoder_cover, encoder_cover
from ..figures.render import render_figure
from ..files import atomic_folder, scratch_folder
from ..models import ModelSettings, MorphoVAE, build_model
from ..training.bundle import Bundle, check_compatible, new_bundle, save_bundle, state_dict_mismatch
from ..training.engine import TrainSettings

ENCODER_PACKAGE = "encoder.zip"
DECODER_PACKAGE = "decoder.zip"
CONFIG_KEY = "napari-morphospace"
PACKAGE_FORMAT = "napari-morphospace zoo package"
PACKAGE_FORMAT_VERSION = 1
INSTALL_HINT = 'pip install "napari-morphospace[zoo]"'
EXPORTABLE_MODELS = ("beta-vae", "beta-tcvae", "me-vae")
_STATE_PREFIX = "vae."  # the wrappers hold the model as ``self.vae``


# --------------------------------------------------------------------------- what the packages run


class ZooEncoder(nn.Module):
    """The encoder package's network: crops ``(N, C, [Z,] Y, X)`` → ``(mu, logvar)``, each ``(N, D)``.

    Built from the bundle's ``model_settings`` and ``input_shape`` (the
    ``kwargs`` in ``rdf.yaml``); the decoder is dropped, so the state dict
    holds only what encoding uses. Run in eval mode: ``mu`` is then
    deterministic (the ME-VAE shows every encoder the crop itself).
    """

    def __init__(self, model_settings: dict[str, Any], input_shape: list[int]) -> None:
        super().__init__()
        self.vae = _build_vae(model_settings, input_shape)
        del self.vae.decoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode(x)


class ZooDecoder(nn.Module):
    """The decoder package's network: latents ``(N, D)`` → images ``(N, C, [Z,] Y, X)`` in [0, 1].

    Holds only the decoder and the ``latent_scale`` buffer (the unit of ±3 traversals).
    """

    def __init__(self, model_settings: dict[str, Any], input_shape: list[int]) -> None:
        super().__init__()
        self.vae = _build_vae(model_settings, input_shape)
        for name, _ in list(self.vae.named_children()):
            if name != "decoder":
                setattr(self.vae, name, None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z)


def _build_vae(model_settings: dict[str, Any], input_shape: list[int]) -> MorphoVAE:
    """The VAE described by ``rdf.yaml``'s architecture kwargs; only single VAEs are exported."""
    settings = from_dict(ModelSettings, model_settings, where="rdf.yaml architecture kwargs model_settings")
    model = build_model(settings, tuple(input_shape))
    if not isinstance(model, MorphoVAE):
        raise InputError(
            f"a {settings.model} model is not a zoo package's model; export one of {', '.join(EXPORTABLE_MODELS)}"
        )
    return model


def _exported_vae(bundle: Bundle) -> MorphoVAE:
    """The bundle's model, which :func:`_check_export` made sure is a single VAE."""
    if not isinstance(bundle.model, MorphoVAE):
        raise InputError(
            f"a {bundle.model_settings.model} model cannot be exported; export one of {', '.join(EXPORTABLE_MODELS)}"
        )
    return bundle.model


# --------------------------------------------------------------------------- export


@dataclass
class ZooSettings:
    """What the zoo asks for beyond the bundle.

    Attributes
    ----------
    authors : list of str
        Names of the people who trained the model (required by bioimage.io; no "/").
    name : str
        Shown on bioimage.io; " encoder"/" decoder" is appended. Default: from the bundle folder.
    description : str
        One or two sentences on the data and the purpose; a default is written from the model.
    license : str
        SPDX identifier of the weights' licence, e.g. "CC-BY-4.0" or "MIT".
    test_crops : int
        Crops used as test tensors (evenly spread over the crop set).
    """

    authors: list[str] = field(default_factory=list)
    name: str = ""
    description: str = ""
    license: str = "CC-BY-4.0"
    test_crops: int = 4


@dataclass
class ZooExport:
    """The written folder and its two packages."""

    folder: Path
    encoder: Path
    decoder: Path


@dataclass
class _Tensors:
    """Test tensors: crops in, posterior out, and the decode of the posterior mean."""

    crops: np.ndarray
    mu: np.ndarray
    logvar: np.ndarray
    recon: np.ndarray


def export_zoo_packages(
    bundle: Bundle,
    crop_set: CropSet,
    folder: str | os.PathLike,
    *,
    settings: ZooSettings,
    overwrite: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> ZooExport:
    """Write ``folder/encoder.zip`` and ``folder/decoder.zip``, validated and test-run, or nothing.

    Parameters
    ----------
    bundle : Bundle
        A loaded model bundle (β-VAE, β-TCVAE or ME-VAE).
    crop_set : CropSet
        Crops made like the training crops (same channels, size and
        preprocessing): the test tensors and the cover come from them.
    folder : path
        A new folder (an existing one is refused unless ``overwrite``).
    settings : ZooSettings
        Authors (required), name, description, licence.
    on_step : callable, optional
        Called with a short text before each stage (for progress displays).

    Raises
    ------
    InputError
        When bioimageio is not installed, the model or crops cannot be
        exported, or a package fails validation or its test-run (the message
        quotes the validator's first errors); nothing is written then.
    """
    spec, core = _require_bioimageio()
    step = on_step or (lambda text: None)
    folder = Path(folder)
    _check_export(bundle, crop_set, folder, settings, overwrite)
    authors = _authors(settings)
    bundle = _cpu_copy(bundle)
    from loguru import (
        logger,  # bioimageio's log; failures reach the user through our messages instead
    )

    sources = scratch_folder(folder)  # what each package is zipped from
    logger.disable("bioimageio.spec")  # bioimageio.core disables its own log on import
    try:
        step("Computing the test tensors")
        tensors = _test_tensors(bundle, crop_set, settings.test_crops)
        with atomic_folder(folder) as packages:
            for role in ("encoder", "decoder"):
                step(f"Writing the {role} package")
                files = sources / role
                files.mkdir()
                descr = _describe(role, bundle, crop_set, tensors, files, settings, authors)
                target = packages / (ENCODER_PACKAGE if role == "encoder" else DECODER_PACKAGE)
                step(f"Validating and test-running the {role} package with bioimageio.core")
                _package_and_test(spec, core, descr, target, role)
    finally:
        logger.enable("bioimageio.spec")
        shutil.rmtree(sources, ignore_errors=True)
    return ZooExport(folder, folder / ENCODER_PACKAGE, folder / DECODER_PACKAGE)


def _cpu_copy(bundle: Bundle) -> Bundle:
    """The bundle with its own copy of the model on the CPU, in eval mode.

    The export then never moves or switches the session's model (which may be
    on a GPU, or decoding in another thread), and its test tensors are computed
    on the CPU, as bioimage.io test-runs compute them by default.
    """
    model = build_model(bundle.model_settings, bundle.input_shape)
    model.load_state_dict({k: v.detach().cpu() for k, v in bundle.model.state_dict().items()})
    return dataclasses.replace(bundle, model=model.eval())


def _require_bioimageio() -> tuple[Any, Any]:
    """The bioimageio.spec and bioimageio.core modules, or a message saying how to install them."""
    try:
        import bioimageio.core as core
        import bioimageio.spec as spec
        from bioimageio.spec.model import v0_5  # noqa: F401  (the description classes used below)
    except ImportError as err:
        raise InputError(
            f"exporting to the BioImage Model Zoo needs bioimageio.core ({err}); install it with: {INSTALL_HINT}"
        ) from err
    return spec, core


def _check_export(bundle: Bundle, crop_set: CropSet, folder: Path, settings: ZooSettings, overwrite: bool) -> None:
    model = bundle.model_settings.model
    if model not in EXPORTABLE_MODELS:
        raise InputError(
            f"a {model} model cannot be exported yet: its encoder and decoder also take the reference image and "
            f"label, which the two-package layout does not describe; export one of {', '.join(EXPORTABLE_MODELS)}"
        )
    if len(crop_set) == 0:
        raise InputError("the crop set is empty; the test tensors and covers need crops made like the training crops")
    if settings.test_crops < 1:
        raise InputError(f"test_crops is {settings.test_crops}; use at least 1 crop for the test tensors")
    if folder.suffix.lower() == ".zip":
        raise InputError(
            f"{folder} looks like one zip file, but the export is a folder holding {ENCODER_PACKAGE} and "
            f"{DECODER_PACKAGE} (two model descriptions); give a folder name without .zip"
        )
    if folder.exists() and not overwrite:
        raise InputError(f"{folder} already exists; choose another folder or pass overwrite=True (--overwrite)")
    check_compatible(bundle, crop_set)


# --------------------------------------------------------------------------- test tensors and preprocessing


def final_normalisation(preprocess: dict[str, Any] | None) -> PreprocessStep | None:
    """The per-crop normalisation a bioimage.io ``scale_range`` can express, or None.

    That is the crop pipeline's last step when it is ``normalize_percentile``
    or ``normalize_minmax`` (per crop and channel). Steps before it (CLAHE,
    resize, alignment, ...) and the per-source normalisation of crop making
    have no bioimage.io equivalent; the README says they run before.
    """
    pipeline = (preprocess or {}).get("pipeline") or {}
    steps = pipeline.get("steps") or []
    if not steps or steps[-1].get("name") not in ("normalize_percentile", "normalize_minmax"):
        return None
    return PreprocessPipeline.from_dict({"steps": [steps[-1]]}).steps[0]


def _test_tensors(bundle: Bundle, crop_set: CropSet, n: int) -> _Tensors:
    """Crops evenly spread over the set and our model's outputs for them.

    The outputs are computed after replaying the final per-crop normalisation
    (which the input description repeats as ``scale_range``), so a test-run
    checks that bioimage.io's preprocessing equals ours.
    """
    crops = np.ascontiguousarray(np.asarray(crop_set.subset(_evenly_spread(len(crop_set), n)).images), np.float32)
    normalisation = final_normalisation(bundle.preprocess)
    model_input = crops
    if normalisation is not None:
        pipeline = PreprocessPipeline([normalisation])
        model_input = np.stack([apply_pipeline(crop, pipeline) for crop in crops])
    with torch.no_grad():
        vae = _exported_vae(bundle)
        mu, logvar = vae.encode(torch.from_numpy(model_input))
        recon = vae.decode(mu)
    return _Tensors(
        crops, mu.numpy().astype(np.float32), logvar.numpy().astype(np.float32), recon.numpy().astype(np.float32)
    )


def _evenly_spread(total: int, n: int) -> np.ndarray:
    """Up to ``n`` positions spread evenly over ``0 .. total - 1``, first and last included."""
    return np.unique(np.linspace(0, total - 1, min(n, total)).round().astype(int))


def _identifiers(names: Sequence[str], prefix: str) -> list[str]:
    """Channel names as the lower-case identifiers bioimage.io requires, unique and in order."""
    result: list[str] = []
    for index, name in enumerate(names):
        ident = re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or f"{prefix}{index}"
        if ident[0].isdigit() or keyword.iskeyword(ident):
            ident = f"{prefix}{ident}"
        while ident in result:
            ident = f"{ident}_{index}"
        result.append(ident)
    return result


# --------------------------------------------------------------------------- descriptions


def _authors(settings: ZooSettings) -> list[Any]:
    """The authors as bioimage.io ``Author`` entries, after checking them and the licence;
    before anything is written."""
    from bioimageio.spec.model import v0_5 as bmz
    from pydantic import ValidationError

    try:
        bmz.LicenseId(settings.license)
    except ValidationError as err:
        raise InputError(
            f"licence {settings.license!r} is not an SPDX identifier bioimage.io accepts; use e.g. CC-BY-4.0, MIT "
            "or BSD-3-Clause (https://spdx.org/licenses)"
        ) from err
    authors = []
    for name in (a.strip() for a in settings.authors if a.strip()):
        try:
            authors.append(bmz.Author(name=name))
        except ValidationError as err:
            raise InputError(f"author {name!r} is not accepted by bioimage.io ({_first_pydantic_errors(err)})") from err
    if not authors:
        raise InputError("the BioImage Model Zoo needs at least one author: give the name(s) of who trained the model")
    return authors


def _describe(
    role: str,
    bundle: Bundle,
    crop_set: CropSet,
    tensors: _Tensors,
    files: Path,
    settings: ZooSettings,
    authors: list[Any],
) -> Any:
    """Write one package's files into ``files`` and return its (validated) model description."""
    from bioimageio.spec.model import v0_5 as bmz
    from pydantic import ValidationError

    architecture, kwargs = _write_weights(role, bundle, tensors, files)
    inputs, outputs = _tensor_descriptions(role, bundle, tensors, files)
    (files / "cover.png").write_bytes(_cover_png(role, bundle, crop_set, tensors))
    (files / "README.md").write_text(_readme(role, bundle, crop_set), encoding="utf-8")
    (files / "environment.yaml").write_text(_environment(), encoding="utf-8")
    torch_version = bmz.Version(torch.__version__.split("+")[0])
    weights = bmz.WeightsDescr(
        pytorch_state_dict=bmz.PytorchStateDictWeightsDescr(
            source=files / f"{role}_state_dict.pt",
            pytorch_version=torch_version,
            architecture=bmz.ArchitectureFromLibraryDescr(
                import_from=__name__, callable=bmz.Identifier(architecture), kwargs=kwargs
            ),
            dependencies=bmz.FileDescr(source=files / "environment.yaml"),
        ),
        torchscript=bmz.TorchscriptWeightsDescr(
            source=files / f"{role}_torchscript.pt",
            pytorch_version=torch_version,
            parent="pytorch_state_dict",
            comment="traced from the pytorch_state_dict weights with torch.jit.trace",
        ),
    )
    model_settings = bundle.model_settings
    try:
        return bmz.ModelDescr(
            name=_name(settings, bundle, role),
            description=_description(settings, bundle, role),
            authors=authors,
            cite=[bmz.CiteEntry.model_validate({"text": text, **ref}) for text, ref in citations(model_settings)],
            license=bmz.LicenseId(settings.license),
            documentation=bmz.FileDescr(source=files / "README.md"),
            covers=[bmz.FileDescr(source=files / "cover.png")],
            tags=[
                "napari-morphospace",
                "variational-autoencoder",
                model_settings.model,
                role,
                f"{len(bundle.input_shape) - 1}d",
                "cell-morphology",
                "representation-learning",
            ],
            inputs=inputs,
            outputs=outputs,
            weights=weights,
            config=bmz.Config.model_validate(_config(role, bundle)),
        )
    except ValidationError as err:
        raise InputError(
            f"the {role} description does not validate: {_first_pydantic_errors(err)}; nothing was written"
        ) from err


def _write_weights(role: str, bundle: Bundle, tensors: _Tensors, files: Path) -> tuple[str, dict[str, Any]]:
    """The package's half of the model as a state dict and as TorchScript;
    returns the architecture's name and kwargs."""
    wrapper_class = ZooEncoder if role == "encoder" else ZooDecoder
    kwargs = {"model_settings": bundle.config["model_settings"], "input_shape": list(bundle.input_shape)}
    wrapper = wrapper_class(**kwargs)
    state = {_STATE_PREFIX + k: v for k, v in bundle.model.state_dict().items()}
    wrapper.load_state_dict({k: state[k] for k in wrapper.state_dict()}, strict=True)
    wrapper.eval()
    torch.save(wrapper.state_dict(), files / f"{role}_state_dict.pt")
    example = torch.from_numpy(tensors.crops if role == "encoder" else tensors.mu)
    with warnings.catch_warnings():
        # The input-shape check is constant by design. torch deprecates TorchScript for torch.export,
        # but TorchScript is the PyTorch format bioimage.io consumers (deepImageJ, ilastik) run.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(wrapper, example), str(files / f"{role}_torchscript.pt"))
    return wrapper_class.__name__, kwargs


def _tensor_descriptions(role: str, bundle: Bundle, tensors: _Tensors, files: Path) -> tuple[list[Any], list[Any]]:
    """Inputs and outputs of one package, with their test tensors saved as .npy."""
    from bioimageio.spec.model import v0_5 as bmz

    spatial = ["z", "y", "x"][-(len(bundle.input_shape) - 1) :]

    def image_axes(axis_class: Any) -> list[Any]:
        channels = bmz.ChannelAxis(channel_names=_identifiers(bundle.channel_names, "channel_"))
        return [
            bmz.BatchAxis(),
            channels,
            *[axis_class(id=a, size=int(n)) for a, n in zip(spatial, bundle.input_shape[1:], strict=True)],
        ]

    def latent(name: str, array: np.ndarray, text: str, kind: Any) -> Any:
        np.save(files / f"{name}.npy", array)
        names = [f"{name}_{i}" for i in range(bundle.model_settings.latent_dim)]
        return kind(
            id=bmz.TensorId(name),
            axes=[bmz.BatchAxis(), bmz.ChannelAxis(channel_names=names)],
            test_tensor=bmz.FileDescr(source=files / f"{name}.npy"),
            description=text,
        )

    unit_range = bmz.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0))
    if role == "encoder":
        np.save(files / "crops.npy", tensors.crops)
        normalisation = final_normalisation(bundle.preprocess)
        crops = bmz.InputTensorDescr(
            id=bmz.TensorId("crops"),
            axes=image_axes(bmz.SpaceInputAxis),
            test_tensor=bmz.FileDescr(source=files / "crops.npy"),
            data=bmz.IntervalOrRatioDataDescr(type="float32") if normalisation else unit_range,
            description="single-cell crops made as for training (see README)",
            preprocessing=_preprocessing(bmz, normalisation, spatial),
        )
        return [crops], [
            latent("mu", tensors.mu, "posterior mean μ per latent dimension", bmz.OutputTensorDescr),
            latent(
                "logvar", tensors.logvar, "posterior log-variance log σ² per latent dimension", bmz.OutputTensorDescr
            ),
        ]
    np.save(files / "image.npy", tensors.recon)
    image = bmz.OutputTensorDescr(
        id=bmz.TensorId("image"),
        axes=image_axes(bmz.SpaceOutputAxis),
        data=unit_range,
        test_tensor=bmz.FileDescr(source=files / "image.npy"),
        description="decoded crops in [0, 1]",
    )
    z = latent("z", tensors.mu, "latent vectors, e.g. the encoder's mu with one value changed", bmz.InputTensorDescr)
    return [z], [image]


def _preprocessing(bmz: Any, normalisation: PreprocessStep | None, spatial: list[str]) -> list[Any]:
    """``scale_range`` (+ ``clip``) per crop and channel for the pipeline's final normalisation; else none."""
    if normalisation is None:
        return []
    if normalisation.name == "normalize_minmax":
        low, high = 0.0, 100.0
    else:
        low, high = float(normalisation.params.get("low", 1.0)), float(normalisation.params.get("high", 99.8))
    return [
        bmz.ScaleRangeDescr(kwargs=bmz.ScaleRangeKwargs(axes=spatial, min_percentile=low, max_percentile=high)),
        bmz.ClipDescr(kwargs=bmz.ClipKwargs(min=0.0, max=1.0)),
    ]


def _name(settings: ZooSettings, bundle: Bundle, role: str) -> str:
    """The given name, else the bundle folder's, kept to the characters bioimage.io allows in names."""
    candidates = [
        settings.name,
        bundle.folder.name if bundle.folder is not None else "",
        f"morphospace {bundle.model_settings.model}",
    ]
    allowed = [" ".join(re.sub(r"[^0-9A-Za-z_+\- ()]+", " ", c).split()) for c in candidates]
    return f"{next(a for a in allowed if a)} {role}"[:128]


def _model_words(bundle: Bundle) -> str:
    s = bundle.model_settings
    kind = {"beta-vae": "β-VAE", "beta-tcvae": "β-TCVAE", "me-vae": "multi-encoder VAE"}[s.model]
    shape = "×".join(str(n) for n in bundle.input_shape[1:])
    return f"{kind} ({s.latent_dim} latent dimensions) on {bundle.input_shape[0]}-channel {shape} single-cell crops"


def _description(settings: ZooSettings, bundle: Bundle, role: str) -> str:
    does = (
        "maps a crop to the mean and log-variance of its latent posterior"
        if role == "encoder"
        else "decodes a latent vector to a crop; with the encoder package it gives latent traversals"
    )
    text = f"{role.capitalize()} of a {_model_words(bundle)}, trained with napari-morphospace: {does}."
    return f"{settings.description.strip()} {text}".strip()[:1024]


def citations(model_settings: ModelSettings) -> list[tuple[str, dict[str, str]]]:
    """The studies and methods the exported model implements, as (text, {"doi" or "url": ...})."""
    refs = [
        ("Kingma & Welling (2014). Auto-Encoding Variational Bayes. ICLR.", {"doi": "10.48550/arXiv.1312.6114"}),
        (
            "Hwang et al. (2026). Unsupervised Variational-Autoencoder-Based Analysis of Morphological "
            "Representations in Magnetic-Nanoparticle-Treated Macrophages. Bioengineering 13(1), 76. "
            "(β-VAE, β-TCVAE and multi-encoder VAE on single-cell crops; preprocessing; latent statistics)",
            {"doi": "10.3390/bioengineering13010076"},
        ),
    ]
    if model_settings.model == "beta-vae":
        refs.append(
            (
                "Higgins et al. (2017). beta-VAE: Learning Basic Visual Concepts with a Constrained "
                "Variational Framework. ICLR.",
                {"url": "https://openreview.net/forum?id=Sy2fzU9gl"},
            )
        )
    if model_settings.model == "beta-tcvae":
        refs.append(
            (
                "Chen et al. (2018). Isolating Sources of Disentanglement in Variational Autoencoders. NeurIPS.",
                {"doi": "10.48550/arXiv.1802.04942"},
            )
        )
    if model_settings.model == "me-vae":
        refs.append(
            (
                "Ternes et al. (2022). A multi-encoder variational autoencoder controls multiple "
                "transformational features in single-cell image analysis. Communications Biology 5, 255.",
                {"doi": "10.1038/s42003-022-03218-x"},
            )
        )
    if model_settings.objective == "reparameterised":
        refs.append(
            (
                "Donovan-Maiye et al. (2022). A deep generative model of 3D single-cell organization. "
                "PLOS Computational Biology 18(1), e1009155. (the (1−β)·rec + β·KL objective)",
                {"doi": "10.1371/journal.pcbi.1009155"},
            )
        )
    return refs


def _config(role: str, bundle: Bundle) -> dict[str, Any]:
    """``config`` of the description: bioimage.io's training details and our bundle's model.json."""
    train = bundle.config.get("train_settings") or {}
    history = bundle.config.get("history") or []
    partner = DECODER_PACKAGE if role == "encoder" else ENCODER_PACKAGE
    return {
        "bioimageio": {
            "architecture_type": f"{bundle.model_settings.model} {role}",
            "architecture_description": f"{role} of a {_model_words(bundle)}; see README",
            "task": "representation learning: image to latent posterior"
            if role == "encoder"
            else "generation: latent vector to image",
            "modality": "microscopy single-cell crops",
            "target_structure": ["cells"],
            "model_parameter_count": sum(
                p.numel()
                for name, p in bundle.model.named_parameters()
                if name.startswith("decoder.") == (role == "decoder")
            ),
            "training": {
                "training_epochs": float(len(history) or train.get("epochs") or 0) or None,
                "training_batch_size": train.get("batch_size"),
                "initial_learning_rate": train.get("learning_rate"),
                "optimizer": "torch.optim.AdamW",
                "loss_function": f"{bundle.model_settings.model} loss ({bundle.model_settings.objective} objective, "
                f"{bundle.model_settings.reconstruction} reconstruction)",
            },
        },
        CONFIG_KEY: {
            "format": PACKAGE_FORMAT,
            "format_version": PACKAGE_FORMAT_VERSION,
            "role": role,
            "partner": partner,
            "model_id": model_id(bundle.model),
            "exported_with": __version__,
            "bundle": bundle.config,
        },
    }


def model_id(model: nn.Module) -> str:
    """A fingerprint of the weights: the two packages of one export carry the same one."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return hashlib.sha256(safetensors_bytes(state)).hexdigest()[:16]


def _environment() -> str:
    """Conda environment of the ``pytorch_state_dict`` weights: torch and napari-morphospace (the architecture)."""
    return yaml.safe_dump(
        {
            "name": "napari-morphospace",
            "channels": ["conda-forge", "nodefaults"],
            "dependencies": [
                f"pytorch=={torch.__version__.split('+')[0]}",
                "pip",
                {"pip": [f"napari-morphospace=={__version__}"]},
            ],
        },
        sort_keys=False,
    )


# --------------------------------------------------------------------------- cover and README


def _cover_png(role: str, bundle: Bundle, crop_set: CropSet, tensors: _Tensors) -> bytes:
    """2:1 cover: test crops above their decodes (encoder), or traversals of the most informative dimensions.

    The decoder's strip walks the three dimensions with the largest KL to the
    prior over up to 256 crops (those the model uses most), from their mean μ.
    """
    if role == "encoder":
        return render_figure(encoder_cover(tensors.crops, tensors.recon), dpi=64)
    table = embed(bundle, crop_set.subset(_evenly_spread(len(crop_set), 256)))
    mu, logvar = table.filter(regex=r"^mu_\d+$").to_numpy(), table.filter(regex=r"^logvar_\d+$").to_numpy()
    dims = np.argsort(-kl_per_dimension(mu, logvar))[:3].tolist()
    grid = traversal_grid(_exported_vae(bundle), dims, n_steps=7, start=mu.mean(axis=0))
    return render_figure(decoder_cover(grid, dims), dpi=64)


def _readme(role: str, bundle: Bundle, crop_set: CropSet) -> str:
    """The package's documentation: model, inputs/outputs, preprocessing, weights, validation, citations."""
    s, config = bundle.model_settings, bundle.config
    train = config.get("train_settings") or {}
    provenance = config.get("provenance") or {}
    history = config.get("history") or []
    preprocess = bundle.preprocess or {}
    normalisation = final_normalisation(preprocess)
    partner = DECODER_PACKAGE if role == "encoder" else ENCODER_PACKAGE
    spatial = "×".join(str(n) for n in bundle.input_shape[1:])
    io_text = (
        f"- input `crops`: `(batch, channel, {'z, ' if len(bundle.input_shape) == 4 else ''}y, x)`, channels "
        f"{', '.join(map(str, bundle.channel_names))}, {spatial} pixels, float32\n"
        f"- outputs `mu` and `logvar`: `(batch, {s.latent_dim})`, the posterior N(μ, σ²) of each crop; "
        "`mu` is the cell's position in latent space (napari-morphospace's `mu_0..` columns)\n"
        if role == "encoder"
        else f"- input `z`: `(batch, {s.latent_dim})` latent vectors\n"
        f"- output `image`: `(batch, channel, {'z, ' if len(bundle.input_shape) == 4 else ''}y, x)`, "
        f"{spatial} pixels in [0, 1] (sigmoid), channels {', '.join(map(str, bundle.channel_names))}\n"
    )
    steps = ((preprocess.get("pipeline") or {}).get("steps")) or []
    step_text = "\n".join(f"  {i}. `{st.get('name')}` {st.get('params') or ''}" for i, st in enumerate(steps, 1))
    crops = preprocess.get("crops") or {}
    crop_text = (
        f"These crops: {crops.get('mode')} mode, size {crops.get('size')}, neighbours masked: "
        f"{crops.get('mask_neighbours')}, background masked: {crops.get('mask_background')}, intensities "
        f"normalised per source image ({crops.get('normalise')}, percentiles {crops.get('percentiles')})."
        if crops
        else "The crop settings were not recorded with this model."
    )
    described = (
        f"The input description repeats the pipeline's final step, `{normalisation.name}`, as bioimage.io "
        "`scale_range` per crop and channel (then `clip` to [0, 1]); it is idempotent on crops that already had it."
        if normalisation
        else "None of it maps to bioimage.io preprocessing (only a final per-crop `normalize_percentile` or "
        "`normalize_minmax` would), so the input description has none: give crops already in [0, 1]."
    )
    depth_text = (
        str(s.depth)
        if s.depth is not None
        else "chosen from the crop size by the adaptable-VAE thesis rule L = round(2 + 0.356·(log2(pixels) − 8.64))"
    )
    output_text = (
        ""
        if role == "encoder"
        else "The decoded images are in the same normalised [0, 1] space; there is no postprocessing back to raw "
        "intensities."
    )
    groups_text = ", ".join(map(str, provenance.get("groups", []) or [])) or "not recorded"
    best = min((h.get("val_loss") for h in history if isinstance(h.get("val_loss"), (int, float))), default=None)
    refs = "\n".join(
        f"- {text} {ref.get('doi') and 'https://doi.org/' + ref['doi'] or ref.get('url')}" for text, ref in citations(s)
    )
    return f"""# {role.capitalize()} of a napari-morphospace {s.model} model

{role.capitalize()} of a {_model_words(bundle)}, trained with
napari-morphospace (a napari plugin for unsupervised analysis of cell morphology with
variational autoencoders). It is one of two packages exported together: use `{partner}`
for the other half. Encoder and decoder together give latent traversals: encode a crop,
change one value of `mu` (in units of the model's latent scale, −3…+3), decode.

## Inputs and outputs

{io_text}
## Architecture

`{s.model}`: {s.block} blocks, depth {depth_text},
{s.base_channels} base channels, latent size {s.latent_dim}, β = {s.beta} ({s.objective} objective),
{s.reconstruction} reconstruction; the decoder ends in a sigmoid and returns exactly the input shape.
Full settings: `config.napari-morphospace.bundle.model_settings` in `rdf.yaml`.

## Preprocessing: what runs before this model

Crops are made by napari-morphospace around each segmented object (`morphospace crops` or the
Cells widget). {crop_text}
Then the crop pipeline ran on every crop:

{step_text or "  (no pipeline steps)"}

{described} The bioimage.io specification cannot express cutting crops around objects,
the per-source normalisation (statistics of the whole field) or the other pipeline steps:
run them with napari-morphospace and the settings above (recorded in
`config.napari-morphospace.bundle.preprocess`) before this model.
{output_text}

## Weights

- `pytorch_state_dict` (original): a plain state dict of tensors. Its architecture is
  `napari_morphospace.core.project.zoo.{"ZooEncoder" if role == "encoder" else "ZooDecoder"}`, so it needs
  `pip install napari-morphospace=={__version__}` (see `environment.yaml`).
  `morphospace zoo import` reads only these weights, with `torch.load(weights_only=True)`.
- `torchscript`: traced from it; runs without napari-morphospace in any bioimage.io consumer.

## Training

{provenance.get("n_crops", "?")} crops from {provenance.get("crop_set", "an unrecorded crop set")}
(groups: {groups_text}); {len(history) or train.get("epochs", "?")} epochs,
batch size {train.get("batch_size", "?")}, learning rate {train.get("learning_rate", "?")} (AdamW),
best validation loss {best if best is not None else "not recorded"}.

## Validation

The test tensors are crops of the crop set the package was exported with ({len(crop_set)} crops)
and this model's outputs for them; `bioimageio.core` reproduced them with both weight formats before the
package was written. To validate on new data: make crops with the same settings, check that the
reconstructions (encoder → decoder) resemble the crops (per-crop reconstruction error comparable to
the validation loss above), and that the per-dimension KL of the posteriors is not near zero for all
dimensions (posterior collapse). A model trained on one imaging setup and cell type is not
expected to give meaningful latents for others.

## Citations

{refs}
"""


# --------------------------------------------------------------------------- packaging and testing


def _package_and_test(spec: Any, core: Any, descr: Any, target: Path, role: str) -> None:
    """Zip the description (bioimageio validates it again) and test-run it; refuse on any failure."""
    try:
        spec.save_bioimageio_package(descr, output_path=target)
    except ValueError as err:
        raise InputError(f"the {role} package does not validate: {_one_line(str(err))}; nothing was written") from err
    summary = core.test_model(target)
    if summary.status != "passed":
        errors = [f"{'.'.join(map(str, e.loc)) or role}: {_one_line(e.msg)}" for e in summary.errors][:3]
        raise InputError(
            f"the {role} package failed the bioimageio.core test-run ({'; '.join(errors) or summary.status}); "
            "nothing was written"
        )


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _first_pydantic_errors(err: Any) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {_one_line(e['msg'], 120)}" for e in err.errors()[:3])


# --------------------------------------------------------------------------- import


@dataclass
class _Package:
    """One package as read for import: where it came from, its rdf.yaml and our config entry."""

    path: Path
    rdf: dict[str, Any]
    ours: dict[str, Any]
    state: dict[str, torch.Tensor]


def import_zoo_packages(
    sources: Sequence[str | os.PathLike], directory: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Turn the encoder and decoder packages of one export into a model bundle folder.

    Parameters
    ----------
    sources : paths
        The export folder (holding ``encoder.zip`` and ``decoder.zip``), or the two zip files.
    directory : path
        The bundle folder to write (refused if it exists, unless ``overwrite``).

    Raises
    ------
    InputError
        For anything but a pair of intact packages exported by napari-morphospace:
        a foreign package, a changed or missing file, weights that are not a plain
        state dict of tensors (pickled objects are refused unread), tensors that
        do not fit the recorded architecture, or two halves of different models.
    """
    paths = _package_paths(sources)
    packages = [_read_package(path) for path in paths]
    by_role = {p.ours.get("role"): p for p in packages}
    if set(by_role) != {"encoder", "decoder"}:
        roles = ", ".join(f"{p.path.name}: {p.ours.get('role')}" for p in packages)
        raise InputError(f"import needs one encoder and one decoder package of the same export; got {roles}")
    encoder, decoder = by_role["encoder"], by_role["decoder"]
    if encoder.ours.get("model_id") != decoder.ours.get("model_id"):
        raise InputError(
            f"{encoder.path.name} and {decoder.path.name} come from different models (model ids "
            f"{encoder.ours.get('model_id')} and {decoder.ours.get('model_id')}); give the two packages of one export"
        )
    config = encoder.ours.get("bundle") or {}
    try:
        settings = from_dict(ModelSettings, config["model_settings"], where=f"{encoder.path.name} model_settings")
        input_shape = tuple(int(n) for n in config["input_shape"])
        train_settings = from_dict(TrainSettings, config.get("train_settings") or {}, where="train_settings")
        channel_names = list(config["channel_names"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"{encoder.path} has an incomplete model configuration ({err!r}); export it again") from err
    model = build_model(settings, input_shape)
    state = _merge_halves(encoder, decoder)
    mismatch = state_dict_mismatch(state, model)
    if mismatch:
        raise InputError(
            f"the weights of {encoder.path.name} and {decoder.path.name} do not fit the recorded architecture: "
            f"{mismatch}; the packages were changed after export"
        )
    model.load_state_dict(state, strict=True)
    provenance = {**(config.get("provenance") or {}), "imported_from": [str(p.path.resolve()) for p in packages]}
    bundle = new_bundle(
        model.eval(),
        model_settings=settings,
        input_shape=input_shape,
        channel_names=channel_names,
        preprocess=config.get("preprocess"),
        train_settings=train_settings,
        provenance=provenance,
        history=config.get("history") or [],
        label_classes=config.get("label_classes"),
    )
    return save_bundle(bundle, directory, overwrite=overwrite)


def _package_paths(sources: Sequence[str | os.PathLike]) -> list[Path]:
    paths = [Path(s) for s in sources]
    for path in paths:
        if not path.exists():
            raise InputError(
                f"{path} does not exist; give the folder written by 'morphospace zoo export' or its zip files"
            )
    if len(paths) == 1 and paths[0].is_dir():
        folder = paths[0]
        paths = [folder / ENCODER_PACKAGE, folder / DECODER_PACKAGE]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise InputError(
                f"{folder} has no {' or '.join(missing)}; give the folder written by 'morphospace zoo export' "
                "or the encoder and decoder zip files"
            )
    if len(paths) != 2:
        raise InputError(
            f"import needs the encoder and the decoder package (the export folder or both zip files); got {len(paths)}"
        )
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path} is not a file; give a .zip package written by 'morphospace zoo export'")
    return paths


def _read_package(path: Path) -> _Package:
    """rdf.yaml, our config entry and the state dict of one zip package, checked without running anything."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(
            f"{path} is not a zip package ({err}); give a .zip written by 'morphospace zoo export'"
        ) from err
    with archive:
        names = set(archive.namelist())
        rdf_name = next((n for n in ("rdf.yaml", "bioimageio.yaml") if n in names), None)
        if rdf_name is None:
            raise InputError(f"{path} is not a bioimage.io package: it has no rdf.yaml")
        try:
            rdf = yaml.safe_load(archive.read(rdf_name))
        except yaml.YAMLError as err:
            raise InputError(f"{path}: rdf.yaml is not valid YAML ({_one_line(str(err), 120)})") from err
        if not isinstance(rdf, dict) or rdf.get("type") != "model":
            raise InputError(f"{path} does not describe a model (rdf.yaml type is not 'model')")
        ours = ((rdf.get("config") or {}).get(CONFIG_KEY)) or {}
        if ours.get("format") != PACKAGE_FORMAT:
            raise InputError(
                f"{path} ({rdf.get('name', 'unnamed')}) was not exported by napari-morphospace: its rdf.yaml has no "
                f"config.{CONFIG_KEY} entry. Only encoder/decoder packages written by 'morphospace zoo export' can be "
                "imported; for other zoo models use bioimageio.core or a zoo consumer"
            )
        if ours.get("format_version") != PACKAGE_FORMAT_VERSION:
            raise InputError(
                f"{path} has package format version {ours.get('format_version')!r}; this napari-morphospace "
                f"({__version__}) reads version {PACKAGE_FORMAT_VERSION}. Update napari-morphospace"
            )
        weights = ((rdf.get("weights") or {}).get("pytorch_state_dict")) or {}
        source = str(weights.get("source") or "")
        if source not in names:
            raise InputError(f"{path} is missing its pytorch_state_dict weights file {source!r}; export it again")
        data = archive.read(source)
    expected = weights.get("sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise InputError(f"{path}: {source} does not match the SHA-256 in rdf.yaml; the file was changed after export")
    return _Package(path, rdf, ours, _load_state(data, f"{path.name}:{source}"))


def _load_state(data: bytes, where: str) -> dict[str, torch.Tensor]:
    """A state dict of tensors from ``torch.save`` bytes, unpickling nothing but tensors (weights_only)."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refusals come as UnpicklingError, RuntimeError or others
        raise InputError(
            f"{where} is not a plain state dict of tensors (torch.load with weights_only=True refused it: "
            f"{_one_line(str(err), 160)}); napari-morphospace never unpickles other objects"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise InputError(f"{where} is not a state dict (names → tensors); the package was changed after export")
    return state


def _merge_halves(encoder: _Package, decoder: _Package) -> dict[str, torch.Tensor]:
    """The model's state dict from the two halves; a tensor both hold (the latent scale) must agree."""
    halves = []
    for package in (encoder, decoder):
        strange = sorted(k for k in package.state if not k.startswith(_STATE_PREFIX))
        if strange:
            raise InputError(
                f"{package.path.name} holds unexpected tensors ({', '.join(strange[:3])}); export it again"
            )
        halves.append({k[len(_STATE_PREFIX) :]: v for k, v in package.state.items()})
    shared = sorted(set(halves[0]) & set(halves[1]))
    differing = [
        k for k in shared if halves[0][k].shape != halves[1][k].shape or not torch.equal(halves[0][k], halves[1][k])
    ]
    if differing:
        raise InputError(
            f"{encoder.path.name} and {decoder.path.name} disagree on {', '.join(differing[:3])}; "
            "give the two packages of one export"
        )
    return {**halves[0], **halves[1]}


__all__ = [
    "DECODER_PACKAGE",
    "ENCODER_PACKAGE",
    "INSTALL_HINT",
    "ZooDecoder",
    "ZooEncoder",
    "ZooExport",
    "ZooSettings",
    "citations",
    "export_zoo_packages",
    "final_normalisation",
    "import_zoo_packages",
    "model_id",
]
