"""Analysis folders: round trips, missing sources, versions, hand edits, and never running code from the folder."""

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from napari_morphospace._analysis_reader import (
    analysis_layers,
    get_analysis_reader,
    read_analysis_folder,
)
from napari_morphospace.core.cells.crop_set import CropSet, bbox_columns
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.models import ModelSettings, build_model
from napari_morphospace.core.project.analysis_folder import (
    FORMAT_VERSION,
    create_analysis,
    external_references,
    is_analysis_folder,
    open_analysis,
    read_manifest,
    save_analysis,
)
from napari_morphospace.core.project.annotations import AnnotationClass
from napari_morphospace.core.training.bundle import save_bundle
from napari_morphospace.core.training.engine import TrainSettings


def make_crop_set(images) -> CropSet:
    rng = np.random.default_rng(0)
    rows = []
    for crop_id in range(6):
        source = images[crop_id // 3]
        rows.append(
            {
                "crop_id": crop_id,
                "source": str(source.resolve()),
                "label_id": crop_id % 3 + 1,
                "t": 0,
                "group": ["control", "treated"][crop_id // 3],
                "annotation": "",
                **dict(zip(bbox_columns(2), (0, 16, 0, 16), strict=True)),
            }
        )
    return CropSet(rng.random((6, 1, 16, 16), dtype=np.float32), pd.DataFrame(rows), ["c0"], (0.5, 0.5))


def make_latents(crop_set: CropSet) -> pd.DataFrame:
    mu = np.arange(12, dtype=np.float32).reshape(6, 2) / 10
    table = pd.DataFrame(
        {
            "crop_id": crop_set.table["crop_id"],
            "mu_0": mu[:, 0],
            "mu_1": mu[:, 1],
            "logvar_0": -mu[:, 0],
            "logvar_1": -mu[:, 1],
            "group": crop_set.table["group"],
            "annotation": "",
            "source": crop_set.table["source"],
        }
    )  # text columns as embed() writes them
    return table


@pytest.fixture
def saved(tmp_path, sources):
    """An analysis folder whose source images lie outside it (tests open it with the user's consent)."""
    images, labels = sources
    folder = tmp_path / "analysis"
    manifest = create_analysis(folder, images=images, labels=labels, groups=["control", "treated"])
    crop_set = make_crop_set(images)
    latents = make_latents(crop_set)
    annotations = pd.DataFrame({"crop_id": [0, 4], "annotation": ["round", "spiky, odd"]})
    save_analysis(
        manifest,
        crop_set=crop_set,
        latents=latents,
        annotations=annotations,
        annotation_classes={"round": "#00ff00", "spiky, odd": "#ff00ff"},
        selections={"big ones": [5, 1], "empty": []},
        plot_settings={"x": "mu_1", "y": "mu_0"},
    )
    return folder, crop_set, latents, annotations


def test_round_trip_gives_back_every_part(saved, sources):
    folder, crop_set, latents, annotations = saved
    analysis = open_analysis(folder, allow_external=True)
    assert analysis.problems == [] and analysis.notes == []
    np.testing.assert_array_equal(analysis.crop_set.images, crop_set.images)
    pd.testing.assert_frame_equal(analysis.crop_set.table, crop_set.table, check_dtype=False)
    assert analysis.crop_set.spacing == (0.5, 0.5)
    pd.testing.assert_frame_equal(analysis.latents, latents)
    pd.testing.assert_frame_equal(analysis.annotations, annotations)
    assert analysis.annotation_classes == {"round": "#00ff00", "spiky, odd": "#ff00ff"}
    assert analysis.selections == {"big ones": [1, 5], "empty": []}
    assert analysis.manifest.plot_settings == {"x": "mu_1", "y": "mu_0"}
    assert analysis.source_images == list(sources[0])
    data = json.loads((folder / "analysis.json").read_text())
    assert data["format_version"] == FORMAT_VERSION and data["latents"]["path"] == "latents.parquet"
    assert data["sources"][0]["image"]["path"] == "../data/control.tif"
    assert data["sources"][1]["group"] == "treated"
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_a_partial_update_keeps_the_other_parts(saved):
    folder, crop_set, latents, _ = saved
    save_analysis(folder, selections={"only": [2]})
    analysis = open_analysis(folder, allow_external=True)
    assert analysis.selections == {"only": [2]}
    pd.testing.assert_frame_equal(analysis.latents, latents)
    assert len(analysis.annotations) == 2


def test_a_moved_folder_finds_its_sources_by_relative_path(saved, tmp_path):
    folder = saved[0]
    moved = tmp_path / "moved"
    moved.mkdir()
    (tmp_path / "data").rename(moved / "data")
    folder.rename(moved / "analysis")
    analysis = open_analysis(moved / "analysis", allow_external=True)
    assert analysis.problems == []
    assert analysis.source_images[0] == moved / "data" / "control.tif"


def test_missing_source_images_are_named_and_the_rest_opens(saved, sources):
    folder = saved[0]
    sources[0][1].unlink()
    sources[1][1].unlink()
    analysis = open_analysis(folder, allow_external=True)
    assert len(analysis.problems) == 2
    assert "treated.tif" in analysis.problems[0] and "missing" in analysis.problems[0]
    assert "treated_labels.tif" in analysis.problems[1]
    assert analysis.source_images[0] is not None and analysis.source_images[1] is None
    assert analysis.crop_set is not None and analysis.latents is not None and len(analysis.selections) == 2


def test_a_newer_format_is_refused_and_an_older_one_opens_with_a_note(saved):
    folder = saved[0]
    path = folder / "analysis.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format_version": FORMAT_VERSION + 1, "napari_morphospace_version": "9.0"}))
    with pytest.raises(InputError, match=r"napari-morphospace 9\.0 in analysis format version 2.*Update"):
        open_analysis(folder, allow_external=True)
    older = {k: v for k, v in data.items() if k not in ("selections", "plot_settings")}
    path.write_text(json.dumps({**older, "format_version": FORMAT_VERSION - 1}))
    analysis = open_analysis(folder, allow_external=True)
    assert "format 0" in analysis.notes[0] and analysis.problems == []
    assert analysis.selections == {} and analysis.latents is not None


def test_a_broken_analysis_json_is_refused_naming_it(saved):
    folder = saved[0]
    (folder / "analysis.json").write_text('{"format": "napari-morphospace analysis", ')
    with pytest.raises(InputError, match="analysis.json cannot be read"):
        open_analysis(folder, allow_external=True)


def test_hand_corrupted_latents_are_named_and_the_csv_copy_is_used(saved):
    folder, _, latents, _ = saved
    (folder / "latents.parquet").write_bytes(b"not parquet at all")
    analysis = open_analysis(folder, allow_external=True)
    assert len(analysis.problems) == 1 and "latents.parquet" in analysis.problems[0]
    pd.testing.assert_frame_equal(analysis.latents, latents, check_dtype=False)
    (folder / "latents.csv").write_text("garbage\n1,2,3\n")
    analysis = open_analysis(folder, allow_external=True)
    assert analysis.latents is None
    assert any("latents.parquet" in p for p in analysis.problems)
    assert analysis.crop_set is not None


def test_a_csv_edited_by_hand_is_flagged(saved):
    folder = saved[0]
    csv = folder / "latents.csv"
    csv.write_text(csv.read_text().replace("0.1", "0.7", 1))
    analysis = open_analysis(folder, allow_external=True)
    assert len(analysis.problems) == 1 and "latents.csv differs from latents.parquet" in analysis.problems[0]


def test_bad_selections_and_unknown_crop_ids_are_named(saved):
    folder = saved[0]
    (folder / "selections.json").write_text('{"a": ["x"]}')
    annotations = pd.DataFrame({"crop_id": [0, 99], "annotation": ["round", "round"]})
    annotations.to_csv(folder / "annotations.csv", index=False)
    analysis = open_analysis(folder, allow_external=True)
    assert any("selections.json" in p for p in analysis.problems)
    assert any("annotations.csv names 1 crop id(s)" in p and "99" in p for p in analysis.problems)
    assert analysis.selections == {}


class _Trap:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_code_in_the_folder_is_never_run(saved, tmp_path, monkeypatch):
    folder = saved[0]
    marker = tmp_path / "code-ran"
    (folder / "latents.pkl").write_bytes(pickle.dumps(_Trap(marker)))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w')\n")
    (folder / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    data = json.loads((folder / "analysis.json").read_text())
    data["latents"] = {"path": "latents.pkl", "absolute": str(folder / "latents.pkl")}
    data["selections"] = {"path": "evil.py", "absolute": str(folder / "evil.py")}
    (folder / "analysis.json").write_text(json.dumps(data))

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    analysis = open_analysis(folder, allow_external=True)
    with pytest.warns(UserWarning, match="latents.pkl"):
        layers = analysis_layers(folder, allow_external=True)
    assert len(layers) == 4
    assert not marker.exists()
    assert analysis.latents is None and analysis.selections == {}
    assert any("latents.pkl" in p and "not loaded" in p for p in analysis.problems)
    assert any("evil.py" in p and "not loaded" in p for p in analysis.problems)


def test_model_bundle_is_copied_in_and_loaded_from_safetensors(saved, tmp_path):
    folder = saved[0]
    settings = ModelSettings(latent_dim=2, base_channels=4)
    model = build_model(settings, (1, 16, 16))
    outside = save_bundle(
        model,
        tmp_path / "bundle",
        model_settings=settings,
        input_shape=(1, 16, 16),
        channel_names=["c0"],
        preprocess=None,
        train_settings=TrainSettings(),
        provenance={},
        history=[{"epoch": 0, "train_loss": 1.0}],
    )
    save_analysis(folder, model=outside)
    analysis = open_analysis(folder, allow_external=True)
    assert (folder / "model" / "weights.safetensors").is_file() and analysis.problems == []
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(analysis.bundle.model.state_dict()[name], tensor)
    (folder / "model" / "weights.safetensors").write_bytes(b"\x80\x04pickle?")
    analysis = open_analysis(folder, allow_external=True)
    assert analysis.bundle is None and any("weights.safetensors" in p for p in analysis.problems)


def test_create_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not an analysis folder"):
        create_analysis(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_a_folder_the_annotate_widget_autosaved_into_becomes_an_analysis(tmp_path):
    """Annotations autosaved before the first save of the analysis are kept, not refused."""
    from napari_morphospace.core.project.annotations import (
        AnnotationStore,
        read_annotations,
    )

    store = AnnotationStore([0, 1, 2], tmp_path, classes=[AnnotationClass("round", "#ff0000")])
    store.assign([1], "round")
    store.close()
    create_analysis(tmp_path)
    annotations, _ = read_annotations(tmp_path)
    assert annotations.tolist() == ["", "round", ""] and is_analysis_folder(tmp_path)


def test_analysis_layers_put_latents_and_annotations_in_labels_features(saved, sources):
    folder, crop_set, latents, _ = saved
    assert get_analysis_reader(str(folder)) is read_analysis_folder
    assert get_analysis_reader(str(sources[0][0])) is None
    layers = analysis_layers(str(folder), allow_external=True)
    assert [kind for _, _, kind in layers] == ["image", "labels", "image", "labels"]
    data, kwargs, _ = layers[3]
    assert data.shape == (40, 40) and set(np.unique(data)) == {0, 1, 2, 3}
    features = kwargs["features"]
    assert list(features["index"]) == [1, 2, 3] and list(features["crop_id"]) == [3, 4, 5]
    np.testing.assert_allclose(features["mu_1"], latents["mu_1"][3:])
    assert list(features["annotation"]) == ["", "spiky, odd", ""]
    assert kwargs["metadata"]["morphospace_analysis"] == str(folder)
    # The second source sits right of the first (40 px + a 20 px gap), its labels with it.
    assert layers[0][1]["translate"][-1] == 0.0
    assert layers[2][1]["translate"][-1] == kwargs["translate"][-1] == (40 + 20) * layers[0][1]["scale"][-1]


def test_analysis_layers_warn_about_missing_sources_and_open_the_rest(saved, sources):
    folder = saved[0]
    sources[0][0].unlink()
    with pytest.warns(UserWarning, match="control.tif"):
        layers = analysis_layers(folder, allow_external=True)
    assert [kwargs["name"] for _, kwargs, _ in layers][-1] == "treated_labels"  # as File > Open names it
    assert {kind for _, _, kind in layers} == {"image", "labels"}


def test_read_manifest_reports_entries_that_are_not_paths(saved):
    folder = saved[0]
    data = json.loads((folder / "analysis.json").read_text())
    data["annotations"] = 42
    (folder / "analysis.json").write_text(json.dumps(data))
    _, problems, _ = read_manifest(folder)
    assert any("'annotations'" in p for p in problems)


# --------------------------------------------------------------------------- references outside the folder


def test_nothing_outside_the_folder_is_read_without_consent(saved, sources):
    folder = saved[0]
    analysis = open_analysis(folder)
    assert analysis.source_images == [None, None] and analysis.crop_set is not None  # its own parts open
    [problem] = analysis.problems
    assert "4 source or label image(s) lie outside the analysis folder" in problem and "--allow-external" in problem
    assert external_references(folder) == [
        f"source image 0: {sources[0][0]}",
        f"label image 0: {sources[1][0]}",
        f"source image 1: {sources[0][1]}",
        f"label image 1: {sources[1][1]}",
    ]
    assert open_analysis(folder, allow_external=True).source_images == list(sources[0])


def test_a_copied_folder_with_a_deleted_part_never_reads_the_original_silently(saved, tmp_path):
    folder, _, latents, _ = saved
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "latents.parquet").unlink()
    (copy / "latents.csv").unlink()
    analysis = open_analysis(copy)
    assert analysis.latents is None
    assert any(f"is missing; its copy was recorded at {folder / 'latents.parquet'}" in p for p in analysis.problems)
    analysis = open_analysis(copy, allow_external=True)  # with consent it is read, and still named as a problem
    pd.testing.assert_frame_equal(analysis.latents, latents)
    assert any("latents.parquet is missing from" in p and "was read instead" in p for p in analysis.problems)


def test_a_link_inside_a_part_that_leads_outside_makes_the_part_external(saved, tmp_path):
    folder = saved[0]
    chunk = next((folder / "crops" / "images.zarr").rglob("c/0/*/*/*"))
    (tmp_path / "elsewhere.bin").write_bytes(chunk.read_bytes())
    chunk.unlink()
    chunk.symlink_to(tmp_path / "elsewhere.bin")
    analysis = open_analysis(folder, allow_external=False)
    assert analysis.crop_set is None
    assert any("crop set crops leads through a link to" in p and "elsewhere.bin" in p for p in analysis.problems)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: _edit(f, sources=5), "sources is 5, not a list"),
        (
            lambda f: _edit(f, sources=[{"image": {"path": "a.tif"}, "group": {"x": 1}}]),
            "group is {'x': 1}, not a name",
        ),
        (lambda f: _edit(f, crop_set={"path": "", "absolute": ""}), "'crop_set' is not a path entry"),
        (lambda f: (f / "selections.json").write_text("[" * 100000 + "]" * 100000), "selections"),
        (
            lambda f: (f / "annotations.csv").write_text("crop_id,annotation\n1.5,round\n"),
            "every crop_id must be a whole number",
        ),
        (
            lambda f: (
                (f / "latents.csv").unlink()
                or pd.read_parquet(f / "latents.parquet").assign(crop_id=np.nan).to_parquet(f / "latents.parquet")
            ),
            "crop_id nan is not a whole number",
        ),
    ],
)
def test_damaged_parts_are_listed_and_the_rest_opens(saved, damage, message):
    folder = saved[0]
    damage(folder)
    analysis = open_analysis(folder, allow_external=True)
    assert any(message in p for p in analysis.problems), analysis.problems
    assert analysis.manifest.crop_set is None or analysis.crop_set is not None


def _edit(folder, **changes):
    path = folder / "analysis.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_overwrite_replaces_only_an_analysis_of_ours(tmp_path):
    other = tmp_path / "other tool"
    other.mkdir()
    (other / "analysis.json").write_text('{"format": "another program", "runs": 12}')
    with pytest.raises(InputError, match="is not a napari-morphospace analysis, so it is not replaced"):
        create_analysis(other, overwrite=True)
    assert json.loads((other / "analysis.json").read_text()) == {"format": "another program", "runs": 12}
    create_analysis(tmp_path / "ours")
    assert create_analysis(tmp_path / "ours", overwrite=True).folder == tmp_path / "ours"
