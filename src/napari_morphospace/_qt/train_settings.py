"""The Train widget's settings: the model form, the training form and its folded "Advanced" part.

Each form is rendered from the core settings dataclass
(:class:`~napari_morphospace.core.models.ModelSettings`,
:class:`~napari_morphospace.core.training.engine.TrainSettings`), so the widget,
``morphospace train --config`` and the core read one definition.
"""

from __future__ import annotations

from typing import Any

import torch
from qtpy.QtWidgets import QLabel
from superqt import QCollapsible

from ..core.models import ModelSettings
from ..core.models.settings import USED_BY, unused_settings
from ..core.training.engine import TrainConfig, TrainSettings
from .forms import fill_form, read_form, settings_form

#: Training settings in the collapsed "Advanced" section (cluster runs, reproducibility, optimiser details).
ADVANCED_TRAINING = ("weight_decay", "gradient_clip_val", "seed", "num_nodes", "strategy", "num_workers")
MODEL_OPTIONS = {
    "beta": {"step": 0.001, "max": 1e4},
    "tc_alpha": {"step": 0.1, "max": 1e4},
    "tc_beta": {"step": 0.1, "max": 1e4},
    "tc_gamma": {"step": 0.1, "max": 1e4},
    "kl_warmup_steps": {"max": 10**8},
    "capacity_steps": {"max": 10**8},
    "capacity_gamma": {"max": 1e6},
    "free_bits": {"step": 0.01},
    "latent_dim": {"max": 512},
}
TRAIN_OPTIONS = {
    "epochs": {"max": 10**6},
    "batch_size": {"max": 65536},
    "learning_rate": {"step": 1e-5, "max": 10.0},
    "weight_decay": {"step": 1e-6, "max": 10.0},
    "val_fraction": {"step": 0.05, "max": 0.99},
    "seed": {"max": 2**31 - 1},
    "preview_every_n_epochs": {"max": 10**6},
    "early_stopping_patience": {"max": 10**6},
}


class TrainSettingsForms:
    """The model and training forms in their collapsible sections ("Model", "Training" with "Advanced" folded)."""

    def __init__(self) -> None:
        self.model_form = settings_form(ModelSettings(), options=MODEL_OPTIONS)
        self.train_form = settings_form(TrainSettings(), hide=ADVANCED_TRAINING, options=TRAIN_OPTIONS)
        shown = {f.name for f in TrainSettings.__dataclass_fields__.values()} - set(ADVANCED_TRAINING)
        self.advanced_form = settings_form(TrainSettings(), hide=tuple(shown), options=TRAIN_OPTIONS)
        self.device_info = QLabel(available_devices())
        self.model = QCollapsible("Model")
        self.model.addWidget(self.model_form.native)
        self.model.expand(animate=False)
        self.training = QCollapsible("Training")
        self.training.addWidget(self.train_form.native)
        self.training.addWidget(self.device_info)
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(self.advanced_form.native)
        self.advanced.collapse(animate=False)
        self.training.addWidget(self.advanced)
        self.training.expand(animate=False)
        self.model_form.model.changed.connect(self._show_model_fields)
        self._show_model_fields()

    def model_settings(self) -> ModelSettings:
        """The model settings shown in the form (InputError when a value is out of range)."""
        return read_form(self.model_form, ModelSettings(), skip=unused_settings(self.model_form.model.value))

    def train_settings(self) -> TrainSettings:
        """The training settings shown in the Training and Advanced forms."""
        return read_form(self.train_form, read_form(self.advanced_form, TrainSettings()))

    def config(self) -> TrainConfig:
        return TrainConfig(model=self.model_settings(), training=self.train_settings())

    def set_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the forms."""
        fill_form(self.model_form, config.model)
        fill_form(self.train_form, config.training)
        fill_form(self.advanced_form, config.training)

    def set_enabled(self, enabled: bool) -> None:
        for form in (self.model_form, self.train_form, self.advanced_form):
            form.enabled = enabled

    def _show_model_fields(self, *_: Any) -> None:
        """Show only the settings the chosen model type uses; the hidden ones are read as their defaults."""
        unused = unused_settings(self.model_form.model.value)
        for name in USED_BY:
            self.model_form[name].visible = name not in unused


def available_devices() -> str:
    """The devices torch can train on here, as the Training section shows them."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = torch.backends.mps.is_available()
    found = ["cpu"] + [f"cuda:{i}" for i in range(gpus)] + (["mps"] if mps else [])
    return f"available here: {', '.join(found)}"
