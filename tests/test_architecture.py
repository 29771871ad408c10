"""The package's structure, drawn from the code: rooms of ``core`` import one way, no GUI below the widgets.

Every ``import`` and ``from ... import`` of every module (at the top or inside a
function) is read with ``ast``; relative imports are resolved. ``core`` is a
row of rooms that data flows through, files → crops → model → latents →
views → exports::

    io → cells → models → training → analysis → classifier → figures → project

A room may import the shared modules at the top of ``core`` (errors, config,
outputs, parallel) and the rooms before it, never one after it. ``core``
imports neither Qt nor napari; ``viewer`` imports napari but no Qt. Statistics compute numbers and
``core/figures`` draws them: no other module of ``core`` imports matplotlib.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import napari_morphospace

PACKAGE = Path(napari_morphospace.__file__).parent
ROOMS = ["io", "cells", "models", "training", "analysis", "classifier", "figures", "project"]
SHARED = {"errors", "config", "outputs", "parallel"}
QT = {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "magicgui", "napari_morphospace._qt"}
NAPARI = {"napari", "vispy"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (for ``from X import y``: ``X.y`` when that is a module)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists():
                    found.add(candidate)
    return found


def modules_under(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def room_of(module: str) -> str | None:
    """The room of a module of ``napari_morphospace.core`` ("shared" for the top modules), None outside core."""
    parts = module.split(".")
    if parts[:2] != ["napari_morphospace", "core"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in ROOMS else "shared" if parts[2] in SHARED else parts[2]


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in modules_under("core")}


def test_every_core_module_is_in_a_room_or_shared():
    """A new module at the top of core is a new room or shared code: either way, this test must say so."""
    stray = sorted(m for m in graph() if room_of(m) not in {*ROOMS, "shared"} and m != "napari_morphospace.core")
    assert stray == []


def test_rooms_import_one_way():
    """No room imports a later one (nor shared code a room): the data flows files → crops → ... → exports."""
    rank = {"shared": -1, **{room: i for i, room in enumerate(ROOMS)}}
    backwards = []
    for module, imported in graph().items():
        here = room_of(module)
        for target in imported:
            there = room_of(target)
            if here in rank and there in rank and rank[there] > rank[here]:
                backwards.append(f"{module} -> {target}")
    assert sorted(backwards) == []


@pytest.mark.parametrize("folder, forbidden", [("core", QT | NAPARI), ("viewer", QT)])
def test_no_gui_below_the_widgets(folder, forbidden):
    """core runs headless (no Qt, no napari); viewer is napari-aware but Qt-free."""
    found = sorted(
        f"{module_name(path)} -> {name}"
        for path in modules_under(folder)
        for name in imports_of(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )
    assert found == []


def test_only_figures_draw():
    """matplotlib is imported in ``core/figures`` only; every other room hands it numbers, arrays or dataclasses."""
    found = sorted(
        f"{module_name(path)} -> {name}"
        for path in modules_under("core")
        if room_of(module_name(path)) != "figures"
        for name in imports_of(path)
        if name == "matplotlib" or name.startswith("matplotlib.")
    )
    assert found == []


def test_the_graph_is_read_from_the_code():
    """The reader itself: a known edge is found (crops read stacks), so an empty list above means something."""
    edges = graph()
    assert "napari_morphospace.core.io.stacks" in edges["napari_morphospace.core.cells.crops"]
    assert "napari_morphospace.core.errors" in edges["napari_morphospace.core.cells.crops"]


TORCH_FREE = ["io.stacks", "cells.pairing", "cells.preprocess", "cells.crops", "cells.crop_set", "cells.crop_job"]


def test_cropping_never_imports_torch():
    """Reading stacks, pairing, preprocessing, cropping and crop sets on disk work without loading torch (seconds)."""
    imports = "; ".join(f"import napari_morphospace.core.{m}" for m in TORCH_FREE)
    code = f"import sys; {imports}; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


#: Modules of ``core/project`` that keep data and draw nothing. The rest of ``project`` (``report``,
#: ``sweep_report``, ``demo``, ``zoo``) writes pictures into reports and packages, so it imports ``core/figures``.
PROJECT_WITHOUT_FIGURES = ["analysis_folder", "annotations", "export", "sweep"]

# matplotlib made unimportable, as if it were not installed. Lightning's torchmetrics decides from the
# package metadata whether to import matplotlib.pyplot, so the metadata must say "not installed" too.
WITHOUT_MATPLOTLIB = """
import importlib, importlib.metadata, sys
sys.modules["matplotlib"] = None
installed_version = importlib.metadata.version
def version(name):
    if name.lower() == "matplotlib":
        raise importlib.metadata.PackageNotFoundError(name)
    return installed_version(name)
importlib.metadata.version = version
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ImportError as err:
        failed.append(f"{name}: {err}")
print("\\n".join(failed))
"""


def test_computing_modules_and_the_command_line_import_without_matplotlib():
    """Every module of ``core`` outside ``figures`` (and the drawing part of ``project``), and the ``morphospace``
    entry module, imports in a fresh interpreter that cannot import matplotlib."""
    modules = [
        module_name(path) for path in modules_under("core") if room_of(module_name(path)) not in {"figures", "project"}
    ]
    modules += [f"napari_morphospace.core.project.{name}" for name in PROJECT_WITHOUT_FIGURES]
    modules.append("napari_morphospace.cli")
    assert "napari_morphospace.core.analysis.statistics" in modules and len(modules) > 40
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, *modules], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_matplotlib_block_is_real():
    """The same interpreter set-up refuses a module that draws, so an empty list above means something."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, "napari_morphospace.core.figures.gallery"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "napari_morphospace.core.figures.gallery: " in result.stdout
