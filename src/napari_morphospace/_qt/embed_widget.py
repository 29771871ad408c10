"""The "Embed" widget: encode a crop set with a model bundle and write the latents into the Labels layers.

The crops' latents go to ``session.latents`` (for the other widgets) and, per
object, into the ``features`` of every Labels layer the crops came from
(:mod:`napari_morphospace.core.features`), where the scatter plot and other
plugins read them. Loading, embedding, the optional 2D embedding and the
clustering run in a background worker that yields typed messages.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from magicgui.widgets import CheckBox, ComboBox, FileEdit, PushButton, SpinBox
from napari.layers import Labels
from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ..core.bundle import Bundle, check_compatible, load_bundle
from ..core.data import CropSet, load_crop_set
from ..core.embed import embed
from ..core.errors import InputError
from ..core.features import EMBEDDINGS, FeatureJoin, add_cluster_column, add_embedding_columns, join_latents, labels_infos
from ..core.export import export_table
from ..core.selection import spatial_ndim
from .session import session_for
from .workers import messages_from

NONE = "none"


@dataclass
class EmbedProgress:
    """Sent after every batch of crops."""

    done: int
    total: int


@dataclass
class Stage:
    """Sent when the worker starts a new step (loading, PCA, clustering, writing features)."""

    text: str


@dataclass
class EmbedResult:
    """What the worker hands back: the latent table and the per-layer features."""

    latents: pd.DataFrame
    join: FeatureJoin
    bundle: Bundle
    crop_set: CropSet
    differences: list[str]  # preprocessing differences the user accepted


@dataclass
class EmbedPlan:
    """Everything the worker needs, read from the widget and the viewer on the GUI thread."""

    bundle: Bundle | Path
    crop_set: CropSet | Path
    layers: dict[str, tuple[Any, pd.DataFrame, int, tuple[str, ...]]]
    include_logvar: bool
    embedding: str
    clustering: str
    n_clusters: int
    device: str
    allow_preprocessing_mismatch: bool = False


def run_embedding(plan: EmbedPlan, stop_event: threading.Event, send: Any) -> EmbedResult | None:
    """Load, check, embed, add the optional columns and join onto the layers; None when cancelled."""
    send(Stage("Loading the model and the crops"))
    bundle = plan.bundle if isinstance(plan.bundle, Bundle) else load_bundle(plan.bundle)
    crop_set = plan.crop_set if isinstance(plan.crop_set, CropSet) else load_crop_set(plan.crop_set)
    differences = check_compatible(bundle, crop_set, allow_preprocessing_mismatch=plan.allow_preprocessing_mismatch)
    latents = embed(
        bundle, crop_set, device=plan.device, stop_event=stop_event,
        on_progress=lambda done, total: send(EmbedProgress(done, total)),
        allow_preprocessing_mismatch=plan.allow_preprocessing_mismatch,
    )  # fmt: skip
    if stop_event.is_set():
        return None
    if plan.embedding != NONE:
        send(Stage(f"Computing the {plan.embedding} embedding"))
        latents = add_embedding_columns(latents, plan.embedding)
    if plan.clustering != NONE:
        send(Stage(f"Clustering ({plan.clustering})"))
        latents = add_cluster_column(latents, plan.clustering, n_clusters=plan.n_clusters)
    send(Stage("Writing the features of the Labels layers"))
    sources = set(latents["source"].astype(str))
    layers = {
        name: (data, features, ndim > spatial_ndim(latents, ndim), aliases)
        for name, (data, features, ndim, aliases) in plan.layers.items()
        if sources & {name, *aliases}  # only read the label images of the crops' sources
    }
    join = join_latents(latents, labels_infos(layers), include_logvar=plan.include_logvar)
    return EmbedResult(latents, join, bundle, crop_set, differences)


@thread_worker
def _embed_worker(plan: EmbedPlan, stop_event: threading.Event):
    return (yield from messages_from(lambda send: run_embedding(plan, stop_event, send)))


def _folder(edit: FileEdit) -> Path | None:
    value = str(edit.value)
    return Path(value) if value not in ("", ".") else None


class EmbedWidget(QWidget):
    """Embed a crop set with a model bundle; write latents, embeddings and clusters into ``layer.features``.

    Every button is a public method (``embed``, ``cancel``,
    ``save_latent_table``), so the widget can be scripted and tested.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.latents: pd.DataFrame | None = None
        self._worker: Any = None
        self._stop_event = threading.Event()
        self._outcome = ""  # what the last run ended with, shown once the worker has finished

        self.bundle_folder = FileEdit(mode="d", label="model bundle", value="")
        self.crop_folder = FileEdit(mode="d", label="crop set", value="")
        self.session_info = QLabel()
        self.session_info.setWordWrap(True)
        self.allow_mismatch = CheckBox(value=False, text="accept other preprocessing (crops made differently from "
                                                         "the model's training crops; not recommended)")
        self.include_logvar = CheckBox(value=True, text="write log-variances (logvar_*) to the layers")
        self.embedding = ComboBox(choices=[NONE, *EMBEDDINGS], value=NONE, label="2D embedding")
        self.clustering = ComboBox(choices=[NONE, "kmeans", "gmm", "hdbscan"], value=NONE, label="clustering")
        self.n_clusters = SpinBox(value=3, min=1, max=100, label="clusters")
        self.embed_button = PushButton(text="Embed")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.save_button = PushButton(text="Save latent table…", enabled=False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self._layout()

        self.embed_button.changed.connect(self.embed)
        self.cancel_button.changed.connect(self.cancel)
        self.save_button.changed.connect(self._choose_save_path)
        self.clustering.changed.connect(lambda value: setattr(self.n_clusters, "enabled", value in ("kmeans", "gmm")))
        self.n_clusters.enabled = False
        self.session.crop_set_changed.connect(self._show_session)
        self.session.bundle_changed.connect(self._show_session)
        self._show_session()

    def _layout(self) -> None:
        inputs = QGroupBox("Model and crops")
        form = QFormLayout(inputs)
        form.addRow(QLabel("Leave a folder empty to use the model or crop set of this session."))
        form.addRow("model bundle", self.bundle_folder.native)
        form.addRow("crop set", self.crop_folder.native)
        form.addRow(self.session_info)
        form.addRow(self.allow_mismatch.native)
        options = QGroupBox("Results")
        form = QFormLayout(options)
        form.addRow(self.include_logvar.native)
        form.addRow("2D embedding", self.embedding.native)
        form.addRow("clustering", self.clustering.native)
        form.addRow("clusters", self.n_clusters.native)
        buttons = QHBoxLayout()
        for button in (self.embed_button, self.cancel_button, self.save_button):
            buttons.addWidget(button.native)
        layout = QVBoxLayout(self)
        layout.addWidget(inputs)
        layout.addWidget(options)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch()

    def _show_session(self, _value: Any = None) -> None:
        crop_set, bundle = self.session.crop_set, self.session.bundle
        crops = f"{len(crop_set)} crops" if crop_set is not None else "no crop set"
        model = f"a model with {bundle.latent_dim} latent dimensions" if isinstance(bundle, Bundle) else "no model"
        self.session_info.setText(f"This session has {crops} and {model}.")

    # ----------------------------------------------------------------- embedding

    def _plan(self) -> EmbedPlan:
        """Read the inputs on the GUI thread; refuse what is missing or does not fit before any work starts."""
        bundle = _folder(self.bundle_folder) or self.session.bundle
        crop_set = _folder(self.crop_folder) or self.session.crop_set
        if bundle is None:
            raise InputError("no model: choose a model bundle folder (written by the Train widget or 'morphospace train')")
        if crop_set is None:
            raise InputError("no crop set: build one with the Cells widget or choose a crop-set folder")
        if isinstance(bundle, (str, Path)):
            bundle = Path(bundle)
        if isinstance(bundle, Bundle) and isinstance(crop_set, CropSet):
            check_compatible(bundle, crop_set, allow_preprocessing_mismatch=self.allow_mismatch.value)
        layers = {}
        for layer in self.viewer.layers:
            if isinstance(layer, Labels):
                data = layer.data[0] if layer.multiscale else layer.data
                source = layer.metadata.get("source") if isinstance(layer.metadata, dict) else None
                aliases = (str(source),) if source else ()
                layers[layer.name] = (data, layer.features.copy(), layer.ndim, aliases)
        return EmbedPlan(
            bundle=bundle, crop_set=crop_set, layers=layers, include_logvar=self.include_logvar.value,
            embedding=self.embedding.value, clustering=self.clustering.value, n_clusters=self.n_clusters.value,
            device="cuda" if torch.cuda.is_available() else "cpu",
            allow_preprocessing_mismatch=self.allow_mismatch.value,
        )  # fmt: skip

    def embed(self) -> Any:
        """Start embedding in a background worker; returns the worker (None when the input was refused)."""
        if self._worker is not None:
            return self._worker
        try:
            plan = self._plan()
        except InputError as err:
            self._report(err)
            return None
        self._stop_event = threading.Event()
        self.embed_button.enabled, self.cancel_button.enabled = False, True
        self.status.setText("Embedding…")
        self._outcome = ""
        bar = progress(total=0, desc="Embedding crops")
        worker = _embed_worker(plan, self._stop_event, _ignore_errors=True)  # errors go to self._report
        worker.yielded.connect(lambda message: self._on_message(message, bar))
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._report)
        worker.finished.connect(lambda: self._on_finished(bar))
        self._worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop embedding before the next batch; nothing is written."""
        self._stop_event.set()
        self.status.setText("Cancelling…")

    def _on_message(self, message: Any, bar: progress) -> None:
        if self._worker is None or self._outcome:  # a late message of a run that has already ended
            return
        # The label first: updating napari's progress bar may process pending events (the end of the run).
        if isinstance(message, EmbedProgress):
            self.status.setText(f"Embedded {message.done}/{message.total} crops")
            if bar.total != message.total:
                bar.total = message.total
            bar.update(message.done - bar.n)
        elif isinstance(message, Stage):
            self.status.setText(message.text + "…")
            bar.set_description(message.text)

    def _on_done(self, result: EmbedResult | None) -> None:
        if result is None:
            self._set_outcome("Cancelled: no latents were written.")
            return
        written = []
        for name, features in result.join.tables.items():
            if name in self.viewer.layers:  # the layer may have been removed meanwhile
                self.viewer.layers[name].features = features
                written.append(name)
        self.latents = result.latents
        self.save_button.enabled = True
        self.session.latents = result.latents
        dims = len([c for c in result.latents.columns if c.startswith("mu_")])
        text = f"{len(result.latents)} crops embedded in {dims} dimensions; features written to " + (
            ", ".join(repr(n) for n in written) if written else "no layer"
        )
        show_info(text)
        if result.differences:
            show_warning("embedded crops made differently from the model's training crops: " + "; ".join(result.differences))
        unmatched = result.join.describe_unmatched()
        if unmatched:
            show_warning(unmatched)
            text += f"\n⚠ {unmatched}"
        self._set_outcome(text)

    def _report(self, error: Exception) -> None:
        message = str(error) if isinstance(error, InputError) else f"Embedding failed unexpectedly: {error!r}"
        self._set_outcome(f"⚠ {message}")
        show_error(message)

    def _set_outcome(self, text: str) -> None:
        self._outcome = text
        self.status.setText(text)

    def _on_finished(self, bar: progress) -> None:
        bar.close()
        # Progress messages may still be delivered after the outcome: the outcome has the last word.
        if self._outcome:
            self.status.setText(self._outcome)
        self.embed_button.enabled, self.cancel_button.enabled = True, False
        self._worker = None

    # ----------------------------------------------------------------- saving

    def _choose_save_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save latent table", "latents.csv", "CSV (*.csv);;Parquet (*.parquet)")
        if path:
            # The dialog has asked before replacing an existing file.
            self.save_latent_table(path, overwrite=True)

    def save_latent_table(self, path: str | Path, *, overwrite: bool = False) -> Path | None:
        """Write the latent table (with any embedding/cluster columns) as CSV or Parquet, atomically."""
        try:
            if self.latents is None:
                raise InputError("there is no latent table yet; embed a crop set first")
            written = export_table(self.latents, path, overwrite=overwrite)
        except InputError as err:
            self._report(err)
            return None
        show_info(f"Latent table saved to {written}")
        return written
