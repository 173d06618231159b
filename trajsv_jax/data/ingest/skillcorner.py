"""A direct SkillCorner reader: the same Frames as kloppy's SkillCorner loader, several times faster.

kloppy builds a Python object per detection (about 500,000 for a match); this reader parses the JSON once and resolves
detections with list comprehensions and one dict lookup each, leaving only anonymous tracks to a slower path. It
mirrors kloppy 3.19's semantics (`kloppy/infra/serializers/tracking/skillcorner.py`, default options):
- frames are kept when their period is set and they have at least one detection record (referee-only frames stay,
  with no located object); `include_empty_frames` keeps the empty ones too; the metadata counts the frames skipped
  (`frames_without_period_skipped`: before kick-off, half time, after the end; `empty_frames_skipped`);
- timestamps are the frame's game clock minus the period's nominal start (0, 45, 90, 105, 120 minutes);
- the ball is the record with the ball's trackable_object or group_name "balls"; referees are skipped (counted in
  `metadata["referee_detections_skipped"]`), as are records kloppy cannot attribute to a player
  (`metadata["unmatched_detections_skipped"]`);
- players are match_data's "id"; anonymous tracks (no trackable_object, group_name "home team"/"away team") are
  "home_anon_<track_id>" / "away_anon_<track_id>";
- v3 (JSONL, `player_data` / `ball_data`) players are looked up by player_id; detections without x or y are skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from trajsv_jax.data import clips
from trajsv_jax.data.ingest import common
from trajsv_jax.errors import UserError

FRAME_RATE = 10.0
COORDINATE_SYSTEM = "SkillCornerCoordinateSystem"
_PERIOD_START = {1: 0, 2: 45 * 60, 3: 90 * 60, 4: 105 * 60, 5: 120 * 60}  # seconds of game clock, as kloppy
_GROUND = {"home_team": "home", "home team": "home", "away_team": "away", "away team": "away"}
_ROLE = {"home": clips.ROLE_TEAM_A, "away": clips.ROLE_TEAM_B}
_REFEREE, _UNMATCHED, _SLOW = -1, -2, -3
_META_KEYS = ("home_team", "away_team", "players", "referees", "ball", "pitch_length", "pitch_width")


def read_skillcorner(
    raw_path: common.PathLike, meta_path: common.PathLike, include_empty_frames: bool = False
) -> clips.Frames:
    """SkillCorner v1/v2 structured_data.json or v3 JSONL + match data → Frames (identical to the kloppy reader's)."""
    raw_path, meta_path = Path(raw_path), Path(meta_path)
    meta = _read_meta(meta_path)
    raw = _read_raw(raw_path)
    try:
        return _frames(raw, meta, raw_path, meta_path, include_empty_frames)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise UserError(
            f"{raw_path}: unexpected SkillCorner frame or match data content ({type(e).__name__}: "
            f"{common.one_line(e, 120)}). Check that raw_data and meta_data are SkillCorner files of the same match."
        ) from None


def _read_meta(path: Path) -> dict[str, Any]:
    meta = common.read_json(path, "skillcorner meta_data")
    missing = [k for k in _META_KEYS if k not in meta] if isinstance(meta, dict) else list(_META_KEYS)
    if missing:
        raise UserError(
            f"{path}: not SkillCorner match data (no {', '.join(missing)}). Pass the match_data.json / match.json of"
            " the match as meta_data."
        )
    return meta


def _read_raw(path: Path) -> list[dict[str, Any]]:
    """The frames of a JSON array (v1/v2) or a JSONL file (v3), as kloppy tells them apart: by the first byte."""
    data = common.read_bytes(path, "skillcorner raw_data")
    first = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if first not in (b"[", b"{"):
        raise UserError(
            f"{path}: not SkillCorner tracking data (expected a JSON array of frames or JSON lines). "
            "Pass structured_data.json or *_tracking_extrapolated.jsonl as raw_data."
        )
    try:
        frames = json.loads(data) if first == b"[" else _json_objects(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: {common.json_problem(e)} (skillcorner raw_data). Re-download the file.") from None
    if not frames:
        raise UserError(f"{path}: no tracking frames with detections (no frames at all). Pass the full tracking file.")
    if not isinstance(frames[0], dict) or ("data" not in frames[0] and "player_data" not in frames[0]):
        raise UserError(
            f"{path}: not SkillCorner tracking frames (no 'data' or 'player_data' in the first frame). "
            "Check that raw_data is the tracking file and meta_data the match file."
        )
    return frames


def _json_objects(data: bytes) -> list[Any]:
    """JSON lines, or the one object of a JSON file (JSON lines fail fast: right after the first line)."""
    try:
        return [json.loads(data)]
    except json.JSONDecodeError:
        return common.json_lines(data)


def _seconds(period: int, clock: str) -> float:
    """Seconds since the period start of a game clock "MM:SS.ss" or "HH:MM:SS.ss", with kloppy's timedelta rounding."""
    parts = clock.split(":")
    if len(parts) == 2:
        seconds = 60 * float(parts[0]) + float(parts[1])
    elif len(parts) == 3:
        seconds = 3600 * float(parts[0]) + 60 * float(parts[1]) + float(parts[2])
    else:
        raise ValueError(f"invalid time {clock!r}")
    if period not in _PERIOD_START:
        raise ValueError(f"unknown period {period}")
    return (timedelta(seconds=seconds) - timedelta(seconds=_PERIOD_START[period])).total_seconds()


def _frames(raw: list[dict], meta: dict, raw_path: Path, meta_path: Path, include_empty: bool) -> clips.Frames:
    v3 = "player_data" in raw[0]
    for f in raw:
        if "timestamp" in f:  # kloppy renames "timestamp" to "time"
            f["time"] = f.pop("timestamp")
    detections = "player_data" if v3 else "data"
    timed_periods = {f["period"] for f in raw if f["period"] is not None and f["time"] is not None}
    kept = [f for f in raw if f["period"] is not None and (include_empty or len(f[detections]) > 0)]
    if not kept:
        raise UserError(
            f"{raw_path}: no tracking frames with detections ({len(raw)} frames, none with a period and a detection)."
            " Pass the match's full tracking file."
        )
    untimed = [f["frame"] for f in kept if f["time"] is None or f["period"] not in timed_periods]
    if untimed:
        raise ValueError(f"frame {untimed[0]} has a period but no time")
    home_id, away_id = meta["home_team"]["id"], meta["away_team"]["id"]
    ground_of_team = {home_id: "home", away_id: "away"}
    objects: list[tuple[int, str]] = [(clips.ROLE_BALL, "ball")]
    lookup: dict[Any, int] = {}  # trackable_object (v1/v2) or player id (v3) → local object
    for p in meta["players"]:
        ground = ground_of_team.get(p["team_id"])
        if ground is not None:
            lookup[str(p["id"]) if v3 else p["trackable_object"]] = len(objects)
            objects.append((_ROLE[ground], str(p["id"])))
    records = _records_v3 if v3 else _records_v2
    rec_frame, rec_object, rec_x, rec_y, skipped = records(kept, meta, lookup, objects)
    placement = common.place(len(kept), rec_frame, rec_object, objects)
    period = np.array([f["period"] for f in kept], np.int16)
    length, width = meta["pitch_length"], meta["pitch_width"]
    coordinates = common.Coordinates(COORDINATE_SYSTEM, (-length / 2, length / 2), (-width / 2, width / 2), False)
    return common.build_frames(
        placement,
        rec_x,
        rec_y,
        frame_id=np.array([f["frame"] for f in kept], np.int64),
        period=period,
        timestamp=np.array([_seconds(f["period"], f["time"]) for f in kept], np.float64),
        coordinates=coordinates,
        fps=FRAME_RATE,
        pitch_length=length,
        pitch_width=width,
        metadata={
            **match_metadata(meta, raw_path, meta_path),
            "reader": "trajsv_jax.data.ingest.skillcorner",
            "orientation": _orientation(placement, rec_x, period),
            "periods": sorted(timed_periods),
            "frames_in_file": len(raw),
            "frames_without_period_skipped": sum(f["period"] is None for f in raw),
            "empty_frames_skipped": sum(f["period"] is not None for f in raw) - len(kept),
            **skipped,
        },
        where=str(raw_path),
    )


Records = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, int]]


def _records_v2(kept: list[dict], meta: dict, lookup: dict[Any, int], objects: list[tuple[int, str]]) -> Records:
    """(frame, local object, x, y) of every attributed v1/v2 detection, and the counts of skipped ones."""
    records = [r for f in kept for r in f["data"]]
    rec_frame = np.repeat(np.arange(len(kept)), [len(f["data"]) for f in kept])
    code = _v2_codes(records, meta, lookup, objects)
    keep = np.flatnonzero(code >= 0)
    rec_x = np.array([r.get("x") for r in records], np.float64)[keep]
    rec_y = np.array([r.get("y") for r in records], np.float64)[keep]
    skipped = {
        "referee_detections_skipped": int((code == _REFEREE).sum()),
        "unmatched_detections_skipped": int((code == _UNMATCHED).sum()),
    }
    return rec_frame[keep], code[keep], rec_x, rec_y, skipped


def _records_v3(kept: list[dict], meta: dict, lookup: dict[Any, int], objects: list[tuple[int, str]]) -> Records:
    """(frame, local object, x, y) of every v3 player and ball detection with both coordinates."""
    players = [(i, lookup[str(r["player_id"])], r["x"], r["y"]) for i, f in enumerate(kept) for r in f["player_data"]]
    balls = [(i, 0, f["ball_data"]["x"], f["ball_data"]["y"]) for i, f in enumerate(kept)]
    rows = [row for row in players + balls if row[2] is not None and row[3] is not None]
    where = np.array([row[:2] for row in rows], np.int64).reshape(-1, 2)
    xy = np.array([row[2:] for row in rows], np.float64).reshape(-1, 2)
    return where[:, 0], where[:, 1], xy[:, 0], xy[:, 1], {}


def _v2_codes(records: list[dict], meta: dict, lookup: dict[Any, int], objects: list[tuple[int, str]]) -> np.ndarray:
    """Local object of each v1/v2 detection record, _REFEREE or _UNMATCHED; appends anonymous tracks to `objects`."""
    players = dict(lookup)
    ball_id = meta["ball"]["trackable_object"]
    referees = {r["trackable_object"] for r in meta["referees"]}
    lookup = {**players, **dict.fromkeys(referees, _REFEREE), ball_id: 0}
    code = np.array(
        [lookup.get(r.get("trackable_object"), _UNMATCHED) if r.get("group_name") is None else _SLOW for r in records],
        np.int64,
    )
    anonymous: dict[tuple[str, Any], int] = {}
    for i in np.flatnonzero(code == _SLOW):
        r = records[i]
        obj, group = r.get("trackable_object"), r.get("group_name")
        if obj == ball_id or group == "balls":
            code[i] = 0
        elif obj in referees or group == "referee":
            code[i] = _REFEREE
        elif obj is not None:
            code[i] = players.get(obj, _UNMATCHED)
        elif group in ("home team", "away team"):
            ground = _GROUND[group]
            key = (ground, r.get("track_id"))
            if key not in anonymous:
                anonymous[key] = len(objects)
                objects.append((_ROLE[ground], f"{ground}_anon_{key[1]}"))
            code[i] = anonymous[key]
        elif group in _GROUND:
            raise ValueError(f"anonymous track {r.get('track_id')} has group_name {group!r}")
        else:
            code[i] = _UNMATCHED
    return code


def _orientation(placement: common.Placement, rec_x: np.ndarray, period: np.ndarray) -> str:
    """kloppy's orientation: the most common per-frame direction in period 1 (mean x of home vs away players)."""
    frame, column = np.divmod(placement.cell, len(placement.ids))
    x = rec_x[placement.records]
    role = placement.roles[column]
    n = placement.n_frames

    def mean_and_count(team: int) -> tuple[np.ndarray, np.ndarray]:
        mine = (role == team) & np.isfinite(x)
        count = np.bincount(frame[mine], minlength=n)
        return np.bincount(frame[mine], weights=x[mine], minlength=n) / np.maximum(count, 1), count

    (home, n_home), (away, n_away) = mean_and_count(clips.ROLE_TEAM_A), mean_and_count(clips.ROLE_TEAM_B)
    direction = np.where(n_home + n_away == 0, "not-set", np.where(home < away, "home-away", "away-home"))
    votes = Counter(direction[period == 1].tolist())
    return votes.most_common(1)[0][0] if votes else "not-set"


def match_metadata(meta: dict, raw_path: Path, meta_path: Path) -> dict[str, Any]:
    """The reader-independent metadata of a SkillCorner match (the kloppy reader reports the same values)."""
    date = meta.get("date_time")
    if date:
        date = datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).isoformat()
    return {
        "provider": "skillcorner",
        "game_id": None if meta.get("id") is None else str(meta["id"]),
        "date": date or None,
        "home_team": meta["home_team"].get("name"),
        "away_team": meta["away_team"].get("name"),
        "score": {"home": meta.get("home_team_score"), "away": meta.get("away_team_score")},
        "files": {"raw_data": str(raw_path), "meta_data": str(meta_path)},
    }
