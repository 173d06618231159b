"""The data path's steps as library functions: ingest → tokenize → dataset (and a store's summary).

Each step returns a small result with a `report()` that says what it did and what it dropped; the CLI prints it.
`prepare_bundled_match` runs all three on the real match in kloppy's wheel (the data half of `trajsv demo`).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from input_pipeline import examples as examples_lib
from input_pipeline import write as write_lib
from trajsv_jax import files, plots
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import ingest as ingest_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.data import tokenize as tok
from trajsv_jax.errors import UserError

log = logging.getLogger(__name__)


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


@dataclasses.dataclass(frozen=True)
class IngestResult:
    source: store_lib.Source
    reader: str  # "fast reader" or "kloppy"
    seconds: float
    store: Path

    def report(self) -> str:
        return f"{describe_source(self.source)}\n  read with {self.reader} in {self.seconds:.1f} s -> {self.store}"


def ingest_source(
    provider: str | None,
    files: dict[str, str],
    out: Path,
    source_id: str | None,
    clip_config: clips_lib.ClipConfig,
    fast: bool = True,
    **pitch_size: float | None,
) -> IngestResult:
    """Read a provider's files (default: the bundled SkillCorner match) into the store `out`."""
    if provider is None:
        if files:
            raise UserError("files given without a provider: use `trajsv ingest PROVIDER KEY=FILE ...`")
        provider = "skillcorner"
        raw, meta = ingest_lib.bundled_skillcorner_files()
        files = {"raw_data": str(raw), "meta_data": str(meta)}
    t0 = time.perf_counter()
    source, _ = ingest_lib.ingest(provider, files, out, source_id, clip_config, fast=fast, **pitch_size)
    reader = "fast reader" if fast and provider in ingest_lib.FAST_READERS else "kloppy"
    return IngestResult(source, reader, time.perf_counter() - t0, Path(out))


@dataclasses.dataclass(frozen=True)
class TokenizeResult:
    segments: int
    clips: int
    num_tokens: int  # the vocabulary's tokens
    used_tokens: int  # distinct non-empty tokens the store's segments got
    empty_segments: int
    seconds: float
    vocab: tok.Vocabulary
    vocab_path: Path
    frozen_from: Path | None  # another dataset's vocabulary, when frozen

    def report(self) -> str:
        v = self.vocab
        if self.frozen_from is not None:
            return (
                f"tokenized {self.segments} segments with the frozen vocabulary {self.frozen_from} ({v.num_tokens} "
                f"tokens, {tok.grid_description(v.cell)}): each segment -> its most similar entry; "
                f"{self.used_tokens} distinct tokens used -> {self.vocab_path}"
            )
        return (
            f"tokenized {self.segments} segments of {self.clips} clips in {self.seconds:.2f} s: "
            f"{v.num_tokens} tokens over {len(v)} distinct segment matrices ({self.empty_segments} empty segments -> "
            f"token 0); {tok.grid_description(v.cell)}, {v.seconds:g} s segments, Jaccard threshold {v.threshold:g}"
            f"{' (approximate MinHash LSH)' if v.lsh else ''} -> {self.vocab_path}"
        )


def tokenize_store(
    store: Path,
    cell: float = 3.0,
    seconds: float | None = None,
    threshold: float = 0.3,
    approximate: bool = False,
    vocabulary: Path | None = None,
) -> TokenizeResult:
    """Build the vocabulary over every clip of the store (sources in store order) and save tokens per clip.

    With `vocabulary` (another dataset's vocab.npz) the vocabulary is frozen instead: every segment gets the token
    of its most similar entry, so a model trained on that dataset reads this one (transfer, fine-tuning).
    """
    store = Path(store)
    sources = store_lib.read_store(store)
    if not sources:
        raise UserError(f"{store}: the store has no sources. Add some with `trajsv ingest --out {store}`.")
    seconds = seconds or sources[0].metadata.get("clip_config", {}).get("segment_seconds", 1.0)
    with files.locked(store, "tokenize"):
        return _tokenize_locked(store, sources, cell, seconds, threshold, approximate, vocabulary)


def _tokenize_locked(store, sources, cell, seconds, threshold, approximate, vocabulary) -> TokenizeResult:
    t0 = time.perf_counter()
    if vocabulary is not None:
        vocab = tok.Vocabulary.load(vocabulary)
        if abs(vocab.seconds - seconds) > 1e-9:
            raise UserError(f"{vocabulary}: made of {vocab.seconds:g} s segments, the store's clips use {seconds:g} s.")
    else:
        vocab = tok.Vocabulary(threshold=threshold, cell=cell, seconds=seconds, approximate=approximate)
    total, empty, used = 0, 0, set()
    for source in tqdm(sources, desc="tokenize", unit="source", leave=False, disable=len(sources) < 2):
        matrices, offsets = tok.source_segment_matrices(source, cell=vocab.cell, seconds=seconds)
        tokens = vocab.assign(matrices) if vocabulary is not None else np.asarray(vocab.tokenize(matrices))
        total += len(tokens)
        empty += int((tokens == 0).sum())
        used |= set(tokens.tolist())
        store_lib.write_tokens(store, source.source_id, tokens, offsets)
    if vocabulary is not None:  # the same bytes: a run trained on that dataset checks the vocabulary's digest
        files.atomic_write(store / store_lib.VOCAB_FILE, lambda tmp: shutil.copyfile(vocabulary, tmp))
    else:
        vocab.save(store / store_lib.VOCAB_FILE)
    clips = sum(s.num_clips for s in sources)
    return TokenizeResult(
        total, clips, vocab.num_tokens, len(used - {0}), empty, time.perf_counter() - t0, vocab,
        store / store_lib.VOCAB_FILE, vocabulary,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class DatasetResult:
    out: Path
    example: examples_lib.ExampleConfig
    info: dict[str, Any]  # dataset_info.json

    def report(self) -> str:
        lines = [f"dataset {self.out} ({self.example.describe()}):"]
        for split, entry in self.info["splits"].items():
            stats = entry.get("stats", {})
            lines.append(
                f"  {split}: {entry['num_examples']} videos in {len(entry['shards'])} shards; "
                f"{stats.get('clips_over_max_objects', 0)} clips had more than K={self.example.max_objects} objects "
                f"({stats.get('dropped_object_frames', 0)} object-frames of the least-seen objects dropped)"
            )
        lines.append(f"  empty clips left out: {self.info['store']['stats']['empty_clips']}")
        return "\n".join(lines)


def write_dataset(
    store: Path,
    out: Path,
    clips_per_video: int = 16,
    objects: int = 32,
    train_fraction: float = 0.8,
    shards: int = 4,
    val_fraction: float = 0.0,
) -> DatasetResult:
    """Write the padded per-video TFRecord shards of every split, with counts and drops.

    The vocabulary is copied next to the shards, so that the dataset directory is all training needs (on a TPU
    pod it can be copied to a bucket alone).
    """
    files.output_folder(out, "dataset", create=False)
    sources = store_lib.read_store(store)
    tokens = {s.source_id: store_lib.read_tokens(store, s) for s in sources}
    vocab_path = Path(store) / store_lib.VOCAB_FILE
    tok.Vocabulary.load(vocab_path)  # read and checked before it is copied
    config = examples_lib.ExampleConfig.for_sources(sources, clips=clips_per_video, objects=objects)
    with files.locked(out, "dataset"):
        info = write_lib.prepare_store(store, out, config, shards, tokens, train_fraction, val_fraction)
        files.atomic_write(Path(out) / store_lib.VOCAB_FILE, lambda tmp: shutil.copyfile(vocab_path, tmp))
    return DatasetResult(Path(out), config, info)


def count_videos(
    sources: Sequence[store_lib.Source], clips_per_video: int, train_fraction: float, val_fraction: float = 0.0
) -> dict[str, int]:
    """Videos per split ("train", "val", "test") that the sources make."""
    videos, _ = examples_lib.plan_videos(sources, clips_per_video, train_fraction, val_fraction)
    return {split: sum(v.split == split for v in videos) for split in clips_lib.SPLITS}


@dataclasses.dataclass(frozen=True)
class StoreInfo:
    store: Path
    sources: list[store_lib.Source]
    videos: list[dict[str, int]]  # per source: videos per split
    clips_per_video: int
    vocab: tok.Vocabulary | None

    def report(self) -> str:
        parts = [
            f"{describe_source(source)}\n  videos of n={self.clips_per_video} clips: {counts['train']} train, "
            f"{counts['test']} test"
            for source, counts in zip(self.sources, self.videos, strict=True)
        ]
        if self.vocab is not None:
            parts.append(f"vocabulary: {self.vocab.num_tokens} tokens over {len(self.vocab)} distinct segment matrices")
        return "\n".join(parts) or f"{self.store}: empty store"


def store_info(store: Path, clips_per_video: int = 16, train_fraction: float = 0.8) -> StoreInfo:
    """What a store holds: its sources, the videos they make, its vocabulary."""
    sources = store_lib.read_store(store)
    videos = [count_videos([source], clips_per_video, train_fraction) for source in sources]
    vocab_path = Path(store) / store_lib.VOCAB_FILE
    vocab = tok.Vocabulary.load(vocab_path) if vocab_path.exists() else None
    return StoreInfo(Path(store), sources, videos, clips_per_video, vocab)


def plot_clips(source: store_lib.Source, tokens: list[np.ndarray], cell: float, seconds: float, path: Path, count=3):
    """Picture of `count` clips spread over the match: trajectories over their segment matrices on the pitch."""
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


@dataclasses.dataclass(frozen=True)
class BundledData:
    """The data half of the demo: the three steps' results, a picture, and a summary for summary.json."""

    steps: tuple[IngestResult, TokenizeResult, DatasetResult]
    summary: dict[str, Any]

    @property
    def data_dir(self) -> Path:
        return self.steps[2].out

    def report(self) -> str:
        picture = f"picture of 3 clips' segment matrices: {self.summary['picture']}"
        return "\n".join([*(step.report() for step in self.steps), picture])


def prepare_bundled_match(
    out: Path, clip_config: clips_lib.ClipConfig, options: DataOptions, fast: bool = True, echo=None
) -> BundledData:
    """Ingest → tokenize → dataset → a picture, on the bundled match, into `out`. `echo(result)` is called after
    each step (the CLI prints the step's report there, before the next, longer step starts)."""
    out, o, seconds = Path(out), options, clip_config.segment_seconds
    store = out / "store"
    echo = echo or (lambda result: None)
    ingested = ingest_source(None, {}, store, None, clip_config, fast)
    echo(ingested)
    tokenized = tokenize_store(store, o.cell, seconds, o.threshold, o.approximate)
    echo(tokenized)
    written = write_dataset(
        store, out / "tfrecords", o.clips_per_video, o.objects, o.train_fraction, o.shards, o.val_fraction
    )
    echo(written)
    source = store_lib.read_store(store)[0]
    tokens = store_lib.read_tokens(store, source)
    counts = count_videos([source], o.clips_per_video, o.train_fraction, o.val_fraction)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    png = plot_clips(source, tokens, o.cell, seconds, out / "plots" / "segment_matrices.png")
    log.info("picture of 3 clips' segment matrices: %s", png)
    summary = {
        "clips": source.num_clips,
        "videos": sum(counts.values()),
        "videos_per_split": counts,
        "clips_per_video": o.clips_per_video,
        "segments": int(sum(len(t) for t in tokens)),
        "vocabulary_tokens": tokenized.num_tokens,
        "drops": source.metadata["drops"],
        "picture": png,
    }
    return BundledData((ingested, tokenized, written), summary)
