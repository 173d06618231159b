"""Benchmark: the SportsMOT ground truth (90 train + val sequences) → camera-plane sources; prints one JSON object.

Times (best of --repeat, wall clock and process CPU) of `read_sportsmot` on the whole folder and of cutting every
sequence into clips (`store.source_from_frames`), and reports what was read: sequences per split and sport (with
every label inferred, the default, and with the manifest trusted), boxes, tracks, drops, clips, the agreement of the
sport-inference rules with the manifest, and the range of each trajectory statistic per team-size class (how far the
classes are apart besides their number of tracks).
Run from the repository root: `python -m benchmarks.sportsmot_ingest [--folder DIR] [--repeat N]`.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any

from benchmarks import machine
from trajsv_jax.data import clips, store
from trajsv_jax.data.ingest.sportsmot import read_sportsmot

SHARED = Path(__file__).resolve().parents[2] / "shared/data/sportsmot_gt"
STATS = ("tracks", "boxes_per_frame_median", "box_height_median", "foot_spread_x", "foot_spread_y", "speed_px_s")


def stat_ranges(sources: list) -> dict[str, dict[str, list[float]]]:
    """{team-size class: {statistic: [min, max]}} over the sequences of each class."""
    values: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for source in sources:
        evidence = source.frames.metadata["inference"]
        row = values[evidence["team_size_sport"]]
        spread_x, spread_y = evidence["foot_spread"]
        for name, value in zip(
            STATS,
            (
                evidence["tracks"],
                evidence["boxes_per_frame_median"],
                evidence["box_height_median"],
                spread_x,
                spread_y,
                evidence["speed_median_px_s"],
            ),
            strict=True,
        ):
            row[name].append(value)
    return {sport: {name: [min(v), max(v)] for name, v in row.items()} for sport, row in sorted(values.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=SHARED, help="the SportsMOT folder (sportsmot_gt)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the best time is reported")
    args = parser.parse_args()
    described = machine.describe(["numpy", "pandas"])

    (sources, report), read_wall, read_cpu = machine.timed(
        lambda: read_sportsmot(args.folder), args.repeat
    )  # the default
    cut, cut_wall, cut_cpu = machine.timed(
        lambda: [store.source_from_frames(s.frames, s.source_id) for s in sources], args.repeat
    )
    _, trusted_report = read_sportsmot(args.folder, trust_manifest=True)
    drops = clips.Drops()
    for _, d in cut:
        drops = drops.add(d)
    result: dict[str, Any] = {
        "benchmark": "sportsmot_ingest",
        "folder": str(args.folder),
        "read_seconds": round(read_wall, 3),
        "read_cpu_seconds": round(read_cpu, 3),
        "cut_seconds": round(cut_wall, 3),
        "cut_cpu_seconds": round(cut_cpu, 3),
        "sequences": report["sequences"],
        "youtube_videos": report["youtube_videos"],
        "splits": report["splits"],
        "sports": report["sports"],
        "sport_sources": report["sport_sources"],
        "sports_manifest_trusted": trusted_report["sports"],
        "frames": report["frames"],
        "frames_without_boxes": report["frames_without_boxes"],
        "boxes": report["boxes"],
        "boxes_partly_outside": report["boxes_partly_outside"],
        "tracks": report["tracks"],
        "reader_drops": report["drops"],
        "clips": sum(s.num_clips for s, _ in cut),
        "clip_drops": {k: v for k, v in drops.as_dict().items() if v},
        "manifest": report["manifest"],
        "agreement": {k: v for k, v in report["agreement"].items() if k != "protocol"},
        "team_size_disagreements": len(report["team_size_disagreements"]),
        "stat_ranges_by_team_size_class": stat_ranges(sources),
        "repeat": args.repeat,
        "machine": described,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
