"""What the widgets of one viewer share: the current crop set, model and latent table.

Widgets never hold references to each other. One widget sets a value here and
the others listen to the signal, so the Cells widget hands its crop set to the
Train widget without either knowing the other exists.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from psygnal import Signal


class Session:
    """Evented holder of the crop set, the model bundle and the latent table of one viewer."""

    crop_set_changed = Signal(object)
    bundle_changed = Signal(object)
    latents_changed = Signal(object)

    def __init__(self) -> None:
        #: Folder the current crop set was saved to or loaded from (None: only in memory);
        #: set before ``crop_set`` so listeners see both.
        self.crop_set_folder: Path | None = None
        #: Analysis folder opened or saved in this viewer; annotations autosave there.
        self.analysis_folder: Path | None = None
        self._crop_set: Any = None
        self._bundle: Any = None
        self._latents: Any = None

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


_SESSIONS: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()


def session_for(viewer: Any) -> Session:
    """The one :class:`Session` of ``viewer``, created on first use."""
    if viewer not in _SESSIONS:
        _SESSIONS[viewer] = Session()
    return _SESSIONS[viewer]
