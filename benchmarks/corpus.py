"""Benchmark: `trajsv corpus` on every real source here, then tokenize and the dataset with and without resampling.

Prints one JSON object: the corpus table (per dataset and sport), ingest seconds per dataset and per source, the
tokenize time and what it assigned, and the dataset writer at the sources' own rates (the highest sets the example
shape: Hawk-Eye's 50 fps) against `--fps 10` (every source resampled by time inside its segments): videos/s and
source frames/s of each, in the same run.
Run from the repository root: `python -m benchmarks.corpus [--shared DIR]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks import machine
from trajsv_jax import corpus as corpus_lib
from trajsv_jax import prepare
from trajsv_jax.data import store


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", type=Path, default=corpus_lib.SHARED_DATA, help="the shared data folder")
    a = p.parse_args()
    info = machine.describe(["jax", "numpy", "pandas", "kloppy"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        result = corpus_lib.build_corpus(root / "corpus", a.shared)
        corpus_s = time.perf_counter() - t0
        sources = store.read_store(result.store)
        per_dataset = {}
        for s in sources:
            per_dataset[s.metadata["dataset"]] = per_dataset.get(s.metadata["dataset"], 0) + 1
        t0 = time.perf_counter()
        tokenized = prepare.tokenize_store(result.store, split=prepare.Split(16, 0.8, 0.1))
        tokenize_s = time.perf_counter() - t0
        frames = int(sum(s.clip_lengths().sum() for s in sources))
        writers = {}
        for name, fps in (("own_rates", None), ("fps_10", 10.0)):
            t0 = time.perf_counter()
            written = prepare.write_dataset(result.store, root / name, fps=fps)
            seconds = time.perf_counter() - t0
            videos = sum(entry["num_examples"] for entry in written.info["splits"].values())
            writers[name] = {
                "example": written.example.describe(),
                "seconds": round(seconds, 2),
                "videos": videos,
                "videos_per_s": round(videos / seconds, 1),
                "source_frames_per_s": round(frames / seconds),
            }
    out = {
        "benchmark": "corpus",
        "command": "python -m benchmarks.corpus",
        "machine": info,
        "corpus_s": round(corpus_s, 2),
        "ingest_s": {k: round(v, 2) for k, v in result.seconds.items()},
        "ingest_s_per_source": {k: round(v / per_dataset[k], 3) for k, v in result.seconds.items() if k in per_dataset},
        "sources": per_dataset,
        "rows": result.rows,
        "skipped": result.skipped,
        "tokenize": {
            "seconds": round(tokenize_s, 2),
            "segments": tokenized.segments,
            "train_segments": tokenized.vocab.fitted_on["segments"],
            "tokens": tokenized.num_tokens,
            "grids": tokenized.vocab.layout.describe(),
            "assigned": tokenized.assigned,
        },
        "dataset": writers,
        "resampled_vs_own_rates_speed": round(
            writers["fps_10"]["videos_per_s"] / writers["own_rates"]["videos_per_s"], 2
        ),
        "source_frames": frames,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
