"""Videos/s streamed from TFRecord shards into global device arrays (input_pipeline.reader), after warm-up.

Data: the SkillCorner match bundled with kloppy (cut as `trajsv ingest` does), or with --synthetic (or when the
bundled match cannot be read) random walks of the same shapes. The videos are repeated to fill at least two global
batches per epoch. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np
from jax.sharding import Mesh

from input_pipeline import examples as ex
from input_pipeline import reader, write
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import store as store_lib


def bundled_source() -> store_lib.Source:
    from trajsv_jax.data import ingest

    source, _ = store_lib.source_from_frames(ingest.read_skillcorner(*ingest.bundled_skillcorner_files()), "bundled")
    return source


def synthetic_source(num_clips: int = 360, num_objects: int = 40, fps: float = 10.0) -> store_lib.Source:
    """Random walks: clips of 0.4-16 s, 15-25 objects each seen in most frames."""
    rng = np.random.default_rng(0)
    frames = rng.integers(4, 160, num_clips)
    positions = np.full((frames.sum(), num_objects, 2), np.nan, np.float32)
    offsets = np.concatenate([[0], np.cumsum(frames)])
    for c, t in enumerate(frames):
        ids = rng.choice(num_objects, rng.integers(15, 26), replace=False)
        walk = rng.uniform([-50, -30], [50, 30], (len(ids), 2)) + np.cumsum(rng.normal(0, 0.3, (t, len(ids), 2)), 0)
        walk[rng.random((t, len(ids))) < 0.1] = np.nan
        positions[offsets[c] : offsets[c + 1], ids] = walk
    return store_lib.Source(
        "synthetic", fps, positions, offsets.astype(np.int64), np.ones(num_clips, np.int16),
        np.arange(num_clips) * 20.0, np.arange(num_clips, dtype=np.int64) * 200,
        np.full(num_objects, clips_lib.ROLE_TEAM_A, np.int8), np.array([f"o{i}" for i in range(num_objects)]),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--global-batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3, help="batches before timing")
    parser.add_argument("--batches", type=int, default=10, help="batches timed")
    parser.add_argument("--num-shards", type=int, default=8)
    parser.add_argument("--shuffle-buffer", type=int, default=256)
    parser.add_argument("--synthetic", action="store_true", help="random walks instead of the bundled match")
    parser.add_argument("--workdir", type=Path, help="where to write the shards (default: a temporary folder)")
    args = parser.parse_args(argv)

    data = "synthetic"
    if not args.synthetic:
        try:
            source, data = bundled_source(), "bundled SkillCorner match"
        except Exception as e:  # the bundled data or its reader is not available: say so and go on synthetic
            print(f"bundled match unavailable ({type(e).__name__}: {e}); using synthetic data", file=sys.stderr)
    if data == "synthetic":
        source = synthetic_source()
    config = ex.ExampleConfig.for_sources([source])
    videos, _ = ex.plan_videos([source], config.clips_per_video)
    examples = list(ex.video_examples([source], videos, None, config))
    copies = math.ceil(2 * args.global_batch / len(examples))

    with tempfile.TemporaryDirectory() as tmp:
        out = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        write.write_tfrecords((e for _ in range(copies) for e in examples), out, "bench", args.num_shards, config)
        write_s = time.perf_counter() - t0
        disk = sum(f.stat().st_size for f in Path(out).glob("bench-*.tfrecord"))
        mesh = Mesh(np.array(jax.devices()), ("data",))
        it = reader.make_iterator(out, "bench", args.global_batch, mesh, 0, config, shuffle_buffer=args.shuffle_buffer)
        for _ in range(args.warmup):
            jax.block_until_ready(next(it))
        t0 = time.perf_counter()
        for _ in range(args.batches):
            jax.block_until_ready(next(it))
        seconds = time.perf_counter() - t0
    videos_timed = args.batches * args.global_batch
    return {
        "benchmark": "input_pipeline",
        "data": data,
        "distinct_videos": len(examples),
        "examples_written": copies * len(examples),
        "example_shapes": config.describe(),
        "bytes_per_example": disk // (copies * len(examples)),
        "global_batch": args.global_batch,
        "batches_timed": args.batches,
        "warmup_batches": args.warmup,
        "seconds": round(seconds, 3),
        "videos_per_s": round(videos_timed / seconds, 1),
        "mb_per_s": round(disk / (copies * len(examples)) * videos_timed / seconds / 1e6, 1),
        "write_videos_per_s": round(copies * len(examples) / write_s, 1),
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
        "cpu_cores": os.cpu_count(),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
