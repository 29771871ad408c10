"""Combo boxes changed by the program, not the user: no signals, so no handler takes it for a choice."""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtWidgets import QComboBox


def set_quietly(combo: QComboBox, text: str) -> None:
    """Show ``text`` in a combo without emitting its signals."""
    combo.blockSignals(True)
    combo.setCurrentText(text)
    combo.blockSignals(False)


def fill_quietly(combo: QComboBox, items: Sequence[str], default: int = 0) -> None:
    """Replace a combo's items without signals; select item ``default`` when there is one."""
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(list(items))
    if len(items) > default:
        combo.setCurrentIndex(default)
    combo.blockSignals(False)
