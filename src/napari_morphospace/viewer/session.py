"""What the widgets of one viewer share: crop set, model, the per-cell table and the selected cells.

Widgets never hold references to each other. One widget sets a value here and
the others listen to the signal, so the Cells widget hands its crop set to the
Train widget without either knowing the other exists.

The per-cell table (:attr:`Session.cells`, schema in :mod:`core.analysis.cell_table`)
has one writer per kind of column, all through the session: the crop set
starts it, :attr:`Session.latents` (Embed, an opened analysis) adds the model
results, :meth:`Session.open_table` features measured elsewhere,
:meth:`Session.set_columns` (Scatter: 2D embeddings, clusters) and
:meth:`Session.set_annotations` (Annotate) the rest. After every change
:class:`~napari_morphospace.viewer.features.FeaturesWriter` rewrites the
source layers' ``features`` from it, and the Analysis widget saves it.

napari hands each plugin widget its own ``PublicOnlyProxy`` of the viewer,
and a widget closed from its dock goes away with its proxy: sessions are
keyed on the real viewer behind any proxy, so every widget of a viewer, in
any order, closed and reopened, gets the same session.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from psygnal import Signal

from ..core.analysis import cell_table as features
from ..core.errors import InputError
from .features import FeaturesWriter
from .layers import unwrap


class Session:
    """Evented holder of the crop set, model bundle, per-cell table and selected cells of one viewer.

    Cells are named by their crop id (``crop_set.table["crop_id"]``): the
    scatter plot publishes its selection and its named selections here, the
    Annotate, Analysis and Latent space widgets read them.
    """

    crop_set_changed = Signal(object)
    bundle_changed = Signal(object)
    #: Emitted with :attr:`latents` when a model's results replace the last ones (or are cleared: None).
    latents_changed = Signal(object)
    #: Emitted with the names of the columns that changed, after every change of :attr:`cells`.
    cells_changed = Signal(object)
    #: Emitted with the crop ids (sorted int64 array) of the cells selected now.
    selection_changed = Signal(object)
    #: Emitted with the named selections (dict name -> sorted tuple of crop ids).
    named_selections_changed = Signal(object)

    def __init__(self, viewer: Any = None) -> None:
        #: Folder the current crop set was saved to or loaded from (None: only in memory);
        #: set before ``crop_set`` so listeners see both.
        self.crop_set_folder: Path | None = None
        #: Analysis folder opened or saved in this viewer; annotations autosave there.
        self.analysis_folder: Path | None = None
        #: Metrics of the last classifier trained in this viewer (core.classifier.report.metrics_document);
        #: saved with the analysis as classifier.json, which the report shows.
        self.classifier_metrics: dict | None = None
        #: The annotation classes (``core.project.annotations.AnnotationClass``) of the Annotate widget,
        #: saved with the analysis.
        self.annotation_classes: list = []
        self._crop_set: Any = None
        self._bundle: Any = None
        self._cells: pd.DataFrame | None = None
        self._latents: pd.DataFrame | None = None
        self._selection = np.zeros(0, np.int64)
        self._named_selections: dict[str, tuple[int, ...]] = {}
        #: Keeps the source layers' features equal to the cells that have a latent (None without a viewer).
        self.features_writer = FeaturesWriter(viewer, self) if viewer is not None else None

    @property
    def crop_set(self) -> Any:
        return self._crop_set

    @crop_set.setter
    def crop_set(self, value: Any) -> None:
        """A new crop set starts a new per-cell table: the last model's results belonged to other crops."""
        had_latents = self._latents is not None
        self._crop_set = value
        self._set_cells(None if value is None else features.cell_table(value.table), columns=None)
        self.crop_set_changed.emit(value)
        if had_latents:
            self.latents_changed.emit(None)

    @property
    def bundle(self) -> Any:
        return self._bundle

    @bundle.setter
    def bundle(self, value: Any) -> None:
        self._bundle = value
        self.bundle_changed.emit(value)

    # ------------------------------------------------------------------ the per-cell table
    @property
    def cells(self) -> pd.DataFrame | None:
        """The per-cell table: one row per crop (``core.analysis.cell_table`` schema);
        None before any crop set or latents.

        Read it, never change it in place: update it through :attr:`latents`,
        :meth:`set_columns` and :meth:`set_annotations`.
        """
        return self._cells

    @property
    def latents(self) -> pd.DataFrame | None:
        """The cells that have a latent, with every column of the cell table; None before an embedding."""
        return self._latents

    @latents.setter
    def latents(self, table: pd.DataFrame | None) -> None:
        """Take a model's results (``crop_id``, ``mu_*``, ``logvar_*``, ...), replacing the last model's."""
        cells = features.merge_latents(self._cells, table)
        self._set_cells(cells, columns=None)
        self.latents_changed.emit(self._latents)

    def open_table(self, table: pd.DataFrame) -> None:
        """Take cells measured elsewhere (:func:`core.analysis.external_table.external_cells`) in place of a model's
        results.

        With a crop set, the table's features become its cells' results (as an
        embedding's latents would); without one, the table's rows are the cells.
        """
        if self._crop_set is not None:
            self.latents = table
            return
        self._set_cells(features.cell_table(table), columns=None)
        self.latents_changed.emit(self._latents)

    def set_columns(self, crop_ids: Iterable[int], columns: Mapping[str, Any]) -> None:
        """Set result columns (2D embeddings, clusters) for the cells ``crop_ids``, one value per cell."""
        self._set_cells(features.set_columns(self._require_cells(), crop_ids, columns), columns=tuple(columns))

    def set_annotations(self, annotations: pd.Series) -> None:
        """Set every cell's annotation from ``annotations`` (crop id -> class name; cells not in it get "")."""
        self._set_cells(features.set_annotations(self._require_cells(), annotations), columns=(features.ANNOTATION,))

    def _require_cells(self) -> pd.DataFrame:
        if self._cells is None:
            raise InputError("there are no cells yet: build or load a crop set in the Cells widget first")
        return self._cells

    def _set_cells(self, cells: pd.DataFrame | None, columns: tuple[str, ...] | None) -> None:
        """Replace the table and tell the listeners which columns changed (None: any)."""
        self._cells = cells
        embedded = cells is not None and bool(features.latent_columns(cells))
        self._latents = features.rows_with_latents(cells)[0] if embedded else None
        self.cells_changed.emit(columns)

    # ------------------------------------------------------------------ selections
    @property
    def selection(self) -> np.ndarray:
        """Crop ids of the cells selected now (sorted, unique, int64; empty: none)."""
        return self._selection

    @selection.setter
    def selection(self, crop_ids: Iterable[int]) -> None:
        self._selection = np.unique(np.fromiter(crop_ids, dtype=np.int64))
        self.selection_changed.emit(self._selection)

    @property
    def named_selections(self) -> dict[str, tuple[int, ...]]:
        """Selections kept under a name: name -> sorted crop ids. Replace the whole dict to change it."""
        return dict(self._named_selections)

    @named_selections.setter
    def named_selections(self, selections: Mapping[str, Iterable[int]]) -> None:
        self._named_selections = {str(name): tuple(sorted({int(i) for i in ids})) for name, ids in selections.items()}
        self.named_selections_changed.emit(self.named_selections)


_SESSIONS: weakref.WeakKeyDictionary[Any, Session] = weakref.WeakKeyDictionary()


def session_for(viewer: Any) -> Session:
    """The one :class:`Session` of ``viewer`` (or of the viewer behind a proxy), created on first use."""
    viewer = unwrap(viewer)
    session = _SESSIONS.get(viewer)
    if session is None:
        session = _SESSIONS[viewer] = Session(viewer)
    return session
