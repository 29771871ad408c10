"""Settings dataclasses as magicgui forms: one typed definition, rendered and read back.

The widgets never define their own copies of a setting: they render the core
dataclass with :func:`settings_form`, rebuild it with :func:`read_form`, which
goes through :func:`core.config.from_dict`, so the checks are the same as for a
YAML config on the command line, and show saved settings with
:func:`fill_form`.

Unions magicgui has no editor for (``devices: int | list[int] | str``, sizes
``int | tuple[int, ...]``) become a text field read back like a YAML value:
``auto`` -> "auto", ``2`` -> 2, ``0, 2`` -> [0, 2].
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Collection
from typing import Any, Union, get_args, get_origin, get_type_hints

from magicgui.widgets import CheckBox, Container, LineEdit, Widget, create_widget

from ..core.config import from_dict, to_dict


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _optional_inner(annotation: Any) -> Any | None:
    """The X of ``X | None`` (X may itself be a union), or None when the annotation is not optional."""
    if not _is_union(annotation) or type(None) not in get_args(annotation):
        return None
    members = tuple(a for a in get_args(annotation) if a is not type(None))
    return members[0] if len(members) == 1 else Union[members]  # noqa: UP007 (built from a tuple)


def _is_text(annotation: Any) -> bool:
    """True for a union of several types: magicgui has no editor for it, the user types it."""
    return _is_union(annotation) and type(None) not in get_args(annotation)


def _is_size(annotation: Any) -> bool:
    """True for ``int | tuple[int, ...]``: one size for every axis, or one per axis."""
    return _is_union(annotation) and set(get_args(annotation)) == {int, tuple[int, ...]}


def _label(name: str) -> str:
    return name.replace("_", " ")


def format_text(value: Any) -> str:
    """The text that :func:`parse_text` reads back as ``value``: ``[0, 2]`` -> ``"0, 2"``, ``[3]`` -> ``"[3]"``.

    A list of one keeps its brackets: for devices, ``[3]`` (device 3) is not ``3`` (three devices).
    """
    if isinstance(value, (list, tuple)):
        text = ", ".join(map(str, value))
        return f"[{text}]" if len(value) == 1 else text
    return str(value)


def parse_text(text: str) -> Any:
    """A typed value as in YAML: ``"auto"`` -> "auto", ``"2"`` -> 2, ``"0.5"`` -> 0.5, ``"0, 2"`` -> [0, 2].

    Text with a comma (or in brackets, ``"[0, 2]"``) is a list; each item, and
    text without a comma, is an int, else a float, else the stripped text.
    Whether the value fits the setting is left to :func:`core.config.from_dict`.
    """
    stripped = text.strip()
    bracketed = stripped.startswith("[") and stripped.endswith("]")
    if bracketed or "," in stripped:
        items = stripped[1:-1] if bracketed else stripped
        return [_scalar(item) for item in items.split(",") if item.strip()]
    return _scalar(stripped)


def _scalar(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def _editor(annotation: Any, value: Any, *, name: str, label: str, options: dict[str, Any]) -> Widget:
    if _is_size(annotation):
        return LineEdit(value=format_text(value), name=name, label=label, tooltip="one size for every axis, or Z, Y, X")
    if _is_text(annotation):
        examples = " or ".join(_describe(member) for member in get_args(annotation))
        text = "" if value is None else format_text(value)
        return LineEdit(value=text, name=name, label=label, tooltip=examples)
    kwargs = {"value": value} if value is not None else {}
    return create_widget(annotation=annotation, name=name, label=label, options=options, **kwargs)


def _describe(member: Any) -> str:
    """How to type one member of a union, for the tooltip."""
    origin = get_origin(member)
    if origin in (list, tuple):
        return "values separated by commas (e.g. 0, 2)"
    names = {int: "a whole number (e.g. 2)", float: "a number (e.g. 0.5)", str: "text (e.g. auto)"}
    return names.get(member, getattr(member, "__name__", str(member)))


def field_widget(name: str, annotation: Any, value: Any, options: dict[str, Any]) -> Widget:
    """The editor of one setting; optional settings get an on/off box, unions a text field ("0, 2")."""
    inner = _optional_inner(annotation)
    if inner is None:
        return _editor(annotation, value, name=name, label=_label(name), options=options)
    # An optional setting: a check box switches it on, the inner widget holds its value.
    enabled = CheckBox(value=value is not None, name="enabled", label="", tooltip=f"use {_label(name)}")
    editor = _editor(inner, value, name="value", label="", options=options)
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


def _is_optional_box(widget: Widget) -> bool:
    return isinstance(widget, Container) and "enabled" in [w.name for w in widget]


def read_form(form: Container, settings: Any, *, skip: Collection[str] = ()) -> Any:
    """The settings shown in ``form``, as a new dataclass of the same type as ``settings``.

    Fields not in the form, and fields named in ``skip`` (e.g. hidden ones),
    keep their values from ``settings``. A value that does not fit its
    setting raises :class:`InputError` naming the setting.
    """
    values = to_dict(settings)
    hints = get_type_hints(type(settings))
    for widget in form:
        if widget.name not in values or widget.name in skip:
            continue
        annotation = hints[widget.name]
        if _is_optional_box(widget):
            editor, annotation = widget["value"], _optional_inner(annotation)
            if not widget["enabled"].value:
                values[widget.name] = None
                continue
        else:
            editor = widget
        values[widget.name] = _read_editor(editor, annotation)
    return from_dict(type(settings), values)


def _read_editor(editor: Widget, annotation: Any) -> Any:
    if _is_size(annotation):
        return parse_text(editor.value.replace("×", ",").replace("x", ","))  # "16x64x64" reads like "16, 64, 64"
    if _is_text(annotation):
        return parse_text(editor.value)
    value = editor.value
    return list(value) if isinstance(value, tuple) else value


def fill_form(form: Container, settings: Any) -> None:
    """Show the values of ``settings`` in a form made by :func:`settings_form` (the inverse of :func:`read_form`)."""
    hints = get_type_hints(type(settings))
    for widget in form:
        value, annotation = getattr(settings, widget.name), hints[widget.name]
        if _is_optional_box(widget):
            widget["enabled"].value = value is not None
            if value is not None:
                _fill_editor(widget["value"], _optional_inner(annotation), value)
        else:
            _fill_editor(widget, annotation, value)


def _fill_editor(editor: Widget, annotation: Any, value: Any) -> None:
    editor.value = format_text(value) if _is_text(annotation) else value
