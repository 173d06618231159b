"""Big Data Cup 2022 ice hockey: every power play of the real data read into Frames (teams, rink, shots, clips), its
play-by-play events aligned (checked against the tracking itself), the events part of the store round-tripped, and
each kind of bad input ending in a one-line UserError naming the file (or a counted drop)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line_error, shared_path

from trajsv_jax.data import clips, events, pitch, store
from trajsv_jax.data.ingest import bigdatacup
from trajsv_jax.errors import UserError

SMALL_GAME = "2022-02-08 ROC at Finland"
SMALL = (f"{SMALL_GAME} P2 PP3", f"{SMALL_GAME} P2 PP4")  # the two smallest power plays: 245 and 3019 rows
CROSS_PERIOD = "bigdatacup_2022-02-16_switzerland_at_finland_p2_pp3"  # starts in period 1, ends in period 2


@pytest.fixture(scope="module")
def data() -> Path:
    return shared_path("data/bigdatacup_hockey_2022")


@pytest.fixture(scope="module")
def read(data):
    return bigdatacup.read_bigdatacup(data)


@pytest.fixture(scope="module")
def sources(read):
    return {s.source_id: s for s in read[0]}


@pytest.fixture(scope="module")
def report(read):
    return read[1]


@pytest.fixture(scope="module")
def packed(sources):
    """Each source cut into clips by the store, with the drops."""
    return {sid: store.source_from_frames(s.frames, sid) for sid, s in sources.items()}


def small_copy(data: Path, tmp_path: Path, names=SMALL) -> Path:
    """A Big Data Cup folder of symlinks to the real files of a few power plays of one game (files to damage are
    replaced, never written through)."""
    root = tmp_path / "bdc"
    game = root / "TrackingData" / SMALL_GAME
    game.mkdir(parents=True)
    (root / bigdatacup.PXP_FILE).symlink_to(data / bigdatacup.PXP_FILE)
    (root / "TrackingData" / "pp_info.csv").symlink_to(data / "TrackingData" / "pp_info.csv")
    for name in names:
        for file in (f"{name}.csv", f"videoShotsInfo_{name}.csv"):
            (game / file).symlink_to(data / "TrackingData" / SMALL_GAME / file)
    return root


def replace(path: Path, text: str | bytes) -> Path:
    path.unlink()
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def nearest(frames: clips.Frames, event: dict, frame_ids: np.ndarray) -> float:
    """The smallest distance (m) from an event's location to an on-rink player of its team in any of `frame_ids`."""
    role = clips.ROLE_TEAM_A if event["team"] == "team_a" else clips.ROLE_TEAM_B
    index = frame_ids - frames.frame_id[0]
    index = index[(index >= 0) & (index < len(frames.frame_id))]
    index = index[frames.period[index] == event["period"]]
    pos = frames.positions[index][:, frames.object_role == role]
    pos = np.where(pitch.off_pitch(pos, frames.pitch_length, frames.pitch_width)[..., None], np.nan, pos)
    d = np.hypot(pos[..., 0] - event["x"], pos[..., 1] - event["y"])
    return float(np.nanmin(d)) if np.isfinite(d).any() else np.nan


# --- the power plays ---------------------------------------------------------------------------------------------


def test_every_power_play_is_read(report, sources):
    # 33 tracking files; pp_info has 37 rows: three power plays of zero length (start clock == end clock) and one
    # (2022-02-14 Switzerland at Canada PP3) whose shots file has no shot and that upstream ships without tracking
    assert report["power_play_files"] == report["power_plays_read"] == len(sources) == 33
    assert report["power_plays_dropped"] == []
    assert report["pp_info_rows_without_tracking"] == [
        "2022-02-08 Canada at USA PP4",
        "2022-02-12 Switzerland at ROC PP4",
        "2022-02-14 Switzerland at Canada PP3",
        "2022-02-14 USA at Finland PP2",
    ]
    assert report["shots_files_without_tracking"] == ["videoShotsInfo_2022-02-14 Switzerland at Canada P2 PP3.csv"]
    assert report["games"] == 6 and len({s.group for s in sources.values()}) == 6
    assert report["detections_in_files"] == report["detections"] == 482_764
    assert report["frames_with_detections"] == 75_192
    assert report["frames"] == sum(len(s.frames.frame_id) for s in sources.values())
    assert report["frames"] == report["frames_with_detections"] + report["filled_frames"]


def test_sources_are_centred_metres_at_30_fps_on_the_period_video_clock(sources):
    for sid, s in sources.items():
        f = s.frames
        assert re.fullmatch(r"bigdatacup_\d{4}-\d\d-\d\d_[a-z_]+_p\d_pp\d", sid) and s.group in sid
        assert (f.sport, f.field_kind, f.fps) == ("ice_hockey", "metric", 30.0)
        assert (f.pitch_length, f.pitch_width) == pytest.approx((60.96, 25.908))
        assert np.all(np.diff(f.frame_id) == 1), sid  # consecutive: missing frame ids are all-NaN rows
        assert f.positions.shape == (len(f.frame_id), len(f.object_id), 2) and f.shot.shape == f.frame_id.shape
        clock = f.metadata["power_play_clock"]
        if sid != CROSS_PERIOD:
            expected = clock["start_video_clock_seconds"] + (f.frame_id - 1) / 30
            np.testing.assert_allclose(f.timestamp, expected)
            assert set(f.period) == {f.metadata["period"]}
        assert f.metadata["licence"] == bigdatacup.LICENCE and f.metadata["provider"] == "bigdatacup"


def test_a_power_play_across_a_period_end_is_cut_between_shots(sources):
    f = sources[CROSS_PERIOD].frames
    cut = int(np.flatnonzero(np.diff(f.period))[0]) + 1
    assert list(f.period[[0, -1]]) == [1, 2] and np.all(np.diff(f.period) >= 0)
    assert f.shot[cut - 1] == -1 or f.shot[cut - 1] != f.shot[cut]  # no shot holds both periods
    assert f.timestamp[0] == pytest.approx(1784 + (f.frame_id[0] - 1) / 30)  # period 1 from its start video clock
    assert f.timestamp[-1] == pytest.approx(67 - (5939 - f.frame_id[-1]) / 30)  # period 2 up to its end video clock


def test_roles_follow_home_and_away(sources, report):
    for s in sources.values():
        meta = s.frames.metadata
        for object_id, role in zip(s.frames.object_id, s.frames.object_role, strict=True):
            about = meta["objects"][object_id]
            assert re.fullmatch(rf"{about['team_id'].lower()}_\d+", object_id)
            assert about["team_name"] == (meta["home_team"] if role == clips.ROLE_TEAM_A else meta["away_team"])
        assert set(s.frames.object_role) == {clips.ROLE_TEAM_A, clips.ROLE_TEAM_B}
        away, home = meta["game"][11:].split(" at ")
        if meta["game"] == "2022-02-14 Finland at USA":  # the folder has it backwards: pxp, pp_info, rosters agree
            assert (meta["home_team"], meta["away_team"], meta["file_name_home_away_swapped"]) == (
                "Finland",
                "USA",
                True,
            )
        else:
            assert (meta["home_team"], meta["away_team"], meta["file_name_home_away_swapped"]) == (home, away, False)
    assert report["games_with_home_away_swapped_in_file_names"] == ["2022-02-14 Finland at USA"]


def test_positions_are_on_the_rink_except_the_counted_off_rink_points(sources, packed, report):
    total = 0
    for sid, s in sources.items():
        f = s.frames
        outside = pitch.off_pitch(f.positions, f.pitch_length, f.pitch_width)
        assert outside.sum() == f.metadata["counts"]["off_rink_detections"] == packed[sid][1].off_pitch
        total += int(outside.sum())
    assert total == report["off_rink_detections"] == 13_911  # 2.9% of the detections, mostly beyond the far boards


def test_frames_outside_shots_are_empty_and_no_clip_spans_two_shots(sources, packed):
    for sid, s in sources.items():
        f = s.frames
        assert not np.isfinite(f.positions[f.shot < 0]).any(), sid
        source, _ = packed[sid]
        assert source.num_clips > 0
        for c in range(source.num_clips):
            first = int(source.clip_first_frame[c]) - int(f.frame_id[0])
            shots = f.shot[first : first + int(source.clip_lengths()[c])]
            assert shots[0] >= 0 and np.all(shots == shots[0]), (sid, c)


def test_detections_outside_every_shot_are_dropped_and_counted(data, tmp_path):
    root = small_copy(data, tmp_path, SMALL[1:])
    shots = root / "TrackingData" / SMALL_GAME / f"videoShotsInfo_{SMALL[1]}.csv"
    lines = shots.read_text().splitlines()  # one shot, frames 52..392: keep 100..300
    cells = lines[1].split(",")
    replace(shots, "\n".join([lines[0], ",".join([cells[0], "100", "300", *cells[3:]])]) + "\n")
    (source,), report = bigdatacup.read_bigdatacup(root)
    f = source.frames
    assert f.frame_id[[0, -1]].tolist() == [100, 300] and np.all(f.shot == 0)
    counts = f.metadata["counts"]
    assert counts["detections_outside_shots_skipped"] == report["detections_outside_shots"] > 0
    assert counts["detections"] + counts["detections_outside_shots_skipped"] == counts["detections_in_file"] == 3019


# --- the events ---------------------------------------------------------------------------------------------------


def test_events_are_aligned_far_better_than_the_linear_clock_map(report):
    a, counts = report["alignment"], report["events"]
    assert counts["in_pxp"] == 10_609 and counts["of_games_without_tracking"] == 0
    assert counts["kept"] + counts["outside_any_sequence"] == 10_609  # no two power plays share an event
    assert counts["kept"] == a["events"] == 1556 and counts["team_not_tracked"] == 0
    assert counts["without_residual"] == counts["not_in_view"] == a["events"] - a["with_residual"] < 0.25 * 1556
    refined, model, linear = a["residual_m"], a["model_residual_m"], a["linear_residual_m"]
    # measured: refined median 2.3 m (p90 9.8), the clock model's frame alone 3.6 m, the linear map's frame 6.8 m
    assert refined["median"] < 3.0 and refined["under_5m"] > 0.75 * refined["count"]
    assert model["median"] < 4.5 < 5.5 < linear["median"]  # both without any search: the clock model's own gain
    assert model["under_5m"] / model["count"] > 1.5 * linear["under_5m"] / linear["count"]
    assert a["fine_shift_seconds"]["max_abs"] <= bigdatacup.WINDOW_S


def test_residuals_are_the_tracking_distances_and_not_the_search_alone(sources):
    half = round(bigdatacup.WINDOW_S * 30)
    refined, linear, control = [], [], []
    for s in sources.values():
        for e in s.events:
            if e["residual_m"] is None:
                continue
            assert nearest(s.frames, e, np.array([e["frame"]])) == pytest.approx(e["residual_m"], abs=2e-3)
            linear.append(nearest(s.frames, e, np.array([e["frame_linear"]])))
            window = e["detail"]["model_frame"] + 900 + np.arange(-half, half + 1)  # the same search, 30 s off
            control.append(nearest(s.frames, e, window))
            refined.append(e["residual_m"])
    paired = np.isfinite(linear)
    assert np.median(np.array(refined)[paired]) < 0.5 * np.nanmedian(linear)
    assert np.nanmedian(control) > 3 * np.median(refined)  # measured: 9 m vs 2.3 m


def test_orientation_alternates_each_period(report):
    for game in {row["game"] for row in report["orientation"]}:
        rows = {r["period"]: r for r in report["orientation"] if r["game"] == game}
        for p, row in rows.items():
            assert row["determined"]
            other = "-x" if row["home_attacks"] == "+x" else "+x"
            assert row["median_residual_m"][row["home_attacks"]] < 0.6 * row["median_residual_m"][other]
            if p + 1 in rows:
                assert rows[p + 1]["home_attacks"] != row["home_attacks"]  # teams swap ends every period


def test_event_records_are_valid_and_on_the_source_clock(sources):
    for sid, s in sources.items():
        events.validate(s.events, sid)
        f = s.frames
        for e in s.events:
            assert e["period"] in set(f.period.tolist())
            i = e["frame"] - f.frame_id[0]
            if 0 <= i < len(f.frame_id):
                assert e["time"] == pytest.approx(f.timestamp[i], abs=1e-3)
            assert e["team_name"] == f.metadata["home_team" if e["team"] == "team_a" else "away_team"]
            assert abs(e["x"]) <= 30.48 + 1e-6 and abs(e["y"]) <= 12.954 + 1e-6
        assert s.events and f.metadata["alignment"]["events"] == len(s.events)


def test_events_round_trip_through_the_store(sources, tmp_path):
    s = sources[CROSS_PERIOD]
    alignment = s.frames.metadata["alignment"]
    path = events.write_events(tmp_path, s.source_id, s.events, alignment)
    assert path == tmp_path / "events" / f"{CROSS_PERIOD}.json"
    assert events.read_events(tmp_path, s.source_id) == (s.events, json.loads(json.dumps(alignment)))
    document = json.loads(path.read_text())
    assert (document["format"], document["version"], document["source_id"]) == ("trajsv-events", 1, CROSS_PERIOD)


def test_damaged_events_files_are_refused_in_one_line(sources, tmp_path):
    s = sources[CROSS_PERIOD]
    path = events.write_events(tmp_path, s.source_id, s.events, {})
    good = json.loads(path.read_text())
    for change, words in (
        ({"version": 2}, ("version 2",)),
        ({"format": "x"}, ("not a trajsv events file",)),
        ({"source_id": "other"}, ("'other'",)),
        ({"events": [dict(s.events[0], time="soon")]}, ("events[0].time",)),
        ({"events": [dict(s.events[0], team="home")]}, ("events[0].team",)),
        ({"events": [{"time": 1.0}]}, ("events[0] lacks",)),
    ):
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(UserError) as e:
            events.read_events(tmp_path, s.source_id)
        one_line_error(e, str(path), "trajsv ingest bigdatacup", *words)
    path.write_text('{"format": "trajsv-ev')
    with pytest.raises(UserError) as e:
        events.read_events(tmp_path, s.source_id)
    one_line_error(e, str(path), "unreadable")
    with pytest.raises(UserError) as e:
        events.write_events(tmp_path, s.source_id, [dict(s.events[0], x=float("nan"))], {})
    one_line_error(e, "events[0].x")
    with pytest.raises(UserError) as e:
        events.write_events(tmp_path, "../out", s.events, {})
    one_line_error(e, "'../out'")


# --- bad input ----------------------------------------------------------------------------------------------------


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(UserError) as e:
        bigdatacup.read_bigdatacup(tmp_path / "nowhere")
    one_line_error(e, str(tmp_path / "nowhere"), "no such folder")
    (tmp_path / "TrackingData" / "game").mkdir(parents=True)
    with pytest.raises(UserError) as e:
        bigdatacup.read_bigdatacup(tmp_path)
    one_line_error(e, str(tmp_path / "TrackingData"), "no power-play CSVs")


def test_the_small_copy_reads(data, tmp_path):
    sources, report = bigdatacup.read_bigdatacup(small_copy(data, tmp_path) / "TrackingData")  # TrackingData works
    assert [s.source_id for s in sources] == [
        "bigdatacup_2022-02-08_roc_at_finland_p2_pp3",
        "bigdatacup_2022-02-08_roc_at_finland_p2_pp4",
    ]
    assert report["events"]["kept"] == 24


def tracking(root: Path, name: str = SMALL[0]) -> Path:
    return root / "TrackingData" / SMALL_GAME / f"{name}.csv"


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda root: replace(tracking(root), b""), ("empty file",)),
        (lambda root: replace(tracking(root), tracking(root).read_text()[:-30]), ("truncated or corrupt",)),
        (lambda root: replace(tracking(root), tracking(root).read_text().splitlines()[0] + "\n"), ("no rows",)),
        (
            lambda root: replace(tracking(root), tracking(root).read_text().replace(",x_ft,", ",x,", 1)),
            ("missing columns x_ft",),
        ),
        (lambda root: replace(tracking(root), b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"), ("not a readable CSV",)),
    ],
    ids=["empty", "truncated", "header-only", "wrong-columns", "binary"],
)
def test_damaged_tracking_csvs_are_named(data, tmp_path, damage, words):
    root = small_copy(data, tmp_path)
    damage(root)
    with pytest.raises(UserError) as e:
        bigdatacup.read_bigdatacup(root)
    one_line_error(e, str(tracking(root)), *words)


def test_missing_clock_table_and_a_power_play_without_its_row(data, tmp_path):
    root = small_copy(data, tmp_path)
    pp_info = root / "TrackingData" / "pp_info.csv"
    text = pp_info.read_text()
    replace(pp_info, "\n".join(line for line in text.splitlines() if not line.startswith(f"{SMALL_GAME},3,")))
    with pytest.raises(UserError) as e:
        bigdatacup.read_bigdatacup(root)
    one_line_error(e, str(tracking(root)), str(pp_info), "no row for power play 3")
    pp_info.unlink()
    with pytest.raises(UserError) as e:
        bigdatacup.read_bigdatacup(root)
    one_line_error(e, str(pp_info), "missing")


@pytest.mark.parametrize("content", [None, b"", b"\xff\xfe\x00garbage\x00\xc3(", b"game_date,period\n1,2\n"])
def test_a_missing_or_unreadable_play_by_play_is_named(data, tmp_path, content):
    root = small_copy(data, tmp_path)
    pxp = root / bigdatacup.PXP_FILE
    pxp.unlink()
    if content is not None:
        pxp.write_bytes(content)
    with pytest.raises(UserError) as e:
        bigdatacup.read_bigdatacup(root)
    one_line_error(e, str(pxp))


def test_power_plays_without_a_main_camera_shot_are_counted_drops(data, tmp_path):
    root = small_copy(data, tmp_path)
    shots = root / "TrackingData" / SMALL_GAME / f"videoShotsInfo_{SMALL[0]}.csv"
    header = shots.read_text().splitlines()[0]
    replace(shots, header + "\n1,90000,90010,3000.0,3000.3\n")  # a shot, but not where the tracking is
    sources, report = bigdatacup.read_bigdatacup(root)
    assert [s.source_id for s in sources] == ["bigdatacup_2022-02-08_roc_at_finland_p2_pp4"]
    assert report["power_plays_dropped"] == [
        {"file": str(tracking(root)), "reason": "no main-camera shot overlaps the tracking"}
    ]
    assert report["events"]["outside_any_sequence"] == 955 + 784 - 20  # the game's events less the kept power play's
    replace(shots, header + "\n")
    assert bigdatacup.read_bigdatacup(root)[1]["power_plays_dropped"][0]["reason"].startswith("no main-camera shot")
    other = root / "TrackingData" / SMALL_GAME / f"videoShotsInfo_{SMALL[1]}.csv"
    other.unlink()
    with pytest.raises(UserError) as e:  # nothing left: an error listing why
        bigdatacup.read_bigdatacup(root)
    one_line_error(e, "no power play left", "no main-camera shot", "no main-camera shots file")
