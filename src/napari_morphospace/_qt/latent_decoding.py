"""Live decoding for the Latent space dock: the newest latent vector decoded off the GUI thread, shown as it comes.

The sliders decode with the bundle's model, or, for the stacked conditional
model, with its reference model (:func:`traversable_model`). The decoder thread
(:class:`~napari_morphospace.core.analysis.traversal.LatentDecoder`)
coalesces requests: a slider dragged fast asks many times, the thread decodes
the newest. Its results reach the GUI thread through a queued signal; when
several arrived before the GUI got to them, only the newest is shown. The
decoded cell is shown and placed by :mod:`~napari_morphospace.viewer.decoded`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from qtpy.QtCore import QObject, Qt, Signal

from ..core.analysis.traversal import LatentDecoder
from ..core.models import StackedConditionalVAE
from ..core.training.bundle import Bundle
from ..viewer.decoded import place_decoded, show_decoded


@dataclass(frozen=True)
class SliderModel:
    """The model the sliders decode with, its channel names, one slider unit per dimension, and what to say of it."""

    model: torch.nn.Module
    channel_names: list[str]
    latent_scale: np.ndarray  # a slider at +1 moves its dimension by latent_scale[dim]
    info: str


def traversable_model(bundle: Bundle) -> SliderModel:
    """The :class:`SliderModel` of a bundle, in eval mode.

    The stacked conditional model's target decoder needs a reference image, so
    its unconditional reference model (the reference channels) is traversed.
    """
    model, names, note = bundle.model, list(bundle.channel_names), ""
    if isinstance(model, StackedConditionalVAE):
        names = [bundle.channel_names[c] for c in model.reference_channels]
        model, note = (
            model.reference,
            f"; conditional model: the sliders traverse its reference model ({', '.join(names)})",
        )
    model.eval()
    dim = int(model.latent_dim)
    scale = getattr(model, "latent_scale", None)
    latent_scale = np.ones(dim, np.float32) if scale is None else scale.detach().cpu().numpy().astype(np.float32)
    shape = "×".join(map(str, bundle.input_shape))
    info = f"{bundle.model_settings.model}, {dim} latent dimensions, crops {shape} ({', '.join(bundle.channel_names)})"
    return SliderModel(model, names, latent_scale, info + note)


class LiveDecoding(QObject):
    """Decode requested latent vectors in a thread and show each newest result in the viewer's "decoded cell" layers.

    Parameters
    ----------
    viewer : napari Viewer (or its proxy)
    spacing : callable
        ``spacing(spatial_ndim)``: the physical size of a crop pixel.
    anchor : callable
        ``anchor()``: world corners of the cell the walk starts from, or None.
    on_error : callable
        Called on the GUI thread with an error of the decoder thread.
    """

    _frame_ready = Signal()
    _error = Signal(object)
    #: Emitted on the GUI thread after the "decoded cell" layer shows a new frame, with its latent vector.
    frame_shown = Signal(object)

    def __init__(
        self,
        viewer: Any,
        *,
        spacing: Callable[[int], tuple[float, ...]],
        anchor: Callable[[], Any],
        on_error: Callable[[BaseException], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer, self._spacing, self._anchor = viewer, spacing, anchor
        self.channel_names: list[str] = []
        self.frames_shown = 0
        self.shown_z: np.ndarray | None = None
        self._decoder: LatentDecoder | None = None
        self._latest: tuple[int, np.ndarray, np.ndarray] | None = None
        self._latest_lock = threading.Lock()
        self._shown_serial = 0
        self._shown_3d = False
        self._place_next = True
        self._frame_ready.connect(self._show_latest, Qt.ConnectionType.QueuedConnection)
        self._error.connect(on_error, Qt.ConnectionType.QueuedConnection)

    def set_model(self, model: torch.nn.Module, channel_names: list[str]) -> None:
        """Decode with ``model`` from now on (a new decoder thread)."""
        self.close()
        self.channel_names = channel_names
        self._shown_3d = False
        self._decoder = LatentDecoder(model, self._on_decoded, on_error=self._error.emit)

    def request(self, z: np.ndarray) -> None:
        """Ask for ``z`` to be decoded; a newer request replaces one not yet started."""
        if self._decoder is not None:
            self._decoder.request(z)

    def place_next(self) -> None:
        """Put the next frame where the user looks (a new start point), beside the cell it starts from."""
        self._place_next = True

    def _on_decoded(self, z: np.ndarray, image: np.ndarray) -> None:
        """Decoder thread: keep the newest result and wake the GUI thread (never touches a widget)."""
        with self._latest_lock:
            serial = 1 if self._latest is None else self._latest[0] + 1
            self._latest = (serial, z, image)
        self._frame_ready.emit()

    def _show_latest(self) -> None:
        with self._latest_lock:
            latest = self._latest
        if latest is None or latest[0] == self._shown_serial:
            return  # several results arrived before the GUI got here: the newest was shown already
        serial, z, image = latest
        self._shown_serial = serial
        layers = show_decoded(self.viewer, image, self.channel_names, spacing=self._spacing(image.ndim - 1))
        if self._place_next:
            self._place_next = False
            place_decoded(self.viewer, layers, self._anchor())
        self.frames_shown += 1
        self.shown_z = z
        if image.ndim == 4 and not self._shown_3d:
            self._shown_3d = True
            self.viewer.dims.ndisplay = 3
        self.frame_shown.emit(z)

    def close(self) -> None:
        """Stop the decoder thread."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
