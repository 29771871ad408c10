"""Files and folders written whole or not at all; scratch of killed runs removed, scratch of live ones kept."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from napari_morphospace.core import files
from napari_morphospace.core.errors import InputError


def dead_pid() -> int:
    """The id of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_scratch_of_dead_processes_of_this_host_is_removed_and_nothing_else(tmp_path):
    host = files._host()
    dead = dead_pid()
    stale_file = tmp_path / f".crop_000001.ome.tif.{host}-{dead}.abcd1234.tmp"
    stale_folder = tmp_path / f".crops.{host}-{dead}.x_y9z0ab.tmp"
    stale_old = tmp_path / f".crops.{host}-{dead}.q1w2e3r4.old"
    mine = tmp_path / files.scratch_prefix(tmp_path / "crops")
    mine = mine.with_name(mine.name + "k2k2k2k2.tmp")
    other_host = tmp_path / f".crops.elsewhere-{dead}.abcdabcd.tmp"
    unrelated = [tmp_path / ".hidden.tmp", tmp_path / f"crops.{host}-{dead}.abcd1234.tmp", tmp_path / "data.tif"]
    stale_file.write_bytes(b"")
    stale_folder.mkdir()
    (stale_folder / "images.zarr").write_bytes(b"198 MB in real life")
    stale_old.mkdir()
    for path in (mine, other_host, *unrelated):
        path.write_text("keep")
    removed = files.remove_stale_scratch(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_folder, stale_old])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, other_host, *unrelated))


def test_scratch_of_a_live_process_is_kept(tmp_path):
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            live = tmp_path / f".crops.{files._host()}-{alive.pid}.abcd1234.tmp"
            live.write_text("still being written")
            assert files.remove_stale_scratch(tmp_path) == []
            assert live.exists()
        finally:
            alive.kill()


def test_atomic_write_text_replaces_whole_and_leaves_no_scratch(tmp_path):
    target = tmp_path / "deeper" / "notes.json"
    files.atomic_write_text(target, '{"a": "ünïcødé"}')
    files.atomic_write_text(target, '{"a": 2}')
    assert target.read_text(encoding="utf-8") == '{"a": 2}'
    assert [p.name for p in target.parent.iterdir()] == ["notes.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~files.current_umask()


def test_failed_write_keeps_the_old_file_and_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    target.write_text("old")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(InputError, match=f"cannot write {target} \\(No space left on device\\)"):
        files.atomic_write_text(target, "new")
    # A caller with its own message says it through ``failed``.
    with pytest.raises(RuntimeError, match="table.csv: No space"):
        files.atomic_write_text(target, "new", failed=lambda path, err: RuntimeError(f"{path.name}: {err.strerror}"))
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_path_removes_its_scratch_when_the_writer_fails(tmp_path):
    target = tmp_path / "image.tif"
    with pytest.raises(ValueError, match="writer broke"):
        with files.atomic_path(target) as scratch:
            scratch.write_bytes(b"half")
            raise ValueError("writer broke")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "model"
    with files.atomic_folder(target) as scratch:
        (scratch / "weights").write_text("first")
    with pytest.raises(ValueError):
        with files.atomic_folder(target) as scratch:
            (scratch / "weights").write_text("half")
            assert (target / "weights").read_text() == "first"  # still the old one while writing
            raise ValueError("killed")
    assert (target / "weights").read_text() == "first"
    with files.atomic_folder(target) as scratch:
        (scratch / "weights").write_text("second")
        (scratch / "config").write_text("new file")
    assert sorted(p.name for p in target.iterdir()) == ["config", "weights"]
    assert (target / "weights").read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no scratch, no old copy left


def test_atomic_folder_in_an_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match=f"cannot write {blocker / 'model'}"):
        with files.atomic_folder(blocker / "model"):
            pass
    assert Path(blocker).read_text() == ""
