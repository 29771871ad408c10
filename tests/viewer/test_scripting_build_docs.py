"""docs/scripting-build.md runs as written: its Python blocks, in order, in one namespace, against a ViewerModel."""

import re
from pathlib import Path

PAGE = Path(__file__).parents[2] / "docs" / "scripting-build.md"


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_every_snippet_of_the_scripting_page_runs(tmp_path, monkeypatch, capsys):
    blocks = code_blocks(PAGE.read_text())
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # the snippets write "checkpoints" and "analysis" where they run
    namespace: dict = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{PAGE.name} block {number}", "exec"), namespace)
    viewer, session = namespace["viewer"], namespace["session"]
    assert "reconstruction preview" in viewer.layers and "control cells annotations" in viewer.layers
    assert namespace["summary"].statistics["track_id"].tolist() == [1, 2]
    reopened = namespace["session_for"](namespace["again"])
    assert len(reopened.crop_set) == len(session.crop_set) == 16 and reopened.bundle is not None
    assert (reopened.cells["annotation"] == "round").sum() == 4  # the annotations came back with the folder
    assert "saved" in capsys.readouterr().out
