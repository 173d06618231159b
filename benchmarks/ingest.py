"""Benchmark: the bundled SkillCorner match through kloppy vs the direct reader, in one run; prints one JSON object.

Times (best of --repeat, wall clock and process CPU) of
  fast:          trajsv_jax.data.ingest.read_skillcorner (the default reader)
  kloppy_reader: trajsv_jax.data.ingest.read_with_kloppy("skillcorner", ...), which validates the files, counts skipped
                 referees with the direct reader first, then loads with kloppy and converts kloppy's frames
  kloppy_load:   kloppy.skillcorner.load alone (coordinates="skillcorner"), for reference
and asserts that both readers give identical arrays (NaN equal), object ids/roles/order, frames, periods, timestamps.
Run from the repository root: `python -m benchmarks.ingest [--repeat N]` (or with trajsv-jax installed, as a script).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

import numpy as np

from benchmarks import machine
from trajsv_jax.data import ingest

ARRAYS = ("positions", "frame_id", "period", "timestamp", "object_role", "object_id")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", help="SkillCorner raw_data (default: the match bundled with kloppy)")
    parser.add_argument("--meta", help="SkillCorner meta_data (default: the match bundled with kloppy)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per reader; the best time is reported")
    parser.add_argument("--skip-kloppy-load", action="store_true", help="do not time kloppy.skillcorner.load alone")
    args = parser.parse_args()
    raw, meta = ingest.bundled_skillcorner_files()
    raw, meta = args.raw or raw, args.meta or meta

    fast, fast_wall, fast_cpu = machine.timed(lambda: ingest.read_skillcorner(raw, meta), args.repeat)
    slow, slow_wall, slow_cpu = machine.timed(
        lambda: ingest.read_with_kloppy("skillcorner", raw_data=raw, meta_data=meta), args.repeat
    )
    for name in ARRAYS:
        a, b = getattr(fast, name), getattr(slow, name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{name} differs"
    assert (fast.fps, fast.pitch_length, fast.pitch_width) == (slow.fps, slow.pitch_length, slow.pitch_width)
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "raw_data": str(raw),
        "frames": int(fast.positions.shape[0]),
        "objects": int(fast.positions.shape[1]),
        "located_object_frames": int(np.isfinite(fast.positions).all(-1).sum()),
        "referee_detections_skipped": fast.metadata["referee_detections_skipped"],
        "arrays_identical": True,
        "fast_seconds": round(fast_wall, 3),
        "fast_cpu_seconds": round(fast_cpu, 3),
        "kloppy_reader_seconds": round(slow_wall, 3),
        "kloppy_reader_cpu_seconds": round(slow_cpu, 3),
        "speedup_vs_kloppy_reader": round(slow_wall / fast_wall, 2),
    }
    if not args.skip_kloppy_load:
        from kloppy import skillcorner

        _, load_wall, load_cpu = machine.timed(
            lambda: skillcorner.load(meta_data=meta, raw_data=raw, coordinates="skillcorner"), args.repeat
        )
        result.update(
            kloppy_load_seconds=round(load_wall, 3),
            kloppy_load_cpu_seconds=round(load_cpu, 3),
            speedup_vs_kloppy_load=round(load_wall / fast_wall, 2),
        )
    result.update(repeat=args.repeat, python=platform.python_version(), cpus=os.cpu_count())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
