"""The Analysis widget in a real viewer: open restores layers and session, save round trips, refusals, report."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from napari.layers import Labels
from qtpy.QtWidgets import QLabel, QLineEdit, QPushButton

from napari_morphospace._qt.analysis_widget import AnalysisWidget
from napari_morphospace._qt.scatter_widget import ScatterWidget
from napari_morphospace._reader import read_layers
from napari_morphospace.core.analysis.embed import embed
from napari_morphospace.core.cells.crop_set import CropSet, bbox_columns
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.analysis_folder import (
    create_analysis,
    open_analysis,
    save_analysis,
)
from napari_morphospace.core.project.annotations import AnnotationStore
from napari_morphospace.core.project.report import SECTIONS
from napari_morphospace.core.training.bundle import load_bundle, new_bundle, save_bundle
from napari_morphospace.core.training.engine import TrainSettings
from napari_morphospace.viewer.session import session_for

WAIT_MS = 60000


@pytest.fixture
def parts(tmp_path, sources):
    """A 6-crop set, a tiny model bundle folder and the latents that model gives."""
    images = sources[0]
    rng = np.random.default_rng(0)
    rows = [
        {
            "crop_id": i,
            "source": str(images[i // 3]),
            "label_id": i % 3 + 1,
            "t": 0,
            "group": ["control", "treated"][i // 3],
            "annotation": "",
            **dict(zip(bbox_columns(2), (0, 16, 0, 16), strict=True)),
        }
        for i in range(6)
    ]
    crop_set = CropSet(rng.random((6, 1, 16, 16), dtype=np.float32), pd.DataFrame(rows), ["c0"], (0.5, 0.5))
    settings = ModelSettings(latent_dim=3, base_channels=4)
    torch.manual_seed(0)
    model = build_model(settings, (1, 16, 16)).eval()
    bundle_dir = save_bundle(
        new_bundle(
            model,
            model_settings=settings,
            input_shape=(1, 16, 16),
            channel_names=["c0"],
            preprocess=None,
            train_settings=TrainSettings(epochs=1),
            provenance={"crop_set": "test"},
            history=[{"loss": 1.0}],
        ),
        tmp_path / "bundle",
    )
    latents = embed(model, crop_set)
    return crop_set, bundle_dir, latents


@pytest.fixture
def analysis_folder(tmp_path, sources, parts):
    """An analysis with sources, crop set, model, latents and annotations saved by the Annotate store."""
    crop_set, bundle_dir, latents = parts
    folder = tmp_path / "analysis"
    manifest = create_analysis(folder, images=sources[0], labels=sources[1], groups=["control", "treated"])
    store = AnnotationStore(crop_set.table["crop_id"].to_numpy(), folder)
    store.add_class("round", "#00ff00")
    store.assign([1, 4], "round")
    store.close()
    save_analysis(manifest, crop_set=crop_set, model=bundle_dir, latents=latents)
    return folder


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    """The widget; its yes/no questions are recorded in ``widget.questions`` and answered Yes."""
    viewer = make_napari_viewer()
    widget = AnalysisWidget(viewer)
    qtbot.addWidget(widget)
    widget.questions = []
    widget._ask = lambda question: widget.questions.append(question) or True
    return widget


def _run(qtbot, widget, worker):
    """Wait until ``widget`` has handled the end of ``worker``
    (a fast worker may finish before a waitSignal connects)."""
    assert worker is not None, "the widget refused"
    qtbot.waitUntil(lambda: widget.save_button.enabled, timeout=WAIT_MS)


def _decode(bundle):
    z = torch.linspace(-2, 2, 12).reshape(4, 3)
    with torch.no_grad():
        return bundle.model.decode(z).numpy()


def test_open_restores_layers_and_session(widget, qtbot, analysis_folder, parts):
    crop_set, bundle_dir, latents = parts
    heard = []
    session = session_for(widget.viewer)
    session.latents_changed.connect(heard.append)
    _run(qtbot, widget, widget.open(analysis_folder))
    np.testing.assert_array_equal(session.crop_set.images, crop_set.images)
    pd.testing.assert_frame_equal(session.crop_set.table, crop_set.table, check_dtype=False)
    assert session.crop_set_folder == analysis_folder / "crops"
    np.testing.assert_allclose(_decode(session.bundle), _decode(load_bundle(bundle_dir)))
    # the cells' columns, crop table first, with the annotations saved by the Annotate store
    pd.testing.assert_frame_equal(
        session.latents.drop(columns="annotation"), latents.drop(columns="annotation"), check_like=True
    )
    assert session.latents["annotation"].tolist() == ["", "round", "", "", "round", ""]
    assert len(heard) == 1 and heard[0] is session.latents  # other widgets hear the new latents
    labels = [layer for layer in widget.viewer.layers if isinstance(layer, Labels)]
    assert [layer.name for layer in labels] == ["control_labels", "treated_labels"]  # as File > Open names them
    features = labels[1].features.set_index("crop_id")
    mu = [c for c in latents.columns if c.startswith("mu_")]
    np.testing.assert_allclose(
        features[mu].to_numpy(), latents.set_index("crop_id").loc[[3, 4, 5], mu].to_numpy(), rtol=1e-6
    )
    assert features.loc[4, "annotation"] == "round" and features.loc[5, "annotation"] == ""
    assert len(widget.viewer.layers) == 4 and "4 layer(s)" in widget.status.text() and "⚠" not in widget.status.text()


def test_files_outside_the_folder_are_read_only_after_a_yes(widget, qtbot, analysis_folder, sources):
    """The sources lie outside the analysis folder: the user is asked once, and No opens only the folder's contents."""
    widget._ask = lambda question: widget.questions.append(question) or False
    _run(qtbot, widget, widget.open(analysis_folder))
    assert len(widget.questions) == 1 and "outside itself" in widget.questions[0]
    assert (
        str(sources[0][0]) in widget.questions[0] and "Answer Yes only for an analysis you trust" in widget.questions[0]
    )
    assert len(widget.viewer.layers) == 0  # no image read from outside
    session = session_for(widget.viewer)
    assert session.crop_set is not None and session.latents is not None  # the folder's own parts opened
    assert "lie outside the analysis folder" in widget.status.text() and "--allow-external" in widget.status.text()
    widget._ask = lambda question: widget.questions.append(question) or True
    _run(qtbot, widget, widget.open(analysis_folder))
    assert len(widget.questions) == 2 and len(widget.viewer.layers) == 4
    _run(qtbot, widget, widget.open(analysis_folder))
    assert len(widget.questions) == 2  # asked once per folder and session


def test_a_missing_source_image_is_named_and_the_rest_opens(widget, qtbot, analysis_folder, sources, parts):
    sources[0][0].unlink()
    _run(qtbot, widget, widget.open(analysis_folder))
    lines = widget.status.text().splitlines()
    problems = [line for line in lines if line.startswith("⚠")]
    assert len(problems) == 1 and "control.tif" in problems[0]
    assert [layer.name for layer in widget.viewer.layers] == ["treated", "treated_labels"]
    pd.testing.assert_frame_equal(
        session_for(widget.viewer).latents.drop(columns="annotation"),
        parts[2].drop(columns="annotation"),
        check_like=True,
    )


def test_save_from_an_opened_analysis_gives_back_equal_parts(widget, qtbot, analysis_folder, tmp_path, sources):
    _run(qtbot, widget, widget.open(analysis_folder))
    session = session_for(widget.viewer)
    copy = tmp_path / "copy"
    _run(qtbot, widget, widget.save(copy))
    saved = open_analysis(copy, allow_external=True)
    assert saved.problems == []
    np.testing.assert_array_equal(saved.crop_set.images, session.crop_set.images)
    pd.testing.assert_frame_equal(saved.crop_set.table, session.crop_set.table)
    pd.testing.assert_frame_equal(saved.latents, session.latents)
    np.testing.assert_allclose(_decode(saved.bundle), _decode(session.bundle))
    assert saved.source_images == sources[0]
    assert [saved.labels_path(s) for s in saved.manifest.sources] == sources[1]
    assert [s.group for s in saved.manifest.sources] == ["control", "treated"]
    assert "Analysis saved" in widget.status.text()


def test_save_a_session_built_in_memory(widget, qtbot, tmp_path, sources, parts):
    """Layers read from files, a crop set never saved, a bundle known only in memory."""
    crop_set, bundle_dir, latents = parts
    viewer = widget.viewer
    for path in [sources[0][1], sources[1][1]]:
        for data, kwargs, kind in read_layers(path):
            getattr(viewer, f"add_{kind}")(data, **kwargs)
    session = session_for(viewer)
    session.crop_set, session.bundle, session.latents = crop_set, load_bundle(bundle_dir), latents
    session.classifier_metrics = {"classes": ["a", "b"], "pooled": {"balanced_accuracy": 0.75}, "folds": []}
    folder = tmp_path / "new analysis"
    _run(qtbot, widget, widget.save(folder))
    saved = open_analysis(folder, allow_external=True)
    assert saved.problems == []
    np.testing.assert_array_equal(saved.crop_set.images, crop_set.images)
    assert (folder / "crops").is_dir() and (folder / "model" / "weights.safetensors").is_file()
    np.testing.assert_allclose(_decode(saved.bundle), _decode(session.bundle))
    assert saved.bundle.config["provenance"] == {"crop_set": "test"}
    pd.testing.assert_frame_equal(saved.latents, latents, check_like=True)
    assert saved.source_images == [sources[0][1]]  # the image layer read from a file, paired with its labels file
    assert saved.labels_path(saved.manifest.sources[0]) == sources[1][1]
    assert saved.classifier == session.classifier_metrics  # the report's classifier section reads it


def test_named_selections_kept_in_the_scatter_are_saved_and_reopened(
    widget, qtbot, tmp_path, parts, make_napari_viewer
):
    crop_set, _, latents = parts
    session = session_for(widget.viewer)
    session.crop_set, session.latents = crop_set, latents
    mu = latents[["mu_0", "mu_1"]]
    features = pd.DataFrame({"index": [1, 2, 3], "crop_id": [3, 4, 5], **mu.iloc[3:].to_dict("list")})
    widget.viewer.add_labels(
        np.repeat(np.arange(4, dtype=np.uint8), 10).reshape(4, 10), name="treated", features=features
    )
    scatter = ScatterWidget(widget.viewer)
    scatter.set_sources(["treated"])
    scatter.select_rows([0, 2])
    scatter.save_selection("ends")
    _run(qtbot, widget, widget.save(tmp_path / "saved"))
    assert json.loads((tmp_path / "saved" / "selections.json").read_text()) == {"ends": [3, 5]}
    again = AnalysisWidget(make_napari_viewer())
    qtbot.addWidget(again)
    _run(qtbot, again, again.open(tmp_path / "saved"))
    assert session_for(again.viewer).named_selections == {"ends": (3, 5)}
    assert "1 named selection(s)" in again.status.text() and "⚠" not in again.status.text()


def test_a_foreign_non_empty_folder_is_refused_and_nothing_written(widget, qtbot, tmp_path, parts):
    folder = tmp_path / "holiday photos"
    folder.mkdir()
    (folder / "beach.jpg").write_bytes(b"not really")
    session_for(widget.viewer).latents = parts[2]
    _run(qtbot, widget, widget.save(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["beach.jpg"]
    assert "not an analysis folder" in widget.status.text()


def test_a_newer_format_version_is_refused(widget, qtbot, analysis_folder, napari_hooks):
    manifest = json.loads((analysis_folder / "analysis.json").read_text())
    manifest["format_version"] += 1
    (analysis_folder / "analysis.json").write_text(json.dumps(manifest))
    assert widget.open(analysis_folder) is None  # refused before any work starts
    assert "Update napari-morphospace" in widget.status.text()
    assert napari_hooks.take_errors() == [widget.status.text().removeprefix("⚠ ")]
    assert len(widget.viewer.layers) == 0 and session_for(widget.viewer).crop_set is None


def test_report_button_writes_the_report(widget, qtbot, analysis_folder, monkeypatch):
    opened = []
    monkeypatch.setattr("napari_morphospace._qt.analysis_widget.QDesktopServices.openUrl", opened.append)
    widget.folder_edit.value = analysis_folder
    steps = []
    worker = widget.write_report()
    worker.yielded.connect(lambda step: steps.append((step.task, step.done)))
    _run(qtbot, widget, worker)
    html = (analysis_folder / "report.html").read_text()
    for title in (SECTIONS[0], SECTIONS[2], SECTIONS[-1]):
        assert f"<h2>{title}</h2>" in html
    # Progress is coalesced (a few messages a second): steps in order, each numbered, the last one always.
    assert steps[-1] == (f"report: {SECTIONS[-1]}", len(SECTIONS))
    assert all(task == f"report: {SECTIONS[done - 1]}" for task, done in steps)
    assert [done for _, done in steps] == sorted({done for _, done in steps})
    assert widget.status.text() == f"Report written to {analysis_folder / 'report.html'}"
    widget.open_report()
    assert opened[0].toLocalFile() == str((analysis_folder / "report.html").resolve())


def test_report_of_a_folder_that_is_not_an_analysis_is_refused(widget, tmp_path):
    assert widget.write_report(tmp_path) is None
    assert "press Save analysis first" in widget.status.text()
    assert not (tmp_path / "report.html").exists()


def test_saving_over_another_analysis_asks_first(widget, qtbot, analysis_folder, parts):
    before = (analysis_folder / "analysis.json").read_text()
    questions = []
    widget._ask = lambda question: questions.append(question) or False
    session_for(widget.viewer).latents = parts[2].iloc[:2]
    assert widget.save(analysis_folder) is None
    assert "already holds an analysis" in questions[0]
    assert (analysis_folder / "analysis.json").read_text() == before
    assert len(open_analysis(analysis_folder, allow_external=True).latents) == 6


def test_the_docked_analysis_widget_fits_a_1400_px_window(make_napari_viewer, dock, qtbot):
    """Every label, field and button ends inside the window: none is cut off at its right edge."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1400, 900)
    widget = dock(viewer, "Analysis")
    qtbot.waitUntil(lambda: widget.isVisible() and window.width() == 1400, timeout=5000)
    qtbot.wait(200)
    parts = [w for w in widget.findChildren((QLabel, QLineEdit, QPushButton)) if w.isVisible()]
    cut_off = {
        (w.text() or type(w).__name__): w.mapTo(window, w.rect().topRight()).x()
        for w in parts
        if w.mapTo(window, w.rect().topRight()).x() >= window.width()
    }
    assert len(parts) > 10 and not cut_off, f"cut off at the right edge of a {window.width()} px window: {cut_off}"
