"""The preprocessing editor of the Cells widget: a check box per step, each with its parameters, and presets.

The steps and their parameters are read from :data:`core.cells.preprocess.STEPS`
(keyword-only arguments with their defaults), so a new step appears here
without code; :meth:`StepEditor.pipeline` is validated like a config file.
"""

from __future__ import annotations

import inspect
from typing import Any, get_type_hints

from magicgui.widgets import CheckBox, Container, Widget, create_widget

from ..core.cells.preprocess import STEPS, PreprocessPipeline, PreprocessStep
from .forms import field_widget

#: Steps in the order the editor applies them. It covers both published
#: pipelines (macrophage: grayscale, resize, CLAHE, sharpen, min-max;
#: Statistical Cell: subtract mode, align, centre); a config file may order
#: steps freely.
STEP_ORDER = (
    "to_grayscale",
    "resize",
    "subtract_mode",
    "clahe",
    "unsharp_mask",
    "align_major_axis",
    "center_on_channel",
    "mask_object",
    "normalize_percentile",
    "normalize_minmax",
)
PRESETS = {
    "none": (),
    "macrophage study": ("to_grayscale", "resize", "clahe", "unsharp_mask", "normalize_minmax"),
    "Statistical Cell": ("subtract_mode", "align_major_axis", "center_on_channel"),
}


def _step_value_widget(name: str, annotation: Any, default: Any, crop_size: tuple[int, ...]) -> Widget:
    """An editor for one step parameter; sequences become fixed-length tuples of their default."""
    if name == "shape":
        return create_widget(value=tuple(crop_size), name=name, label=name)
    if isinstance(default, tuple):
        return create_widget(value=default, name=name, label=name)
    if default is None:
        return field_widget(name, int | None, None, {"min": 1, "max": 4096})
    options: dict[str, Any] = {}
    if isinstance(default, float):
        options = {"min": 0.0, "max": 1000.0, "step": 0.005 if default < 0.1 else 0.1}
    elif isinstance(default, int):
        options = {"min": 0, "max": 100000}
    return create_widget(
        value=default, annotation=type(default), name=name, label=name.replace("_", " "), options=options
    )


class StepEditor(Container):
    """Check boxes for the preprocessing steps in :data:`STEP_ORDER`, each with its parameters."""

    def __init__(self, crop_size: tuple[int, ...] = (64, 64)) -> None:
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self._params: dict[str, Container] = {}
        self._checks: dict[str, CheckBox] = {}
        for step in STEP_ORDER:
            function = STEPS[step]
            hints = get_type_hints(function)
            widgets = [
                _step_value_widget(key, hints.get(key), p.default if p.default is not p.empty else None, crop_size)
                for key, p in inspect.signature(function).parameters.items()
                if p.kind is p.KEYWORD_ONLY and key != "mask"
            ]
            check = CheckBox(value=False, text=step.replace("_", " "), name=step)
            params = Container(widgets=widgets, name=f"{step}_params", visible=False)
            params.margins = (16, 0, 0, 0)
            check.changed.connect(lambda on, params=params: setattr(params, "visible", on))
            self._checks[step], self._params[step] = check, params
            self.extend([check, params])

    def pipeline(self) -> PreprocessPipeline:
        """The checked steps with their parameters, validated like a config file."""
        steps = []
        for step, check in self._checks.items():
            if check.value:
                params = {}
                for widget in self._params[step]:
                    if isinstance(widget, Container):  # an optional value with its on/off box
                        params[widget.name] = widget["value"].value if widget["enabled"].value else None
                    else:
                        value = widget.value
                        params[widget.name] = list(value) if isinstance(value, tuple) else value
                steps.append(PreprocessStep(step, {k: v for k, v in params.items() if v is not None}))
        return PreprocessPipeline.from_dict(PreprocessPipeline(steps).to_dict())

    def set_steps(self, names: tuple[str, ...]) -> None:
        for step, check in self._checks.items():
            check.value = step in names

    def set_resize_shape(self, shape: tuple[int, ...]) -> None:
        """Show ``shape`` as the resize target; a new box when the number of axes changes (2D <-> 3D)."""
        params, shape = self._params["resize"], tuple(shape)
        current = params["shape"]
        if len(current.value) == len(shape):
            current.value = shape
            return
        index = params.index(current)
        params.remove(current)
        params.insert(index, _step_value_widget("shape", tuple[int, ...], None, shape))
