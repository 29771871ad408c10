"""Variational autoencoders of the studies, their blocks and losses (plain torch, no Lightning, no Qt).

Public interface::

    settings = ModelSettings(model="beta-vae", latent_dim=16)
    model = build_model(settings, input_shape=(C, Y, X))   # or (C, Z, Y, X)
    out = model(x)                                         # VAEOutput(logits, mu, logvar, z, parts); .recon in [0, 1]
    terms = model.loss(x, out, dataset_size=N, step=k)     # {"loss", "rec", "kl", "kl_per_dim", ...}

See ``docs/models.md`` for each model, its objective and the documented choices.
"""

from .blocks import depth_for_shape, max_depth
from .settings import ModelSettings
from .vae import (
    MEVAE,
    BetaTCVAE,
    BetaVAE,
    Condition,
    ConditionalVAE,
    MorphoVAE,
    StackedConditionalVAE,
    VAEOutput,
    build_model,
)

__all__ = [
    "MEVAE",
    "BetaTCVAE",
    "BetaVAE",
    "Condition",
    "ConditionalVAE",
    "ModelSettings",
    "MorphoVAE",
    "StackedConditionalVAE",
    "VAEOutput",
    "build_model",
    "depth_for_shape",
    "max_depth",
]
