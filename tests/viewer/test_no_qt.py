"""``viewer`` is napari-aware but Qt-free: every module imports without any Qt binding."""

import subprocess
import sys


def test_every_viewer_module_imports_without_qt():
    code = (
        "import importlib, pkgutil, sys\n"
        "import napari_morphospace.viewer as viewer\n"
        "for module in pkgutil.iter_modules(viewer.__path__):\n"
        "    importlib.import_module(f'napari_morphospace.viewer.{module.name}')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
