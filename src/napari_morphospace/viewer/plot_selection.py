"""The selected rows of a scatter plot: shown in the image, shared through the session, kept under names.

Qt-free, so a script selects cells exactly as the Scatter dock does.
Selecting rows of :class:`~napari_morphospace.viewer.plot_sources.PlotSources`
highlights their cells (:class:`~napari_morphospace.viewer.highlights.SelectionHighlights`)
and publishes their crop ids as the session's selection, which the Latent
space, Annotate and Analysis docks follow; a selection made elsewhere
selects the plotted rows of those cells without publishing back (the plot
may show only some of them). Rows without a ``crop_id`` column (features not
made by morphospace) are not published. Named selections keep crop ids, or
``(source, t, label id)`` keys without them; those of crop ids go to the
session too, so they can be annotated and are saved with the analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..core.cells.selection import NamedSelections
from .highlights import SelectionHighlights
from .plot_sources import PlotSources
from .session import session_for


class PlotSelection:
    """Which plot rows are selected (``selected``, one bool per row); ``on_change`` hears every change.

    It follows the session's selection from the start (:meth:`follow`).
    """

    def __init__(self, viewer: Any, on_change: Callable[[], None] | None = None) -> None:
        self.session = session_for(viewer)
        self.sources = PlotSources(viewer)
        self.selected = np.zeros(0, bool)
        self.named = NamedSelections()
        self.highlights = SelectionHighlights(viewer)
        self._on_change = on_change
        self._linking = False  # True while a selection propagates: ignore re-entrant selections
        self._publishing = False  # True while this writes to the session: ignore its echo
        self.session.selection_changed.connect(self.follow)

    def use(self, sources: PlotSources) -> None:
        """Select among the rows of other sources: nothing selected yet."""
        self.sources = sources
        self.selected = np.zeros(len(sources), bool)

    @property
    def rows(self) -> np.ndarray:
        """Plot rows currently selected, sorted."""
        return np.flatnonzero(self.selected)

    def select(self, rows: Sequence[int] | np.ndarray, add: bool = False, publish: bool = True) -> None:
        """Select these plot rows (or add them), highlight their cells and (``publish``) hand them to the session."""
        if self._linking:
            return
        self._linking = True
        try:
            if not add:
                self.selected[:] = False
            self.selected[np.asarray(rows, dtype=np.int64)] = True
            if self._on_change is not None:
                self._on_change()
            self.show_highlights()
            crop_ids = self.sources.crop_ids()
            if publish and crop_ids is not None:
                with self._writing():
                    self.session.selection = crop_ids[self.rows]
        finally:
            self._linking = False

    def show_highlights(self) -> None:
        """Rewrite the highlight layers for the source (and frame) shown now."""
        self.highlights.show(self.sources, self.selected)

    def follow(self, selection: np.ndarray) -> None:
        """Select the plotted cells of a session selection (crop ids) made elsewhere; not published back."""
        crop_ids = None if self._publishing or not self.sources.tables else self.sources.crop_ids()
        if crop_ids is not None:
            self.select(np.flatnonzero(np.isin(crop_ids, selection)), publish=False)

    def save(self, name: str) -> None:
        """Keep the current selection under ``name`` (crop ids also in the session's named selections)."""
        self.named.save(name, self.sources.row_keys()[self.rows])
        crop_ids = self.sources.crop_ids()
        if crop_ids is not None:
            with self._writing():
                self.session.named_selections = {**self.session.named_selections, name: crop_ids[self.rows]}

    def keep(self, selections: Mapping[str, Sequence[int]]) -> None:
        """Keep named selections of crop ids made elsewhere (an opened analysis); not its own echo."""
        if not self._publishing:
            for name, crop_ids in selections.items():
                self.named.save(name, crop_ids)

    def recall(self, name: str) -> np.ndarray:
        """Select the plotted cells of the selection kept under ``name``; returns the rows."""
        keys = list(self.named.get(name))
        positions = self.sources.row_keys().get_indexer(keys) if keys else np.zeros(0, np.int64)
        rows = np.sort(positions[positions >= 0])
        self.select(rows)
        return rows

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """While this selection writes to the session, the session's echo of it is ignored."""
        self._publishing = True
        try:
            yield
        finally:
            self._publishing = False
