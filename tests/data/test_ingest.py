"""Ingest: the direct SkillCorner reader equals kloppy's, every kloppy provider ingests, coordinates match raw files,
and bad input ends in a one-line UserError naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from trajsv_jax.data import clips, ingest, pitch, store
from trajsv_jax.errors import UserError

KLOPPY_FILES = ingest.bundled_skillcorner_files()[0].parent
ARRAYS = ("positions", "frame_id", "period", "timestamp", "object_role", "object_id")
ANY_CLIP = clips.ClipConfig(min_seconds=0.0)  # the provider excerpts are a few scattered frames


def k(name: str) -> Path:
    return KLOPPY_FILES / name


def assert_same_frames(a: clips.Frames, b: clips.Frames) -> None:
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name
    assert (a.fps, a.pitch_length, a.pitch_width) == (b.fps, b.pitch_length, b.pitch_width)
    ignore = {"reader", "kloppy_warnings"}
    assert {k: v for k, v in a.metadata.items() if k not in ignore} == {
        k: v for k, v in b.metadata.items() if k not in ignore
    }


@pytest.fixture(scope="module")
def bundled_json() -> list[dict]:
    return json.loads(ingest.bundled_skillcorner_files()[0].read_bytes())


def write_slice(tmp_path: Path, frames: list[dict], name: str = "slice.json") -> dict[str, Path]:
    raw = tmp_path / name
    raw.write_text(json.dumps(frames))
    return {"raw_data": raw, "meta_data": ingest.bundled_skillcorner_files()[1]}


@pytest.fixture
def skillcorner_slice(bundled_json, tmp_path) -> dict[str, Path]:
    """The first 3000 frames (pre-match, period 1) and the first 1000 of period 2 of the real match."""
    start_2 = next(i for i, f in enumerate(bundled_json) if f["period"] == 2)
    return write_slice(tmp_path, bundled_json[:3000] + bundled_json[start_2 : start_2 + 1000])


# --- SkillCorner: fast reader == kloppy reader --------------------------------------------------------------------


def test_fast_reader_equals_kloppy_on_a_slice(skillcorner_slice):
    fast = ingest.read_frames("skillcorner", skillcorner_slice)
    slow = ingest.read_frames("skillcorner", skillcorner_slice, fast=False)
    assert_same_frames(fast, slow)
    assert fast.metadata["reader"] != slow.metadata["reader"]
    assert set(np.unique(fast.period)) == {1, 2} and fast.timestamp.min() >= 0
    assert any("_anon_" in i for i in fast.object_id), "the slice exercises anonymous tracks"
    assert fast.metadata["referee_detections_skipped"] > 0
    assert fast.object_id[0] == "ball" and fast.object_role[0] == clips.ROLE_BALL
    key = list(zip(fast.object_role.tolist(), fast.object_id.tolist(), strict=True))
    assert key == sorted(key), "canonical (role, id) order"


def test_fast_reader_equals_kloppy_on_v3_jsonl():
    files = {"raw_data": k("skillcorner_v3_raw_data.jsonl"), "meta_data": k("skillcorner_meta_data.json")}
    assert_same_frames(ingest.read_frames("skillcorner", files), ingest.read_frames("skillcorner", files, fast=False))


@pytest.mark.slow
def test_fast_reader_equals_kloppy_on_the_bundled_match(bundled_frames):
    raw, meta = ingest.bundled_skillcorner_files()
    assert_same_frames(bundled_frames, ingest.read_with_kloppy("skillcorner", raw_data=raw, meta_data=meta))


@pytest.mark.slow
def test_fast_reader_equals_kloppy_on_timestamp_variant():
    files = {"raw_data": k("skillcorner_structured_data_timestamp.json"), "meta_data": k("skillcorner_match_data.json")}
    assert_same_frames(ingest.read_frames("skillcorner", files), ingest.read_frames("skillcorner", files, fast=False))


def test_bundled_match(bundled_frames):
    f = bundled_frames
    assert f.positions.shape[0] == len(f.frame_id) == 34783  # frames with a period and at least one detection
    skipped = f.metadata["frames_without_period_skipped"] + f.metadata["empty_frames_skipped"]
    assert f.metadata["frames_in_file"] == 68101 == len(f.frame_id) + skipped  # every frame of the file is accounted
    assert f.fps == 10.0 and (f.pitch_length, f.pitch_width) == (105.0, 68.0)
    assert f.positions.dtype == np.float32 and np.all(np.diff(f.frame_id) > 0)
    assert (f.object_role == clips.ROLE_TEAM_A).any() and (f.object_role == clips.ROLE_TEAM_B).any()
    assert f.metadata["game_id"] == "2417" and f.metadata["date"].startswith("2019-11-09")
    assert f.metadata["home_team"] == "FC Bayern Munchen" and f.metadata["score"] == {"home": 4, "away": 0}


def test_skillcorner_values_are_the_raw_values(skillcorner_slice):
    """SkillCorner is centred metres already: positions are the raw values cast to float32, nothing moved."""
    raw = json.loads(skillcorner_slice["raw_data"].read_text())
    frames = ingest.read_skillcorner(skillcorner_slice["raw_data"], skillcorner_slice["meta_data"])
    first = next(f for f in raw if f["period"] is not None and f["data"])
    assert frames.frame_id[0] == first["frame"]
    seen = next(f for f in raw if f["period"] is not None and any(r.get("trackable_object") == 55 for r in f["data"]))
    ball = next(r for r in seen["data"] if r.get("trackable_object") == 55)
    row = list(frames.frame_id).index(seen["frame"])
    np.testing.assert_array_equal(frames.positions[row, 0], np.float32([ball["x"], ball["y"]]))


def test_pitch_identity_for_centred_metres():
    x, y = np.array([0.1, -52.5, 33.3333]), np.array([1e-7, 34.0, -12.0])
    same = pitch.to_centred_metres(x, y, x_range=(-52.5, 52.5), y_range=(-34, 34), length=105, width=68, y_down=False)
    np.testing.assert_array_equal(same, np.stack([x, y], -1).astype(np.float32))


# --- every provider kloppy ships test files for -------------------------------------------------------------------

PROVIDER_FILES = {
    "hawkeye": (
        "hawkeye",
        {
            "ball_feeds": "hawkeye_2_46.football.samples.ball",
            "centroid_feeds": "hawkeye_2_46.football.samples.centroids",
            "meta_data": "hawkeye_meta.json",
        },
        50.0,
    ),
    "pff": (
        "pff",
        {
            "raw_data": "pff_10517.jsonl",
            "meta_data": "pff_metadata_10517.json",
            "roster_data": "pff_rosters_10517.json",
        },
        29.97,
    ),
    "sportec": ("dfl", {"raw_data": "sportec_positional_w_referee.xml", "meta_data": "sportec_meta.xml"}, 25.0),
    "metrica_csv": ("metrica", {"home_data": "metrica_home.csv", "away_data": "metrica_away.csv"}, 25.0),
    "metrica_epts": (
        "metrica",
        {"raw_data": "epts_metrica_tracking.txt", "meta_data": "epts_metrica_metadata.xml"},
        25.0,
    ),
    "secondspectrum": (
        "secondspectrum",
        {
            "raw_data": "second_spectrum_fake_data.jsonl",
            "meta_data": "second_spectrum_fake_metadata.xml",
            "additional_meta_data": "second_spectrum_fake_metadata.json",
        },
        25.0,
    ),
    "tracab_dat": ("tracab", {"raw_data": "tracab_raw.dat", "meta_data": "tracab_meta.xml"}, 25.0),
    "tracab_json": ("tracab", {"raw_data": "tracab_raw.json", "meta_data": "tracab_meta.json"}, 25.0),
    "statsperform": (
        "statsperform",
        {"raw_data": "statsperform_tracking_ma25.txt", "meta_data": "statsperform_tracking_ma1.json"},
        10.0,
    ),
    "signality": (
        "signality",
        {
            "raw_data": ["signality_p1_raw_data_subset.json", "signality_p2_raw_data_subset.json"],
            "meta_data": "signality_meta_data.json",
            "venue_information": "signality_venue_information.json",
        },
        25.0,
    ),
    "skillcorner_v3": (
        "skillcorner",
        {"raw_data": "skillcorner_v3_raw_data.jsonl", "meta_data": "skillcorner_meta_data.json"},
        10.0,
    ),
}


def resolve(folder: Path, files: dict) -> dict:
    return {a: [folder / n for n in v] if isinstance(v, list) else folder / v for a, v in files.items()}


def check_ingested(tmp_path: Path, provider: str, files: dict, fps: float) -> store.Source:
    source, drops = ingest.ingest(provider, files, tmp_path / "store", clip_config=ANY_CLIP)
    back = store.read_source(tmp_path / "store", source.source_id)
    assert back.fps == pytest.approx(fps)
    length, width = back.metadata["pitch_length"], back.metadata["pitch_width"]
    assert 90 <= length <= 120 and 45 <= width <= 90
    finite = back.positions[np.isfinite(back.positions).all(-1)]
    assert len(finite) and np.all(np.abs(finite) <= [length / 2, width / 2])
    roles = set(back.object_role.tolist())
    assert {clips.ROLE_TEAM_A, clips.ROLE_TEAM_B} <= roles and roles <= {0, 1, 2, 3}
    assert back.metadata["drops"] == drops.as_dict() and back.metadata["provider"] in ingest.PROVIDERS
    return back


@pytest.mark.parametrize("case", sorted(PROVIDER_FILES))
def test_kloppy_provider_ingests(tmp_path, case):
    provider, files, fps = PROVIDER_FILES[case]
    check_ingested(tmp_path, provider, resolve(KLOPPY_FILES, files), fps)


@pytest.mark.slow
def test_hawkeye_folder_of_feeds(tmp_path):
    """Both Hawk-Eye minutes, found by pattern in one folder (kloppy's test files)."""
    files = {"ball_feeds": KLOPPY_FILES, "centroid_feeds": KLOPPY_FILES, "meta_data": k("hawkeye_meta.json")}
    back = check_ingested(tmp_path, "hawkeye", files, 50.0)
    assert set(back.clip_period.tolist()) == {1, 2}


SHARED_CASES = {
    "pff_3812": (
        "pff",
        "kloppy_provider_excerpts/pff_wc2022",
        {"raw_data": "pff_3812.jsonl", "meta_data": "pff_metadata_3812.json", "roster_data": "pff_rosters_3812.json"},
        29.97,
    ),
    "sportec": (
        "sportec",
        "kloppy_provider_excerpts/sportec_dfl",
        {"raw_data": "sportec_positional.xml", "meta_data": "sportec_meta.xml"},
        25.0,
    ),
    "signality": ("signality", "kloppy_provider_excerpts/signality", PROVIDER_FILES["signality"][1], 25.0),
    "metrica_csv": (
        "metrica_csv",
        "metrica_sample_data/kloppy_tracking_excerpts",
        PROVIDER_FILES["metrica_csv"][1],
        25.0,
    ),
    "metrica_epts": (
        "metrica_epts",
        "metrica_sample_data/kloppy_tracking_excerpts",
        PROVIDER_FILES["metrica_epts"][1],
        25.0,
    ),
}


@pytest.mark.parametrize("case", sorted(SHARED_CASES))
def test_shared_real_data_ingests(tmp_path, case):
    provider, folder, files, fps = SHARED_CASES[case]
    check_ingested(tmp_path, provider, resolve(shared_path(f"data/{folder}"), files), fps)


# --- coordinates checked against the raw files --------------------------------------------------------------------


def object_at(frames: clips.Frames, object_id: str, frame: int = 0) -> np.ndarray:
    return frames.positions[frame, list(frames.object_id).index(object_id)]


def test_tracab_centimetres_to_metres():
    frames = ingest.read_with_kloppy("tracab", raw_data=k("tracab_raw.dat"), meta_data=k("tracab_meta.xml"))
    line = k("tracab_raw.dat").read_text().splitlines()[0]
    _, people, ball = line.split(":")[:3]
    bx, by = (float(v) for v in ball.split(",")[:2])
    np.testing.assert_allclose(object_at(frames, "ball"), [bx / 100, by / 100], atol=1e-5)  # raw cm → m, y up
    raw_players = sorted(
        (float(p[3]) / 100, float(p[4]) / 100) for p in (t.split(",") for t in people.split(";") if t) if p[0] in "01"
    )
    ours = frames.positions[0][(frames.object_role > 0) & np.isfinite(frames.positions[0]).all(-1)]
    np.testing.assert_allclose(sorted(map(tuple, ours)), raw_players, atol=1e-5)


def test_metrica_csv_normalised_y_down_to_metres_y_up():
    frames = ingest.read_with_kloppy("metrica_csv", home_data=k("metrica_home.csv"), away_data=k("metrica_away.csv"))
    row = k("metrica_home.csv").read_text().splitlines()[3].split(",")  # frame 1: Player11 x, y first; ball last
    x11, y11, bx, by = float(row[3]), float(row[4]), float(row[-2]), float(row[-1])
    np.testing.assert_allclose(object_at(frames, "home_11"), [(x11 - 0.5) * 105, (0.5 - y11) * 68], atol=1e-4)
    np.testing.assert_allclose(object_at(frames, "ball"), [(bx - 0.5) * 105, (0.5 - by) * 68], atol=1e-4)
    assert frames.metadata["kloppy_y_flip_undone"]


def test_metrica_epts_normalised_y_down_to_metres_y_up():
    frames = ingest.read_with_kloppy(
        "metrica_epts", raw_data=k("epts_metrica_tracking.txt"), meta_data=k("epts_metrica_metadata.xml")
    )
    bx, by = (float(v) for v in k("epts_metrica_tracking.txt").read_text().split("\n")[0].split(":")[2].split(",")[:2])
    np.testing.assert_allclose(object_at(frames, "ball"), [(bx - 0.5) * 105, (0.5 - by) * 68], atol=1e-4)


def test_statsperform_top_left_metres_to_centred():
    frames = ingest.read_with_kloppy(
        "statsperform", raw_data=k("statsperform_tracking_ma25.txt"), meta_data=k("statsperform_tracking_ma1.json")
    )
    line = k("statsperform_tracking_ma25.txt").read_text().splitlines()[0]
    bx, by = (float(v) for v in line.split(":")[2].split(",")[:2])
    player = next(p.split(",") for p in line.split(":")[1].split(";") if p.startswith("0,"))
    np.testing.assert_allclose(object_at(frames, "ball"), [bx - 52.5, 34 - by], atol=1e-4)
    np.testing.assert_allclose(
        object_at(frames, player[1]), [float(player[3]) - 52.5, 34 - float(player[4])], atol=1e-4
    )
    assert frames.metadata["pitch_size_assumed"]


def test_pff_is_centred_metres():
    frames = ingest.read_with_kloppy(
        "pff",
        raw_data=k("pff_10517.jsonl"),
        meta_data=k("pff_metadata_10517.json"),
        roster_data=k("pff_rosters_10517.json"),
    )
    ball = json.loads(k("pff_10517.jsonl").read_text().splitlines()[0])["ballsSmoothed"]  # kloppy reads the smoothed
    np.testing.assert_array_equal(object_at(frames, "ball"), np.float32([ball["x"], ball["y"]]))


# --- bad input ----------------------------------------------------------------------------------------------------


def error_of(provider: str, files: dict, fast: bool = True) -> str:
    with pytest.raises(UserError) as info:
        ingest.read_frames(provider, files, fast=fast)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("fast", [True, False])
def test_missing_and_truncated_files(tmp_path, fast):
    raw, meta = ingest.bundled_skillcorner_files()
    missing = tmp_path / "nope.json"
    assert str(missing) in error_of("skillcorner", {"raw_data": missing, "meta_data": meta}, fast)
    with pytest.raises(UserError, match="cannot read"):
        ingest.read_skillcorner(missing, meta)
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(raw.read_bytes()[:1000])
    message = error_of("skillcorner", {"raw_data": truncated, "meta_data": meta}, fast)
    assert str(truncated) in message and "not valid JSON" in message


def test_truncated_kloppy_file_is_named(tmp_path):
    truncated = tmp_path / "pff.jsonl"
    truncated.write_bytes(k("pff_10517.jsonl").read_bytes()[:5000])
    files = {
        "raw_data": truncated,
        "meta_data": k("pff_metadata_10517.json"),
        "roster_data": k("pff_rosters_10517.json"),
    }
    message = error_of("pff", files)
    assert message.startswith(str(truncated)) and "not valid JSON" in message


@pytest.mark.parametrize("fast", [True, False])
def test_wrong_provider_files(fast):
    raw, meta = ingest.bundled_skillcorner_files()
    message = error_of("skillcorner", {"raw_data": k("tracab_raw.dat"), "meta_data": meta}, fast)
    assert str(k("tracab_raw.dat")) in message and "not SkillCorner" in message
    message = error_of("skillcorner", {"raw_data": raw, "meta_data": k("tracab_meta.xml")}, fast)
    assert str(k("tracab_meta.xml")) in message and "XML" in message


def test_skillcorner_files_given_as_pff():
    meta = ingest.bundled_skillcorner_files()[1]
    message = error_of("pff", {"raw_data": k("skillcorner_v3_raw_data.jsonl"), "meta_data": meta, "roster_data": meta})
    assert "pff" in message and str(meta) in message and "PFF" in message


def test_arguments_and_provider_names():
    raw, meta = ingest.bundled_skillcorner_files()
    assert "unknown provider" in error_of("statsbomb", {"raw_data": raw})
    assert "missing meta_data" in error_of("skillcorner", {"raw_data": raw})
    assert "unexpected roster_data" in error_of("skillcorner", {"raw_data": raw, "meta_data": meta, "roster_data": raw})
    assert "no *.samples.ball" in error_of("hawkeye", {"ball_feeds": raw.parent.parent, "centroid_feeds": raw.parent})


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    "frames",
    [
        [],
        [{"frame": 1, "period": None, "time": None, "data": [{"trackable_object": 55, "x": 0, "y": 0}]}],
        [{"frame": 1, "period": 1, "time": "0:00.10", "data": []}],
        [{"frame": 1, "period": 1, "time": "0:00.10", "data": [{"trackable_object": 22396, "x": 1, "y": 2}]}],
    ],
    ids=["no-frames", "no-period", "no-detections", "referee-only"],
)
def test_empty_match_is_an_error(tmp_path, frames, fast):
    files = write_slice(tmp_path, [{"possession": {"group": None}, **f} for f in frames])
    assert "no tracking frames with detections" in error_of("skillcorner", files, fast)


def kick_off(bundled_json: list[dict], n: int) -> list[dict]:
    """A deep copy of n frames from the first frame of period 1 with detections."""
    start = next(i for i, f in enumerate(bundled_json) if f["period"] == 1 and f["data"])
    return json.loads(json.dumps(bundled_json[start : start + n]))


def test_nan_and_off_pitch_are_counted_and_reported(tmp_path, bundled_json):
    _, before = ingest.ingest("skillcorner", write_slice(tmp_path, kick_off(bundled_json, 300)), tmp_path / "a")
    frames = kick_off(bundled_json, 300)
    players = [r for f in frames for r in f["data"] if r.get("trackable_object") not in (55, 22396)]
    players = [r for r in players if abs(r["x"]) < 50 and abs(r["y"]) < 30]
    for r in players[:5]:
        r["x"] = 80.0  # beyond the goal line of a 105 m pitch
    for r in players[5:8]:
        r["y"] = None  # one coordinate missing
    source, drops = ingest.ingest("skillcorner", write_slice(tmp_path, frames, "bad.json"), tmp_path / "b")
    assert (drops.off_pitch - before.off_pitch, drops.nan_coordinates - before.nan_coordinates) == (5, 3)
    reported = json.loads((tmp_path / "b" / "sources" / f"{source.source_id}.json").read_text())["drops"]
    assert reported == drops.as_dict()
    assert np.isfinite(source.positions).all(-1).sum() > 0


def test_nothing_left_after_cleaning_writes_nothing(tmp_path, bundled_json):
    frames = kick_off(bundled_json, 100)
    for r in (r for f in frames for r in f["data"]):
        r["x"] = 500.0
    files = write_slice(tmp_path, frames)
    with pytest.raises(UserError, match=r"no clip left.*off_pitch="):
        ingest.ingest("skillcorner", files, tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_ingest_round_trip(tmp_path, skillcorner_slice):
    source, _ = ingest.ingest("skillcorner", skillcorner_slice, tmp_path / "store")
    assert source.source_id == "skillcorner_2417"
    back = store.read_source(tmp_path / "store", "skillcorner_2417")
    np.testing.assert_array_equal(back.positions, source.positions)
    np.testing.assert_array_equal(back.object_id, source.object_id)
    assert back.metadata["referee_detections_skipped"] > 0 and back.metadata["files"]["raw_data"].endswith("slice.json")
