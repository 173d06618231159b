"""The data-path steps behind the CLI: ingest → tokenize → dataset, each reporting what it did and what it dropped."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from trajsv_jax import clips as clips_lib
from trajsv_jax import store as store_lib
from trajsv_jax import tokenize as tok
from trajsv_jax.errors import UserError

VOCAB_FILE = "vocab.npz"
TOKENS_DIR = "tokens"


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def describe_source(source: store_lib.Source) -> str:
    """A few lines a person reads after ingest: what the source is, its clips, objects and drops."""
    m = source.metadata
    lengths = source.clip_lengths() / source.fps
    roles = np.bincount(source.object_role, minlength=4)
    drops = m.get("drops", {})
    teams = f"{m.get('home_team', '?')} v {m.get('away_team', '?')}" if "home_team" in m else ""
    lines = [
        f"source {source.source_id}: {m.get('provider', '?')} {teams} {m.get('date', '')}".rstrip(),
        f"  {source.fps:g} Hz, pitch {m.get('pitch_length', '?')} x {m.get('pitch_width', '?')} m, "
        f"{m.get('frames_total', '?')} frames read"
        + (
            f" of {m['frames_in_file']} in the file ({m.get('empty_frames_skipped', 0)} without detections: replays, "
            f"close-ups; {m.get('frames_without_period_skipped', 0)} outside the periods)"
            if "frames_in_file" in m
            else ""
        ),
        f"  clips: {source.num_clips} ({lengths.sum() / 60:.1f} min of main camera; length min "
        f"{lengths.min():.1f} s, median {np.median(lengths):.1f} s, max {lengths.max():.1f} s)"
        if source.num_clips
        else "  clips: 0",
        f"  objects: {source.num_objects} (ball {roles[0]}, team A {roles[1]}, team B {roles[2]}, other {roles[3]})",
        "  dropped: "
        f"{drops.get('off_pitch', 0)} off-pitch and {drops.get('nan_coordinates', 0)} half-missing object-frames; "
        f"{drops.get('short_clips', 0)} clips < min length ({drops.get('short_clip_frames', 0)} frames); "
        f"{drops.get('frames_without_detections', 0)} frames left with nothing on the pitch; "
        f"{drops.get('clips_split', 0)} long runs split",
    ]
    if m.get("referee_detections_skipped"):
        lines.append(f"  not kept: {m['referee_detections_skipped']} referee detections (kloppy drops referees)")
    return "\n".join(lines)


def ingest(
    provider: str | None,
    files: dict[str, str],
    out: Path,
    source_id: str | None,
    clip_config: clips_lib.ClipConfig,
    fast: bool = True,
    **pitch_size: float | None,
) -> str:
    from trajsv_jax import ingest as ingest_lib

    if provider is None:
        if files:
            raise UserError("files given without a provider: use `trajsv ingest PROVIDER KEY=FILE ...`")
        provider = "skillcorner"
        raw, meta = ingest_lib.bundled_skillcorner_files()
        files = {"raw_data": str(raw), "meta_data": str(meta)}
    t0 = time.perf_counter()
    source, _ = ingest_lib.ingest(provider, files, out, source_id, clip_config, fast=fast, **pitch_size)
    reader = "fast reader" if fast and provider in ingest_lib.FAST_READERS else "kloppy"
    return f"{describe_source(source)}\n  read with {reader} in {time.perf_counter() - t0:.1f} s -> {out}"


def tokenize(
    store: Path,
    cell: float = 3.0,
    seconds: float | None = None,
    threshold: float = 0.3,
    approximate: bool = False,
    vocabulary: Path | None = None,
) -> str:
    """Build the vocabulary over every clip of the store (sources in store order) and save tokens per clip.

    With `vocabulary` (another dataset's vocab.npz) the vocabulary is frozen instead: every segment gets the token
    of its most similar entry, so a model trained on that dataset reads this one (transfer, fine-tuning).
    """
    sources = store_lib.read_store(store)
    if not sources:
        raise UserError(f"{store}: the store has no sources. Add some with `trajsv ingest --out {store}`.")
    seconds = seconds or sources[0].metadata.get("clip_config", {}).get("segment_seconds", 1.0)
    if vocabulary is not None:
        return _tokenize_frozen(store, sources, tok.Vocabulary.load(vocabulary), seconds, vocabulary)
    vocab = tok.Vocabulary(threshold=threshold, cell=cell, seconds=seconds, approximate=approximate)
    t0 = time.perf_counter()
    total, empty = 0, 0
    (store / TOKENS_DIR).mkdir(exist_ok=True)
    for source in tqdm(sources, desc="tokenize", unit="source", leave=False, disable=len(sources) < 2):
        matrices, offsets = tok.source_segment_matrices(source, cell=cell, seconds=seconds)
        tokens = np.asarray(vocab.tokenize(matrices))
        total += len(tokens)
        empty += int((tokens == 0).sum())
        np.savez(store / TOKENS_DIR / f"{source.source_id}.npz", tokens=tokens, offsets=offsets)
    vocab.save(store / VOCAB_FILE)
    dt = time.perf_counter() - t0
    return (
        f"tokenized {total} segments of {sum(s.num_clips for s in sources)} clips in {dt:.2f} s: "
        f"{vocab.num_tokens} tokens over {len(vocab)} distinct segment matrices ({empty} empty segments -> token 0); "
        f"{tok.grid_description(cell)}, {seconds:g} s segments, Jaccard threshold {threshold:g}"
        f"{' (approximate MinHash LSH)' if approximate else ''} -> {store / VOCAB_FILE}"
    )


def _tokenize_frozen(store: Path, sources: list, vocab: tok.Vocabulary, seconds: float, path: Path) -> str:
    """Tokens of every clip from a fixed vocabulary (nearest entry); the vocabulary is copied into the store."""
    if abs(vocab.seconds - seconds) > 1e-9:
        raise UserError(f"{path}: made of {vocab.seconds:g} s segments, the store's clips use {seconds:g} s.")
    assign = jax.jit(tok.assign_tokens)
    arrays = vocab.device_arrays()
    (store / TOKENS_DIR).mkdir(exist_ok=True)
    total, used = 0, set()
    for source in sources:
        matrices, offsets = tok.source_segment_matrices(source, cell=vocab.cell, seconds=seconds)
        blocks = [np.asarray(assign(matrices[i : i + 4096], *arrays)) for i in range(0, len(matrices), 4096)]
        tokens = np.concatenate([np.zeros(0, np.int32), *blocks]).astype(np.int32)
        total += len(tokens)
        used |= set(tokens.tolist())
        np.savez(store / TOKENS_DIR / f"{source.source_id}.npz", tokens=tokens, offsets=offsets)
    shutil.copyfile(path, store / VOCAB_FILE)
    return (
        f"tokenized {total} segments with the frozen vocabulary {path} ({vocab.num_tokens} tokens, "
        f"{tok.grid_description(vocab.cell)}): each segment -> its most similar entry; {len(used - {0})} distinct "
        f"tokens used -> {store / VOCAB_FILE}"
    )


def read_tokens(store: Path, source: store_lib.Source) -> list[np.ndarray]:
    """Token ids per clip of a source, as saved by `tokenize`."""
    path = Path(store) / TOKENS_DIR / f"{source.source_id}.npz"
    if not path.exists():
        raise UserError(f"{path}: no tokens for {source.source_id}. Run `trajsv tokenize {store}` first.")
    with np.load(path) as data:
        tokens, offsets = data["tokens"], data["offsets"]
    if len(offsets) != source.num_clips + 1:
        raise UserError(f"{path}: tokens are for another version of {source.source_id}. Re-run `trajsv tokenize`.")
    return [tokens[offsets[c] : offsets[c + 1]] for c in range(source.num_clips)]


def dataset(
    store: Path,
    out: Path,
    clips_per_video: int = 16,
    objects: int = 32,
    train_fraction: float = 0.8,
    shards: int = 4,
    val_fraction: float = 0.0,
) -> str:
    """Write the padded per-video TFRecord shards of every split, reporting counts and drops.

    The vocabulary is copied next to the shards, so that the dataset directory is all training needs (on a TPU
    pod it can be copied to a bucket alone).
    """
    from input_pipeline import examples as ex
    from input_pipeline import write

    sources = store_lib.read_store(store)
    tokens = {s.source_id: read_tokens(store, s) for s in sources}
    config = ex.ExampleConfig.for_sources(sources, clips=clips_per_video, objects=objects)
    info = write.prepare_store(store, out, config, shards, tokens, train_fraction, val_fraction)
    shutil.copyfile(Path(store) / VOCAB_FILE, Path(out) / VOCAB_FILE)
    lines = [f"dataset {out} ({config.describe()}):"]
    for split, entry in info["splits"].items():
        stats = entry.get("stats", {})
        lines.append(
            f"  {split}: {entry['num_examples']} videos in {len(entry['shards'])} shards; "
            f"{stats.get('clips_over_max_objects', 0)} clips had more than K={objects} objects "
            f"({stats.get('dropped_object_frames', 0)} object-frames of the least-seen objects dropped)"
        )
    lines.append(f"  empty clips left out: {info['store']['stats']['empty_clips']}")
    return "\n".join(lines)


def count_videos(
    sources: Sequence[store_lib.Source], clips_per_video: int, train_fraction: float, val_fraction: float = 0.0
) -> dict[str, int]:
    """Videos per split ("train", "val", "test") that the sources make."""
    from input_pipeline import examples as ex

    videos, _ = ex.plan_videos(sources, clips_per_video, train_fraction, val_fraction)
    return {split: sum(v.split == split for v in videos) for split in clips_lib.SPLITS}


def info(store: Path, clips_per_video: int = 16, train_fraction: float = 0.8) -> str:
    sources = store_lib.read_store(store)
    parts = []
    for source in sources:
        counts = count_videos([source], clips_per_video, train_fraction)
        parts.append(
            f"{describe_source(source)}\n  videos of n={clips_per_video} clips: {counts['train']} train, "
            f"{counts['test']} test"
        )
    vocab_path = Path(store) / VOCAB_FILE
    if vocab_path.exists():
        vocab = tok.Vocabulary.load(vocab_path)
        parts.append(f"vocabulary: {vocab.num_tokens} tokens over {len(vocab)} distinct segment matrices")
    return "\n".join(parts) or f"{store}: empty store"


def plot_clips(source: store_lib.Source, tokens: list[np.ndarray], cell: float, seconds: float, path: Path, count=3):
    """Picture of `count` clips spread over the match: trajectories over their segment matrices on the pitch."""
    from trajsv_jax import plots

    full = [c for c in range(source.num_clips) if len(tokens[c]) >= 8] or list(range(source.num_clips))
    chosen = [full[i] for i in np.linspace(0, len(full) - 1, count).round().astype(int)]
    clips = [source.clip(c) for c in chosen]
    matrices, counts = tok.clip_segment_matrices(clips, source.fps, cell, seconds)
    titles = [
        f"clip {c}: period {source.clip_period[c]} at {_minutes(source.clip_start[c])}, {len(tokens[c])} segments"
        for c in chosen
    ]
    return plots.plot_clip_segments(
        path,
        clips,
        np.split(matrices, np.cumsum(counts)[:-1]),
        [tokens[c] for c in chosen],
        [tok.segment_bounds(len(clip), source.fps, seconds) for clip in clips],
        source.object_role,
        titles,
        cell,
    )


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """Tokenization and dataset settings of the demo (paper defaults)."""

    cell: float = 3.0
    threshold: float = 0.3
    approximate: bool = False
    clips_per_video: int = 4  # paper: 16; one match makes ~90 videos of 4 clips, only 24 of 16
    objects: int = 32
    train_fraction: float = 0.8
    shards: int = 4
    val_fraction: float = 0.1


def demo_data(out: Path, clip_config: clips_lib.ClipConfig, options: DataOptions, fast: bool = True):
    """The data half of the demo on the bundled match: ingest → tokenize → dataset → a picture.

    Returns (report lines, summary dict).
    """
    out, o, seconds = Path(out), options, clip_config.segment_seconds
    store = out / "store"
    steps = [
        ingest(None, {}, store, None, clip_config, fast),
        tokenize(store, o.cell, seconds, o.threshold, o.approximate),
        dataset(store, out / "tfrecords", o.clips_per_video, o.objects, o.train_fraction, o.shards, o.val_fraction),
    ]
    source = store_lib.read_store(store)[0]
    tokens = read_tokens(store, source)
    counts = count_videos([source], o.clips_per_video, o.train_fraction, o.val_fraction)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    png = plot_clips(source, tokens, o.cell, seconds, out / "plots" / "segment_matrices.png")
    summary = {
        "clips": source.num_clips,
        "videos": sum(counts.values()),
        "videos_per_split": counts,
        "clips_per_video": o.clips_per_video,
        "segments": int(sum(len(t) for t in tokens)),
        "vocabulary_tokens": tok.Vocabulary.load(store / VOCAB_FILE).num_tokens,
        "drops": source.metadata["drops"],
        "picture": png,
    }
    return [*steps, f"picture of 3 clips' segment matrices: {png}"], summary
