"""Annotation store: classes, undo/redo, autosave that survives kill -9, damaged files, the folder lock."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.errors import InputError
from napari_morphospace.core.project import annotations as annotations_module
from napari_morphospace.core.project.annotations import (
    ANNOTATIONS_CSV,
    CLASSES_JSON,
    LOCK_NAME,
    AnnotationClass,
    AnnotationStore,
    annotation_overlay,
    class_codes,
    read_annotations,
)

IDS = [3, 7, 10, 42]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_assign_clear_and_table(tmp_path):
    with AnnotationStore(IDS, tmp_path) as store:
        store.add_class("mitotic", "#ff0000")
        store.add_class("round")
        assert store.assign([3, 42], "mitotic") == 2
        assert store.assign([42, 7], "round") == 2
        assert store.clear([3, 10]) == 1  # 10 was not annotated
        assert store.annotations.to_dict() == {3: "", 7: "round", 10: "", 42: "round"}
        table = pd.DataFrame({"crop_id": [42, 3, 99], "annotation": ["x", "x", "x"], "group": ["a", "b", "c"]})
        out = store.apply_to_table(table)
        assert out["annotation"].tolist() == ["round", "", ""]
        assert table["annotation"].tolist() == ["x", "x", "x"]  # a copy, the input is unchanged
        with pytest.raises(InputError, match="no class named 'nope'"):
            store.assign([3], "nope")
        with pytest.raises(InputError, match="99"):
            store.assign([99], "round")


def test_undo_redo_sequence(tmp_path):
    store = AnnotationStore(IDS, tmp_path)
    store.add_class("a")
    store.add_class("b")
    store.assign([3, 7], "a")
    store.assign([7, 10], "b")
    store.rename_class("a", "alpha")
    assert store.annotations.tolist() == ["alpha", "b", "b", ""]
    assert store.undo() == "rename a to alpha"
    assert store.annotations.tolist() == ["a", "b", "b", ""]
    assert store.class_names == ["a", "b"]
    store.undo()
    assert store.annotations.tolist() == ["a", "a", "", ""]
    assert store.redo() == "assign b"
    assert store.annotations.tolist() == ["a", "b", "b", ""]
    # A new action drops the redo history.
    store.clear([3])
    assert not store.can_redo and store.redo() is None
    # Undo everything: no classes, nothing annotated; the saved files say so too.
    while store.undo():
        pass
    assert store.class_names == [] and set(store.annotations) == {""}
    saved, classes = read_annotations(tmp_path)
    assert set(saved) == {""} and classes == []
    store.close()


def test_remove_class_in_use_needs_reassign_to(tmp_path):
    store = AnnotationStore(IDS, tmp_path, classes=[AnnotationClass("a", "#000000"), AnnotationClass("b", "#ffffff")])
    store.assign([3, 7], "a")
    with pytest.raises(InputError, match="2 crop"):
        store.remove_class("a")
    store.remove_class("a", reassign_to="b")
    assert store.annotations.tolist() == ["b", "b", "", ""] and store.class_names == ["b"]
    store.undo()
    assert store.annotations.tolist() == ["a", "a", "", ""] and store.class_names == ["a", "b"]
    store.remove_class("a", reassign_to="")
    assert store.annotations.tolist() == ["", "", "", ""]
    store.add_class("unused")
    store.remove_class("unused")  # not in use: no reassign_to needed
    store.close()


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 101])
def test_bad_class_names_are_refused(tmp_path, name):
    store = AnnotationStore(IDS)
    with pytest.raises(InputError):
        store.add_class(name)
    with pytest.raises(InputError, match="hex colour"):
        store.add_class("ok", "red")


def test_autosave_then_reopen_round_trip_with_odd_names(tmp_path):
    store = AnnotationStore(IDS, tmp_path)
    store.add_class('a,"b', "#123456")
    store.add_class("ünïcødé")
    store.assign([3], 'a,"b')
    store.assign([42], "ünïcødé")
    expected = store.annotations
    store.close()
    reopened = AnnotationStore.open(tmp_path, IDS)
    pd.testing.assert_series_equal(reopened.annotations, expected)
    assert reopened.classes == store.classes
    assert reopened.colour_of('a,"b') == "#123456"
    reopened.close()
    # The files are plain CSV/JSON that pandas reads.
    table = pd.read_csv(tmp_path / ANNOTATIONS_CSV, keep_default_na=False)
    assert table["annotation"].tolist() == ['a,"b', "", "", "ünïcødé"]
    assert json.loads((tmp_path / CLASSES_JSON).read_text())["version"] == 1


def test_constructor_refuses_a_folder_with_annotations(tmp_path):
    AnnotationStore(IDS, tmp_path).close()
    with pytest.raises(InputError, match="AnnotationStore.open"):
        AnnotationStore(IDS, tmp_path)


def test_kill_9_after_autosave_loses_nothing(tmp_path):
    """A real process annotates, then kills itself with SIGKILL: no close, the lock is left behind."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from napari_morphospace.core.project.annotations import AnnotationStore
        store = AnnotationStore({IDS}, {str(tmp_path)!r})
        store.add_class("dead")
        store.assign([7, 42], "dead")
        store.add_class("alive")
        store.assign([3], "alive")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert (tmp_path / LOCK_NAME).exists()  # left behind by the dead process: stale, so taken over
    store = AnnotationStore.open(tmp_path, IDS)
    assert store.annotations.tolist() == ["alive", "dead", "", "dead"]
    assert store.class_names == ["dead", "alive"]
    store.close()
    assert not (tmp_path / LOCK_NAME).exists()


def test_dropped_store_reopens_with_takeover(tmp_path):
    store = AnnotationStore(IDS, tmp_path)
    store.add_class("a")
    store.assign([10], "a")
    del store  # no close: our own pid still holds the lock
    with pytest.raises(InputError, match="another viewer"):
        AnnotationStore.open(tmp_path, IDS)
    reopened = AnnotationStore.open(tmp_path, IDS, take_over=True)
    assert reopened.annotations.tolist() == ["", "", "a", ""]
    reopened.close()


def test_crash_during_write_keeps_previous_files(tmp_path, monkeypatch):
    store = AnnotationStore(IDS, tmp_path)
    store.add_class("a")
    store.assign([3], "a")
    before = {n: (tmp_path / n).read_bytes() for n in (ANNOTATIONS_CSV, CLASSES_JSON)}

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(InputError, match=f"{CLASSES_JSON}.*No space left"):
        store.assign([7], "a")
    assert store.unsaved and store.annotations[7] == "a"  # kept in memory, marked unsaved
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert read_annotations(tmp_path)[0].to_dict() == {3: "a", 7: "", 10: "", 42: ""}
    store.save()  # retry once the disk is fine again
    assert not store.unsaved and read_annotations(tmp_path)[0][7] == "a"
    store.close()


def test_half_written_temp_file_is_ignored(tmp_path):
    store = AnnotationStore(IDS, tmp_path)
    store.add_class("a")
    store.assign([42], "a")
    store.close()
    (tmp_path / f".{ANNOTATIONS_CSV}.abc.tmp").write_text("crop_id,annot")  # what a kill mid-write leaves
    reopened = AnnotationStore.open(tmp_path, IDS)
    assert reopened.annotations[42] == "a"
    reopened.close()


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("crop_id,annotation\n3,a\nseven,a\n", "line 3"),
        ("crop_id,annotation\n3,a\n3,a\n", "line 3"),
        ("crop_id,annotation\n3,a,extra\n", "line 2"),
        ("id;annotation\n3;a\n", "line 1"),
    ],
)
def test_hand_damaged_csv_names_file_and_line_and_is_not_overwritten(tmp_path, text, line):
    AnnotationStore(IDS, tmp_path).close()
    (tmp_path / ANNOTATIONS_CSV).write_text(text)
    with pytest.raises(InputError, match=f"{ANNOTATIONS_CSV} is damaged at {line}"):
        AnnotationStore.open(tmp_path, IDS)
    assert (tmp_path / ANNOTATIONS_CSV).read_text() == text
    assert not (tmp_path / LOCK_NAME).exists()  # the failed open released its lock
    # The user decides: keep the damaged file as a backup and continue.
    store = AnnotationStore.open(tmp_path, IDS, on_damaged="backup")
    backups = list(tmp_path.glob(f"{ANNOTATIONS_CSV}.damaged-*"))
    assert len(backups) == 1 and backups[0].read_text() == text
    store.add_class("fresh")
    store.assign([3], "fresh")
    assert read_annotations(tmp_path)[0][3] == "fresh"
    store.close()


def test_hand_damaged_json_names_line(tmp_path):
    AnnotationStore(IDS, tmp_path).close()
    (tmp_path / CLASSES_JSON).write_text(
        '{\n "format": "napari-morphospace annotation classes",\n "version": 1,\n oops\n}'
    )
    with pytest.raises(InputError, match=f"{CLASSES_JSON} is damaged at line 4"):
        AnnotationStore.open(tmp_path, IDS)


def test_unknown_crop_ids_are_reported_and_kept(tmp_path):
    (tmp_path / ANNOTATIONS_CSV).write_text("crop_id,annotation\n3,a\n999,b\n")
    store = AnnotationStore.open(tmp_path, IDS)
    assert store.unknown_crop_ids == [999]
    assert store.annotations.to_dict() == {3: "a", 7: "", 10: "", 42: ""}
    assert store.class_names == ["a", "b"]  # names used in the CSV but not in the classes file are added
    store.assign([7], "a")
    assert read_annotations(tmp_path)[0].to_dict() == {3: "a", 7: "a", 10: "", 42: "", 999: "b"}
    store.close()


def test_lock_refuses_second_writer_and_takes_over_stale_lock(tmp_path):
    first = AnnotationStore(IDS, tmp_path)
    with pytest.raises(InputError, match=f"process {os.getpid()}"):
        AnnotationStore.open(tmp_path, IDS)
    first.close()
    assert not (tmp_path / LOCK_NAME).exists()
    # A lock of a dead process on this host is stale and taken over.
    lock = {"pid": _dead_pid(), "host": annotations_module.socket.gethostname(), "since": "earlier"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(lock))
    second = AnnotationStore.open(tmp_path, IDS)
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    second.close()
    # A live process on another host is not judged from here: refused.
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "now"}))
    with pytest.raises(InputError, match="elsewhere"):
        AnnotationStore.open(tmp_path, IDS)


def test_overlay_lut_equals_brute_force():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 30, size=(3, 40, 50)).astype(np.uint16)
    label_ids = np.arange(1, 30)
    annotated = rng.choice(["", "a", "b"], size=len(label_ids))
    codes = class_codes(annotated, ["a", "b"])
    overlay = annotation_overlay(labels, label_ids, codes)
    expected = np.zeros_like(labels)
    for label_id, name in zip(label_ids, annotated, strict=True):
        expected[labels == label_id] = {"": 0, "a": 1, "b": 2}[name]
    np.testing.assert_array_equal(overlay, expected)
    assert overlay.dtype == np.uint16 and overlay.shape == labels.shape
