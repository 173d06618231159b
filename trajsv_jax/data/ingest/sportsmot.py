"""SportsMOT ground truth → camera-plane sources, one per sequence, each with a sport label.

SportsMOT (Cui et al., ICCV 2023, CC BY-NC 4.0) boxes the players of soccer, basketball and volleyball broadcast clips
in MOTChallenge files (`gt/gt.txt`: frame, id, x, y, w, h, flag, class, visibility; `seqinfo.ini`), in image pixels
of an uncalibrated, moving camera. Each sequence becomes one `ReadSource` on the camera plane (`field.CAMERA`,
L x W = image width x height): a box's foot point (bottom centre u = x + w/2, v = y + h) is at (u − W/2, H/2 − v),
centred pixels with y up. Every box is a player of unknown team (`clips.ROLE_OTHER`; SportsMOT has no ball), object
ids are the track ids, frames are 1 .. seqLength (frames without a box are NaN rows), timestamps (frame − 1) / fps in
one period. Sequences are named `v_<YouTube id>_c<clip>`; those of one YouTube video form one `group`, so that no
video straddles two splits. Boxes flagged 0 (MOTChallenge "ignore"), of non-positive size, or repeating a track in a
frame (the last one wins) are dropped and counted; boxes partly outside the image are kept and counted.

Sport labels. By default every sequence is labelled by its team size (rule b below, `sport_source` "inferred"): the
refer-sportsmot manifest (`sequence_manifest_refer_sportsmot.json`, labels for 59 of the 90 public sequences marked
heuristic by its authors, "football" = soccer) never says volleyball and calls all 19 of its 12-track sequences
basketball, while the track counts split each SportsMOT split into 15 / 15 / 15 sequences, as SportsMOT's own
composition has it. The manifest is then only compared with. With `trust_manifest=True`, a manifest label is the
sequence's sport (`sport_source` "manifest") and every other sequence gets the first of these that applies:
  (a) sibling: the manifest label of the other sequences of its YouTube video (their majority);
  (b) team size: SportsMOT boxes the players on court only, so a sequence's number of tracks is near its sport's
      players on court, 10 (basketball), 12 (volleyball) or 22 (soccer); the nearest in ratio wins (up to 10 tracks
      basketball, 11-16 volleyball, 17 or more soccer).
Rule (b) is fitted on nothing: a classifier fitted on the manifest could not learn volleyball, which the manifest
never names. Every sequence also carries the label that inference gives it without its own manifest entry
(`inferred_sport`, with the rule and its evidence: tracks, boxes per frame, median box height and foot-point spread
relative to the frame, median foot speed in px/s), and the report measures how often each rule agrees with the
manifest on the labelled sequences, each one's own label left out (covered, agreed, accuracy, confusion counts).
"""

from __future__ import annotations

import collections
import configparser
import dataclasses
import io
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trajsv_jax.data import clips, field, store
from trajsv_jax.data.ingest import common
from trajsv_jax.errors import UserError

PROVIDER = "sportsmot"
MANIFEST_NAME = "sequence_manifest_refer_sportsmot.json"
LICENCE = "CC BY-NC 4.0, Cui et al., SportsMOT, ICCV 2023"
GT_COLUMNS = ("frame", "id", "x", "y", "w", "h", "flag", "class", "visibility")
SEQINFO_KEYS = ("frameRate", "seqLength", "imWidth", "imHeight")
TEAM_SIZE = {"basketball": 10, "volleyball": 12, "soccer": 22}  # players on court, both teams
MANIFEST_SPORTS = {"football": "soccer", "soccer": "soccer", "basketball": "basketball", "volleyball": "volleyball"}
_NAME = re.compile(r"v_(?P<video>.+)_c(?P<clip>\d+)")
_FIX_GT = "Restore the sequence's gt/gt.txt from the SportsMOT download (MOTChallenge: frame, id, x, y, w, h, 1, 1, 1)."
_FIX_SEQINFO = (
    "Restore seqinfo.ini from the SportsMOT download ([Sequence] with frameRate, seqLength, imWidth, imHeight)."
)
_WHERE = "Give the SportsMOT folder (sportsmot_gt), one split folder (sportsmot-train) or one sequence folder."


@dataclasses.dataclass
class _Sequence:
    """One sequence as read, before it is labelled."""

    name: str
    split: str
    frames: clips.Frames
    counts: dict[str, int]
    stats: dict[str, Any]


def read_sportsmot(
    folder: str | Path, manifest: str | Path | None = None, *, trust_manifest: bool = False
) -> tuple[list[common.ReadSource], dict[str, Any]]:
    """Every sequence under `folder` (the SportsMOT folder, a split folder or one sequence) as a camera-plane source.

    `manifest` is the refer-sportsmot sport manifest (default: `sequence_manifest_refer_sportsmot.json` in the
    SportsMOT folder; without one every sport is inferred). Returns the sources, in folder order, and a report:
    counts, drops, the sport-label table and the agreement of the inference rules with the manifest.
    """
    folder = Path(folder)
    root, located = _locate(folder)
    manifest_path = Path(manifest) if manifest is not None else root / MANIFEST_NAME
    if manifest is None and not manifest_path.is_file():
        labels, other, manifest_status = {}, 0, f"missing ({manifest_path}): every sport inferred"
    else:
        labels, other = read_manifest(manifest_path)
        manifest_status = "read" if trust_manifest else "read, labels only compared (trust_manifest=False)"
    manifest_file = str(manifest_path) if manifest_path.is_file() else None
    sequences = [_read_sequence(path, split) for path, split in located]
    names = collections.Counter(s.name for s in sequences)
    if twice := sorted(n for n, c in names.items() if c > 1):
        raise UserError(f"{folder}: sequence {twice[0]} appears in two splits. {_WHERE}")
    sources, table = [], {}
    for seq in sequences:
        manifest_sport = labels.get(seq.name)
        sibling, siblings = _sibling_sport(seq.name, labels) if trust_manifest else (None, {})
        team = team_size_sport(seq.stats["tracks"])
        inferred, rule = (sibling, "sibling") if sibling else (team, "team_size")
        sport, sport_source = (
            (manifest_sport, "manifest") if trust_manifest and manifest_sport else (inferred, "inferred")
        )
        video, clip = _video(seq.name), _clip(seq.name)
        seq.frames.sport = sport
        seq.frames.metadata.update(
            sport=sport,
            sport_source=sport_source,
            manifest_sport=manifest_sport,
            inferred_sport=inferred,
            inference={"rule": rule, "team_size_sport": team, "siblings": siblings, **seq.stats},
            youtube_id=video,
            clip=clip,
            group=video,
        )
        seq.frames.metadata["files"]["manifest"] = manifest_file
        sources.append(common.ReadSource(store.safe_source_id(f"{PROVIDER}_{seq.name}"), seq.frames, group=video))
        table[seq.name] = {
            "sport": sport,
            "sport_source": sport_source,
            "manifest_sport": manifest_sport,
            "inferred_sport": inferred,
            "rule": rule,
            "tracks": seq.stats["tracks"],
        }
    report = _report(folder, sequences, table, labels, trust_manifest)
    report["manifest"] = {
        "path": str(manifest_path),
        "status": manifest_status,
        "sportsmot_labels": len(labels),
        "other_datasets_entries": other,
        "labels_of_sequences_not_read": len(set(labels) - set(names)),
    }
    return sources, report


def read_manifest(path: Path) -> tuple[dict[str, str], int]:
    """({SportsMOT sequence: sport}, number of other data sets' entries) of a refer-sportsmot manifest.

    "football" becomes "soccer"; entries of other data sets (refer-sportsmot also lists SoccerNet) are only counted.
    """
    if not path.is_file():
        raise UserError(f"{path}: no such sport manifest. Give refer-sportsmot's sequence manifest, or none to infer.")
    data = common.read_json(path, "SportsMOT sport manifest")
    entries = data.get("sequences") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"{path}: no `sequences` list: not a refer-sportsmot sequence manifest. Give {MANIFEST_NAME}.")
    labels, other = {}, 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("sequence_id"), str):
            raise UserError(f"{path}: entry {common.one_line(entry, 80)} has no sequence_id. Give {MANIFEST_NAME}.")
        if entry.get("source_dataset", PROVIDER) != PROVIDER:
            other += 1
            continue
        sport = MANIFEST_SPORTS.get(str(entry.get("sport")).lower())
        if sport is None:
            raise UserError(
                f"{path}: {entry['sequence_id']} has sport {entry.get('sport')!r}, not one of "
                f"{', '.join(MANIFEST_SPORTS)}. Fix the entry, or leave the manifest out to infer every sport."
            )
        labels[entry["sequence_id"]] = sport
    return labels, other


def team_size_sport(tracks: int) -> str:
    """The sport whose players on court (TEAM_SIZE) are nearest in ratio to a sequence's number of tracks."""
    return min(TEAM_SIZE, key=lambda sport: abs(math.log(tracks / TEAM_SIZE[sport])))


def _sibling_sport(name: str, labels: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """The majority manifest label of the other sequences of name's YouTube video (ties: alphabetical), and theirs."""
    siblings = {s: labels[s] for s in sorted(labels) if s != name and _video(s) == _video(name)}
    if not siblings:
        return None, {}
    counts = collections.Counter(siblings.values())
    return min(counts, key=lambda sport: (-counts[sport], sport)), siblings


def _video(name: str) -> str:
    """The YouTube id of a sequence `v_<id>_c<clip>` (the name itself if it is not of that form)."""
    match = _NAME.fullmatch(name)
    return match["video"] if match else name


def _clip(name: str) -> int | None:
    match = _NAME.fullmatch(name)
    return int(match["clip"]) if match else None


def _locate(folder: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """(the SportsMOT folder, [(sequence folder, split)]) of a SportsMOT, split or sequence folder."""
    if not folder.exists():
        raise UserError(f"{folder}: no such folder. {_WHERE}")
    if not folder.is_dir():
        raise UserError(f"{folder}: a file, not a folder. {_WHERE}")
    if _is_sequence(folder):
        return folder.parent.parent, [(folder, _split(folder.parent))]
    children = sorted(d for d in folder.iterdir() if d.is_dir())
    if sequences := [d for d in children if _is_sequence(d)]:
        return folder.parent, [(d, _split(folder)) for d in sequences]
    found = [(d, _split(s)) for s in children for d in sorted(s.iterdir()) if d.is_dir() and _is_sequence(d)]
    if not found:
        raise UserError(
            f"{folder}: no SportsMOT sequences in it (folders with seqinfo.ini and gt/gt.txt, here or in "
            f"sportsmot-train/, sportsmot-val/). {_WHERE}"
        )
    return folder, found


def _is_sequence(folder: Path) -> bool:
    return (folder / "seqinfo.ini").is_file() or (folder / "gt").is_dir()


def _split(folder: Path) -> str:
    return folder.name.removeprefix("sportsmot-")


def _read_seqinfo(path: Path) -> tuple[float, int, float, float]:
    """(frame rate, sequence length, image width, image height) of a seqinfo.ini."""
    if not path.is_file():
        raise UserError(f"{path}: missing (the sequence's frame rate, length and image size). {_FIX_SEQINFO}")
    parser = configparser.ConfigParser()
    try:
        parser.read_string(common.read_bytes(path, "SportsMOT seqinfo.ini").decode())
    except (configparser.Error, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not an ini file ({common.one_line(e, 120)}). {_FIX_SEQINFO}") from None
    section = parser["Sequence"] if parser.has_section("Sequence") else {}
    if missing := [key for key in SEQINFO_KEYS if key not in section]:
        raise UserError(f"{path}: incomplete, no {', '.join(missing)}. {_FIX_SEQINFO}")
    values = []
    for key in SEQINFO_KEYS:
        try:
            value = float(section[key])
        except ValueError:
            value = math.nan
        if not (0 < value < math.inf) or (key == "seqLength" and value != int(value)):
            raise UserError(f"{path}: {key} = {section[key]!r}, expected a number > 0. {_FIX_SEQINFO}")
        values.append(value)
    fps, length, width, height = values
    return fps, int(length), width, height


def _read_gt(path: Path) -> tuple[np.ndarray, bytes]:
    """[N, 9] float64 rows of a gt.txt and its bytes; UserError naming the file (and line) when it is not one."""
    if not path.is_file():
        raise UserError(f"{path}: missing (the sequence's boxes). {_FIX_GT}")
    data = common.read_bytes(path, "SportsMOT gt.txt")
    if not data.strip():
        raise UserError(f"{path}: empty file (no boxes). {_FIX_GT}")
    try:
        rows = pd.read_csv(io.BytesIO(data), header=None, skipinitialspace=True, dtype=np.float64).to_numpy()
    except ValueError:  # pandas' ParserError, a value that is not a number, bytes that are not text
        rows = None
    if rows is None or rows.shape[1] != len(GT_COLUMNS) or not np.isfinite(rows).all():
        raise UserError(_gt_problem(path, data))
    return rows, data


def _gt_problem(path: Path, data: bytes) -> str:
    """What is wrong with a gt.txt the fast parse refused: the first bad line, or why it is not text."""
    try:
        lines = data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        return f"{path}: not a text file (binary or wrong encoding). {_FIX_GT}"
    last = max(i for i, line in enumerate(lines, 1) if line.strip())
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != len(GT_COLUMNS):
            cut = " (the last line: truncated file?)" if number == last and len(parts) < len(GT_COLUMNS) else ""
            return f"{path}: line {number} has {len(parts)} values, expected {len(GT_COLUMNS)}{cut}. {_FIX_GT}"
        for column, part in zip(GT_COLUMNS, parts, strict=True):
            try:
                number_ok = math.isfinite(float(part))
            except ValueError:
                number_ok = False
            if not number_ok:
                return f"{path}: line {number}, column {column}: {part!r} is not a number. {_FIX_GT}"
    return f"{path}: not readable as MOTChallenge comma-separated values. {_FIX_GT}"


def _line_number(data: bytes, row: int) -> int:
    """The 1-based line of data row `row` (blank lines are skipped by the parse)."""
    filled = [i for i, line in enumerate(data.splitlines(), 1) if line.strip()]
    return filled[row]


def _read_sequence(folder: Path, split: str) -> _Sequence:
    """One sequence folder → Frames on the camera plane (sport set later), its counts and trajectory statistics."""
    gt_path, seqinfo_path = folder / "gt" / "gt.txt", folder / "seqinfo.ini"
    fps, length, width, height = _read_seqinfo(seqinfo_path)
    rows, data = _read_gt(gt_path)
    frame, track = rows[:, 0], rows[:, 1]
    bad = (frame != np.round(frame)) | (frame < 1) | (frame > length) | (track != np.round(track)) | (track < 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise UserError(
            f"{gt_path}: line {_line_number(data, row)}: frame {frame[row]:g}, id {track[row]:g}; expected a frame "
            f"1..{length} (seqLength of {seqinfo_path.name}) and a track id >= 0. {_FIX_GT}"
        )
    x, y, w, h, flag = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5], rows[:, 6]
    ignored = flag == 0
    nonpositive = ~ignored & ((w <= 0) | (h <= 0))
    keep = ~ignored & ~nonpositive
    if not keep.any():
        raise UserError(
            f"{gt_path}: no usable box ({len(rows)} read: {int(ignored.sum())} flagged 0 (ignore), "
            f"{int(nonpositive.sum())} of non-positive size). {_FIX_GT}"
        )
    partly_outside = keep & ((x < 0) | (y < 0) | (x + w > width) | (y + h > height))
    frame, track = frame[keep].astype(np.int64), track[keep].astype(np.int64)
    tracks = np.unique(track)
    names = tracks.astype(str)
    order = np.argsort(names, kind="stable")  # objects in (role, id) order: ids as strings
    column = np.empty(len(tracks), np.int64)
    column[order] = np.arange(len(tracks))
    k = len(tracks)
    cell = (frame - 1) * k + column[np.searchsorted(tracks, track)]
    _, first_from_end = np.unique(cell[::-1], return_index=True)
    last = len(cell) - 1 - first_from_end  # the last box of a track in a frame wins
    foot = np.stack([x[keep] + w[keep] / 2 - width / 2, height / 2 - (y[keep] + h[keep])], axis=-1)
    positions = np.full((length * k, 2), np.nan, np.float32)
    positions[cell[last]] = foot[last]
    positions = positions.reshape(length, k, 2)
    frame_id = np.arange(1, length + 1, dtype=np.int64)
    per_frame = np.bincount(cell[last] // k, minlength=length)
    counts = {
        "boxes": len(rows),
        "boxes_partly_outside": int(partly_outside.sum()),
        "ignored_flag_dropped": int(ignored.sum()),
        "nonpositive_size_dropped": int(nonpositive.sum()),
        "duplicate_boxes_dropped": int(keep.sum() - len(last)),
        "tracks": k,
        "frames": length,
        "frames_without_boxes": int((per_frame == 0).sum()),
    }
    metadata = {
        "provider": PROVIDER,
        "reader": __name__,
        "game_id": folder.name,
        "sequence": folder.name,
        "sportsmot_split": split,
        "image_size": [width, height],
        "coordinate_system": "camera plane: box foot points (x + w/2, y + h) in centred pixels, y up",
        "files": {"gt": str(gt_path), "seqinfo": str(seqinfo_path)},
        "licence": LICENCE,
        "frames_in_file": length,
        "periods": [1],
        "counts": counts,
    }
    frames = clips.Frames(
        positions=positions,
        frame_id=frame_id,
        period=np.ones(length, np.int16),
        timestamp=(frame_id - 1) / fps,
        object_role=np.full(k, clips.ROLE_OTHER, np.int8),
        object_id=names[order],
        fps=fps,
        pitch_length=width,
        pitch_width=height,
        metadata=metadata,
        field_kind=field.CAMERA,
    )
    return _Sequence(folder.name, split, frames, counts, _stats(positions, per_frame, h[keep], fps, width, height))


def _stats(
    positions: np.ndarray, per_frame: np.ndarray, heights: np.ndarray, fps: float, width: float, height: float
) -> dict[str, Any]:
    """Per-sequence trajectory statistics, the evidence of a sport label (sizes relative to the frame)."""
    located = positions[np.isfinite(positions).all(-1)]
    step = np.linalg.norm(np.diff(positions, axis=0), axis=-1)
    speed = step[np.isfinite(step)] * fps
    return {
        "tracks": positions.shape[1],
        "boxes_per_frame_median": float(np.median(per_frame)),
        "boxes_per_frame_max": int(per_frame.max()),
        "box_height_median": round(float(np.median(heights)) / height, 4),
        "foot_spread": [round(float(located[:, 0].std()) / width, 4), round(float(located[:, 1].std()) / height, 4)],
        "speed_median_px_s": round(float(np.median(speed)), 2) if len(speed) else None,
    }


def _agreement(pairs: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
    """covered / agreed / accuracy and confusion counts {manifest: {inferred: n}} of (manifest, inferred) pairs."""
    confusion: dict[str, dict[str, int]] = {}
    covered = agreed = 0
    for manifest, inferred in pairs:
        if inferred is None:
            continue
        covered += 1
        agreed += manifest == inferred
        row = confusion.setdefault(manifest, {})
        row[inferred] = row.get(inferred, 0) + 1
    return {
        "covered": covered,
        "agreed": agreed,
        "accuracy": round(agreed / covered, 4) if covered else None,
        "confusion": {m: dict(sorted(row.items())) for m, row in sorted(confusion.items())},
    }


def _report(
    folder: Path, sequences: list[_Sequence], table: dict[str, dict[str, Any]], labels: dict[str, str], trusted: bool
) -> dict[str, Any]:
    """Counts of what was read and dropped, the label table, and the rules' agreement with the manifest."""
    totals = collections.Counter()
    for seq in sequences:
        totals.update(seq.counts)
    labelled = [s for s in sequences if s.name in labels]
    sibling = {s.name: _sibling_sport(s.name, labels)[0] for s in labelled}
    team = {s.name: team_size_sport(s.stats["tracks"]) for s in labelled}
    return {
        "provider": PROVIDER,
        "folder": str(folder),
        "sequences": len(sequences),
        "youtube_videos": len({_video(s.name) for s in sequences}),
        "splits": dict(sorted(collections.Counter(s.split for s in sequences).items())),
        "sports": dict(sorted(collections.Counter(row["sport"] for row in table.values()).items())),
        "sport_sources": dict(sorted(collections.Counter(row["sport_source"] for row in table.values()).items())),
        "trust_manifest": trusted,
        "frames": totals["frames"],
        "frames_without_boxes": totals["frames_without_boxes"],
        "boxes": totals["boxes"],
        "boxes_partly_outside": totals["boxes_partly_outside"],
        "tracks": totals["tracks"],
        "drops": {
            "ignored_flag": totals["ignored_flag_dropped"],
            "nonpositive_size": totals["nonpositive_size_dropped"],
            "duplicate_boxes": totals["duplicate_boxes_dropped"],
        },
        "labels": table,
        "agreement": {
            "protocol": "each manifest-labelled sequence read, its own label left out: sibling = the manifest labels "
            "of the other sequences of its YouTube video; team_size = fitted on nothing; combined = sibling where it "
            "applies, else team_size (what an unlabelled sequence gets)",
            "sibling": _agreement((labels[n], sibling[n]) for n in sibling),
            "team_size": _agreement((labels[n], team[n]) for n in team),
            "combined": _agreement((labels[n], sibling[n] or team[n]) for n in team),
        },
        "team_size_disagreements": {
            n: {"manifest": labels[n], "team_size": team[n]} for n in team if team[n] != labels[n]
        },
    }
