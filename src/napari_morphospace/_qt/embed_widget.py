"""The "Embed" widget: encode a crop set with a model bundle; the latents join the session's per-cell table.

The crops' latents go to ``session.latents``; the session's features writer
(:mod:`napari_morphospace.viewer.features`) then puts them, one row per cell,
into the ``features`` of every Labels layer the crops came from, where the
scatter plot and other plugins read them. Loading, embedding, the optional 2D
embedding and the clustering run in a background worker that yields typed
messages.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from magicgui.widgets import CheckBox, ComboBox, FileEdit, PushButton, SpinBox
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ..core.analysis.cell_table import (
    EMBEDDINGS,
    add_cluster_column,
    add_embedding_columns,
)
from ..core.analysis.embed import embed
from ..core.cells.crop_set import CropSet, load_crop_set
from ..core.errors import InputError
from ..core.project.export import export_table
from ..core.training.bundle import Bundle, check_compatible, load_bundle
from ..viewer.session import session_for
from .dock import scroll_in_dock
from .docking import tab_with_other_docks
from .tasks import Tasks
from .workers import Progress

NONE = "none"


@dataclass
class EmbedResult:
    """What the worker hands back: the latent table, and the model and crops it came from."""

    latents: pd.DataFrame
    bundle: Bundle
    crop_set: CropSet
    differences: list[str]  # preprocessing differences the user accepted


@dataclass
class EmbedPlan:
    """Everything the worker needs, read from the widget and the viewer on the GUI thread."""

    bundle: Bundle | Path
    crop_set: CropSet | Path
    include_logvar: bool
    embedding: str
    clustering: str
    n_clusters: int
    device: str
    allow_preprocessing_mismatch: bool = False


def run_embedding(send: Any, plan: EmbedPlan, stop_event: threading.Event) -> EmbedResult | None:
    """Load, check, embed and add the optional columns; None when cancelled."""
    send(Progress("Loading the model and the crops", 0, 0))
    bundle = plan.bundle if isinstance(plan.bundle, Bundle) else load_bundle(plan.bundle)
    crop_set = plan.crop_set if isinstance(plan.crop_set, CropSet) else load_crop_set(plan.crop_set)
    differences = check_compatible(bundle, crop_set, allow_preprocessing_mismatch=plan.allow_preprocessing_mismatch)
    latents = embed(
        bundle,
        crop_set,
        device=plan.device,
        stop_event=stop_event,
        on_progress=lambda done, total: send(Progress("Embedding crops", done, total)),
        allow_preprocessing_mismatch=plan.allow_preprocessing_mismatch,
    )
    if stop_event.is_set():
        return None
    if plan.embedding != NONE:
        send(Progress(f"Computing the {plan.embedding} embedding", 0, 0))
        latents = add_embedding_columns(latents, plan.embedding)
    if plan.clustering != NONE:
        send(Progress(f"Clustering ({plan.clustering})", 0, 0))
        latents = add_cluster_column(latents, plan.clustering, n_clusters=plan.n_clusters)
    return EmbedResult(latents, bundle, crop_set, differences)


def _same_crops(a: CropSet, b: CropSet) -> bool:
    """The two crop sets hold the same crops (ids, sources, labels and frames): latents of one fit the other."""
    columns = ["crop_id", "source", "label_id", "t"]
    return a is b or (
        len(a) == len(b) and a.table[columns].reset_index(drop=True).equals(b.table[columns].reset_index(drop=True))
    )


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
        tab_with_other_docks(self)  # opened from the Plugins menu, it joins the other Morphospace tabs
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.latents: pd.DataFrame | None = None
        self._stop_event = threading.Event()

        self.bundle_folder = FileEdit(mode="d", label="model bundle", value="")
        self.crop_folder = FileEdit(mode="d", label="crop set", value="")
        self.session_info = QLabel()
        self.session_info.setWordWrap(True)
        self.allow_mismatch = CheckBox(
            value=False,
            text="accept other preprocessing (crops made differently from the model's training crops; not recommended)",
        )
        self.include_logvar = CheckBox(value=True, text="write log-variances (logvar_*) to the layers")
        self.embedding = ComboBox(choices=[NONE, *EMBEDDINGS], value=NONE, label="2D embedding")
        self.clustering = ComboBox(choices=[NONE, "kmeans", "gmm", "hdbscan"], value=NONE, label="clustering")
        self.n_clusters = SpinBox(value=3, min=1, max=100, label="clusters")
        self.embed_button = PushButton(text="Embed")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.save_button = PushButton(text="Save latent table…", enabled=False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tasks = Tasks("Embed", status=self.status.setText, on_busy=self._on_busy, parent=self)
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
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(inputs)
        layout.addWidget(options)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addStretch()
        scroll_in_dock(self, content)

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
            raise InputError(
                "no model: choose a model bundle folder (written by the Train widget or 'morphospace train')"
            )
        if crop_set is None:
            raise InputError("no crop set: build one with the Cells widget or choose a crop-set folder")
        if isinstance(bundle, (str, Path)):
            bundle = Path(bundle)
        if isinstance(bundle, Bundle) and isinstance(crop_set, CropSet):
            check_compatible(bundle, crop_set, allow_preprocessing_mismatch=self.allow_mismatch.value)
        return EmbedPlan(
            bundle=bundle,
            crop_set=crop_set,
            include_logvar=self.include_logvar.value,
            embedding=self.embedding.value,
            clustering=self.clustering.value,
            n_clusters=self.n_clusters.value,
            device="cuda" if torch.cuda.is_available() else "cpu",
            allow_preprocessing_mismatch=self.allow_mismatch.value,
        )

    def embed(self) -> Any:
        """Start embedding in a background worker; returns the worker (None when the input was refused or one runs)."""
        if self.tasks.busy:
            return None
        try:
            plan = self._plan()
        except InputError as err:
            self.tasks.report(err)
            return None
        self._stop_event = threading.Event()
        return self.tasks.start(
            run_embedding,
            plan,
            self._stop_event,
            on_done=self._on_done,
            action="Embedding",
            busy_text="Embedding…",
            progress="Embedding crops",
        )

    def cancel(self) -> None:
        """Stop embedding before the next batch; nothing is written."""
        self._stop_event.set()
        self.tasks.show("Cancelling…")

    def _on_busy(self, busy: bool) -> None:
        self.embed_button.enabled, self.cancel_button.enabled = not busy, busy

    def _on_done(self, result: EmbedResult | None) -> None:
        if result is None:
            self.tasks.show("Cancelled: no latents were written.")
            return
        self.latents = result.latents
        self.save_button.enabled = True
        if self.session.crop_set is None or not _same_crops(self.session.crop_set, result.crop_set):
            # crops chosen as a folder: the session's cells are these crops now
            self.session.crop_set_folder = _folder(self.crop_folder)
            self.session.crop_set = result.crop_set
        if self.session.bundle is not result.bundle:
            self.session.bundle = result.bundle  # the model of the session's latents, for the Latent space widget
        writer = self.session.features_writer
        writer.include_logvar = self.include_logvar.value
        self.session.latents = result.latents  # the features writer puts them into the source layers
        join = writer.last_join
        written = list(join.tables) if join is not None else []
        dims = len([c for c in result.latents.columns if c.startswith("mu_")])
        names = ", ".join(repr(n) for n in written) if len(written) <= 3 else f"{len(written)} Labels layers"
        text = f"{len(result.latents)} crops embedded in {dims} dimensions; features written to {names or 'no layer'}"
        show_info(text)
        if result.differences:
            show_warning(
                "embedded crops made differently from the model's training crops: " + "; ".join(result.differences)
            )
        unmatched = join.describe_unmatched() if join is not None else ""
        if unmatched:
            show_warning(unmatched)
            text += f"\n⚠ {unmatched}"
        self.tasks.show(text)

    # ----------------------------------------------------------------- saving

    def _choose_save_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save latent table", "latents.csv", "CSV (*.csv);;Parquet (*.parquet)"
        )
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
            self.tasks.report(err)
            return None
        show_info(f"Latent table saved to {written}")
        return written
