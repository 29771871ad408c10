"""Track ids of crops and per-track statistics of latent paths, on synthetic tracks with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_morphospace.core.analysis import tracks
from napari_morphospace.core.analysis.inference import InferenceSettings
from napari_morphospace.core.analysis.tracks import NO_TRACK, TRACK_ID
from napari_morphospace.core.cells import track_ids
from napari_morphospace.core.errors import InputError
from napari_morphospace.core.figures.tracks import paths_figure


def _cells(paths: dict[int, list[tuple[int, float, float]]], group: dict[int, str] | None = None) -> pd.DataFrame:
    """A per-cell table with one row per (track, frame, mu_0, mu_1), crop ids in row order."""
    rows = []
    for track, points in paths.items():
        for t, x, y in points:
            rows.append({TRACK_ID: track, "t": t, "mu_0": x, "mu_1": y, "group": (group or {}).get(track, "a")})
    table = pd.DataFrame(rows)
    return table.assign(crop_id=np.arange(len(table)), label_id=table[TRACK_ID], source="cells")


def test_straight_line_at_constant_speed_has_hand_computed_statistics():
    # track 1: (0,0) -> (3,4) -> (6,8) -> (9,12), one frame apart: steps of length 5
    line = {1: [(t, 3.0 * t, 4.0 * t) for t in range(4)]}
    table = tracks.track_statistics(_cells(line), ["mu_0", "mu_1"], frame_interval=2.0)
    row = table.iloc[0]
    assert row[TRACK_ID] == 1 and row["n_frames"] == 4 and (row["t_start"], row["t_end"]) == (0, 3)
    assert row["path_length"] == pytest.approx(15.0)
    assert row["net_displacement"] == pytest.approx(15.0)
    assert row["straightness"] == pytest.approx(1.0)
    assert row["mean_speed"] == pytest.approx(5.0 / 2.0)  # 5 latent units per step, 2 time units per frame


def test_there_and_back_has_zero_displacement_and_straightness_and_skipped_frames_count():
    # out 1 unit, back 1 unit; the second step spans frames 1 -> 3 (a missed frame)
    back = {7: [(0, 0.0, 0.0), (1, 1.0, 0.0), (3, 0.0, 0.0)]}
    row = tracks.track_statistics(_cells(back), ["mu_0", "mu_1"]).iloc[0]
    assert row["path_length"] == pytest.approx(2.0)
    assert row["net_displacement"] == pytest.approx(0.0)
    assert row["straightness"] == pytest.approx(0.0)
    assert row["mean_speed"] == pytest.approx((1.0 / 1 + 1.0 / 2) / 2)


def test_single_frame_track_has_no_speed_and_rows_off_tracks_are_left_out():
    cells = _cells({3: [(5, 1.0, 1.0)], NO_TRACK: [(0, 9.0, 9.0), (1, 8.0, 8.0)]})
    table = tracks.track_statistics(cells, ["mu_0", "mu_1"])
    assert list(table[TRACK_ID]) == [3]
    assert np.isnan(table["mean_speed"].iloc[0]) and np.isnan(table["straightness"].iloc[0])
    assert table["path_length"].iloc[0] == 0.0


def test_time_to_region_counts_from_the_track_start_and_is_nan_when_never_reached():
    cells = _cells({1: [(2, 0.0, 0), (3, 1.0, 0), (4, 2.0, 0), (5, 3.0, 0)], 2: [(0, 0.0, 1), (1, 0.5, 1)]})
    region = cells.loc[cells["mu_0"] >= 2.0, "crop_id"]  # track 1 reaches it at frame 4
    table = tracks.track_statistics(cells, ["mu_0", "mu_1"], region=region, frame_interval=10.0).set_index(TRACK_ID)
    assert table.loc[1, "time_to_region"] == pytest.approx(20.0)
    assert np.isnan(table.loc[2, "time_to_region"])


def test_track_group_is_its_last_non_empty_value():
    cells = _cells({1: [(0, 0, 0), (1, 1, 0), (2, 2, 0)]})
    cells["outcome"] = ["", "", "death"]
    table = tracks.track_statistics(cells, ["mu_0", "mu_1"], group_column="outcome")
    assert table["outcome"].iloc[0] == "death"


def test_a_track_visiting_a_frame_twice_is_refused():
    cells = _cells({1: [(0, 0, 0), (0, 1, 1)]})
    with pytest.raises(InputError, match="track 1 has .* frame 0"):
        tracks.track_statistics(cells, ["mu_0", "mu_1"])


def test_missing_track_column_says_how_to_give_track_ids():
    with pytest.raises(InputError, match="no track_id column"):
        track_ids.on_tracks(pd.DataFrame({"t": [0], "mu_0": [0.0]}))


def test_comparing_fast_and_slow_tracks_finds_the_difference():
    rng = np.random.default_rng(0)
    paths, group = {}, {}
    for track in range(30):
        speed = 2.0 if track < 15 else 1.0
        heading = rng.uniform(0, 2 * np.pi)
        paths[track] = [
            (t, speed * t * np.cos(heading) + rng.normal(0, 0.01), speed * t * np.sin(heading)) for t in range(6)
        ]
        group[track] = "fast" if track < 15 else "slow"
    statistics = tracks.track_statistics(_cells(paths, group), ["mu_0", "mu_1"])
    comparison = tracks.compare_track_groups(
        statistics, "group", settings=InferenceSettings(permutations=500, resamples=500)
    )
    comparison = comparison.set_index("measure")
    assert comparison.attrs["groups"] == ("fast", "slow") and comparison.attrs["notes"] == []
    speed = comparison.loc["mean_speed"]
    assert (speed["n_a"], speed["n_b"]) == (15, 15)
    assert speed["mean_a"] == pytest.approx(2.0, abs=0.05) and speed["mean_b"] == pytest.approx(1.0, abs=0.05)
    assert speed["d"] > 3 and speed["d_low"] > 0 and speed["d_low"] < speed["d"] < speed["d_high"]
    assert speed["p_value"] == pytest.approx(1 / 501)  # no relabelling of 500 is as extreme: (1 + 0) / (1 + 500)
    assert speed["q_value"] <= 4 * speed["p_value"]  # Benjamini–Hochberg over the 4 measures
    # straightness is ~1 in both groups: no difference to find
    assert comparison.loc["straightness", "p_value"] > 0.01


def test_too_few_tracks_get_means_but_no_p_value_and_a_note():
    cells = _cells({k: [(0, 0, 0), (1, float(k), 0)] for k in range(4)}, group={0: "a", 1: "a", 2: "b", 3: "b"})
    comparison = tracks.compare_track_groups(tracks.track_statistics(cells, ["mu_0", "mu_1"]), "group")
    speed = comparison.set_index("measure").loc["mean_speed"]
    assert speed["mean_a"] == 0.5 and speed["mean_b"] == 2.5 and np.isnan(speed["p_value"])
    assert any("only 6 ways" in note for note in comparison.attrs["notes"])


def test_comparison_needs_two_groups():
    statistics = tracks.track_statistics(_cells({1: [(0, 0, 0), (1, 1, 1)]}), ["mu_0", "mu_1"])
    with pytest.raises(InputError, match="two groups"):
        tracks.compare_track_groups(statistics, "group")
    with pytest.raises(InputError, match="no track has group 'b'"):
        tracks.compare_track_groups(statistics, "group", ["a", "b"])


def test_shuffled_frames_make_a_smooth_path_rougher_but_keep_each_tracks_cells():
    smooth = _cells({1: [(t, float(t), 0.0) for t in range(20)], 2: [(t, 0.0, float(t)) for t in range(20)]})
    shuffled = tracks.shuffle_frames(smooth, seed=1)
    assert sorted(shuffled["crop_id"]) == sorted(smooth["crop_id"])
    assert (shuffled.groupby(TRACK_ID)["t"].apply(sorted) == smooth.groupby(TRACK_ID)["t"].apply(sorted)).all()
    real = tracks.step_lengths(smooth, ["mu_0", "mu_1"])
    assert real == pytest.approx(np.ones(38))
    assert tracks.step_lengths(shuffled, ["mu_0", "mu_1"]).mean() > 3 * real.mean()
    real_mean, shuffled_mean = tracks.smoothness(smooth, ["mu_0", "mu_1"], shuffles=3)
    assert real_mean == 1.0 and shuffled_mean > 3.0


def test_track_paths_are_in_frame_order():
    cells = _cells({4: [(2, 2.0, 0.0), (0, 0.0, 0.0), (1, 1.0, 0.0)]})
    t, z = tracks.track_paths(cells, ["mu_0", "mu_1"])[4]
    assert list(t) == [0, 1, 2] and list(z[:, 0]) == [0.0, 1.0, 2.0]


# --------------------------------------------------------------------------- track ids of crops


def _crop_table(boxes: list[tuple[int, int, int, int, int, int]]) -> pd.DataFrame:
    """Crop rows (t, label_id, y_start, y_stop, x_start, x_stop)."""
    table = pd.DataFrame(boxes, columns=["t", "label_id", "y_start", "y_stop", "x_start", "x_stop"])
    return table.assign(crop_id=np.arange(len(table)), source="field")


def test_track_points_inside_boxes_give_each_crop_its_track():
    crops = _crop_table([(0, 1, 0, 10, 0, 10), (0, 2, 20, 30, 20, 30), (1, 5, 2, 12, 2, 12), (1, 6, 40, 50, 40, 50)])
    # napari Tracks rows: track_id, t, y, x; track 8 moves with cell 1 -> 5, track 9 sits in cell 2, nothing in cell 6
    points = np.array([[8, 0, 5, 5], [8, 1, 7, 6], [9, 0, 24, 26], [9, 1, 60, 60]], float)
    assert list(track_ids.track_ids_from_tracks(crops, points)) == [8, 9, 8, NO_TRACK]


def test_track_points_inside_labels_win_over_nearest_box_centre():
    crops = _crop_table([(0, 1, 0, 10, 0, 10), (0, 2, 0, 10, 0, 10)])  # two cells sharing one box
    labels = np.zeros((10, 10), np.int32)
    labels[:, :5], labels[:, 5:] = 1, 2
    points = np.array([[3, 0, 5, 1], [4, 0, 5, 8]], float)  # track 3 in label 1, track 4 in label 2
    assert list(track_ids.track_ids_from_tracks(crops, points, labels_at=lambda t: labels)) == [3, 4]
    by_box = track_ids.track_ids_from_tracks(
        crops, points
    )  # without labels both boxes take the point nearest the centre
    assert list(by_box) == [4, 4]


def test_tracks_of_the_wrong_dimension_are_refused():
    crops = _crop_table([(0, 1, 0, 10, 0, 10)])
    with pytest.raises(InputError, match=r"track_id, t, y, x"):
        track_ids.track_ids_from_tracks(crops, np.zeros((3, 5)))


def test_label_ids_are_track_ids_only_over_time():
    crops = _crop_table([(0, 1, 0, 1, 0, 1), (1, 1, 0, 1, 0, 1), (1, 2, 0, 1, 0, 1)])
    assert list(track_ids.track_ids_from_labels(crops)) == [1, 1, 2]
    with pytest.raises(InputError, match="single frame"):
        track_ids.track_ids_from_labels(crops[crops["t"] == 1])


def test_track_id_column_is_read_as_whole_numbers():
    table = pd.DataFrame({"TRACK_ID": [3.0, np.nan, 5.0]})
    assert list(track_ids.track_ids_from_column(table, "TRACK_ID")) == [3, NO_TRACK, 5]
    with pytest.raises(InputError, match="fractions"):
        track_ids.track_ids_from_column(pd.DataFrame({"x": [0.5]}), "x")


def test_paths_figure_draws_one_line_per_track_coloured_by_outcome():
    cells = _cells({1: [(0, 0, 0), (1, 1, 1)], 2: [(0, 2, 0), (1, 3, 1)]}, group={1: "death", 2: "division"})
    figure = paths_figure(cells, ["mu_0", "mu_1"], colour_by="group")
    axes = figure.axes[0]
    drawn = [line for line in axes.get_lines() if len(line.get_xdata())]
    assert len(drawn) == 2 and drawn[0].get_color() != drawn[1].get_color()
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["death", "division"]


def test_path_segments_join_consecutive_frames_of_each_track_across_sources():
    # rows: two fields both with a track 1; row 4 lies on no track
    ids = np.array([1, 1, 1, 1, NO_TRACK, 1])
    sources = np.array([0, 0, 1, 1, 0, 0])
    t = np.array([2, 0, 0, 1, 1, 1])
    keys = tracks.track_keys(ids, sources)
    assert keys[4] == -1 and keys[0] == keys[1] == keys[5] and keys[2] == keys[3] and keys[0] != keys[2]
    segments = tracks.path_segments(keys, t)
    assert sorted(map(tuple, segments.tolist())) == [(1, 5), (2, 3), (5, 0)]
    assert list(tracks.track_keys(pd.array([3, pd.NA, 3], dtype="Int64"))) == [0, -1, 0]


def test_nearest_segment_measures_distance_to_the_line_not_its_ends():
    positions = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0], [10.0, 5.0]])
    segments = np.array([[0, 1], [2, 3]])
    assert tracks.nearest_segment(positions, segments, (5.0, 0.8), 1.0) == 0  # mid-segment, 0.8 from the line
    assert tracks.nearest_segment(positions, segments, (5.0, 4.5), 1.0) == 1
    assert tracks.nearest_segment(positions, segments, (5.0, 2.5), 1.0) is None
    assert tracks.nearest_segment(positions, segments, (5.0, 2.5), (1.0, 3.0)) in (0, 1)  # per-axis radius
