"""Tokenizer benchmark: the literal play2vec reference vs trajsv_jax.data.tokenize, in one run; prints one JSON object.

On the bundled SkillCorner match (kloppy's test files, read by trajsv_jax.data.ingest):
1. reference: `segment_matrices` for every clip + one `Corpus` over all segments, timed;
2. ours: `clip_segment_matrices` + exact `Vocabulary.tokenize`, compile (first run) timed apart from the best of
   --repeats warm runs; the tokens must equal the reference's (asserted), and the speed ratio is reported;
3. approximate mode (MinHash LSH) on the match: time and agreement with exact (decision agreement over distinct
   segments, adjusted Rand index of the tokens over all segments).
Then on a synthetic corpus of --scale copies of the match's clips, each copy shifted by its own random rigid offset of
up to ±--offset m in x and y (so most of its segments are new): rasterization time, exact vocabulary build time, and
approximate build time and agreement. The exact build is all-pairs, O(N² · cells): at 100x (~350k distinct segments)
it takes ~15 minutes on 2 CPU cores, so by default it runs on the first --exact-scale copies (30) and its --scale
time is extrapolated by the square of the distinct segment counts (pass --exact-scale 100 to measure it); approximate
mode runs at both sizes, its agreement being measured where exact ran.

Both sides read every clip's positions with the objects never seen in that clip left out.

Usage, from the repository root: python -m benchmarks.tokenize [--scale 100] [--exact-scale 30] [--repeats 3]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder heads sys.path and its name would shadow the standard library's tokenize.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from trajsv_jax.data import ingest, store  # noqa: E402
from trajsv_jax.data import tokenize as tk  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared/peers/play2vec_tokenizer.py"


def load_reference():
    if not REFERENCE.exists():
        sys.exit(f"{REFERENCE} not found: the reference tokenizer lives in shared/peers beside the repository")
    spec = importlib.util.spec_from_file_location("play2vec_tokenizer", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def ours(clips: list[np.ndarray], fps: float) -> tuple[np.ndarray, tk.Vocabulary]:
    """The whole pipeline: positions → segment matrices → tokens (one exact vocabulary)."""
    matrices, _ = tk.clip_segment_matrices(clips, fps)
    vocab = tk.Vocabulary()
    return vocab.tokenize(matrices), vocab


def ours_per_clip(clips: list[np.ndarray], fps: float) -> tuple[np.ndarray, tk.Vocabulary]:
    """The public path as a user calls it, clip by clip: `segment_matrices`, then `Vocabulary.tokenize`."""
    vocab = tk.Vocabulary()
    return np.concatenate([vocab.tokenize(np.asarray(tk.segment_matrices(c, fps))) for c in clips]), vocab


def build(matrices: np.ndarray, approximate: bool = False) -> tuple[dict, np.ndarray, tk.Vocabulary]:
    """A fresh vocabulary over `matrices`: its timing and size, tokens, and the vocabulary."""
    vocab = tk.Vocabulary(approximate=approximate)
    tokens, seconds = timed(vocab.tokenize, matrices)
    return {"seconds": round(seconds, 3), "distinct": len(vocab), "tokens": vocab.num_tokens}, tokens, vocab


def rounded(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def match_clips() -> tuple[list[np.ndarray], float]:
    """The bundled match's clips (objects never seen in a clip left out: they add no cells) and frame rate."""
    source, _ = store.source_from_frames(
        ingest.read_skillcorner(*ingest.bundled_skillcorner_files()), "skillcorner_2417"
    )
    clips = [source.clip(c) for c in range(source.num_clips)]
    return [c[:, ~np.isnan(c).all((0, 2))] for c in clips], source.fps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=int, default=100, help="copies of the match for the scaled runs (default 100)")
    p.add_argument("--exact-scale", type=int, default=30, help="copies for the exact scaled build (default 30)")
    p.add_argument("--offset", type=float, default=3.0, help="max rigid shift of a copy, metres (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="warm runs of ours on the match; the best is reported")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    exact_scale = min(a.exact_scale, a.scale)
    ref = load_reference()
    clips, fps = match_clips()

    start = time.perf_counter()
    ref_segments = [s for c in clips for s in ref.segment_matrices(c, fps)]
    ref_matrices_s = time.perf_counter() - start
    ref_tokens, ref_corpus_s = timed(ref.Corpus().tokenize, ref_segments)

    (_, first_s) = timed(ours, clips, fps)
    runs = [timed(ours, clips, fps) for _ in range(a.repeats)]
    (tokens, vocab), ours_s = min(runs, key=lambda r: r[1])
    assert tokens.tolist() == ref_tokens, "tokens differ from the reference"
    (_, per_clip_first_s) = timed(ours_per_clip, clips, fps)
    (per_clip_tokens, _), per_clip_s = min(
        (timed(ours_per_clip, clips, fps) for _ in range(a.repeats)), key=lambda r: r[1]
    )
    assert per_clip_tokens.tolist() == ref_tokens, "clip-by-clip tokens differ from the reference"
    matrices, _ = tk.clip_segment_matrices(clips, fps)
    timed(tk.Vocabulary(approximate=True).tokenize, matrices[:500])  # compile approximate mode
    approx_info, approx_tokens, approx = build(matrices, approximate=True)
    ref_s = ref_matrices_s + ref_corpus_s
    match = {
        "input": "every clip's [T, K, 2] positions with the objects never seen in that clip left out (both sides)",
        "clips": len(clips),
        "segments": len(tokens),
        "distinct_segments": len(vocab),
        "tokens": vocab.num_tokens,
        "reference_s": {
            "total": round(ref_s, 3),
            "matrices": round(ref_matrices_s, 3),
            "corpus": round(ref_corpus_s, 3),
        },
        "ours_s": round(ours_s, 4),
        "ours_first_run_s": round(first_s, 3),
        "ours_compile_s": round(max(first_s - ours_s, 0.0), 3),
        "speedup": round(ref_s / ours_s, 1),
        "per_clip": {
            "path": "segment_matrices + Vocabulary.tokenize called once per clip, as a user would",
            "seconds": round(per_clip_s, 3),
            "first_run_s": round(per_clip_first_s, 3),
            "speedup": round(ref_s / per_clip_s, 1),
        },
        "tokens_identical": True,
        "approx": {**approx_info, **rounded(tk.agreement(vocab, approx, tokens, approx_tokens))},
    }

    rng = np.random.default_rng(a.seed)
    offsets = rng.uniform(-a.offset, a.offset, (a.scale, 2)).astype(np.float32)
    copies = [c + off for off in offsets for c in clips]
    (big, _), raster_s = timed(tk.clip_segment_matrices, copies, fps)
    n_exact = len(clips) * exact_scale
    n_exact_segments = int(sum(tk.num_segments(len(c), fps) for c in copies[:n_exact]))
    exact_info, exact_tokens, exact_vocab = build(big[:n_exact_segments])
    approx_small, approx_small_tokens, approx_small_vocab = build(big[:n_exact_segments], approximate=True)
    scaled = {
        "copies": a.scale,
        "shift": f"each copy shifted by a uniform random rigid offset in [-{a.offset}, {a.offset}] m in x and y",
        "segments": len(big),
        "rasterize_s": round(raster_s, 3),
        f"exact_{exact_scale}x": exact_info,
        f"approx_{exact_scale}x": {
            **approx_small,
            **rounded(tk.agreement(exact_vocab, approx_small_vocab, exact_tokens, approx_small_tokens)),
        },
    }
    if exact_scale < a.scale:
        approx_big, _, _ = build(big, approximate=True)
        scaled[f"approx_{a.scale}x"] = approx_big
        growth = approx_big["distinct"] / exact_info["distinct"]  # all-pairs: time grows with distinct segments²
        scaled[f"exact_{a.scale}x_estimate_s"] = round(exact_info["seconds"] * growth**2)
    print(
        json.dumps(
            {
                "benchmark": "tokenize",
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "lsh": {**dataclasses.asdict(tk.LSHParams()), "num_perm": tk.LSHParams().num_perm},
                "match": match,
                "scaled": scaled,
            }
        )
    )


if __name__ == "__main__":
    main()
