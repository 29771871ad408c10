"""Settings dataclasses render as forms and read back unchanged, or changed exactly as edited."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from napari_morphospace._qt.forms import read_form, settings_form
from napari_morphospace.core.errors import InputError


@dataclass
class Example:
    size: int = 64
    mode: Literal["fixed", "fit"] = "fixed"
    padding: int | None = None
    scale: float = 0.5
    mask: bool = True
    name: str = "cells"
    shape: tuple[int, int] = (32, 32)
    channels: list[int] = field(default_factory=lambda: [0, 1])


def test_round_trip_without_edits(qtbot):
    settings = Example(size=96, mode="fit", padding=3)
    assert read_form(settings_form(settings), settings) == settings


def test_edits_reach_the_dataclass(qtbot):
    form = settings_form(Example())
    form.size.value = 128
    form.mode.value = "fit"
    form.padding["enabled"].value = True
    form.padding["value"].value = 7
    form.mask.value = False
    result = read_form(form, Example())
    assert (result.size, result.mode, result.padding, result.mask) == (128, "fit", 7, False)
    form.padding["enabled"].value = False
    assert read_form(form, Example()).padding is None


def test_hidden_fields_keep_their_values(qtbot):
    settings = Example(name="kept")
    form = settings_form(settings, hide=("name",))
    assert "name" not in [w.name for w in form]
    assert read_form(form, settings).name == "kept"


def test_invalid_values_are_refused_like_a_config_file(qtbot):
    @dataclass
    class Checked:
        size: int = 8

        def __post_init__(self):
            if self.size < 8:
                raise ValueError("size must be at least 8")

    form = settings_form(Checked())
    form.size.value = 2
    with pytest.raises(InputError, match="at least 8"):
        read_form(form, Checked())


def test_sizes_are_typed_as_one_number_or_one_per_axis(qtbot):
    @dataclass
    class Sized:
        size: int | tuple[int, ...] = 64

    form = settings_form(Sized())
    assert read_form(form, Sized()).size == 64
    form.size.value = "16, 48, 48"
    assert read_form(form, Sized()).size == (16, 48, 48)
    form.size.value = "big"
    with pytest.raises(InputError, match="size"):
        read_form(form, Sized())
