"""What the package imports, it declares; and the headless part (core, command line) imports no GUI.

``pip install napari-morphospace`` is the headless install: its ``dependencies`` must hold every library
that ``core`` and ``cli`` import when loaded, and no Qt. The widgets' libraries come with the ``gui``
extra (napari brings them for plugin users); optional readers and exports import theirs inside functions,
from their own extras.
"""

import ast
import re
import subprocess
import sys
import textwrap
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_morphospace"
#: Imported names whose distribution differs and that are not installed for the tests (optional extras).
UNINSTALLED_DISTRIBUTIONS = {"umap": "umap-learn"}
#: Modules a headless process must never load.
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "napari", "vispy")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], set[str]]:
    """Distribution names in ``dependencies`` and in any extra (the package's own extras excluded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_normalise(Requirement(r).name) for r in project["dependencies"]}
    extras = {_normalise(Requirement(r).name) for group in project["optional-dependencies"].values() for r in group}
    return base, extras - {"napari-morphospace"}


def _imports(path: Path, *, load_time_only: bool) -> set[str]:
    """Top-level names of the absolute imports in ``path``; with ``load_time_only``, those run when it is imported.

    Imports inside functions do not run at load time; those under ``if TYPE_CHECKING:`` never run.
    """
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if load_time_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            return
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return names - set(sys.stdlib_module_names) - {"napari_morphospace"}


@cache
def _installed() -> dict[str, list[str]]:
    """Top-level module -> distributions installed here (reading every installed distribution: once)."""
    return packages_distributions()


def _distributions(module: str) -> set[str]:
    """The distributions that provide ``module`` (``sklearn`` -> scikit-learn, ``bioimageio`` -> its two)."""
    found = _installed().get(module) or [UNINSTALLED_DISTRIBUTIONS.get(module, module)]
    return {_normalise(name) for name in found}


def test_the_declared_distributions_are_parsed_by_name():
    base, extras = _declared()
    assert {"numpy", "scikit-learn", "torch", "pyyaml"} <= base
    assert {"napari", "pyqt6", "qtpy", "magicgui"} <= extras and not {"napari", "pyqt6", "qtpy", "magicgui"} & base
    assert _distributions("sklearn") == {"scikit-learn"} and _distributions("yaml") == {"pyyaml"}
    assert _distributions("umap") == {"umap-learn"}


def test_every_imported_library_is_declared():
    base, extras = _declared()
    undeclared = {
        f"{module} ({path.relative_to(PACKAGE)})"
        for path in sorted(PACKAGE.rglob("*.py"))
        for module in _imports(path, load_time_only=False)
        if not _distributions(module) & (base | extras)
    }
    assert not undeclared, f"imported but declared neither in dependencies nor in an extra: {sorted(undeclared)}"


def test_core_and_command_line_import_only_the_headless_dependencies_when_loaded():
    base, _ = _declared()
    headless = sorted((PACKAGE / "core").rglob("*.py")) + sorted((PACKAGE / "cli").rglob("*.py"))
    assert len(headless) > 20
    outside = {
        f"{module} ({path.relative_to(PACKAGE)})"
        for path in headless
        for module in _imports(path, load_time_only=True)
        if not _distributions(module) & base
    }
    assert not outside, f"loaded by core/cli but not in the headless dependencies: {sorted(outside)}"


def test_load_time_imports_are_told_from_imports_inside_functions(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        textwrap.dedent(
            """
        from typing import TYPE_CHECKING
        import numpy as np
        from scipy import ndimage
        if TYPE_CHECKING:
            import torch
        else:
            import yaml
        def later():
            import umap
        class Model:
            import pandas
        """
        )
    )
    assert _imports(module, load_time_only=True) == {"numpy", "scipy", "yaml", "pandas"}
    assert _imports(module, load_time_only=False) == {"numpy", "scipy", "yaml", "umap", "pandas"}


def test_importing_the_command_line_and_every_core_module_loads_no_gui():
    # A fresh interpreter, so that what this test process already imported cannot hide anything.
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import napari_morphospace.cli, napari_morphospace.core
        loaded = []
        for package in (napari_morphospace.cli, napari_morphospace.core):
            for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                importlib.import_module(module.name)
                loaded.append(module.name)
        print("LOADED", len(loaded))
        print("GUI", sorted(name for name in sys.modules if name.split(".")[0] in {GUI_MODULES!r}))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    counts = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert int(counts["LOADED"]) >= len(list((PACKAGE / "core").rglob("*.py"))) - 1, result.stdout
    assert counts["GUI"] == "[]", result.stdout
