"""Big Data Cup 2022 (Stathletes): ice-hockey player tracking from broadcast video, one source per power play, with
the play-by-play events of each power play aligned to its frames.

The folder as published (`TrackingData/` beside `pxp_womens_oly_2022_v2.csv`):
    TrackingData/pp_info.csv                          video clock <-> game clock at each power play's start and end
    TrackingData/<game>/<game> P<p> PP<n>.csv         frame_id, period, track_id, team_id (Light/Dark), team_name,
                                                      jersey_number (100: not read), x_ft, y_ft
    TrackingData/<game>/videoShotsInfo_<game> P<p> PP<n>.csv   main-camera shots (frame_start_shot, frame_end_shot)
What the files do not say, and this reader does (each checked on the data):
- Time: frame ids count the frames (30 fps, from 1) of the power play's clip, which starts at pp_info's
  `start_video_clock_seconds`; so a frame's timestamp is `start_video + (frame_id - 1) / 30` on the period's video
  clock (every shots file ends within a second of `end_video - start_video`). A power play across a period end
  holds the end of one period and the start of the next: frames from `end_video` seconds before the clip's last shot
  frame on are the next period (its video clock counted back from `end_video`), the cut moved to a shot edge. The
  events place that period's opening faceoff 27 s later than this clock implies (the clip seems to stop before the
  power play does), so the alignment searches the part's whole span; its timestamps are approximate.
- Space: tracking is 200 x 85 ft as the broadcast camera sees the rink, y from the camera's side up: centred metres
  as it is (x along the rink, y up). Events are in their team's frame, attacking towards x = 200, with y mirrored
  against the tracking: a team attacking +x is at (x, 85 - y) ft, one attacking -x at (200 - x, y). Which way the home
  team attacks in a period is chosen on the data (the lower median residual of the two; teams swap ends each period).
- Teams: home and away come from the play-by-play `venue` (the folder "2022-02-14 Finland at USA" has them the wrong
  way round; pp_info and the rosters agree with the play-by-play); tracking names map onto it via TEAM_ALIASES.
Alignment of an event (clock_seconds, location) to a frame: (1) the linear map of pp_info's start/end pairs gives
`frame_linear`; it drifts, as the game clock stops at whistles and the video runs on. (2) The clock model: between two
faceoffs the game clock runs with the video, so video = start_video + (start_clock - clock) + k, with one stoppage
offset k per faceoff segment, non-decreasing, within the power play's stoppage budget (video duration - game
duration, +- BUDGET_TOLERANCE_S); dynamic programming over the segments picks the offsets that minimise the summed
distance (capped at CAP_M) from each event to the nearest tracked player of its team at the model's frame.
(3) The event's frame is the one within +-WINDOW_S of the model's where that distance is smallest; `residual_m` is
it. WINDOW_S = 1.5 s: the clock's 1 s steps plus the scorer's lag (median |frame - model frame| 0.7 s). On the 1556
events of the 33 power plays: median residual 2.3 m (the model's frame alone 3.6 m, the linear map's 6.8 m); the
same search 30 s away from the model finds 9 m, so the gain is the alignment's, not the search's.
Records (`data.events`): `type` the play-by-play `event`, `team` team_a/team_b = home/away, `detail` its event_type,
situation_type, goals_for/against and event_detail_1..3 where given, with the clock model's `segment` and
`model_frame`. Each source's alignment summary is `frames.metadata["alignment"]` (what `write_events` stores).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajsv_jax.data import clips, field, pitch
from trajsv_jax.data import events as events_lib
from trajsv_jax.data.ingest import common
from trajsv_jax.errors import UserError

FPS = 30.0
FEET = 0.3048
RINK_FT = (200.0, 85.0)
LENGTH, WIDTH = field.REGULATION["ice_hockey"]  # 200 x 85 ft in metres
PERIOD_SECONDS = 1200.0
WINDOW_S = 1.5  # half-width of the per-event refinement window around the clock model's frame
CAP_M = 10.0  # an event's cost in the clock model: its distance to the nearest team player, at most this
BUDGET_TOLERANCE_S = 2.0  # slack on the stoppage budget (the clock's 1 s steps, pp_info's whole seconds)
_PREFER_SMALL = 1e-6  # metres per frame of stoppage offset: ties go to the offset nearest 0
PXP_FILE = "pxp_womens_oly_2022_v2.csv"
LICENCE = "Stathletes Big Data Cup 2022, research/educational use"
PXP_TEAM_PREFIX = "Olympic (Women) - "
TEAM_ALIASES = {"USA": "United States", "ROC": "Olympic Athletes from Russia"}  # tracking/file name → play-by-play
TEAM_IDS = ("Light", "Dark")
TRACKING_COLUMNS = ("frame_id", "period", "track_id", "team_id", "team_name", "jersey_number", "x_ft", "y_ft")
SHOT_COLUMNS = ("shot_ind", "frame_start_shot", "frame_end_shot")
PP_COLUMNS = (
    "game_name",
    "penalty_number",
    "start_video_clock_seconds",
    "end_video_clock_seconds",
    "start_period",
    "end_period",
    "start_game_clock_seconds",
    "end_game_clock_seconds",
)
PXP_COLUMNS = (
    "game_date",
    "team_name",
    "opp_team_name",
    "venue",
    "period",
    "clock_seconds",
    "player_name",
    "event",
    "event_successful",
    "x_coord",
    "y_coord",
    "player_name_2",
    "x_coord_2",
    "y_coord_2",
)
DETAIL_COLUMNS = (
    "event_type",
    "situation_type",
    "goals_for",
    "goals_against",
    "event_detail_1",
    "event_detail_2",
    "event_detail_3",
)
FACEOFF = "Faceoff Win"  # the event that restarts play after every stoppage: a new clock-model segment
_FIX = "Restore it from the Big Data Cup 2022 release (github.com/bigdatacup/Big-Data-Cup-2021)."
_NAME = re.compile(r"(?P<game>(?P<date>\d{4}-\d{2}-\d{2}) (?P<away>.+) at (?P<home>.+)) P(?P<period>\d+) PP(?P<n>\d+)")
GameKey = tuple[str, frozenset[str]]  # (ISO date, the two teams' play-by-play names)


def read_bigdatacup(folder: str | Path) -> tuple[list[common.ReadSource], dict[str, Any]]:
    """Every power play of a Big Data Cup 2022 folder → (one ReadSource each, with its aligned events; a report).

    `folder` holds `TrackingData/` and the play-by-play CSV (or is `TrackingData/`, the play-by-play beside it). Bad
    files raise a one-line UserError naming them; power plays without a main-camera shot are dropped and counted
    (an error when none is left)."""
    started = time.perf_counter()
    tracking_dir, pxp_path = _locate(Path(folder))
    paths = sorted(p for p in tracking_dir.glob("*/*.csv") if _NAME.fullmatch(p.stem))
    if not paths:
        raise UserError(
            f"{tracking_dir}: no power-play CSVs (<game>/<game> P<period> PP<n>.csv) in its game folders. Give the "
            "Big Data Cup 2022 folder that holds TrackingData/."
        )
    pp_path = tracking_dir / "pp_info.csv"
    pp_info = _read_csv(pp_path, PP_COLUMNS, "power-play clock table")
    _numbers(pp_info, PP_COLUMNS[1:], pp_path, "power-play clock table")
    pxp = _read_pxp(pxp_path)
    games = _pxp_games(pxp)
    power_plays: list[_PowerPlay] = []
    dropped: list[dict[str, str]] = []
    seconds: dict[str, float] = {}
    for path in paths:
        start = time.perf_counter()
        result = _read_power_play(path, pp_path, pp_info, games, pxp_path)
        if isinstance(result, str):
            dropped.append({"file": str(path), "reason": result})
            continue
        power_plays.append(result)
        seconds[result.source_id] = time.perf_counter() - start
    if not power_plays:
        reasons = "; ".join(f"{Path(d['file']).name}: {d['reason']}" for d in dropped)
        raise UserError(f"{tracking_dir}: no power play left to read ({reasons}). {_FIX}")
    read_seconds = time.perf_counter() - started
    aligned = time.perf_counter()
    alignment = _align_all(power_plays, pxp, games, seconds)
    align_seconds = time.perf_counter() - aligned
    report = _report(tracking_dir, pxp_path, pxp, games, power_plays, dropped, pp_info, alignment, paths)
    report["seconds"] = {"read": round(read_seconds, 3), "align": round(align_seconds, 3)}
    report["seconds_per_source"] = {sid: round(s, 4) for sid, s in seconds.items()}
    sources = [common.ReadSource(pp.source_id, pp.frames, pp.events, pp.group) for pp in power_plays]
    return sources, report


# ---------------------------------------------------------------------------------------------------------- files


def _locate(folder: Path) -> tuple[Path, Path]:
    """(TrackingData folder, play-by-play CSV) of a Big Data Cup folder given as its root or as TrackingData/."""
    if not folder.exists():
        raise UserError(
            f"{folder}: no such folder (Big Data Cup 2022 data). Give the folder that holds TrackingData/ and "
            f"{PXP_FILE}."
        )
    if not folder.is_dir():
        raise UserError(f"{folder}: a file, not a folder. Give the Big Data Cup 2022 folder that holds TrackingData/.")
    tracking = folder / "TrackingData" if (folder / "TrackingData").is_dir() else folder
    for root in (tracking.parent, tracking):
        if (root / PXP_FILE).is_file():
            return tracking, root / PXP_FILE
    found = sorted(tracking.parent.glob("pxp_*.csv"))
    return tracking, found[0] if len(found) == 1 else tracking.parent / PXP_FILE


def _read_csv(path: Path, columns: tuple[str, ...], what: str, allow_empty: bool = False) -> pd.DataFrame:
    """A CSV as a DataFrame with `columns`; one-line UserError for a missing, empty, corrupt or incomplete file."""
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig", skipinitialspace=True)
    except FileNotFoundError:
        raise UserError(f"{path}: missing ({what}). {_FIX}") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path}: empty file ({what}). {_FIX}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: not a readable CSV ({common.one_line(e, 120)}; {what}). {_FIX}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e}; {what}). Check the path.") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(frame.columns[:12])
        raise UserError(f"{path}: missing columns {', '.join(missing)} ({what}; it has {have}). {_FIX}")
    if frame.empty and not allow_empty:
        raise UserError(f"{path}: no rows below the header ({what}; truncated?). {_FIX}")
    return frame


def _numbers(
    frame: pd.DataFrame, columns: tuple[str, ...], path: Path, what: str, nullable: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """float64 arrays of numeric columns; UserError naming the first line with a missing or non-numeric value."""
    out = {}
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values) & (frame[column].notna().to_numpy() | (column not in nullable))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = frame[column].iloc[row]
            shown = "missing" if pd.isna(value) else f"{str(value)!r}"
            raise UserError(
                f"{path}: line {row + 2}: {column} is {shown}, expected a number ({what}; truncated or corrupt?). "
                f"{_FIX}"
            )
        out[column] = values
    return out


def _texts(frame: pd.DataFrame, columns: tuple[str, ...], path: Path, what: str) -> dict[str, np.ndarray]:
    """str arrays of text columns; UserError naming the first line where one is missing."""
    out = {}
    for column in columns:
        missing = frame[column].isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise UserError(f"{path}: line {row + 2}: no {column} ({what}; truncated or corrupt?). {_FIX}")
        out[column] = frame[column].astype(str).str.strip().to_numpy(dtype=str)
    return out


def _read_pxp(path: Path) -> pd.DataFrame:
    """The play-by-play, checked: numeric clock, period and locations, t/f success, teams and venues present."""
    what = "Big Data Cup play-by-play"
    pxp = _read_csv(path, PXP_COLUMNS, what)
    _texts(pxp, ("game_date", "team_name", "opp_team_name", "venue", "event"), path, what)
    _numbers(pxp, ("period", "clock_seconds", "x_coord", "y_coord"), path, what)
    _numbers(pxp, ("x_coord_2", "y_coord_2"), path, what, nullable=("x_coord_2", "y_coord_2"))
    venues = set(pxp["venue"].astype(str).str.strip())
    if not venues <= {"home", "away"}:
        raise UserError(f"{path}: venue has {sorted(venues - {'home', 'away'})}, expected home/away ({what}). {_FIX}")
    return pxp.reset_index(drop=True)


def _pxp_name(team: str) -> str:
    """The play-by-play name of a team named in the tracking or a file name ("USA" → "United States")."""
    return TEAM_ALIASES.get(team, team)


def _pxp_date(text: str) -> str:
    """ISO date of the play-by-play's day/month/year ("8/2/2022" → "2022-02-08"); the text itself if not one."""
    parts = text.strip().split("/")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        return f"{int(parts[2]):04d}-{int(parts[1]):02d}-{int(parts[0]):02d}"
    return text.strip()


@dataclasses.dataclass
class _Game:
    home: str  # play-by-play names, without the "Olympic (Women) - " prefix
    away: str
    rows: np.ndarray  # indices of its play-by-play rows


def _pxp_games(pxp: pd.DataFrame) -> dict[GameKey, _Game]:
    """The play-by-play's games by (date, team names), each with its home and away team and its rows."""
    team = pxp["team_name"].astype(str).str.strip().str.removeprefix(PXP_TEAM_PREFIX).to_numpy(str)
    opponent = pxp["opp_team_name"].astype(str).str.strip().str.removeprefix(PXP_TEAM_PREFIX).to_numpy(str)
    date = np.array([_pxp_date(d) for d in pxp["game_date"].astype(str)])
    home = pxp["venue"].astype(str).str.strip().to_numpy(str) == "home"
    games: dict[GameKey, _Game] = {}
    keys = [(d, frozenset((a, b))) for d, a, b in zip(date, team, opponent, strict=True)]
    for key in dict.fromkeys(keys):
        rows = np.flatnonzero([k == key for k in keys])
        first = rows[0]
        home_team = team[first] if home[first] else opponent[first]
        away_team = opponent[first] if home[first] else team[first]
        games[key] = _Game(home_team, away_team, rows)
    return games


# ---------------------------------------------------------------------------------------------------- power plays


@dataclasses.dataclass
class _Part:
    """One period's stretch [first, stop) of a power play's frames and its clock model.

    timestamp = video_offset + (frame_id - 1) / FPS; clock model: video = anchor_video + (anchor_clock - clock) + k,
    k in k_range; linear map: video = anchor_video + slope * (clock - anchor_clock); events with clock in clocks."""

    period: int
    first: int
    stop: int
    video_offset: float
    anchor_clock: float
    anchor_video: float
    k_range: tuple[float, float]
    slope: float
    clocks: tuple[float, float]


@dataclasses.dataclass
class _PowerPlay:
    """A power play read: its source's Frames and group, clock parts, and its on-rink detections for the alignment."""

    source_id: str
    group: str
    game_key: GameKey
    pxp_team: dict[str, str]  # team_id → play-by-play team name
    parts: list[_Part]
    frames: clips.Frames
    rec_frame: np.ndarray  # [R] frame index of each on-rink detection, sorted
    rec_xy: np.ndarray  # [R, 2] its centred metres
    rec_team: np.ndarray  # [R] its team_id
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class _Teams:
    """Who is who in one tracking file: team names, home and away (play-by-play names), and where that came from."""

    tracked: dict[str, str]  # team_id → the tracking's team name
    pxp: dict[str, str]  # team_id → play-by-play name
    home: str  # play-by-play names
    away: str
    home_from: str  # "play-by-play venue" or "file name"

    @property
    def home_id(self) -> str:
        """The home team's team_id (the one not tracked when only the away team is)."""
        ids = [t for t, n in self.pxp.items() if n == self.home] or [t for t in TEAM_IDS if t not in self.pxp]
        return ids[0]

    def short(self, pxp_name: str) -> str:
        """The tracking's name of a team ("USA"), its play-by-play name when it is not tracked."""
        return next((self.tracked[t] for t, n in self.pxp.items() if n == pxp_name), pxp_name)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _read_power_play(
    path: Path, pp_path: Path, pp_info: pd.DataFrame, games: dict[GameKey, _Game], pxp_path: Path
) -> _PowerPlay | str:
    """One power play's Frames, clock parts and detections; a drop reason (str) when it has no main-camera shot."""
    name = _NAME.fullmatch(path.stem)
    assert name is not None  # the caller globbed with _NAME
    date, away, home, number = name["date"], name["away"], name["home"], int(name["n"])
    info = _pp_row(pp_info, date, {away, home}, number, path, pp_path)
    what = "Big Data Cup power-play tracking"
    table = _read_csv(path, TRACKING_COLUMNS, what)
    num = _numbers(table, ("frame_id", "period", "track_id", "jersey_number", "x_ft", "y_ft"), path, what)
    text = _texts(table, ("team_id", "team_name"), path, what)
    unknown = sorted(set(text["team_id"]) - set(TEAM_IDS))
    if unknown:
        raise UserError(f"{path}: team_id has {unknown}, expected Light/Dark ({what}). {_FIX}")
    periods = {int(info["start_period"]), int(info["end_period"])}
    if int(name["period"]) not in periods or not set(num["period"].astype(int)) <= periods:
        raise UserError(
            f"{path}: periods {sorted(set(num['period'].astype(int)))} (P{name['period']} in the name) but "
            f"{pp_path} has periods {sorted(periods)} for power play {number}. Check which file is which. {_FIX}"
        )
    shots_path = path.with_name(f"videoShotsInfo_{path.name}")
    if not shots_path.exists():
        return f"no main-camera shots file ({shots_path.name})"
    shots = _read_csv(shots_path, SHOT_COLUMNS, "main-camera shots", allow_empty=True)
    shot_num = _numbers(shots, SHOT_COLUMNS, shots_path, "main-camera shots")
    order = np.argsort(shot_num["frame_start_shot"], kind="stable")
    starts, ends = shot_num["frame_start_shot"][order], shot_num["frame_end_shot"][order]
    if np.any(ends < starts) or np.any(starts[1:] <= ends[:-1]):
        raise UserError(f"{shots_path}: shots overlap or end before they start (main-camera shots). {_FIX}")
    frame = num["frame_id"].astype(np.int64)
    in_shot = _shot_of(frame, starts, ends) >= 0
    if not in_shot.any():
        return "no main-camera shot overlaps the tracking" if len(starts) else "no main-camera shot in its shots file"
    game_key: GameKey = (date, frozenset(_pxp_name(t) for t in (away, home)))
    teams = _teams(path, text, away, home, games.get(game_key))

    rows = np.flatnonzero(in_shot)  # detections outside every main-camera shot are dropped (counted)
    frame_id = np.arange(frame[rows].min(), frame[rows].max() + 1, dtype=np.int64)
    team_of_row = text["team_id"][rows]
    code = num["track_id"][rows].astype(np.int64) * 2 + (team_of_row == "Dark")  # a track id can hold both teams
    codes, row_object = np.unique(code, return_inverse=True)
    object_team = np.where(codes % 2 == 1, "Dark", "Light")
    ids = np.array([f"{t.lower()}_{c // 2}" for t, c in zip(object_team, codes, strict=True)])
    roles = np.where(object_team == teams.home_id, clips.ROLE_TEAM_A, clips.ROLE_TEAM_B).astype(np.int8)
    canonical = np.array(sorted(range(len(codes)), key=lambda j: (roles[j], ids[j])), np.int64)
    column = np.empty(len(codes), np.int64)
    column[canonical] = np.arange(len(codes))
    k = len(codes)
    cell = (frame[rows] - frame_id[0]) * k + column[row_object]
    _, first_from_end = np.unique(cell[::-1], return_index=True)
    keep = np.sort(len(cell) - 1 - first_from_end)  # the last detection of an object in a frame wins
    located = pitch.to_centred_metres(
        num["x_ft"][rows][keep],
        num["y_ft"][rows][keep],
        x_range=(0.0, RINK_FT[0]),
        y_range=(0.0, RINK_FT[1]),
        length=LENGTH,
        width=WIDTH,
        y_down=False,
    )
    positions = np.full((len(frame_id) * k, 2), np.nan, np.float32)
    positions[cell[keep]] = located
    off_rink = pitch.off_pitch(located, LENGTH, WIDTH)

    parts = _parts(info, frame_id, starts, ends)
    period = np.empty(len(frame_id), np.int16)
    timestamp = np.empty(len(frame_id), np.float64)
    for part in parts:
        period[part.first : part.stop] = part.period
        timestamp[part.first : part.stop] = part.video_offset + (frame_id[part.first : part.stop] - 1) / FPS
    jersey = _jerseys(row_object[keep], num["jersey_number"][rows][keep], k)
    detected_frames = np.unique(frame[rows])
    counts = {
        "detections_in_file": len(table),
        "frames_in_file": len(np.unique(frame)),
        "detections_outside_shots_skipped": int((~in_shot).sum()),
        "frames_outside_shots_skipped": len(np.setdiff1d(np.unique(frame[~in_shot]), detected_frames)),
        "duplicate_detections_skipped": len(cell) - len(keep),
        "detections": len(keep),
        "frames": len(frame_id),
        "frames_with_detections": len(detected_frames),
        "filled_frames": len(frame_id) - len(detected_frames),
        "off_rink_detections": int(off_rink.sum()),
        "tracks_with_two_teams": len(codes) - len(np.unique(codes // 2)),  # kept apart: light_12 and dark_12
        "shots": len(starts),
    }
    game = _slug(name["game"][11:])
    coordinates = common.Coordinates("bigdatacup_tracking_ft", (0.0, RINK_FT[0]), (0.0, RINK_FT[1]), False)
    metadata = {
        "provider": "bigdatacup",
        "reader": "trajsv_jax.data.ingest.bigdatacup",
        "game": name["game"],
        "game_id": f"bigdatacup_{date}_{game}",
        "date": date,
        "home_team": teams.short(teams.home),
        "away_team": teams.short(teams.away),
        "home_away_from": teams.home_from,
        "file_name_home_away_swapped": teams.home != _pxp_name(home),
        "period": int(name["period"]),
        "periods": sorted(periods),
        "power_play": number,
        "power_play_clock": {c: float(info[c]) for c in PP_COLUMNS[2:]},
        "files": {"tracking": str(path), "shots": str(shots_path), "pp_info": str(pp_path), "pxp": str(pxp_path)},
        "licence": LICENCE,
        "shots": [[int(s), int(a), int(b)] for s, a, b in zip(shot_num["shot_ind"][order], starts, ends, strict=True)],
        "objects": {
            str(ids[j]): {
                "team_id": str(object_team[j]),
                "team_name": teams.tracked[object_team[j]],
                "jersey_number": jersey[j],
            }
            for j in canonical
        },
        "counts": counts,
        **coordinates.as_metadata(),
    }
    frames = clips.Frames(
        positions=positions.reshape(len(frame_id), k, 2),
        frame_id=frame_id,
        period=period,
        timestamp=timestamp,
        object_role=roles[canonical],
        object_id=ids[canonical],
        fps=FPS,
        pitch_length=LENGTH,
        pitch_width=WIDTH,
        metadata=metadata,
        shot=_shot_of(frame_id, starts, ends).astype(np.int32),
        sport="ice_hockey",
        field_kind=field.METRIC,
    )
    on_rink = ~off_rink
    rec_frame = (frame[rows][keep] - frame_id[0])[on_rink]
    by_frame = np.argsort(rec_frame, kind="stable")
    return _PowerPlay(
        source_id=f"bigdatacup_{date}_{game}_p{name['period']}_pp{number}",
        group=metadata["game_id"],
        game_key=game_key,
        pxp_team=teams.pxp,
        parts=parts,
        frames=frames,
        rec_frame=rec_frame[by_frame],
        rec_xy=located[on_rink][by_frame].astype(np.float64),
        rec_team=team_of_row[keep][on_rink][by_frame],
    )


def _teams(path: Path, text: dict[str, np.ndarray], away: str, home: str, game: _Game | None) -> _Teams:
    """The teams of a tracking file: home and away from the play-by-play's venue where it has the game, else from the
    file name ("<away> at <home>"); UserError when the tracking's teams are not the game's."""
    names = {t: sorted(set(text["team_name"][text["team_id"] == t])) for t in TEAM_IDS}
    if any(len(n) > 1 for n in names.values()):
        raise UserError(f"{path}: one team_id has several team names ({names}). {_FIX}")
    tracked = {t: n[0] for t, n in names.items() if n}
    pxp = {t: _pxp_name(n) for t, n in tracked.items()}
    if game is not None and set(pxp.values()) <= {game.home, game.away}:
        return _Teams(tracked, pxp, game.home, game.away, "play-by-play venue")
    if not set(pxp.values()) <= {_pxp_name(home), _pxp_name(away)}:
        raise UserError(
            f"{path}: teams {sorted(tracked.values())} are not the game's {away} and {home}. Check that the file is "
            "in its game's folder."
        )
    return _Teams(tracked, pxp, _pxp_name(home), _pxp_name(away), "file name")


def _pp_row(pp_info: pd.DataFrame, date: str, teams: set[str], number: int, path: Path, pp_path: Path) -> pd.Series:
    """The pp_info row of a power play (its game named either way round); UserError when there is none or several."""
    names = pp_info["game_name"].astype(str).str.strip()
    same_game = names.map(lambda n: n[:10] == date and set(n[11:].split(" at ")) == teams).to_numpy(bool)
    rows = pp_info[same_game & (pd.to_numeric(pp_info["penalty_number"]).to_numpy() == number)]
    if len(rows) != 1:
        problem = "no row" if rows.empty else f"{len(rows)} rows"
        raise UserError(
            f"{path}: {problem} for power play {number} of {date} {' v '.join(sorted(teams))} in {pp_path}. Give it "
            "one row (video and game clock at its start and end), or remove the file."
        )
    return rows.iloc[0]


def _shot_of(frame: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Index of the (sorted, disjoint) shot holding each frame, -1 outside every shot."""
    i = np.searchsorted(starts, frame, side="right") - 1
    inside = (i >= 0) & (frame <= ends[np.maximum(i, 0)]) if len(starts) else np.zeros(len(frame), bool)
    return np.where(inside, i, -1)


def _parts(info: pd.Series, frame_id: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[_Part]:
    """The period parts of a power play's frames with their clock models (two when it runs across a period end)."""
    sv, ev = float(info["start_video_clock_seconds"]), float(info["end_video_clock_seconds"])
    sg, eg = float(info["start_game_clock_seconds"]), float(info["end_game_clock_seconds"])
    sp, ep = int(info["start_period"]), int(info["end_period"])
    n, tol = len(frame_id), BUDGET_TOLERANCE_S
    if sp == ep:
        budget = max((ev - sv) - (sg - eg), 0.0)
        slope = (ev - sv) / (eg - sg) if eg != sg else -1.0
        return [_Part(sp, 0, n, sv, sg, sv, (-tol, budget + tol), slope, (eg, sg))]
    t_end = (ends[-1] - 1) / FPS  # clip time of the last main-camera frame: the end period's video clock `ev`
    cut_frame = math.ceil(round((t_end - ev) * FPS, 6)) + 1
    i = int(np.searchsorted(starts, cut_frame, side="right")) - 1
    if i >= 0 and cut_frame <= ends[i]:  # never cut a shot: move to its nearer edge
        cut_frame = int(starts[i]) if cut_frame - starts[i] <= ends[i] + 1 - cut_frame else int(ends[i]) + 1
    cut = int(np.clip(cut_frame - frame_id[0], 0, n))
    t_cut = (cut_frame - 1) / FPS
    # one anchor each (pp_info's start, its end), and offsets that keep the period's end (its opening faceoff)
    # inside the part: on the real data the end anchor is 27 s off, as if the clip stopped before the power play did
    first = _Part(sp, 0, cut, sv, sg, sv, (-tol, max(t_cut - sg, 0.0) + tol), -1.0, (0.0, sg))
    opening = PERIOD_SECONDS - eg  # game seconds from the opening faceoff to the anchor
    second = _Part(ep, cut, n, ev - t_end, eg, ev, (opening - ev - tol, opening + tol), -1.0, (eg, PERIOD_SECONDS))
    return [first, second]


def _jerseys(obj: np.ndarray, jersey: np.ndarray, k: int) -> list[int | None]:
    """The most often read jersey number of each of k objects (100 = not read), None where never read."""
    read = (jersey != 100) & (jersey >= 0) & (jersey < 1000)
    pairs, counts = np.unique(obj[read] * 1000 + jersey[read].astype(np.int64), return_counts=True)
    out: list[int | None] = [None] * k
    for pair in pairs[np.lexsort((-counts, pairs // 1000))][::-1]:  # the most counted of each object last
        out[int(pair // 1000)] = int(pair % 1000)
    return out


# ------------------------------------------------------------------------------------------------------ alignment


@dataclasses.dataclass
class _Plays:
    """The play-by-play's columns as arrays, read once."""

    clock: np.ndarray
    period: np.ndarray
    event: np.ndarray
    team: np.ndarray  # without the "Olympic (Women) - " prefix
    x: np.ndarray
    y: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    success: list[bool | None]
    player: list[str | None]
    player2: list[str | None]
    detail: list[dict[str, Any]]

    @classmethod
    def of(cls, pxp: pd.DataFrame) -> _Plays:
        def text(column: str) -> list[str | None]:
            return [None if pd.isna(v) else str(v).strip() for v in pxp[column]]

        def number(column: str) -> np.ndarray:
            return pd.to_numeric(pxp[column], errors="coerce").to_numpy(np.float64)

        present = [c for c in DETAIL_COLUMNS if c in pxp.columns]
        details = [
            {
                c: (int(v) if isinstance(v, int | float | np.number) and float(v).is_integer() else str(v).strip())
                for c, v in zip(present, values, strict=True)
                if not pd.isna(v)
            }
            for values in pxp[present].itertuples(index=False)
        ]
        flag = {"t": True, "f": False, "true": True, "false": False}
        return cls(
            clock=number("clock_seconds"),
            period=number("period").astype(np.int64),
            event=pxp["event"].astype(str).str.strip().to_numpy(str),
            team=pxp["team_name"].astype(str).str.strip().str.removeprefix(PXP_TEAM_PREFIX).to_numpy(str),
            x=number("x_coord"),
            y=number("y_coord"),
            x2=number("x_coord_2"),
            y2=number("y_coord_2"),
            success=[flag.get(str(v).strip().lower()) for v in pxp["event_successful"]],
            player=text("player_name"),
            player2=text("player_name_2"),
            detail=details,
        )


@dataclasses.dataclass
class _Aligned:
    """One part's events aligned under one orientation hypothesis, with the arrays the summaries need."""

    records: list[dict[str, Any]]
    residual: np.ndarray  # [E] metres, NaN = none
    model_residual: np.ndarray  # at the clock model's frame, no search
    linear_residual: np.ndarray  # at the linear map's frame, no search
    shift: np.ndarray  # [E] seconds, frame - frame_linear
    fine_shift: np.ndarray  # [E] seconds, frame - model frame (NaN without residual)
    team_not_tracked: int
    not_in_view: int
    offsets: list[float]  # stoppage offset (s) of each faceoff segment


@dataclasses.dataclass
class _Alignment:
    orientation: list[dict[str, Any]]  # per game and period: which way the home team attacks, on what evidence
    selected: np.ndarray  # [pxp rows] held by a power play
    summary: dict[str, Any]  # over all events


def _align_all(
    power_plays: list[_PowerPlay], pxp: pd.DataFrame, games: dict[GameKey, _Game], seconds: dict[str, float]
) -> _Alignment:
    """Align every power play's events both ways the home team may attack, then keep per game and period the
    orientation with the lower median residual; fills each power play's events and alignment summary."""
    plays = _Plays.of(pxp)
    selected = np.zeros(len(pxp), bool)
    trials: dict[tuple[int, int, bool], _Aligned] = {}
    members: dict[tuple[GameKey, int], list[tuple[int, int]]] = {}
    for i, pp in enumerate(power_plays):
        start = time.perf_counter()
        game = games.get(pp.game_key)
        for j, part in enumerate(pp.parts):
            rows = _part_rows(plays, game, part)
            selected[rows] = True
            for home_right in (True, False):
                trials[i, j, home_right] = _align_part(pp, part, rows, game, home_right, plays)
            members.setdefault((pp.game_key, part.period), []).append((i, j))
        seconds[pp.source_id] += time.perf_counter() - start
    table, choice = [], {}
    for (key, period), parts in members.items():
        medians = {}
        for home_right in (True, False):
            residual = np.concatenate([trials[i, j, home_right].residual for i, j in parts])
            medians[home_right] = (
                float(np.median(residual[np.isfinite(residual)])) if np.isfinite(residual).any() else None
            )
        right = medians[False] is None or (medians[True] is not None and medians[True] <= medians[False])
        choice[key, period] = right
        game = power_plays[parts[0][0]].group
        table.append(
            {
                "game": game,
                "period": period,
                "home_attacks": "+x" if right else "-x",
                "median_residual_m": {"+x": _round(medians[True]), "-x": _round(medians[False])},
                "determined": medians[True] is not None or medians[False] is not None,
            }
        )
    for i, pp in enumerate(power_plays):
        chosen = [trials[i, j, choice[pp.game_key, part.period]] for j, part in enumerate(pp.parts)]
        pp.events = [r for a in chosen for r in a.records]
        alignment = {
            "method": "linear clock map; stoppage offsets per faceoff segment; nearest team player within the window",
            "window_seconds": WINDOW_S,
            "cap_m": CAP_M,
            "budget_tolerance_seconds": BUDGET_TOLERANCE_S,
            "event_coordinates": "team attacking +x: (x, 85 - y) ft; attacking -x: (200 - x, y) ft; then centred m",
            "home_attacks": {str(p.period): "+x" if choice[pp.game_key, p.period] else "-x" for p in pp.parts},
            "stoppage_offsets_seconds": {str(p.period): a.offsets for p, a in zip(pp.parts, chosen, strict=True)},
            **_summary(chosen),
        }
        events_lib.validate(pp.events, pp.source_id)
        pp.frames.metadata["alignment"] = alignment
    chosen = [
        trials[i, j, choice[pp.game_key, p.period]] for i, pp in enumerate(power_plays) for j, p in enumerate(pp.parts)
    ]
    return _Alignment(table, selected, _summary(chosen))


def _part_rows(plays: _Plays, game: _Game | None, part: _Part) -> np.ndarray:
    """Play-by-play rows of a part: its game and period, game clock within its clocks; in time order."""
    if game is None:
        return np.zeros(0, np.int64)
    rows = game.rows
    lo, hi = part.clocks
    rows = rows[(plays.period[rows] == part.period) & (plays.clock[rows] >= lo) & (plays.clock[rows] <= hi)]
    return rows[np.lexsort((rows, -plays.clock[rows]))]  # the clock counts down; same second: file order


def _align_part(
    pp: _PowerPlay, part: _Part, rows: np.ndarray, game: _Game | None, home_right: bool, plays: _Plays
) -> _Aligned:
    """Align one part's events under one orientation (does the home team attack +x?): see the module docstring."""
    n, span = len(rows), part.stop - part.first
    if not n:
        empty = np.zeros(0)
        return _Aligned([], empty, empty, empty, empty, empty, 0, 0, [])
    assert game is not None  # a part has rows only where the play-by-play has its game
    first_id = int(pp.frames.frame_id[0]) + part.first
    clock = plays.clock[rows]
    is_home = plays.team[rows] == game.home
    team_id = np.array([next((t for t, name in pp.pxp_team.items() if name == team), "") for team in plays.team[rows]])
    right = is_home == home_right
    event_xy = _event_metres(plays.x[rows], plays.y[rows], right)
    event_xy2 = _event_metres(plays.x2[rows], plays.y2[rows], right)

    distance = np.full((n, span), np.nan)  # [E, frames] nearest player of the event's team
    in_part = (pp.rec_frame >= part.first) & (pp.rec_frame < part.stop)
    for team in TEAM_IDS:
        mine = np.flatnonzero(team_id == team)
        rec = in_part & (pp.rec_team == team)
        if not len(mine) or not rec.any():
            continue
        frame, xy = pp.rec_frame[rec] - part.first, pp.rec_xy[rec]
        d = np.hypot(xy[None, :, 0] - event_xy[mine, None, 0], xy[None, :, 1] - event_xy[mine, None, 1])
        starts = np.flatnonzero(np.r_[True, np.diff(frame) > 0])
        distance[np.ix_(mine, frame[starts])] = np.minimum.reduceat(d, starts, axis=1)

    base = np.rint((part.anchor_video + part.anchor_clock - clock - part.video_offset) * FPS).astype(np.int64)
    base += 1 - first_id  # local frame index at stoppage offset 0
    steps = np.arange(round(part.k_range[0] * FPS), round(part.k_range[1] * FPS) + 1)
    candidate = base[:, None] + steps[None, :]
    segment = np.maximum(np.cumsum(plays.event[rows] == FACEOFF), 1) - 1
    offset = _monotone_offsets(np.minimum(_gather(distance, candidate, CAP_M), CAP_M), segment, steps)
    model = base + offset[segment]

    half = round(WINDOW_S * FPS)
    window = model[:, None] + np.arange(-half, half + 1)[None, :]
    values = _gather(distance, window, np.inf)
    best = np.argmin(values, axis=1)
    nearest = values[np.arange(n), best]
    found = np.isfinite(nearest)
    local = np.where(found, window[np.arange(n), best], model)
    residual = np.where(found, nearest, np.nan)
    linear_video = part.anchor_video + part.slope * (clock - part.anchor_clock)
    linear = np.rint((linear_video - part.video_offset) * FPS).astype(np.int64) + 1
    model_residual = _gather(distance, model[:, None], np.nan)[:, 0]
    linear_residual = _gather(distance, (linear - first_id)[:, None], np.nan)[:, 0]

    frame_id = local + first_id
    names = {True: pp.frames.metadata["home_team"], False: pp.frames.metadata["away_team"]}
    records = []
    for e, row in enumerate(rows):
        detail = dict(plays.detail[row], segment=int(segment[e]), model_frame=int(model[e] + first_id))
        records.append(
            {
                "time": round(part.video_offset + (int(frame_id[e]) - 1) / FPS, 4),
                "frame": int(frame_id[e]),
                "period": part.period,
                "type": str(plays.event[row]),
                "team": events_lib.TEAMS[0] if is_home[e] else events_lib.TEAMS[1],
                "team_name": names[bool(is_home[e])],
                "player": plays.player[row],
                "player_2": plays.player2[row],
                "x": _round(event_xy[e, 0]),
                "y": _round(event_xy[e, 1]),
                "x_2": _round(event_xy2[e, 0]),
                "y_2": _round(event_xy2[e, 1]),
                "success": plays.success[row],
                "clock_seconds": float(clock[e]),
                "detail": detail,
                "residual_m": _round(residual[e]),
                "frame_linear": int(linear[e]),
            }
        )
    return _Aligned(
        records=records,
        residual=residual,
        model_residual=model_residual,
        linear_residual=linear_residual,
        shift=(frame_id - linear) / FPS,
        fine_shift=np.where(found, (local - model) / FPS, np.nan),
        team_not_tracked=int((team_id == "").sum()),
        not_in_view=int(((team_id != "") & ~found).sum()),
        offsets=[round(float(s) / FPS, 3) for s in offset],
    )


def _event_metres(x: np.ndarray, y: np.ndarray, right: np.ndarray) -> np.ndarray:
    """[E, 2] centred metres of event coordinates (ft, the team's frame) in the tracking's frame of reference."""
    x_ft = np.where(right, x, RINK_FT[0] - x)
    y_ft = np.where(right, RINK_FT[1] - y, y)
    return np.stack([x_ft * FEET - LENGTH / 2, y_ft * FEET - WIDTH / 2], axis=-1)


def _gather(values: np.ndarray, index: np.ndarray, fill: float) -> np.ndarray:
    """values[e, index[e, j]], `fill` where that is NaN or the index is outside the frames."""
    inside = (index >= 0) & (index < values.shape[1])
    out = np.full(index.shape, fill, np.float64)
    rows = np.broadcast_to(np.arange(len(index))[:, None], index.shape)
    picked = values[rows[inside], index[inside]]
    out[inside] = np.where(np.isnan(picked), fill, picked)
    return out


def _monotone_offsets(cost: np.ndarray, segment: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The stoppage offset (in steps) of each segment minimising the summed cost, non-decreasing over segments."""
    count = int(segment.max()) + 1
    per_segment = np.zeros((count, len(steps)))
    np.add.at(per_segment, segment, cost)
    per_segment += _PREFER_SMALL * np.abs(steps)
    total = np.empty_like(per_segment)
    total[0] = per_segment[0]
    for s in range(1, count):
        total[s] = per_segment[s] + np.minimum.accumulate(total[s - 1])
    choice = np.empty(count, np.int64)
    choice[-1] = int(np.argmin(total[-1]))
    for s in range(count - 2, -1, -1):
        choice[s] = int(np.argmin(total[s][: choice[s + 1] + 1]))
    return steps[choice]


def _round(value: Any, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _shifts(values: np.ndarray) -> dict[str, Any]:
    v = values[np.isfinite(values)]
    if not len(v):
        return {"count": 0}
    return {
        "count": len(v),
        "median": _round(np.median(v)),
        "median_abs": _round(np.median(np.abs(v))),
        "p90_abs": _round(np.percentile(np.abs(v), 90)),
        "max_abs": _round(np.abs(v).max()),
    }


def _summary(aligned: list[_Aligned]) -> dict[str, Any]:
    """Counts and distributions of aligned parts: refined, clock-model and linear residuals, frame shifts."""

    def joined(name: str) -> np.ndarray:
        return np.concatenate([getattr(a, name) for a in aligned] + [np.zeros(0)])

    residual = joined("residual")
    return {
        "events": len(residual),
        "with_residual": int(np.isfinite(residual).sum()),
        "team_not_tracked": sum(a.team_not_tracked for a in aligned),
        "not_in_view": sum(a.not_in_view for a in aligned),
        "residual_m": events_lib.residual_distribution(residual),
        "model_residual_m": events_lib.residual_distribution(joined("model_residual")),
        "linear_residual_m": events_lib.residual_distribution(joined("linear_residual")),
        "shift_seconds": _shifts(joined("shift")),
        "fine_shift_seconds": _shifts(joined("fine_shift")),
    }


def _report(
    tracking_dir: Path,
    pxp_path: Path,
    pxp: pd.DataFrame,
    games: dict[GameKey, _Game],
    power_plays: list[_PowerPlay],
    dropped: list[dict[str, str]],
    pp_info: pd.DataFrame,
    alignment: _Alignment,
    paths: list[Path],
) -> dict[str, Any]:
    """The counts of a read: power plays, frames, detections and their drops, events and their alignment."""

    def total(key: str) -> int:
        return sum(pp.frames.metadata["counts"][key] for pp in power_plays)

    in_files = {
        (n["date"], frozenset((n["away"], n["home"])), int(n["n"]))
        for n in map(_NAME.fullmatch, (p.stem for p in paths))
    }
    pp_rows = [
        f"{r.game_name} PP{int(r.penalty_number)}"
        for r in pp_info.itertuples()
        if (str(r.game_name)[:10], frozenset(str(r.game_name)[11:].split(" at ")), int(r.penalty_number))
        not in in_files
    ]
    shots_alone = sorted(
        p.name for p in tracking_dir.glob("*/videoShotsInfo_*.csv") if not p.with_name(p.name[15:]).exists()
    )
    tracked = {pp.game_key for pp in power_plays}
    of_tracked = np.zeros(len(pxp), bool)
    for key in tracked & games.keys():
        of_tracked[games[key].rows] = True
    kept = sum(len(pp.events) for pp in power_plays)
    return {
        "folder": str(tracking_dir),
        "pxp": str(pxp_path),
        "power_play_files": len(paths),
        "power_plays_read": len(power_plays),
        "power_plays_dropped": dropped,
        "pp_info_rows_without_tracking": pp_rows,
        "shots_files_without_tracking": shots_alone,
        "games": len({pp.group for pp in power_plays}),
        "games_with_home_away_swapped_in_file_names": sorted(
            {pp.frames.metadata["game"] for pp in power_plays if pp.frames.metadata["file_name_home_away_swapped"]}
        ),
        "frames": total("frames"),
        "frames_with_detections": total("frames_with_detections"),
        "filled_frames": total("filled_frames"),
        "detections_in_files": total("detections_in_file"),
        "detections": total("detections"),
        "detections_outside_shots": total("detections_outside_shots_skipped"),
        "frames_outside_shots": total("frames_outside_shots_skipped"),
        "duplicate_detections": total("duplicate_detections_skipped"),
        "off_rink_detections": total("off_rink_detections"),
        "tracks_with_two_teams": total("tracks_with_two_teams"),
        "events": {
            "in_pxp": len(pxp),
            "kept": kept,
            "outside_any_sequence": int((of_tracked & ~alignment.selected).sum()),
            "of_games_without_tracking": int((~of_tracked).sum()),
            "without_residual": kept - alignment.summary["with_residual"],
            "team_not_tracked": alignment.summary["team_not_tracked"],
            "not_in_view": alignment.summary["not_in_view"],
        },
        "orientation": alignment.orientation,
        "alignment": alignment.summary,
    }
