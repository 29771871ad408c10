"""Settings dataclasses render as forms and read back unchanged, or changed exactly as edited."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from napari_morphospace._qt.forms import fill_form, format_text, parse_text, read_form, settings_form
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


@dataclass
class Devices:
    """Unions magicgui has no editor for, as in ``TrainSettings.devices``."""

    devices: int | list[int] | str = "auto"
    workers: int | list[int] = 1
    ids: int | list[int] | None = None
    rate: float = 0.5


def test_text_parses_like_yaml_values():
    assert parse_text("auto") == "auto"
    assert parse_text(" 2 ") == 2
    assert parse_text("0.25") == 0.25
    assert parse_text("0, 2") == [0, 2]
    assert parse_text("[0, 2]") == [0, 2]
    assert parse_text("1,") == [1]
    assert parse_text("many") == "many"
    for value in ("auto", 2, [0, 2], [3]):
        assert parse_text(format_text(value)) == value


def test_unions_are_typed_as_text_and_read_back_as_their_member(qtbot):
    form = settings_form(Devices())
    assert (form.devices.value, form.workers.value, form.ids["enabled"].value) == ("auto", "1", False)
    assert read_form(form, Devices()) == Devices()
    form.devices.value = "0, 2"
    form.workers.value = "3"
    form.ids["enabled"].value = True
    form.ids["value"].value = "4, 5"
    assert read_form(form, Devices()) == Devices(devices=[0, 2], workers=3, ids=[4, 5])
    form.devices.value = "2"
    assert read_form(form, Devices()).devices == 2


def test_fill_form_is_the_inverse_of_read_form(qtbot):
    for settings in (
        Devices(devices=[0, 2], workers=[1, 3], ids=7, rate=0.25),
        Devices(devices="auto", ids=None),
        Example(size=96, mode="fit", padding=3, mask=False, name="x", channels=[2]),
    ):
        form = settings_form(type(settings)())
        fill_form(form, settings)
        assert read_form(form, type(settings)()) == settings
    form = settings_form(Devices(ids=7))
    fill_form(form, Devices(ids=None))
    assert not form.ids["enabled"].value and read_form(form, Devices()).ids is None


def test_text_that_fits_no_member_of_the_union_names_the_setting(qtbot):
    form = settings_form(Devices())
    form.workers.value = "two"
    with pytest.raises(InputError, match="workers: 'two' fits none of"):
        read_form(form, Devices())
    form.workers.value = "1, two"
    with pytest.raises(InputError, match="workers"):
        read_form(form, Devices())
