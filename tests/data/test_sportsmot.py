"""The SportsMOT reader on the real ground truth (../shared/data/sportsmot_gt): camera-plane sources, sport labels,
their agreement with the manifest, and one-line errors for damaged copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from trajsv_jax.data import clips, field, store
from trajsv_jax.data.ingest.common import ReadSource
from trajsv_jax.data.ingest.sportsmot import MANIFEST_NAME, read_sportsmot, team_size_sport
from trajsv_jax.errors import UserError

SMALL = ("sportsmot-val", "v_4-EmEtrturE_c009")  # 250 frames, 2785 boxes


@pytest.fixture(scope="module")
def root() -> Path:
    return shared_path("data/sportsmot_gt")


@pytest.fixture(scope="module")
def read(root: Path) -> tuple[dict[str, ReadSource], dict]:
    sources, report = read_sportsmot(root, trust_manifest=True)  # the manifest's labels where it has them
    return {s.frames.metadata["sequence"]: s for s in sources}, report


def test_every_sequence_is_a_camera_plane_source(read, root: Path) -> None:
    sources, report = read
    assert len(sources) == 90 and report["splits"] == {"train": 45, "val": 45}
    assert report["youtube_videos"] == 25
    for name, source in sources.items():
        frames = source.frames
        split = frames.metadata["sportsmot_split"]
        assert (root / f"sportsmot-{split}" / name).is_dir()
        assert frames.field == field.Field.camera(frames.sport, 1280, 720)
        assert frames.fps == 25.0 and (frames.object_role == clips.ROLE_OTHER).all()
        assert source.source_id == f"sportsmot_{name}" == store.safe_source_id(source.source_id)
        assert source.group == frames.metadata["youtube_id"] == name[2:].rsplit("_c", 1)[0]
        assert np.array_equal(frames.frame_id, np.arange(1, len(frames.frame_id) + 1))
        np.testing.assert_allclose(frames.timestamp, (frames.frame_id - 1) / 25.0)
        assert (frames.period == 1).all()
        assert list(frames.object_id) == sorted(frames.object_id)
        assert frames.metadata["licence"] == "CC BY-NC 4.0, Cui et al., SportsMOT, ICCV 2023"


@pytest.mark.parametrize(
    ("sequence", "frame", "track", "foot"),
    [
        ("v_-6Os86HzwCs_c001", 1, "0", (-513.0, -191.0)),  # box 83, 421, 88, 130: u = 127, v = 551
        ("v_-6Os86HzwCs_c001", 1, "1", (-278.0, -145.0)),  # box 335, 355, 54, 150: u = 362, v = 505
        ("v_00HRwkvvjtQ_c001", 1, "1", (372.0, -245.0)),  # box 973, 389, 78, 216: u = 1012, v = 605
        ("v_i2_L4qquVg0_c010", 758, "17", (-473.0, 8.0)),  # last line, box 141, 290, 52, 62: u = 167, v = 352
    ],
)
def test_hand_checked_foot_points(read, sequence: str, frame: int, track: str, foot: tuple[float, float]) -> None:
    frames = read[0][sequence].frames
    k = list(frames.object_id).index(track)
    np.testing.assert_array_equal(frames.positions[frame - 1, k], foot)


def test_counts_match_the_files(read, root: Path) -> None:
    sources, report = read
    for source in sources.values():
        meta = source.frames.metadata
        lines = [r for r in Path(meta["files"]["gt"]).read_bytes().splitlines() if r.strip()]
        seen = np.isfinite(source.frames.positions).all(-1)
        assert meta["counts"]["boxes"] == len(lines) == int(seen.sum())  # no box dropped in SportsMOT
        assert meta["counts"]["tracks"] == len({r.split(b",")[1] for r in lines}) == seen.any(0).sum()
        assert meta["counts"]["frames"] == meta["frames_in_file"] == len(source.frames.frame_id)
    assert (report["boxes"], report["tracks"], report["frames"]) == (608152, 1280, 55544)
    assert report["drops"] == {"ignored_flag": 0, "nonpositive_size": 0, "duplicate_boxes": 0}
    assert report["boxes_partly_outside"] == 0 and report["frames_without_boxes"] == 0


def test_sport_labels(read, root: Path) -> None:
    sources, report = read
    entries = json.loads((root / MANIFEST_NAME).read_text())["sequences"]
    manifest = {
        e["sequence_id"]: {"football": "soccer"}.get(e["sport"], e["sport"])
        for e in entries
        if e["source_dataset"] == "sportsmot"
    }
    assert len(manifest) == 59
    for name, source in sources.items():
        meta = source.frames.metadata
        assert source.frames.sport == meta["sport"] in ("soccer", "basketball", "volleyball")
        if name in manifest:
            assert (meta["sport"], meta["sport_source"]) == (manifest[name], "manifest")
        else:
            assert meta["sport_source"] == "inferred" and meta["sport"] == meta["inferred_sport"]
    assert report["sports"] == {"basketball": 59, "soccer": 30, "volleyball": 1}
    assert report["manifest"]["sportsmot_labels"] == 59 and report["manifest"]["other_datasets_entries"] == 57


def test_agreement_with_the_manifest(read) -> None:
    agreement = read[1]["agreement"]
    assert (agreement["sibling"]["covered"], agreement["sibling"]["agreed"]) == (50, 50)
    team = agreement["team_size"]
    assert team["covered"] == 59 and team["accuracy"] == pytest.approx(40 / 59, abs=0.02)
    # the manifest never says volleyball: its "basketball" holds every 12-track (6 + 6 players) sequence
    assert team["confusion"] == {"basketball": {"basketball": 18, "volleyball": 19}, "soccer": {"soccer": 22}}
    assert agreement["combined"]["accuracy"] == pytest.approx(54 / 59, abs=0.02)
    assert len(read[1]["team_size_disagreements"]) == 19


def test_labels_inferred_from_tracks_alone(root: Path) -> None:
    """The default: every sequence labelled by its team size, as SportsMOT's thirds per split say."""
    sources, report = read_sportsmot(root / "sportsmot-val")
    assert report["sports"] == {"basketball": 15, "soccer": 15, "volleyball": 15}
    assert report["sport_sources"] == {"inferred": 45}
    for source in sources:
        meta = source.frames.metadata
        assert meta["inference"]["rule"] == "team_size" and meta["manifest_sport"] is not None


def test_a_source_cut_into_clips_stays_on_the_image(read) -> None:
    for name in ("v_-6Os86HzwCs_c001", "v_1yHWGw8DH4A_c029", "v_0kUtTtmLaJA_c004"):
        source, drops = store.source_from_frames(read[0][name].frames, read[0][name].source_id)
        assert source.num_clips > 0 and drops.off_pitch == 0 and drops.nan_coordinates == 0
        assert (source.clip_lengths() <= 16 * 25).all()
        located = source.positions[np.isfinite(source.positions).all(-1)]
        assert (np.abs(located[:, 0]) <= 640).all() and (np.abs(located[:, 1]) <= 360).all()
        assert source.metadata["field"]["kind"] == field.CAMERA


def test_split_and_sequence_folders(read, root: Path) -> None:
    folder = root.joinpath(*SMALL)
    (one,), report = read_sportsmot(folder, trust_manifest=True)
    whole = read[0][SMALL[1]]
    np.testing.assert_array_equal(one.frames.positions, whole.frames.positions)
    assert one.frames.metadata["sport_source"] == "manifest" and report["sequences"] == 1
    assert report["manifest"]["status"] == "read"


def small_copy(root: Path, tmp_path: Path) -> Path:
    """tmp_path/sportsmot-val/<small sequence>, a copy of one real sequence to damage; returns the sequence folder."""
    target = tmp_path / SMALL[0] / SMALL[1]
    shutil.copytree(root.joinpath(*SMALL), target)
    return target


def damage_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def one_line_error(folder: Path, *names: str) -> str:
    with pytest.raises(UserError) as error:
        read_sportsmot(folder)
    message = str(error.value)
    assert "\n" not in message and all(name in message for name in names), message
    return message


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    one_line_error(tmp_path / "nowhere", str(tmp_path / "nowhere"), "no such folder")
    one_line_error(tmp_path, str(tmp_path), "no SportsMOT sequences")
    (tmp_path / "gt.txt").write_text("1, 0, 83, 421, 88, 130, 1, 1, 1\n")
    one_line_error(tmp_path / "gt.txt", str(tmp_path / "gt.txt"), "a file, not a folder")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda gt: gt.unlink(), "missing"),
        (lambda gt: gt.write_text(""), "empty file"),
        (lambda gt: gt.write_bytes(gt.read_bytes()[:-30]), "truncated"),
        (lambda gt: damage_line(gt, 5, "1, 4, 521, 167, 59, 124, 1, 1, 1, 7"), "line 5 has 10 values"),
        (lambda gt: damage_line(gt, 7, "1, 6, 52x, 167, 59, 124, 1, 1, 1"), "line 7, column x: '52x'"),
        (lambda gt: damage_line(gt, 3, "1, 2, 239, 269, 44, nan, 1, 1, 1"), "line 3, column h"),
        (lambda gt: damage_line(gt, 9, "900, 2, 239, 269, 44, 135, 1, 1, 1"), "line 9: frame 900"),
    ],
)
def test_damaged_gt_is_one_line_error(root: Path, tmp_path: Path, damage, expected: str) -> None:
    sequence = small_copy(root, tmp_path)
    gt = sequence / "gt" / "gt.txt"
    damage(gt)
    one_line_error(tmp_path, str(gt), expected)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda ini: ini.unlink(), "missing"),
        (lambda ini: ini.write_text(ini.read_text().replace("imHeight=720", "")), "incomplete, no imHeight"),
        (lambda ini: ini.write_text(ini.read_text().replace("frameRate=25", "frameRate=fast")), "frameRate"),
        (lambda ini: ini.write_text("frameRate=25\n"), "not an ini file"),
    ],
)
def test_damaged_seqinfo_is_one_line_error(root: Path, tmp_path: Path, damage, expected: str) -> None:
    sequence = small_copy(root, tmp_path)
    damage(sequence / "seqinfo.ini")
    one_line_error(tmp_path, str(sequence / "seqinfo.ini"), expected)


def test_bad_boxes_are_counted(root: Path, tmp_path: Path) -> None:
    sequence = small_copy(root, tmp_path)
    gt = sequence / "gt" / "gt.txt"
    damage_line(gt, 4, "1, 3, 366, 264, 0, 136, 1, 1, 1")  # no width: dropped
    damage_line(gt, 6, "1, 5, 366, 264, 48, -1, 1, 1, 1")  # negative height: dropped
    damage_line(gt, 7, "1, 6, -10, 264, 48, 136, 1, 1, 1")  # partly outside, foot point (14, 400) inside: kept
    damage_line(gt, 8, "1, 7, 600, 650, 48, 100, 1, 1, 1")  # foot point (624, 750) below the image: off the field
    (source,), report = read_sportsmot(tmp_path)
    counts = source.frames.metadata["counts"]
    assert report["drops"]["nonpositive_size"] == 2 == counts["nonpositive_size_dropped"]
    assert report["boxes_partly_outside"] == 2 == counts["boxes_partly_outside"]
    assert int(np.isfinite(source.frames.positions).all(-1).sum()) == 2785 - 2
    cut, drops = store.source_from_frames(source.frames, source.source_id)
    assert drops.off_pitch == 1 and int(np.isfinite(cut.positions).all(-1).sum()) == 2785 - 3
    assert report["manifest"]["status"].startswith("missing") and report["sport_sources"] == {"inferred": 1}


def test_manifest_unreadable_or_missing(root: Path, tmp_path: Path) -> None:
    small_copy(root, tmp_path)
    manifest = tmp_path / MANIFEST_NAME
    manifest.write_text('{"sequences": [{"sequence_id": "v_x_c001", ')
    one_line_error(tmp_path, str(manifest), "not valid JSON")
    manifest.write_text('{"sequences": [{"sequence_id": "v_4-EmEtrturE_c009", "sport": "curling"}]}')
    one_line_error(tmp_path, str(manifest), "curling")
    with pytest.raises(UserError, match="no such sport manifest"):
        read_sportsmot(tmp_path, tmp_path / "other.json")
    manifest.unlink()
    (source,), report = read_sportsmot(tmp_path)
    assert source.frames.sport == "volleyball" and source.frames.metadata["sport_source"] == "inferred"
    assert "every sport inferred" in report["manifest"]["status"]


def test_team_size_rule() -> None:
    assert [team_size_sport(n) for n in (8, 10, 11, 12, 16, 17, 22, 30)] == (
        ["basketball"] * 2 + ["volleyball"] * 3 + ["soccer"] * 3
    )
