"""Read microscopy stacks into arrays with axes, physical pixel sizes and channel names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AXES_ORDER = "TCZYX"


@dataclass
class Stack:
    """An image with named axes drawn from ``TCZYX`` (missing axes dropped).

    ``data`` is a numpy array, or a dask array for files too large to load;
    ``scale`` holds the physical pixel size per spatial/time axis (e.g.
    ``{"Z": 0.5, "Y": 0.1, "X": 0.1}``, micrometres; 1.0 where unknown);
    ``channel_names`` has one entry per ``C`` (one name when there is no C axis).
    """

    data: Any
    axes: str
    scale: dict[str, float] = field(default_factory=dict)
    channel_names: list[str] = field(default_factory=list)
    source: str = ""
    units: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.axes) != self.data.ndim:
            raise ValueError(f"axes {self.axes!r} do not match an array of {self.data.ndim} dimensions")
        if any(a not in AXES_ORDER for a in self.axes) or len(set(self.axes)) != len(self.axes):
            raise ValueError(f"axes {self.axes!r} must be distinct letters from {AXES_ORDER}")

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.axes if a in "ZYX")

    @property
    def name(self) -> str:
        return Path(self.source).name if self.source else "image"
