"""Your own tracking table (CSV or Parquet) → Frames → a source in the store: `trajsv ingest table FILE`.

Two layouts (docs/FORMAT.md, "Importing your own tracking table"):
- long: one row per object and frame: a frame number and/or a time in seconds, an object id, a team or role, x, y
  (and optionally a period); column names are found among common spellings or named in `TableOptions`;
- wide: one row per frame and two columns per object, named as `TableOptions.wide_pattern` matches (by default
  `Home_1_x, Home_1_y, ..., Ball_x, Ball_y` as in Metrica's tidy files, or Last Row's `<player>_x, <player>_y`).
Coordinates in metres, centimetres, feet, yards or normalised to the field (0–1, 0–100), from the centre or a corner,
y up or down, are mapped linearly onto centred metres of the field. Frames come out consecutive within each period:
frame numbers missing from the file become rows of NaN, so a gap stays a gap for the clip cutter. Everything left out
is counted in `metadata["table"]`; bad input is a one-line `UserError` naming the file, the column or line, and the
flag that fixes it.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from trajsv_jax.data import clips, field, pitch, store
from trajsv_jax.data.ingest import common
from trajsv_jax.errors import UserError

# metres per unit; None: normalised to the field (0–1 or 0–100 along each axis)
UNITS: dict[str, float | None] = {
    "m": 1.0,
    "cm": 0.01,
    "ft": 0.3048,
    "yards": 0.9144,
    "normalized100": None,
    "normalized1": None,
}
NORMALISED = {"normalized1": 1.0, "normalized100": 100.0}
ORIGINS = ("centre", "corner")
LAYOUTS = ("auto", "long", "wide")
SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")
# an optional team prefix, the object id, the axis: Home_11_x -> (Home, 11, x); Ball_x and player7_x -> (-, id, x)
DEFAULT_WIDE_PATTERN = r"^(?:(?P<team>[^_]+)_)?(?P<id>.+?)_(?P<axis>[xy])$"
NO_COLUMN = "none"  # a column option set to this: do not use such a column even where one is found
# the spellings auto-detection looks for, in order of preference, after _normal(); the first found wins
CANDIDATES: dict[str, tuple[str, ...]] = {
    "frame": ("frame", "frame_id", "frameid", "frame_no", "frame_number", "frame_idx", "frame_index", "frame_count"),
    "time": ("time", "timestamp", "time_s", "seconds", "time_seconds", "game_time", "t"),
    "period": ("period", "period_id", "periodid", "half"),
    "id": ("id", "player_id", "playerid", "track_id", "trackid", "object_id", "objectid", "player", "track", "object"),
    "team": ("team", "team_id", "teamid", "team_name", "role", "side"),
    "x": ("x", "pos_x", "x_pos", "xpos", "position_x", "x_m"),
    "y": ("y", "pos_y", "y_pos", "ypos", "position_y", "y_m"),
}
FLAGS = {name: f"--{name}-column" for name in CANDIDATES}
HOME_LABELS = frozenset({"home", "h", "a", "team_a", "teama", "home_team", "hometeam"})
AWAY_LABELS = frozenset({"away", "b", "team_b", "teamb", "away_team", "awayteam", "visitor", "visitors", "guest"})
OTHER_LABELS = frozenset({"", "referee", "referees", "ref", "official", "officials", "other", "unknown", "none"})
MOSTLY_OUTSIDE = 0.5  # warn when more than this fraction of the located points lies outside the field
MAX_FRAME_STEP = 100  # frame numbers in steps of n <= this: every n-th frame was exported, the rate is fps / n
MAX_FILL = 10  # refuse a frame axis more than this many times longer than the frames in the file (plus 100,000)


@dataclasses.dataclass(frozen=True)
class TableOptions:
    """How to read a table; every None is found in the file or follows from the other options."""

    layout: str = "auto"  # long | wide | auto (long where x, y and id columns are found)
    units: str = "m"  # a key of UNITS
    origin: str | None = None  # centre | corner (0, 0 at a corner); None: corner for normalised units, else centre
    y_down: bool = False  # y grows downwards (image, Metrica style)
    flip_x: bool = False  # x grows towards the left goal
    field_size: tuple[float, float] | None = None  # length x width in metres; None: the sport's regulation size
    sport: str = "soccer"  # field.SPORTS or any plain name (with field_size)
    fps: float | None = None  # frames per second of the frame numbers; required without a time column
    frame_column: str | None = None
    time_column: str | None = None  # seconds since the start of the period (or of the file)
    period_column: str | None = None
    id_column: str | None = None
    team_column: str | None = None
    x_column: str | None = None
    y_column: str | None = None
    wide_pattern: str = DEFAULT_WIDE_PATTERN  # regex with groups id, axis (x or y) and optionally team
    home: tuple[str, ...] = ()  # team labels of team A besides HOME_LABELS
    away: tuple[str, ...] = ()  # team labels of team B besides AWAY_LABELS
    ball: str = "ball"  # the team label or id of ball rows

    def __post_init__(self) -> None:
        if self.origin == "center":
            object.__setattr__(self, "origin", "centre")
        for name, value, allowed in (
            ("layout", self.layout, LAYOUTS),
            ("units", self.units, tuple(UNITS)),
            ("origin", self.origin, (None, *ORIGINS)),
        ):
            if value not in allowed:
                choices = ", ".join(a for a in allowed if a is not None)
                raise UserError(f"unknown {name} {value!r}: expected one of {choices} (--{name}).")
        if self.fps is not None and not 0 < self.fps < math.inf:
            raise UserError(f"--fps {self.fps}: expected a finite number > 0.")
        if self.field_size is not None:
            object.__setattr__(self, "field_size", tuple(float(v) for v in self.field_size))
        for name in ("home", "away"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        try:
            pattern = re.compile(self.wide_pattern, re.IGNORECASE)
        except re.error as e:
            raise UserError(f"--wide-pattern {self.wide_pattern!r}: not a regular expression ({e}).") from None
        if not {"id", "axis"} <= set(pattern.groupindex):
            raise UserError(
                f"--wide-pattern {self.wide_pattern!r}: needs the named groups (?P<id>...) and (?P<axis>[xy]) "
                "(and optionally (?P<team>...)), e.g. the default " + DEFAULT_WIDE_PATTERN
            )

    @property
    def resolved_origin(self) -> str:
        return self.origin or ("corner" if self.units in NORMALISED else "centre")

    def playing_field(self) -> field.Field:
        """The metric field the coordinates are on (UserError for a sport without a size and no field_size)."""
        if self.field_size is None:
            if self.sport not in field.REGULATION:
                raise UserError(
                    f"no regulation size known for sport {self.sport!r} ({', '.join(field.SPORTS)}): give the field "
                    "size in metres with --field-size LENGTH WIDTH."
                )
            return field.Field.regulation(self.sport)
        return field.Field(self.sport, field.METRIC, *self.field_size)

    def coordinates(self, units: str | None = None, origin: str | None = None) -> common.Coordinates:
        """The field's edges in the table's coordinates (units and origin as given, or as asked for)."""
        units, origin = units or self.units, origin or self.resolved_origin
        f = self.playing_field()
        if units in NORMALISED:
            length = width = NORMALISED[units]
        else:
            length, width = f.length / UNITS[units], f.width / UNITS[units]
        x_range = (0.0, length) if origin == "corner" else (-length / 2, length / 2)
        y_range = (0.0, width) if origin == "corner" else (-width / 2, width / 2)
        if self.flip_x:
            x_range = x_range[::-1]
        name = (
            f"table ({units}, origin {origin}{', y down' if self.y_down else ''}{', x flipped' if self.flip_x else ''})"
        )
        return common.Coordinates(name, x_range, y_range, self.y_down)


@dataclasses.dataclass
class _Table:
    """The file's data: an Arrow table, and how to name a data row in a message (CSV lines, Parquet rows)."""

    path: Path
    data: pa.Table
    csv: bool

    @property
    def names(self) -> list[str]:
        return self.data.column_names

    def where(self, row: int) -> str:
        return f"line {row + 2}" if self.csv else f"row {row + 1}"

    def found(self) -> str:
        """The column names, for a message (the first 30)."""
        names = self.names
        shown = ", ".join(names[:30]) + (f", ... ({len(names)} in all)" if len(names) > 30 else "")
        return f"found columns: {shown or 'none'}"

    def numbers(self, name: str, flag: str) -> np.ndarray:
        """float64 values of a column (NaN where empty); UserError naming the first non-numeric value and its row."""
        column = self.data.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type):
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        text = column.to_pandas()
        values = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
        bad = np.flatnonzero(np.isnan(values) & text.notna().to_numpy() & (text.astype(str).str.strip() != ""))
        if not len(bad):
            return values
        value = text.iloc[bad[0]]
        hint = " (a decimal comma? write numbers with a point)" if "," in str(value) else ""
        raise UserError(
            f"{self.path}: column {name!r} is not numeric: {value!r} at {self.where(int(bad[0]))}{hint}. Give numbers "
            f"there, or name the right column with {flag}."
        )

    def labels(self, name: str) -> tuple[np.ndarray, list[str]]:
        """(code per row, -1 where empty; the distinct labels as text) of an id or team column."""
        column = self.data.column(name)
        if pa.types.is_floating(column.type):  # whole numbers with gaps (Parquet from pandas): 7.0 -> "7"
            values = column.to_numpy(zero_copy_only=False)
            if np.all(np.isnan(values) | (values == np.round(values))):
                column = pa.chunked_array([pa.array(values, mask=np.isnan(values)).cast(pa.int64())])
        encoded = pc.cast(column, pa.string()).combine_chunks().dictionary_encode()
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        text = [str(v).strip() for v in encoded.dictionary.to_pylist()]
        codes[np.isin(codes, [i for i, v in enumerate(text) if v == ""])] = -1
        return codes, text


def _normal(name: str) -> str:
    """A column name compared with CANDIDATES: lower case, runs of other characters as one `_` ("Time [s]" → time_s)."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".tsv")):
        return "csv"
    raise UserError(
        f"{path}: unknown table type {''.join(path.suffixes) or '(no suffix)'!r}: expected {', '.join(SUFFIXES)}. "
        "Export the table as CSV or Parquet."
    )


def _load(path: Path, options: TableOptions) -> _Table:
    """The whole table; UserError for a missing, empty, truncated or unreadable file."""
    kind = _kind(path)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise UserError(f"{path}: {what}. Check the path of the table.")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file. Export the table again (a header line and one row per record).")
    if kind == "parquet":
        try:
            data = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise UserError(
                f"{path}: not a readable Parquet file ({common.one_line(e, 120)}; truncated or corrupt?). "
                "Export it again."
            ) from None
        table = _Table(path, data, csv=False)
    else:
        table = _Table(path, _read_csv(path, options), csv=True)
    if table.data.num_rows == 0:
        raise UserError(f"{path}: no data rows ({table.found()}). Export the table with its rows.")
    return table


def _opener(path: Path) -> Callable[..., Any]:
    return gzip.open if path.name.lower().endswith(".gz") else open


def _read_csv(path: Path, options: TableOptions) -> pa.Table:
    """A CSV file read by pyarrow; the separator is the most common of `,` `;` tab in the header (tab for .tsv).

    Id and team columns are read as text (ids like 007 stay as they are); columns the wide pattern matches as numbers,
    which spares pyarrow guessing the types of hundreds of columns (10x faster on a wide table). A value that is not
    a number there makes it read again with guessed types, so that `_Table.numbers` can name the value and its line.
    """
    try:
        with _opener(path)(path, "rt", encoding="utf-8-sig", errors="replace") as f:
            header = f.readline()
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read it ({common.one_line(e, 120)}). Check the file.") from None
    delimiter = "\t" if path.name.lower().endswith(".tsv") else max(",;\t", key=header.count)
    names = next(csv.reader([header], delimiter=delimiter), [])
    labels = {
        *CANDIDATES["id"],
        *CANDIDATES["team"],
        *(_normal(c) for c in (options.id_column, options.team_column) if c),
    }
    text = dict.fromkeys((n for n in names if _normal(n) in labels), pa.string())
    numeric = re.compile(options.wide_pattern, re.IGNORECASE)
    numbers = {n: pa.float64() for n in names if numeric.match(n) and n not in text}
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    try:
        try:
            return pa_csv.read_csv(
                path, parse_options=parse, convert_options=pa_csv.ConvertOptions(column_types=text | numbers)
            )
        except pa.ArrowInvalid as e:
            if "conversion error" not in str(e):
                raise
            return pa_csv.read_csv(path, parse_options=parse, convert_options=pa_csv.ConvertOptions(column_types=text))
    except (pa.ArrowException, OSError, EOFError) as e:
        raise UserError(_csv_problem(path, delimiter, e)) from None


def _csv_problem(path: Path, delimiter: str, error: Exception) -> str:
    """The one-line story of a CSV pyarrow could not read: the first line whose field count differs, if any."""
    with _opener(path)(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as f:
        text = f.read()
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    expected = len(next(reader, []))
    for row in reader:
        if row and len(row) != expected:
            cut = reader.line_num == len(text.splitlines()) and not text.endswith(("\n", "\r"))
            why = "the last line is cut off: a truncated file" if cut else "a damaged or hand-edited line"
            return (
                f"{path}: line {reader.line_num} has {len(row)} fields, the header has {expected} ({why}). "
                "Export the table again."
            )
    return f"{path}: not a readable CSV file ({common.one_line(error, 120)}). Export the table again."


def _column(table: _Table, role: str, given: str | None, required: bool) -> str | None:
    """The column of `role`: the one named (exactly, or ignoring case), else the first candidate spelling found."""
    if given == NO_COLUMN:
        return None
    if given is not None:
        matches = [n for n in table.names if n == given] or [n for n in table.names if n.lower() == given.lower()]
        if not matches:
            raise UserError(f"{table.path}: no column {given!r} ({FLAGS[role]}); {table.found()}.")
        return matches[0]
    normal = {}
    for name in table.names:
        normal.setdefault(_normal(name), name)
    found = next((normal[c] for c in CANDIDATES[role] if c in normal), None)
    if found is None and required:
        raise UserError(
            f"{table.path}: no {role} column (looked for {', '.join(CANDIDATES[role][:4])}, ...); {table.found()}. "
            f"Name it with {FLAGS[role]} NAME."
        )
    return found


@dataclasses.dataclass
class _Clock:
    """Per data row: frame number, time, period (NaN where missing); which columns gave them."""

    frame: np.ndarray | None
    time: np.ndarray | None
    period: np.ndarray
    columns: dict[str, str | None]


def _clock(table: _Table, options: TableOptions, numbered_rows: bool) -> _Clock:
    """The frame, time and period columns; `numbered_rows` (wide layout): without them, row i is frame i."""
    frame_col = _column(table, "frame", options.frame_column, False)
    time_col = _column(table, "time", options.time_column, False)
    if frame_col is None and time_col is None and not numbered_rows:
        raise UserError(
            f"{table.path}: no frame or time column ({table.found()}). Name one with --frame-column or "
            "--time-column (seconds)."
        )
    period_col = _column(table, "period", options.period_column, False)
    frame = table.numbers(frame_col, FLAGS["frame"]) if frame_col else None
    if frame is None and time_col is None:
        frame = np.arange(table.data.num_rows, dtype=np.float64)
    if frame is not None:
        bad = np.flatnonzero(np.isfinite(frame) & (frame != np.round(frame)))
        if len(bad):
            raise UserError(
                f"{table.path}: column {frame_col!r} has {frame[bad[0]]:g} at {table.where(int(bad[0]))}: frame "
                "numbers are whole numbers (a time in seconds? name it with --time-column, and --frame-column none)."
            )
    period = np.ones(table.data.num_rows) if period_col is None else table.numbers(period_col, FLAGS["period"])
    bad = np.flatnonzero(np.isfinite(period) & ((period != np.round(period)) | (period < 1) | (period > 32767)))
    if len(bad):
        raise UserError(
            f"{table.path}: column {period_col!r} has {period[bad[0]]:g} at {table.where(int(bad[0]))}: periods are "
            "whole numbers from 1 (1 = first half). Fix the column or leave it out with --period-column none."
        )
    time = table.numbers(time_col, FLAGS["time"]) if time_col else None
    return _Clock(frame, time, period, {"frame": frame_col, "time": time_col, "period": period_col})


@dataclasses.dataclass
class _Records:
    """Located detections in file order: data row, local object (0 = the ball), x and y in table coordinates."""

    row: np.ndarray
    obj: np.ndarray
    x: np.ndarray
    y: np.ndarray
    objects: list[tuple[int, str]]  # (role, id) of each local object
    dropped: dict[str, int]
    columns: dict[str, Any]
    team_labels: dict[str, str]  # label → role name
    warnings: list[str]


def _roles(labels: list[str], options: TableOptions) -> tuple[np.ndarray, dict[str, str]]:
    """clips.ROLE_* of each team label; the labels neither home, away, ball nor other are "unknown" (→ other)."""
    home = HOME_LABELS | {_normal(x) for x in options.home}
    away = AWAY_LABELS | {_normal(x) for x in options.away}
    ball = _normal(options.ball)
    roles, names = np.full(len(labels), clips.ROLE_OTHER, np.int8), {}
    for i, label in enumerate(labels):
        key = _normal(label)
        role = (
            clips.ROLE_BALL
            if key == ball
            else clips.ROLE_TEAM_A
            if key in home
            else clips.ROLE_TEAM_B
            if key in away
            else clips.ROLE_OTHER
        )
        roles[i] = role
        names[label] = clips.ROLE_NAMES[role] if role != clips.ROLE_OTHER or key in OTHER_LABELS else "unknown"
    return roles, names


def _check_teams(path: Path, what: str, names: dict[str, str], roles: np.ndarray) -> list[str]:
    """UserError when no label names a team although some are unknown; else warnings for the unknown ones."""
    unknown = [label for label, name in names.items() if name == "unknown"]
    if unknown and not np.isin(roles, (clips.ROLE_TEAM_A, clips.ROLE_TEAM_B)).any():
        shown = ", ".join(repr(x) for x in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        raise UserError(
            f"{path}: {what} has labels {shown}, none of them home or away: say which is which with --home LABEL "
            "--away LABEL (the ball's with --ball LABEL; referee, other and unknown are role other)."
        )
    return (
        [f"team labels {', '.join(map(repr, unknown))} are not home/away/ball/referee: role other"] if unknown else []
    )


def _objects(role: np.ndarray, id_code: np.ndarray, ids: list[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Local object per record (0 = the ball) and the (role, id) of each, for records with a role and an id code."""
    key = np.where(role == clips.ROLE_BALL, 0, 1 + role.astype(np.int64) * (len(ids) + 1) + id_code)
    unique, inverse = np.unique(np.append(key, 0), return_inverse=True)  # the ball (key 0) is always object 0
    objects = [(clips.ROLE_BALL, "ball")] + [
        (int((k - 1) // (len(ids) + 1)), ids[int((k - 1) % (len(ids) + 1))]) for k in unique[1:]
    ]
    return inverse[:-1], objects


def _long_records(table: _Table, options: TableOptions, valid: np.ndarray) -> _Records:
    """One record per row with an object and at least one coordinate (both missing: not seen, counted)."""
    names = {r: _column(table, r, getattr(options, f"{r}_column"), True) for r in ("x", "y")}
    id_col = _column(table, "id", options.id_column, True)
    team_col = _column(table, "team", options.team_column, False)
    x, y = (table.numbers(names[a], FLAGS[a]) for a in ("x", "y"))
    id_code, ids = table.labels(id_col)
    ball = _normal(options.ball)
    role = np.full(len(x), clips.ROLE_OTHER, np.int8)
    warnings: list[str] = []
    team_labels: dict[str, str] = {}
    if team_col is not None:
        team_code, teams = table.labels(team_col)
        label_roles, team_labels = _roles(teams, options)
        role = np.where(team_code >= 0, label_roles[np.maximum(team_code, 0)], clips.ROLE_OTHER).astype(np.int8)
        warnings = _check_teams(table.path, f"column {team_col!r}", team_labels, role)
    is_ball_id = np.array([_normal(v) == ball for v in ids] + [False])  # [-1] → False
    role[is_ball_id[id_code]] = clips.ROLE_BALL
    located = np.isfinite(x) | np.isfinite(y)
    no_id = valid & (id_code < 0) & (role != clips.ROLE_BALL)
    keep = valid & ~no_id & located
    rows = np.flatnonzero(keep)
    obj, objects = _objects(role[rows], id_code[rows], ids)
    return _Records(
        rows,
        obj,
        x[rows],
        y[rows],
        objects,
        {"no_id": int(no_id.sum()), "no_position": int((valid & ~no_id & ~located).sum())},
        {"id": id_col, "team": team_col, **names},
        team_labels,
        warnings,
    )


def _wide_records(table: _Table, options: TableOptions, valid: np.ndarray) -> _Records:
    """One record per row and object column pair with at least one coordinate."""
    pattern = re.compile(options.wide_pattern, re.IGNORECASE)
    pairs: dict[tuple[str, str], dict[str, str]] = {}
    for name in table.names:
        match = pattern.match(name)
        if match:
            team = (match.groupdict().get("team") or "").strip()
            pairs.setdefault((team, match["id"].strip()), {})[match["axis"].lower()] = name
    if not pairs:
        raise UserError(
            f"{table.path}: no object columns match the wide pattern {options.wide_pattern!r} (e.g. Home_1_x, "
            f"Home_1_y, Ball_x); {table.found()}. Give --wide-pattern, or --layout long."
        )
    for (_, ident), axes in pairs.items():
        if set(axes) != {"x", "y"}:
            have = next(iter(axes.values()))
            raise UserError(
                f"{table.path}: column {have!r} has no {'y' if 'x' in axes else 'x'} partner for object {ident!r}: "
                "each object needs an x and a y column (see --wide-pattern)."
            )
    keys = list(pairs)
    teams = sorted({team for team, _ in keys})
    label_roles, team_labels = _roles(teams, options)
    ball = _normal(options.ball)
    role = np.array([clips.ROLE_BALL if _normal(i) == ball else label_roles[teams.index(t)] for t, i in keys], np.int8)
    warnings = _check_teams(table.path, "the column prefixes", team_labels, role) if any(teams) else []
    ids = [i for _, i in keys]
    obj_of_column, objects = _objects(role, np.arange(len(keys)), ids)
    # [objects, rows]: each column is written contiguously (10x faster than stacking them side by side); records go
    # object by object, each in row order, so the last of duplicated frame rows still wins
    xs = np.stack([table.numbers(pairs[k]["x"], "--wide-pattern") for k in keys])
    ys = np.stack([table.numbers(pairs[k]["y"], "--wide-pattern") for k in keys])
    column, rows = np.nonzero((~np.isnan(xs) | ~np.isnan(ys)) & valid)
    return _Records(
        rows,
        obj_of_column[column],
        xs[column, rows],
        ys[column, rows],
        objects,
        {},
        {"object_columns": 2 * len(keys), "wide_pattern": options.wide_pattern},
        {label: name for label, name in team_labels.items() if label},
        warnings,
    )


@dataclasses.dataclass
class _Axis:
    """The consecutive frames of the output and where each data row goes."""

    row_frame: np.ndarray  # [R] output frame of each data row (-1: none)
    frame_id: np.ndarray  # [F]
    period: np.ndarray  # [F]
    timestamp: np.ndarray  # [F]
    fps: float
    info: dict[str, Any]


def _group_first(values: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """The first non-NaN value of each group 0..n-1 (NaN where none)."""
    return pd.Series(values).groupby(group).first().reindex(range(n)).to_numpy(np.float64)


def _infer_fps(path: Path, rate: np.ndarray, options: TableOptions) -> tuple[float, str]:
    """The frame rate: --fps checked against the time column's `rate` samples, or their median."""
    rate = rate[np.isfinite(rate) & (rate > 0)]
    if not len(rate):
        if options.fps is None:
            raise UserError(
                f"{path}: cannot tell the frame rate from the time column (one frame per period?): give --fps."
            )
        return float(options.fps), "--fps"
    inferred = round(float(np.median(rate)), 3)
    if not 1 <= inferred <= 1000:
        raise UserError(
            f"{path}: the time column gives {inferred:g} frames per second: is it in seconds? Convert it, or give "
            "--fps with --time-column none."
        )
    if options.fps is None:
        return inferred, "time column"
    if abs(inferred - options.fps) > 0.01 * options.fps:
        raise UserError(
            f"{path}: --fps {options.fps:g}, but the time column says {inferred:g} frames per second. Fix --fps "
            "(or leave it out to take the time column's)."
        )
    return float(options.fps), "--fps (checked against the time column)"


def _check_time_order(table: _Table, time: np.ndarray, period: np.ndarray, group: np.ndarray, column: str) -> None:
    """UserError where the time goes back within a period and group (an object, or the rows of a wide table)."""
    order = np.lexsort((np.arange(len(time)), group, period))
    t, p, g = time[order], period[order], group[order]
    back = np.flatnonzero((np.diff(t) < 0) & (p[1:] == p[:-1]) & (g[1:] == g[:-1]))
    if len(back):
        i = back[0]
        raise UserError(
            f"{table.path}: time column {column!r} goes back from {t[i]:g} to {t[i + 1]:g} s at "
            f"{table.where(int(order[i + 1]))} within period {int(p[i])}: a clock that restarts needs a period column "
            "(--period-column NAME); otherwise sort the table by time."
        )


def _axis(table: _Table, clock: _Clock, valid: np.ndarray, group: np.ndarray, options: TableOptions) -> _Axis:
    """Output frames: every frame number (or time step) from each period's first to its last, periods in order."""
    rows = np.flatnonzero(valid)
    period = clock.period[rows].astype(np.int64)
    info: dict[str, Any] = {}
    if clock.frame is None:  # times only: frames are time steps of 1 / fps from each period's first time
        time = clock.time[rows]
        _check_time_order(table, time, period, group[rows], clock.columns["time"])
        distinct = pd.DataFrame({"p": period, "t": time}).drop_duplicates().sort_values(["p", "t"]).to_numpy()
        same = distinct[1:, 0] == distinct[:-1, 0]
        fps, info["fps_from"] = _infer_fps(table.path, 1 / np.diff(distinct[:, 1])[same], options)
        start = pd.Series(time).groupby(period).transform("min").to_numpy()
        number = np.rint((time - start) * fps)
    else:
        number = clock.frame[rows]
    base = pd.Series(number).groupby(period).transform("min").to_numpy()
    key = period * 2**42 + (number - base).astype(np.int64)
    unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    u_period, u_offset = unique // 2**42, unique % 2**42
    steps = np.diff(u_offset)[u_period[1:] == u_period[:-1]]
    step = int(np.gcd.reduce(steps)) if len(steps) and clock.frame is not None else 1
    step = step if step <= MAX_FRAME_STEP else 1  # a few far-apart frames are a gap, not a coarser frame rate
    index_in_period = u_offset // step
    periods, starts = np.unique(u_period, return_index=True)
    lengths = index_in_period[np.append(starts[1:], len(unique)) - 1] + 1
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    if total > MAX_FILL * len(unique) + 100_000:
        gaps = np.diff(u_offset) * (u_period[1:] == u_period[:-1])
        i = int(np.argmax(gaps))
        a, b = first[i], first[i + 1]
        jump = (
            f"the frame numbers jump from {int(number[a])} to {int(number[b])}"
            if clock.frame is not None
            else f"the times jump from {clock.time[rows[a]]:g} to {clock.time[rows[b]]:g} s"
        )
        raise UserError(
            f"{table.path}: {jump} at {table.where(int(rows[b]))} within period {int(u_period[i])}: {total} frames "
            f"for {len(unique)} in the file. Check the {'frame' if clock.frame is not None else 'time'} column (a "
            "stray value?), or give the period column (--period-column)."
        )
    out = offsets[np.searchsorted(periods, u_period)] + index_in_period
    frame_period = np.repeat(periods, lengths).astype(np.int16)
    position_in_period = np.arange(total) - np.repeat(offsets[:-1], lengths)
    if clock.frame is None:
        frame_id = np.arange(total, dtype=np.int64)
    else:
        frame_base = pd.Series(base).groupby(period).first().reindex(periods).to_numpy()
        frame_id = (np.repeat(frame_base, lengths) + position_in_period * step).astype(np.int64)
    if clock.time is not None:
        known = np.full(total, np.nan)
        known[out] = _group_first(clock.time[rows], inverse, len(unique))
        if clock.frame is not None:
            k = np.flatnonzero(np.isfinite(known))
            same = frame_period[k[1:]] == frame_period[k[:-1]]
            a, b = k[:-1][same], k[1:][same]
            dt = known[b] - known[a]
            if (dt <= 0).any():
                j = int(np.flatnonzero(dt <= 0)[0])
                line = table.where(int(rows[first[np.searchsorted(out, b[j])]]))
                raise UserError(
                    f"{table.path}: time column {clock.columns['time']!r} does not increase with the frame number: "
                    f"{known[a[j]]:g} s at frame {frame_id[a[j]]}, {known[b[j]]:g} s at frame {frame_id[b[j]]} "
                    f"({line}) within period {int(frame_period[a[j]])}. A clock that restarts needs a period column "
                    "(--period-column NAME); else fix the time column or leave it out (--time-column none --fps N)."
                )
            fps, info["fps_from"] = _infer_fps(table.path, (b - a) * step / dt, options)
    elif options.fps is None:
        raise UserError(
            f"{table.path}: frame numbers ({clock.columns['frame']!r}) but no time column: give the frame rate with "
            "--fps (or name the time column with --time-column)."
        )
    else:
        fps, info["fps_from"] = float(options.fps), "--fps"
    table_fps = fps / step
    if clock.time is not None:
        timestamp = _fill_times(known, frame_period, 1 / table_fps)
    else:
        timestamp = position_in_period / table_fps
    info.update(frame_step=step, frames_in_table=len(unique), frames_filled=total - len(unique))
    row_frame = np.full(len(valid), -1, np.int64)
    row_frame[rows] = out[inverse]
    return _Axis(row_frame, frame_id, frame_period, timestamp.astype(np.float64), table_fps, info)


def _fill_times(known: np.ndarray, period: np.ndarray, dt: float) -> np.ndarray:
    """Times of every frame: the file's where it has one, else linear between them (frames dt apart at the ends)."""
    out = known.copy()
    for p in np.unique(period):
        frames = np.flatnonzero(period == p)
        have = frames[np.isfinite(known[frames])]
        if not len(have):
            out[frames] = (frames - frames[0]) * dt
            continue
        out[frames] = np.interp(frames, have, known[have])
        before, after = frames[frames < have[0]], frames[frames > have[-1]]
        out[before] = known[have[0]] - (have[0] - before) * dt
        out[after] = known[have[-1]] + (after - have[-1]) * dt
    return out


def _suggestion(records: _Records, options: TableOptions, inside_now: float) -> str:
    """The --units/--origin pair that puts most located points inside the field, if clearly better than the given."""
    sample = slice(None, None, max(1, len(records.x) // 200_000))
    x, y = records.x[sample], records.y[sample]
    f = options.playing_field()
    best = (inside_now, "")
    for units in UNITS:
        for origin in ORIGINS:
            c = options.coordinates(units, origin)
            xy = pitch.to_centred_metres(
                x, y, x_range=c.x_range, y_range=c.y_range, length=f.length, width=f.width, y_down=c.y_down
            )
            fine = np.isfinite(xy).all(-1)
            inside = float((~pitch.off_pitch(xy[fine], f.length, f.width)).mean()) if fine.any() else 0.0
            if inside > best[0] + 0.2:
                best = (inside, f"--units {units} --origin {origin} puts {inside:.0%} inside")
    return best[1]


def read_table(path: str | Path, options: TableOptions | None = None) -> clips.Frames:
    """Frames of a long or wide tracking table (CSV or Parquet) in centred metres of the field (module docstring)."""
    options = options or TableOptions()
    path = Path(path)
    f = options.playing_field()
    coordinates = options.coordinates()
    table = _load(path, options)
    layout = options.layout
    if layout == "auto":
        long = all(_column(table, r, getattr(options, f"{r}_column"), False) for r in ("x", "y", "id"))
        pattern = re.compile(options.wide_pattern, re.IGNORECASE)
        if not long and not any(pattern.match(n) for n in table.names):
            raise UserError(
                f"{path}: neither a long table (x, y and id columns) nor a wide one (columns like Home_1_x, Home_1_y, "
                f"Ball_x matching --wide-pattern); {table.found()}. Name the columns (--x-column, --y-column, "
                "--id-column) or give --layout."
            )
        layout = "long" if long else "wide"
    clock = _clock(table, options, numbered_rows=layout == "wide")
    has_clock = np.isfinite(clock.frame) if clock.frame is not None else np.isfinite(clock.time)
    valid = has_clock & np.isfinite(clock.period)
    if not valid.any():
        used = [c for c in (clock.columns["frame"] or clock.columns["time"], clock.columns["period"]) if c]
        raise UserError(
            f"{path}: no row has a {' and a '.join(map(repr, used))} value. Check the columns ({table.found()})."
        )
    dropped = {
        "no_frame" if clock.frame is not None else "no_time": int((~has_clock).sum()),
        "no_period": int((has_clock & ~np.isfinite(clock.period)).sum()),
    }
    records = (_long_records if layout == "long" else _wide_records)(table, options, valid)
    # the time order is checked per object in a long table (rows without a record are not), along the rows in a wide
    group = np.zeros(table.data.num_rows, np.int64) if layout == "wide" else -1 - np.arange(table.data.num_rows)
    if layout == "long":
        group[records.row] = records.obj
    axis = _axis(table, clock, valid, group, options)
    placement = common.place(len(axis.frame_id), axis.row_frame[records.row], records.obj, records.objects)
    dropped.update(records.dropped, duplicates=len(records.row) - len(placement.records))
    warnings = list(records.warnings)
    if not any(role in (clips.ROLE_TEAM_A, clips.ROLE_TEAM_B) for role, _ in records.objects):
        warnings.append(
            "no team labels: every object but the ball has role other (name the team column with --team-column, or "
            "give a team prefix in --wide-pattern)"
        )
    resolved = dataclasses.replace(options, origin=options.resolved_origin, field_size=(f.length, f.width))
    frames = common.build_frames(
        placement,
        records.x,
        records.y,
        frame_id=axis.frame_id,
        period=axis.period,
        timestamp=axis.timestamp,
        coordinates=coordinates,
        fps=axis.fps,
        pitch_length=f.length,
        pitch_width=f.width,
        metadata={},
        where=str(path),
    )
    located = ~np.isnan(frames.positions[..., 0]) & ~np.isnan(frames.positions[..., 1])
    outside = float(pitch.off_pitch(frames.positions[located], f.length, f.width).mean())
    if outside > MOSTLY_OUTSIDE:
        better = _suggestion(records, options, 1 - outside)
        warnings.append(
            f"{outside:.0%} of the located points lie outside the {f.describe()} after conversion with --units "
            f"{options.units} --origin {resolved.origin}: wrong units, origin or --field-size? "
            + (better or "check --units, --origin and --field-size")
        )
    frames.sport = options.sport
    frames.metadata = {
        "provider": "table",
        "files": {"table": str(path)},
        "reader": "trajsv_jax.data.ingest.table",
        "periods": sorted(int(p) for p in np.unique(axis.period)),
        **frames.metadata,
        "table": {
            "layout": layout,
            "options": dataclasses.asdict(resolved),
            "columns": {**clock.columns, **records.columns},
            "rows": table.data.num_rows,
            "records": len(records.row),
            "rows_dropped": dropped,
            "team_labels": records.team_labels,
            "fps": axis.fps,
            "outside_field": round(outside, 4),
            **axis.info,
        },
        "warnings": warnings,
    }
    return frames


def ingest_table(
    path: str | Path,
    out_store: str | Path,
    options: TableOptions | None = None,
    source_id: str | None = None,
    clip_config: clips.ClipConfig | None = None,
) -> tuple[store.Source, clips.Drops]:
    """Read a table, cut it into clips and add it to `out_store` (as `ingest.ingest` does a provider's files).

    The source id defaults to "table_<file name>". Raises UserError, writing nothing, when the store cannot take the
    source or cleaning leaves no clip (with the drop counts that explain why).
    """
    store.check_writable(out_store)  # before reading: a bad --out or a corrupt store fails at once
    frames = read_table(path, options)
    source_id = store.safe_source_id(source_id or f"table_{Path(path).name.split('.')[0]}")
    source, drops = store.source_from_frames(frames, source_id, clip_config)
    if source.num_clips == 0:
        counts = ", ".join(f"{k}={v}" for k, v in drops.as_dict().items() if v)
        warnings = "".join(f" Warning: {w}." for w in frames.metadata["warnings"])
        raise UserError(
            f"{path}: no clip left after cleaning {len(frames.frame_id)} frames ({counts}). Check --units, --origin, "
            "--fps and --field-size; a short excerpt may need a shorter minimum clip length (--min-clip-seconds)."
            + warnings
        )
    store.write_source(out_store, source)
    return source, drops
