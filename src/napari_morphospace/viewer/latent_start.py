"""Where the Latent space sliders start: the origin, a group's mean μ, or one cell's μ.

Qt-free, so a script starts the walk where the dock does. The start cell is
a row of the latent table: the first cell of the session's selection (a click
in the Scatter plot, or in the image with the Scatter dock open), or the label
selected in a Labels layer (:meth:`StartPoint.pick_cell`). While the start is
that cell, the decoded cell appears beside it (:meth:`StartPoint.cell_box`).
Groups are named by their text, as the dock's combo boxes show them (a group
column may hold numbers).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from ..core.analysis.traversal import find_cell, start_vector
from ..core.errors import InputError
from .decoded import cell_box
from .layers import selected_cell
from .session import session_for

Start = Literal["origin", "group mean", "cell"]
STARTS: tuple[Start, ...] = ("origin", "group mean", "cell")


def check_start(kind: str) -> None:
    """Refuse a start that is none of :data:`STARTS`."""
    if kind not in STARTS:
        raise InputError(f"unknown start {kind!r}; choose one of {', '.join(STARTS)}")


class StartPoint:
    """The latent table the walk starts in (``latents``), its start cell (``row``), and the start vector of each
    kind."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.session = session_for(viewer)
        self.latents: pd.DataFrame | None = None
        self.row: int | None = None

    def use(self, latents: pd.DataFrame | None) -> None:
        """Start in another latent table (None: none): no start cell yet."""
        self.latents, self.row = latents, None

    def selected_row(self) -> int | None:
        """Row of the first cell selected in the session, or None (nothing selected, or not in the table)."""
        selection = self.session.selection
        if self.latents is None or not len(selection) or "crop_id" not in self.latents.columns:
            return None
        rows = np.flatnonzero(self.latents["crop_id"].to_numpy() == selection[0])
        return int(rows[0]) if rows.size else None

    def follow_selection(self) -> bool:
        """Make the session's first selected cell the start cell; True when the start cell changed."""
        row = self.selected_row()
        if row is None or row == self.row:
            return False
        self.row = row
        return True

    def pick_cell(self, spatial_ndim: int, layer: Any = None) -> tuple[str, int, int | None]:
        """Make the label selected in a Labels layer (the active one by default) the start cell; its (source, label, t).

        Raises
        ------
        InputError
            Without a latent table, or when the cell is not in it.
        """
        if self.latents is None:
            raise InputError("starting from a cell needs the latent table: embed the crops with this model first")
        source, label, t = selected_cell(self.viewer, spatial_ndim, layer)
        self.row = find_cell(self.latents, source, label, t)
        return source, label, t

    def group(self, text: str) -> Any:
        """The group value of the latent table whose text is ``text`` (``text`` itself when there is none)."""
        if self.latents is None or "group" not in self.latents.columns:
            return text
        return next((g for g in pd.unique(self.latents["group"].dropna()) if str(g) == text), text)

    def vector(self, kind: Start, n: int, group: str = "") -> np.ndarray | None:
        """The start vector of ``kind`` (``n`` dimensions); None for a cell start before any cell was chosen.

        Raises
        ------
        InputError
            For an unknown kind, or a start the latent table cannot give
            (the caller starts from the origin instead).
        """
        check_start(kind)
        if kind == "cell" and self.row is None:
            self.row = self.selected_row()
            if self.row is None:
                return None
        try:
            return start_vector(self.latents, n, kind=kind, group=self.group(group), row=self.row)
        except InputError as err:
            raise InputError(f"{err}; starting from the origin instead") from err

    def cell_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """World corners of the start cell in the viewer (None: no start cell, or not shown)."""
        if self.row is None or self.latents is None:
            return None
        return cell_box(self.viewer, self.latents.iloc[self.row])
