"""What the widgets of one viewer share: crop set, model, latent table and the selected cells.

Widgets never hold references to each other. One widget sets a value here and
the others listen to the signal, so the Cells widget hands its crop set to the
Train widget without either knowing the other exists.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal


class Session:
    """Evented holder of the crop set, model bundle, latent table and selected cells of one viewer.

    Cells are named by their crop id (``crop_set.table["crop_id"]``): the
    scatter plot publishes its selection and its named selections here, the
    Annotate, Analysis and Latent space widgets read them.
    """

    crop_set_changed = Signal(object)
    bundle_changed = Signal(object)
    latents_changed = Signal(object)
    #: Emitted with the crop ids (sorted int64 array) of the cells selected now.
    selection_changed = Signal(object)
    #: Emitted with the named selections (dict name -> sorted tuple of crop ids).
    named_selections_changed = Signal(object)

    def __init__(self) -> None:
        #: Folder the current crop set was saved to or loaded from (None: only in memory);
        #: set before ``crop_set`` so listeners see both.
        self.crop_set_folder: Path | None = None
        #: Analysis folder opened or saved in this viewer; annotations autosave there.
        self.analysis_folder: Path | None = None
        #: Metrics of the last classifier trained in this viewer (core.classifier_report.metrics_document);
        #: saved with the analysis as classifier.json, which the report shows.
        self.classifier_metrics: dict | None = None
        self._crop_set: Any = None
        self._bundle: Any = None
        self._latents: Any = None
        self._selection = np.zeros(0, np.int64)
        self._named_selections: dict[str, tuple[int, ...]] = {}

    @property
    def crop_set(self) -> Any:
        return self._crop_set

    @crop_set.setter
    def crop_set(self, value: Any) -> None:
        self._crop_set = value
        self.crop_set_changed.emit(value)

    @property
    def bundle(self) -> Any:
        return self._bundle

    @bundle.setter
    def bundle(self, value: Any) -> None:
        self._bundle = value
        self.bundle_changed.emit(value)

    @property
    def latents(self) -> Any:
        return self._latents

    @latents.setter
    def latents(self, value: Any) -> None:
        self._latents = value
        self.latents_changed.emit(value)

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


_SESSIONS: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()


def session_for(viewer: Any) -> Session:
    """The one :class:`Session` of ``viewer``, created on first use."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]
