"""Settings dataclasses <-> dicts and YAML/JSON files: round trips and clear refusals."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from napari_morphospace.core.config import from_dict, load_config, save_config, to_dict
from napari_morphospace.core.errors import InputError


@dataclass
class Inner:
    shape: tuple[int, int] = (64, 64)
    kind: Literal["a", "b"] = "a"


@dataclass
class Outer:
    epochs: int = 10
    rate: float = 1e-3
    note: str | None = None
    path: Path = Path("out")
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)


def test_dict_round_trip_keeps_nested_types():
    settings = Outer(epochs=3, note="x", inner=Inner((32, 16), "b"), items=[Inner(), Inner((8, 8), "b")])
    data = to_dict(settings)
    assert data["inner"] == {"shape": [32, 16], "kind": "b"}
    assert json.loads(json.dumps(data)) == data
    assert from_dict(Outer, data) == settings


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    settings = Outer(rate=0.5, path=Path("/data/run"))
    path = save_config(settings, tmp_path / f"config{suffix}")
    assert load_config(path, Outer) == settings
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_missing_keys_take_defaults_and_ints_become_floats():
    assert from_dict(Outer, {"rate": 1}) == Outer(rate=1.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epoch": 3}, "unknown setting.*epoch.*valid settings are"),
        ({"epochs": "ten"}, "epochs: expected an integer"),
        ({"epochs": True}, "epochs: expected an integer"),
        ({"inner": {"kind": "c"}}, "inner.kind: 'c' is not one of 'a', 'b'"),
        ({"inner": {"shape": [1, 2, 3]}}, "inner.shape: expected 2 values"),
        ({"items": {"kind": "a"}}, "items: expected a list"),
    ],
)
def test_bad_values_name_the_field(data, message):
    with pytest.raises(InputError, match=message):
        from_dict(Outer, data)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(InputError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", Outer)
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad, Outer)
