"""Settings dataclasses as magicgui forms: one typed definition, rendered and read back.

The widgets never define their own copies of a setting: they render the core
dataclass with :func:`settings_form` and rebuild it with :func:`read_form`,
which goes through :func:`core.config.from_dict`, so the checks are the same as
for a YAML config on the command line.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Union, get_args, get_origin, get_type_hints

from magicgui.widgets import CheckBox, Container, LineEdit, Widget, create_widget

from ..core.config import from_dict, to_dict


def _optional_inner(annotation: Any) -> Any | None:
    """The X of ``X | None``, or None when the annotation is not optional."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0]
    return None


def _label(name: str) -> str:
    return name.replace("_", " ")


def _is_size(annotation: Any) -> bool:
    """True for ``int | tuple[int, ...]``: one size for every axis, or one per axis."""
    return get_origin(annotation) in (Union, types.UnionType) and set(get_args(annotation)) == {int, tuple[int, ...]}


def _parse_size(text: str) -> int | list[int]:
    """``"64"`` -> 64, ``"16, 64, 64"`` -> [16, 64, 64]; anything else is left for the checks to refuse."""
    parts = [p.strip() for p in text.replace("x", ",").replace("×", ",").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        return text  # from_dict names the field and says what it expected
    return values[0] if len(values) == 1 else values


def field_widget(name: str, annotation: Any, value: Any, options: dict[str, Any]) -> Widget:
    """The editor of one setting; optional settings get an on/off box, sizes a text field ("64" or "16, 64, 64")."""
    if _is_size(annotation):
        text = str(value) if isinstance(value, int) else ", ".join(map(str, value))
        return LineEdit(value=text, name=name, label=_label(name), tooltip="one size for every axis, or Z, Y, X")
    inner = _optional_inner(annotation)
    if inner is None:
        return create_widget(value=value, annotation=annotation, name=name, label=_label(name), options=options)
    # An optional setting: a check box switches it on, the inner widget holds its value.
    enabled = CheckBox(value=value is not None, name="enabled", label="", tooltip=f"use {_label(name)}")
    kwargs = {"value": value} if value is not None else {}
    editor = create_widget(annotation=inner, name="value", label="", options=options, **kwargs)
    editor.enabled = value is not None
    enabled.changed.connect(lambda on: setattr(editor, "enabled", on))
    box = Container(widgets=[enabled, editor], layout="horizontal", name=name, label=_label(name), labels=False)
    box.margins = (0, 0, 0, 0)
    return box


def settings_form(
    settings: Any, *, hide: tuple[str, ...] = (), options: dict[str, dict[str, Any]] | None = None
) -> Container:
    """A form with one widget per field of the settings dataclass ``settings``.

    ``hide`` leaves fields out (the widget sets them itself); ``options`` passes
    magicgui options per field, e.g. ``{"size": {"min": 8, "max": 1024}}``.
    """
    hints = get_type_hints(type(settings))
    widgets = [
        field_widget(f.name, hints[f.name], getattr(settings, f.name), (options or {}).get(f.name, {}))
        for f in dataclasses.fields(settings)
        if f.name not in hide
    ]
    return Container(widgets=widgets, name=type(settings).__name__)


def read_form(form: Container, settings: Any) -> Any:
    """The settings shown in ``form``, as a new dataclass of the same type as ``settings``.

    Fields not in the form keep their values from ``settings``.
    """
    values = to_dict(settings)
    hints = get_type_hints(type(settings))
    for widget in form:
        if isinstance(widget, Container) and widget.name in values and "enabled" in [w.name for w in widget]:
            values[widget.name] = widget["value"].value if widget["enabled"].value else None
        elif isinstance(widget, LineEdit) and _is_size(hints.get(widget.name)):
            values[widget.name] = _parse_size(widget.value)
        elif widget.name in values:
            values[widget.name] = _plain(widget.value)
    return from_dict(type(settings), values)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value
