"""Settings shared by every test."""

import numpy as np
import pytest
import tifffile
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run torch on one thread: the test models are tiny, and on a busy 2-core machine
    two threads competing made their steps 10-30x slower (measured on the CI machine kind)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_modal_dialogs(monkeypatch):
    """A modal question or file dialog waits for a click no test makes: fail at once instead of hanging the suite.

    Tests that expect a dialog replace it themselves (their monkeypatch comes after this one)."""
    try:
        from qtpy.QtWidgets import QFileDialog, QInputDialog, QMessageBox
    except Exception:  # noqa: BLE001 - no Qt binding: nothing can open a dialog
        return

    def refuse(*args, **kwargs):
        raise AssertionError(f"a modal dialog opened in a test and would wait forever: {args[1:3]}")

    for owner, names in (
        (QMessageBox, ("question", "warning", "information", "critical")),
        (QFileDialog, ("getSaveFileName", "getOpenFileName", "getOpenFileNames", "getExistingDirectory")),
        (QInputDialog, ("getText", "getItem", "getInt", "getDouble")),
    ):
        for name in names:
            monkeypatch.setattr(owner, name, staticmethod(refuse))


@pytest.fixture
def sources(tmp_path):
    """Two 40x40 TIFF images with labels 1..3 each, in a data folder (analysis folder tests)."""
    data = tmp_path / "data"
    data.mkdir()
    images, labels = [], []
    for name in ("control", "treated"):
        label_image = np.zeros((40, 40), np.uint16)
        for i in range(3):
            label_image[4 + 12 * i : 12 + 12 * i, 5:15] = i + 1
        tifffile.imwrite(data / f"{name}.tif", (label_image * 100).astype(np.uint16))
        tifffile.imwrite(data / f"{name}_labels.tif", label_image)
        images.append((data / f"{name}.tif").resolve())
        labels.append((data / f"{name}_labels.tif").resolve())
    return images, labels


# --------------------------------------------------------------------------- the way users arrive


class NapariHooks:
    """napari's notification hooks, installed as ``napari.run()`` installs them, with what they caught.

    Every uncaught exception (GUI thread or worker thread) and every
    ``show_error`` becomes an ERROR notification, as a user would see it.
    A test that expects an error takes it with :meth:`take_errors`; any
    error left at the end of the test fails it.
    """

    def __init__(self, manager) -> None:
        self.manager = manager
        self.start = len(manager.records)

    def notifications(self, severity: str | None = None) -> list:
        records = self.manager.records[self.start :]
        return [n for n in records if severity is None or str(n.severity) == severity]

    def errors(self) -> list[str]:
        return [str(n.message) for n in self.notifications("error")]

    def take_errors(self) -> list[str]:
        """The error messages so far, marked as expected (they no longer fail the test)."""
        errors = self.errors()
        self.start = len(self.manager.records)
        return errors


@pytest.fixture
def napari_hooks():
    """Install napari's exception and warning hooks for the test; fail it on any unexpected error notification."""
    from napari.utils.notifications import notification_manager

    hooks = NapariHooks(notification_manager)
    with notification_manager:
        yield hooks
    errors = hooks.errors()
    assert not errors, "error notifications a user would have seen:\n" + "\n".join(errors)


@pytest.fixture
def dock(napari_hooks):
    """``dock(viewer, "Cells")``: the widget docked as from the Plugins menu (napari hands it a proxy viewer)."""

    def dock_widget(viewer, name: str):
        _dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-morphospace", name)
        return widget

    return dock_widget
