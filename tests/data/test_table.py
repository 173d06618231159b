"""Table import: the real bundled match written as long and wide tables (CSV, Parquet; metres, cm, normalised; frame
numbers or times) reads back to the same frames; a hand-written hockey table; every bad input is one line that names
the file, the column or line, and the flag that fixes it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from conftest import REPO, one_line_error

from trajsv_jax import cli
from trajsv_jax.cli import parser
from trajsv_jax.data import clips, store
from trajsv_jax.data.ingest import table as table_lib
from trajsv_jax.data.ingest.table import TableOptions, ingest_table, read_table
from trajsv_jax.errors import UserError

TEAM = np.array(["ball", "home", "away", "referee"])  # by clips.ROLE_*
PREFIX = np.array(["Ball", "Home", "Away", "Other"])
# file name -> how it is read back: the conventions the tables are written in
CASES = {
    "long_m.csv": TableOptions(),
    "long_cm_corner_y_down.parquet": TableOptions(units="cm", origin="corner", y_down=True),
    "wide_normalized1.csv": TableOptions(units="normalized1", y_down=True),  # corner origin: normalised default
    "long_time_only.csv": TableOptions(),
}


def masked(values: np.ndarray) -> pa.Array:
    """float64 with NaN written as an empty cell."""
    values = np.asarray(values, np.float64)
    return pa.array(values, mask=np.isnan(values))


def long_columns(frames: clips.Frames) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """One row per located object and frame (frame-major, as providers export), and x, y in centred metres."""
    frame, obj = np.nonzero(np.isfinite(frames.positions).any(-1))
    columns = {
        "frame": frames.frame_id[frame],
        "period": frames.period[frame],
        "time": frames.timestamp[frame],
        "player_id": frames.object_id[obj],
        "team": TEAM[frames.object_role[obj]],
    }
    xy = frames.positions[frame, obj].astype(np.float64)
    return columns, xy[:, 0], xy[:, 1]


@pytest.fixture(scope="module")
def tables(bundled_frames, tmp_path_factory) -> dict[str, Path]:
    """The bundled match (read once per session with the fast SkillCorner reader) as one table per CASES entry."""
    folder = tmp_path_factory.mktemp("tables")
    m = bundled_frames
    columns, x, y = long_columns(m)
    pa_csv.write_csv(pa.table({**columns, "x": x, "y": y}), folder / "long_m.csv")
    renamed = {"frame_id": columns["frame"], "half": columns["period"], "timestamp": columns["time"]}
    renamed |= {"track_id": columns["player_id"], "side": columns["team"]}
    cm = {"pos_x": (x + m.pitch_length / 2) * 100, "pos_y": (m.pitch_width / 2 - y) * 100}
    pq.write_table(pa.table(renamed | cm), folder / "long_cm_corner_y_down.parquet")
    wide = {"Period": m.period, "Frame": m.frame_id, "Time [s]": m.timestamp}
    for k, (role, ident) in enumerate(zip(m.object_role, m.object_id, strict=True)):
        name = "Ball" if role == clips.ROLE_BALL else f"{PREFIX[role]}_{ident}"
        wide[f"{name}_x"] = masked(m.positions[:, k, 0] / m.pitch_length + 0.5)
        wide[f"{name}_y"] = masked(0.5 - m.positions[:, k, 1] / m.pitch_width)
    pa_csv.write_csv(pa.table(wide), folder / "wide_normalized1.csv")
    pa_csv.write_csv(
        pa.table({k: v for k, v in columns.items() if k != "frame"} | {"x": x, "y": y}), folder / "long_time_only.csv"
    )
    return {name: folder / name for name in CASES}


def frame_index(frames: clips.Frames, original: clips.Frames, by_time: bool) -> np.ndarray:
    """Where each original frame is in the table's frames: by frame number, or by (period, time step)."""
    if by_time:

        def key(f: clips.Frames) -> np.ndarray:
            return f.period.astype(np.int64) * 10**9 + np.rint(f.timestamp * f.fps).astype(np.int64)
    else:

        def key(f: clips.Frames) -> np.ndarray:
            return f.period.astype(np.int64) * 10**9 + f.frame_id

    mine, theirs = key(frames), key(original)
    assert np.all(np.diff(mine) > 0)
    index = np.searchsorted(mine, theirs)
    np.testing.assert_array_equal(mine[index], theirs)
    return index


@pytest.mark.parametrize("name", CASES)
def test_a_table_of_the_bundled_match_reads_back_to_its_frames(name, tables, bundled_frames):
    original = bundled_frames
    frames = read_table(tables[name], CASES[name])
    by_time = "time_only" in name
    index = frame_index(frames, original, by_time)
    np.testing.assert_allclose(frames.positions[index], original.positions, rtol=0, atol=1e-4)  # NaN where NaN
    filled = np.setdiff1d(np.arange(len(frames.frame_id)), index)
    assert len(filled) == 20730 and np.isnan(frames.positions[filled]).all()  # frame-number gaps stay gaps
    np.testing.assert_array_equal(frames.object_id, original.object_id)
    np.testing.assert_array_equal(frames.object_role, original.object_role)
    np.testing.assert_array_equal(frames.period[index], original.period)
    np.testing.assert_allclose(frames.timestamp[index], original.timestamp, rtol=0, atol=1e-9)
    assert (frames.fps, frames.pitch_length, frames.pitch_width, frames.sport) == (10.0, 105.0, 68.0, "soccer")
    for p in (1, 2):  # consecutive frames, 0.1 s apart
        np.testing.assert_allclose(np.diff(frames.timestamp[frames.period == p]), 0.1, atol=1e-9)
        if not by_time:
            assert set(np.diff(frames.frame_id[frames.period == p])) == {1}
    meta = frames.metadata
    assert meta["provider"] == "table" and meta["periods"] == [1, 2] and meta["warnings"] == []
    info = meta["table"]
    assert info["layout"] == ("wide" if "wide" in name else "long") and info["fps_from"] == "time column"
    assert info["records"] == np.isfinite(original.positions).any(-1).sum() == 493749
    assert sum(info["rows_dropped"].values()) == 0 and info["options"]["origin"] == CASES[name].resolved_origin


def test_ingest_table_cuts_the_same_clips_as_the_provider_reader(tables, bundled_source, tmp_path):
    _, drops = ingest_table(tables["long_m.csv"], tmp_path / "store", source_id="my match")
    assert store.list_sources(tmp_path / "store") == ["my_match"]
    back = store.read_source(tmp_path / "store", "my_match")
    for name in ("positions", "clip_offsets", "clip_period", "clip_first_frame", "object_role", "object_id"):
        np.testing.assert_array_equal(getattr(back, name), getattr(bundled_source, name), err_msg=name)
    np.testing.assert_allclose(back.clip_start, bundled_source.clip_start, rtol=0, atol=1e-9)
    assert back.metadata["provider"] == "table" and back.metadata["table"]["options"]["units"] == "m"
    assert drops.off_pitch == bundled_source.metadata["drops"]["off_pitch"]


def test_cli_ingests_a_table_and_prints_the_ingest_report(bundled_frames, tmp_path, capsys):
    part = bundled_frames.frame_id < bundled_frames.frame_id[3000]  # a few minutes, to keep the test short
    columns, x, y = long_columns(bundled_frames)
    rows = columns["frame"] < bundled_frames.frame_id[3000]
    path = tmp_path / "part.csv"
    cm = {"x": (x[rows] + 52.5) * 100, "y": (34 - y[rows]) * 100}
    pa_csv.write_csv(pa.table({k: v[rows] for k, v in columns.items()} | cm), path)
    argv = ["ingest", "table", str(path), "--units", "cm", "--origin", "corner", "--y-down", "--source-id", "part"]
    assert cli.main([*argv, "--out", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "source part: table" in out and "read with the table reader" in out and "warning" not in out
    source = store.read_source(tmp_path / "store", "part")
    assert source.num_clips > 5 and source.metadata["table"]["options"]["y_down"] is True
    assert source.metadata["frames_total"] == bundled_frames.frame_id[2999] - bundled_frames.frame_id[0] + 1
    sliced = {name: getattr(bundled_frames, name)[part] for name in ("positions", "frame_id", "period", "timestamp")}
    expected, _ = store.source_from_frames(dataclasses.replace(bundled_frames, **sliced), "part")
    np.testing.assert_allclose(source.positions, expected.positions, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(source.clip_first_frame, expected.clip_first_frame)


HOCKEY = """\
frame,player,team,x,y
1,ball,ball,100,42.5
1,11,home,0,0
1,22,away,199.5,84.5
1,R1,referee,50,10
2,ball,ball,101,42.5
2,11,home,1,0.5
4,11,home,3,1.5
4,11,home,3.5,2
"""


def test_a_hand_written_hockey_table_in_feet_from_a_corner(tmp_path):
    path = tmp_path / "rink.csv"
    path.write_text(HOCKEY)
    frames = read_table(path, TableOptions(sport="ice_hockey", units="ft", origin="corner", fps=30))
    length, width = 200 * 0.3048, 85 * 0.3048
    assert frames.field.describe() == f"ice_hockey field {length:g} x {width:g} m"
    np.testing.assert_array_equal(frames.frame_id, [1, 2, 3, 4])  # frame 3 is missing from the file: NaN
    np.testing.assert_allclose(frames.timestamp, np.arange(4) / 30)
    assert frames.object_id.tolist() == ["ball", "11", "22", "R1"]
    assert frames.object_role.tolist() == [clips.ROLE_BALL, clips.ROLE_TEAM_A, clips.ROLE_TEAM_B, clips.ROLE_OTHER]

    def metres(x_ft: float, y_ft: float) -> list[float]:
        return [x_ft * 0.3048 - length / 2, y_ft * 0.3048 - width / 2]

    np.testing.assert_allclose(frames.positions[0, :2], [metres(100, 42.5), metres(0, 0)], atol=1e-5)
    np.testing.assert_allclose(frames.positions[3, 1], metres(3.5, 2), atol=1e-5)  # duplicate row: the last wins
    assert np.isnan(frames.positions[2]).all() and np.isnan(frames.positions[1, 2:]).all()
    info = frames.metadata["table"]
    assert info["rows_dropped"]["duplicates"] == 1 and info["frames_filled"] == 1 and info["fps_from"] == "--fps"
    assert info["team_labels"] == {"ball": "ball", "home": "team_a", "away": "team_b", "referee": "other"}
    assert frames.metadata["warnings"] == []
    source, _ = ingest_table(
        path,
        tmp_path / "store",
        TableOptions(sport="ice_hockey", units="ft", origin="corner", fps=30),
        clip_config=clips.ClipConfig(min_seconds=0.0),
    )
    assert source.source_id == "table_rink" and source.num_clips == 2  # frame 3 (no one seen) cuts the run


def test_last_row_style_wide_columns_without_teams(tmp_path):
    path = tmp_path / "lastrow.csv"
    path.write_text("frame,ball_x,ball_y,p7_x,p7_y,p9_x,p9_y\n0,1,2,3,4,,\n1,1.5,2,3.5,4,5,6\n")
    frames = read_table(path, TableOptions(fps=20))
    assert frames.object_id.tolist() == ["ball", "p7", "p9"] and frames.fps == 20
    assert frames.object_role.tolist() == [clips.ROLE_BALL, clips.ROLE_OTHER, clips.ROLE_OTHER]
    np.testing.assert_allclose(frames.positions[:, 2], [[np.nan, np.nan], [5, 6]])
    assert "no team labels" in frames.metadata["warnings"][0] and "--team-column" in frames.metadata["warnings"][0]


def test_mostly_outside_the_field_warns_naming_the_flags(tmp_path, capsys):
    path = tmp_path / "in_cm.csv"
    rng = np.random.default_rng(0)
    n = 200
    frame = np.repeat(np.arange(n), 2)
    x, y = rng.uniform(0, 10500, 2 * n), rng.uniform(0, 6800, 2 * n)
    ids, teams = np.tile(["7", "ball"], n), np.tile(["home", "ball"], n)
    pa_csv.write_csv(pa.table({"frame": frame, "id": ids, "team": teams, "x": x, "y": y}), path)
    warning = read_table(path, TableOptions(fps=25)).metadata["warnings"][0]
    assert "outside the soccer field 105 x 68 m" in warning and "--units cm --origin corner puts 100% inside" in warning
    argv = ["ingest", "table", str(path), "--fps", "25", "--out", str(tmp_path / "store")]
    assert cli.main(argv) == 2  # every point off the pitch: no clip, and the error says why
    err = capsys.readouterr().err.strip()
    assert "no clip left" in err and "--units cm --origin corner" in err and "\n" not in err


def test_periods_frame_steps_and_row_numbered_wide_tables(tmp_path):
    path = tmp_path / "steps.csv"  # every 2nd frame of a 25 Hz feed, frame numbers restarting in period 2
    path.write_text("Period,Frame,Home_1_x,Home_1_y\n1,10,0,0\n1,12,1,1\n1,16,2,2\n2,10,3,3\n2,12,4,4\n")
    frames = read_table(path, TableOptions(fps=25))
    assert frames.fps == 12.5 and frames.metadata["table"]["frame_step"] == 2
    assert frames.frame_id.tolist() == [10, 12, 14, 16, 10, 12] and frames.period.tolist() == [1, 1, 1, 1, 2, 2]
    np.testing.assert_allclose(frames.timestamp, [0, 0.08, 0.16, 0.24, 0, 0.08])
    assert np.isnan(frames.positions[2, 1]).all()
    rows = tmp_path / "rows.csv"  # no frame or time column: row i is frame i
    rows.write_text("Away_5_x,Away_5_y\n1,2\n3,4\n")
    frames = read_table(rows, TableOptions(fps=5))
    assert frames.frame_id.tolist() == [0, 1] and frames.object_role.tolist() == [clips.ROLE_BALL, clips.ROLE_TEAM_B]


LONG = "frame,id,team,x,y\n1,7,home,1.0,2.0\n2,7,home,1.5,2.0\n"


@pytest.mark.parametrize(
    ("name", "text", "options", "words"),
    [
        ("nope.csv", None, {}, ("nope.csv: no such file",)),
        ("empty.csv", "", {}, ("empty file",)),
        ("header.csv", "frame,id,team,x,y\n", {}, ("no data rows", "found columns: frame, id, team, x, y")),
        ("cut.csv", LONG + "3,7,ho", {}, ("line 4 has 3 fields, the header has 5", "truncated")),
        ("t.xlsx", LONG, {}, ("unknown table type '.xlsx'", ".csv", ".parquet")),
        (
            "cols.csv",
            "frame,id,team,px,qy\n1,7,home,1,2\n",
            {"layout": "long"},
            ("no x column", "found columns: frame, id, team, px, qy", "--x-column"),
        ),
        (
            "cols.csv",
            "frame,id,team,px,qy\n1,7,home,1,2\n",
            {},
            ("neither a long table", "found columns: frame, id, team, px, qy", "--layout"),
        ),
        ("given.csv", LONG, {"x_column": "east"}, ("no column 'east' (--x-column)", "found columns: frame, id")),
        ("text.csv", LONG + "3,7,home,abc,2.0\n", {}, ("column 'x' is not numeric: 'abc' at line 4",)),
        ("comma.csv", "frame;id;team;x;y\n1;7;home;1,5;2\n", {}, ("'1,5' at line 2", "decimal comma")),
        (
            "clock.csv",
            "time,id,team,x,y\n0.0,7,home,1,1\n0.1,7,home,1,1\n0.0,7,home,2,2\n",
            {},
            ("goes back from 0.1 to 0 s at line 4 within period 1", "--period-column"),
        ),
        (
            "clock2.csv",
            "frame,time,id,team,x,y\n1,0.2,7,home,1,1\n2,0.1,7,home,1,1\n",
            {},
            ("does not increase with the frame number", "(line 3)", "--period-column"),
        ),
        ("nofps.csv", LONG, {}, ("no time column", "--fps")),
        (
            "badfps.csv",
            "time,id,team,x,y\n0.0,7,home,1,1\n0.1,7,home,1,1\n",
            {"fps": 25},
            ("--fps 25, but the time column says 10 frames per second",),
        ),
        ("ms.csv", "time,id,team,x,y\n0,7,home,1,1\n100,7,home,1,1\n", {}, ("0.01 frames per second", "seconds")),
        (
            "half.csv",
            "frame,id,team,x,y\n1.5,7,home,1,1\n",
            {},
            ("has 1.5 at line 2", "whole numbers", "--time-column"),
        ),
        (
            "teams.csv",
            "frame,id,team,x,y\n1,7,FCB,1,1\n1,9,BVB,1,1\n",
            {"fps": 25},
            ("'FCB', 'BVB', none of them home or away", "--home LABEL --away LABEL"),
        ),
        (
            "wide.csv",
            "frame,Home_1_x,Home_1_y,Home_2_x\n1,1,1,1\n",
            {"fps": 25},
            ("column 'Home_2_x' has no y partner", "--wide-pattern"),
        ),
        (
            "sport.csv",
            LONG,
            {"sport": "handball", "fps": 25},
            ("no regulation size known for sport 'handball'", "--field-size"),
        ),
        ("units.csv", LONG, {"units": "km"}, ("unknown units 'km'", "--units")),
        (
            "jump.csv",
            "frame,id,team,x,y\n1,7,home,1,1\n9999999,7,home,1,1\n",
            {"fps": 25},
            ("jump from 1 to 9999999 at line 3", "period"),
        ),
    ],
)
def test_bad_input_is_one_line_naming_where_and_the_fix(tmp_path, name, text, options, words):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError) as excinfo:
        read_table(path, TableOptions(**options))
    one_line_error(excinfo, *words)


def test_a_truncated_parquet_file_and_unknown_team_labels_named(tmp_path):
    path = tmp_path / "cut.parquet"
    pq.write_table(
        pa.table({"frame": [1, 2], "id": ["7", "7"], "team": ["FCB"] * 2, "x": [1.0, 2], "y": [0.0, 0]}), path
    )
    frames = read_table(path, TableOptions(fps=25, home=("fcb",)))  # labels compare ignoring case
    assert frames.object_role.tolist() == [clips.ROLE_BALL, clips.ROLE_TEAM_A]
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(UserError) as excinfo:
        read_table(path)
    one_line_error(excinfo, "cut.parquet: not a readable Parquet file", "truncated or corrupt")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "table", "/no/such.csv"], "/no/such.csv: no such file"),
        (["ingest", "table", "a.csv", "b.csv"], "table: expected one FILE"),
        (["ingest", "table", "a.csv", "--pitch-length", "100"], "give a table's field size with --field-size"),
        (["ingest", "tracab", "raw_data=x.dat", "meta_data=m.xml", "--units", "cm"], "--units is a table import"),
    ],
)
def test_cli_bad_input_exits_2_in_one_line(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_the_parser_offers_the_readers_units():
    assert tuple(table_lib.UNITS) == parser.TABLE_UNITS


def test_the_format_docs_python_example_runs(tmp_path, monkeypatch):
    """The example of docs/FORMAT.md "Importing your own tracking table" (writing a source from Python) works."""
    text = (REPO / "docs" / "FORMAT.md").read_text()
    section = text[text.index("## Importing your own tracking table") :]
    code = re.findall(r"```python\n(.*?)```", section, re.S)
    assert code
    monkeypatch.chdir(tmp_path)
    for block in code:
        exec(compile(block, "FORMAT.md", "exec"), {})
    assert store.list_sources(tmp_path / "my_store") == ["my_drill"]
