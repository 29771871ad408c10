"""One typed definition of every model setting: widget form, CLI/YAML config and core arguments.

The settings are validated when they are created (and again when a model is
built), so a model can never be built from values that would train a
different objective than the one the user asked for.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, replace
from typing import Any, Literal, get_args, get_type_hints

from ..errors import InputError

ModelName = Literal["beta-vae", "beta-tcvae", "me-vae", "cond-vae"]
BlockKind = Literal["strided", "maxpool"]
NormKind = Literal["batch", "group"]
Objective = Literal["classic", "reparameterised"]
ReconstructionKind = Literal["sse", "bce", "calibrated-gaussian"]
TCEstimator = Literal["mss", "mws"]
MEView = Literal["original", "rotation", "flip"]
MECombine = Literal["mean", "product"]
KLSchedule = Literal["none", "linear", "cyclical"]

#: Settings that only some models use (every other setting applies to all models). The Train
#: widget shows a setting only for the models listed here; a model refuses a value other than the
#: default for a setting it does not use, instead of silently training without it.
USED_BY: dict[str, tuple[str, ...]] = {
    **{
        name: ("beta-vae", "me-vae", "cond-vae")
        for name in ("beta", "objective", "capacity_max", "capacity_gamma", "capacity_steps", "free_bits")
    },
    **{name: ("beta-tcvae",) for name in ("tc_alpha", "tc_beta", "tc_gamma", "tc_estimator")},
    **{name: ("me-vae",) for name in ("me_views", "me_combine")},
    **{name: ("cond-vae",) for name in ("cond_reference_channels", "cond_num_labels")},
}

LATENT_DIM_RANGE = (2, 512)
# Channels double per down-sampling block up to this cap, so deep models stay CPU-sized.
MAX_CHANNELS = 256


@dataclass
class ModelSettings:
    """Architecture and objective of a VAE.

    Attributes
    ----------
    model : {"beta-vae", "beta-tcvae", "me-vae", "cond-vae"}
        Which VAE of the studies to build (see ``docs/models.md``).
    latent_dim : int
        Number of latent dimensions D, 2 to 512.
    depth : int or None
        Number of down-/up-sampling blocks; None applies the adaptive rule of
        :func:`~napari_morphospace.core.models.blocks.depth_for_shape`.
    block : {"strided", "maxpool"}
        "strided": strided 3×3 conv + normalisation + LeakyReLU; "maxpool": 3×3 conv +
        ReLU + MaxPool.
    norm : {"batch", "group"}
        Normalisation of the "strided" blocks. "batch" (BatchNorm, the
        thesis' block, default) normalises with statistics of the data; the
        training engine averages its running statistics over the training
        crops at the end, so evaluation matches training even after few
        steps. "group" (GroupNorm) normalises each crop by itself, which
        removes its overall brightness and amount of signal: on real nuclei
        the latents then predicted area and intensity worse than pixel PCA.
    base_channels : int, optional
        Channels of the first block; doubled per block, capped at 256. None
        (default) takes 32 for 2D crops and 16 for 3D crops, where every
        convolution costs a third axis more: a 64³ decode then takes about
        200 ms on a laptop CPU instead of about 400 ms, fast enough for the
        latent sliders (see ``benchmarks/bench_decode_latency.py``).
    beta : float
        Weight of the KL term of beta-vae, me-vae and cond-vae. Classic
        objective: any β ≥ 0. Reparameterised objective ``(1−β)·rec + β·KL``:
        β in [0, 1]. Not used by beta-tcvae, whose β (Chen et al. 2018) is
        ``tc_beta``, the weight of the total correlation.
    objective : {"classic", "reparameterised"}
        ``rec + β·KL`` or ``(1−β)·rec + β·KL`` (Statistical Cell).
    reconstruction : {"bce", "sse", "calibrated-gaussian"}
        Binary cross-entropy (Bernoulli decoder, default), ``0.5·SSE``
        (unit-variance Gaussian decoder) or the negative log-likelihood of a
        Gaussian decoder whose variance is the batch's mean squared error
        (Rybkin et al. 2021), summed over the pixels and channels of an image,
        averaged over the batch. The unit-variance Gaussian is a weak
        likelihood for crops in [0, 1]: with β = 1 the KL wins and the
        posterior collapses (about 1 nat of KL on real nuclei; see
        ``docs/models.md``).
    tc_alpha, tc_beta, tc_gamma : float
        β-TCVAE weights of mutual information, total correlation, dimension-wise KL.
    tc_estimator : {"mss", "mws"}
        Minibatch-stratified (default, needs batch ≥ 3) or minibatch-weighted sampling.
    me_views : list of {"original", "rotation", "flip"}
        One ME-VAE encoder per view of the crop.
    me_combine : {"mean", "product"}
        How the ME-VAE encoders' sampled latents are combined.
    cond_reference_channels : list of int
        Channels the stacked conditional model's reference model sees; the rest
        are the target channels.
    cond_num_labels : int
        Number K of one-hot structure/condition labels of the target model (0: none).
    logvar_min, logvar_max : float
        Clamp of the encoder log-variance, for numerical stability.
    kl_schedule : {"none", "linear", "cyclical"}
        KL warm-up: weight ramps 0 → 1 over ``kl_warmup_steps`` (linear), or
        repeatedly in cycles of ``kl_warmup_steps`` steps (cyclical).
    kl_warmup_steps : int
        Length of the warm-up ramp (linear) or of one cycle (cyclical).
    capacity_max : float or None
        If set, replaces β·KL by ``capacity_gamma·|KL − C|`` with C rising
        linearly from 0 to ``capacity_max`` nats over ``capacity_steps`` steps.
    capacity_gamma : float
        Weight of the capacity term.
    capacity_steps : int
        Steps over which the capacity C rises to ``capacity_max``.
    free_bits : float
        Minimum KL in nats per latent dimension (batch-averaged) below which the
        KL of that dimension is not penalised further; 0 switches it off.
    """

    model: ModelName = "beta-vae"
    latent_dim: int = 16
    depth: int | None = None
    block: BlockKind = "strided"
    norm: NormKind = "batch"
    base_channels: int | None = None
    beta: float = 1.0
    objective: Objective = "classic"
    reconstruction: ReconstructionKind = "bce"
    tc_alpha: float = 1.0
    tc_beta: float = 6.0
    tc_gamma: float = 1.0
    tc_estimator: TCEstimator = "mss"
    me_views: list[str] = field(default_factory=lambda: ["original", "rotation", "flip"])
    me_combine: MECombine = "mean"
    cond_reference_channels: list[int] = field(default_factory=lambda: [0, 1])
    cond_num_labels: int = 0
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    kl_schedule: KLSchedule = "none"
    kl_warmup_steps: int = 0
    capacity_max: float | None = None
    capacity_gamma: float = 1000.0
    capacity_steps: int = 10000
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def channels_for(self, spatial_ndim: int) -> int:
        """Channels of the first block for crops with ``spatial_ndim`` axes (2 or 3)."""
        if self.base_channels is not None:
            return self.base_channels
        return 32 if spatial_ndim == 2 else 16

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first setting that is out of range.

        Called on creation and by ``build_model``: settings edited after
        creation are checked again before a model is built from them.
        """
        _check_options(self)
        lo, hi = LATENT_DIM_RANGE
        _require(lo <= self.latent_dim <= hi, f"latent_dim must be between {lo} and {hi}, got {self.latent_dim}")
        _require(
            self.depth is None or self.depth >= 1,
            f"depth must be at least 1 (or empty for the adaptive rule), got {self.depth}",
        )
        _require(
            self.base_channels is None or 1 <= self.base_channels <= MAX_CHANNELS,
            f"base_channels must be between 1 and {MAX_CHANNELS}, got {self.base_channels}",
        )
        _check_objective(self)
        _check_views(self.me_views)
        _check_conditional(self)
        _require(
            self.logvar_min < self.logvar_max,
            f"logvar_min ({self.logvar_min}) must be below logvar_max ({self.logvar_max})",
        )
        _check_schedules(self)
        _check_unused(self)

    def unused_settings(self) -> list[str]:
        """Names of the settings this model type does not use (see :data:`USED_BY`)."""
        return unused_settings(self.model)

    def without_unused(self) -> ModelSettings:
        """A copy whose settings this model type does not use are back at their defaults.

        The Train widget reads its form through this: values typed into a
        field that is hidden for the chosen model must not block training.
        """
        defaults = ModelSettings()
        return replace(self, **{name: getattr(defaults, name) for name in self.unused_settings()})


def unused_settings(model: str) -> list[str]:
    """Names of the settings a model type does not use."""
    return [name for name, models in USED_BY.items() if model not in models]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(f"model settings: {message}")


def _check_options(settings: ModelSettings) -> None:
    """Refuse any text option that is not one of its Literal choices (no silent fall-through)."""
    hints: dict[str, Any] = get_type_hints(ModelSettings)
    for name, hint in hints.items():
        choices = get_args(hint)
        if choices and all(isinstance(c, str) for c in choices):
            value = getattr(settings, name)
            _require(value in choices, f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_objective(settings: ModelSettings) -> None:
    _require(settings.beta >= 0, f"beta must be non-negative, got {settings.beta}")
    if settings.objective == "reparameterised":
        _require(
            settings.beta <= 1,
            f"the reparameterised objective (1−β)·rec + β·KL needs beta in [0, 1], got {settings.beta}; "
            "use objective='classic' for β > 1 (classic β_c = β/(1−β))",
        )
        _require(
            settings.capacity_max is None,
            "the capacity schedule replaces β·KL and only works with objective='classic'",
        )
    for name in ("tc_alpha", "tc_beta", "tc_gamma"):
        _require(getattr(settings, name) >= 0, f"{name} must be non-negative, got {getattr(settings, name)}")


def _check_unused(settings: ModelSettings) -> None:
    """Refuse a changed value of a setting this model type does not use: it would change nothing."""
    defaults = ModelSettings.__dataclass_fields__
    for name in unused_settings(settings.model):
        field_ = defaults[name]
        default = field_.default_factory() if field_.default_factory is not MISSING else field_.default
        if getattr(settings, name) == default:
            continue
        users = ", ".join(USED_BY[name])
        if settings.model == "beta-tcvae" and name == "beta":
            hint = (
                "its β (Chen et al. 2018) is tc_beta, the weight of the total correlation: set tc_beta "
                f"instead and leave beta at {default}"
            )
        elif settings.model == "beta-tcvae" and name in (
            "objective",
            "capacity_max",
            "capacity_gamma",
            "capacity_steps",
            "free_bits",
        ):
            hint = f"it weighs its KL terms with tc_alpha, tc_beta and tc_gamma: leave {name} at {default!r}"
        else:
            hint = f"leave it at {default!r} or choose one of those models"
        raise InputError(
            f"model settings: {settings.model} does not use {name} (used by {users} only), "
            f"which is {getattr(settings, name)!r}; {hint}"
        )


def _check_views(views: list[str]) -> None:
    choices = get_args(MEView)
    _require(len(views) >= 1, "me_views needs at least one view, e.g. ['original', 'rotation', 'flip']")
    for view in views:
        _require(view in choices, f"me_views: {view!r} is not one of {', '.join(map(repr, choices))}")
    _require(len(set(views)) == len(views), f"me_views lists a view twice: {views}")


def _check_conditional(settings: ModelSettings) -> None:
    channels = settings.cond_reference_channels
    _require(len(channels) >= 1, "cond_reference_channels needs at least one channel index")
    _require(all(c >= 0 for c in channels), f"cond_reference_channels must be non-negative, got {channels}")
    _require(len(set(channels)) == len(channels), f"cond_reference_channels lists a channel twice: {channels}")
    _require(settings.cond_num_labels >= 0, f"cond_num_labels must be 0 or more, got {settings.cond_num_labels}")


def _check_schedules(settings: ModelSettings) -> None:
    _require(settings.kl_warmup_steps >= 0, f"kl_warmup_steps must be 0 or more, got {settings.kl_warmup_steps}")
    _require(
        settings.kl_schedule == "none" or settings.kl_warmup_steps > 0,
        f"kl_schedule={settings.kl_schedule!r} needs kl_warmup_steps > 0",
    )
    _require(
        settings.capacity_max is None or settings.capacity_max >= 0,
        f"capacity_max must be non-negative, got {settings.capacity_max}",
    )
    _require(settings.capacity_gamma >= 0, f"capacity_gamma must be non-negative, got {settings.capacity_gamma}")
    _require(settings.capacity_steps >= 0, f"capacity_steps must be 0 or more, got {settings.capacity_steps}")
    _require(settings.free_bits >= 0, f"free_bits must be non-negative, got {settings.free_bits}")
