"""The data path's steps as library functions: ingest → tokenize → dataset (and a store's summary).

Each step returns a small result with a `report()` that says what it did and what it dropped; the CLI prints it.
`prepare_bundled_match` runs all three on the real match in kloppy's wheel (the data half of `trajsv demo`).
"""

from __future__ import annotations

import dataclasses
import json
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
        f"  {source.fps:g} Hz, {source.field.describe()}, "
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


SOURCE_COLUMNS = ("source", "sport", "field", "fps", "clips", "minutes", "objects", "off-field", "short clips")


def source_rows(sources: Sequence[store_lib.Source]) -> list[tuple]:
    """One row per source (`SOURCE_COLUMNS`): what it is, how much main-camera play it has, what was dropped."""
    rows = []
    for s in sources:
        drops, f = s.metadata.get("drops", {}), s.field
        size = f"{f.kind} {f.length:g}x{f.width:g} {f.unit}"
        minutes = s.clip_lengths().sum() / s.fps / 60
        rows.append((s.source_id, f.sport, size, f"{s.fps:g}", s.num_clips, f"{minutes:.1f}", s.num_objects,
                     drops.get("off_pitch", 0), drops.get("short_clips", 0)))  # fmt: skip
    return rows


def text_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned table."""
    cells = [[str(c) for c in columns], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


@dataclasses.dataclass(frozen=True)
class FolderIngestResult:
    reader: str
    folder: Path
    written: ingest_lib.FolderIngest
    seconds: float
    store: Path

    def report(self) -> str:
        w = self.written
        lines = [
            f"{self.reader} {self.folder}: {len(w.sources)} sources in {self.seconds:.1f} s -> {self.store}",
            text_table(SOURCE_COLUMNS, source_rows(w.sources)),
        ]
        for sid, why in w.left_out.items():
            lines.append(f"left out {sid}: no clip after cleaning ({why})")
        for key in ("sports", "sport_sources", "counts", "drops", "alignment"):
            if key in w.report:
                lines.append(f"{key}: {json.dumps(w.report[key], sort_keys=True)}")
        return "\n".join(lines)


def ingest_folder(
    reader: str, folder: Path, out: Path, clip_config: clips_lib.ClipConfig, **options: Any
) -> FolderIngestResult:
    """Every source of a dataset folder (`trajsv ingest sportsmot DIR`, ...) into the store `out`."""
    t0 = time.perf_counter()
    written = ingest_lib.ingest_folder(reader, folder, out, clip_config, **options)
    return FolderIngestResult(reader, Path(folder), written, time.perf_counter() - t0, Path(out))


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
class Split:
    """How a store's clips are grouped into videos and split; tokenize fixes it (the vocabulary is fitted on the
    train split) and `trajsv dataset` reads it back from `tokens/split.json`."""

    clips_per_video: int = 16
    train_fraction: float = 0.8
    val_fraction: float = 0.0

    def describe(self) -> str:
        return (
            f"videos of n={self.clips_per_video} clips, train fraction {self.train_fraction:g}, "
            f"val fraction {self.val_fraction:g}"
        )


SPLIT_FILE = "split.json"


def read_split(store: Path) -> Split:
    """The split `trajsv tokenize` used for this store."""
    path = Path(store) / store_lib.TOKENS_DIR / SPLIT_FILE
    if not path.exists():
        raise UserError(f"{path}: missing: the store is not tokenized. Run `trajsv tokenize {store}` first.")
    data = files.read_json(path, f"Re-run `trajsv tokenize {store}`.", "split record")
    try:
        return Split(int(data["clips_per_video"]), float(data["train_fraction"]), float(data["val_fraction"]))
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not a split record. Re-run `trajsv tokenize {store}`.") from None


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
    split: Split
    assigned: dict[str, Any]  # segments given their nearest entry (val, test, unused clips): counts, similarity

    def report(self) -> str:
        v, a = self.vocab, self.assigned
        nearest = (
            f"{a['segments']} segments outside the train split ({a['split_segments']}) got their nearest entry "
            f"(median Jaccard {a['median_similarity']:.2f}; {a['below_threshold']} at or below the threshold "
            f"{v.threshold:g}; {a['unknown']} sharing no cell with any entry -> the unknown token {v.unknown_token})"
        )
        if self.frozen_from is not None:
            return (
                f"tokenized {self.segments} segments with the frozen vocabulary {self.frozen_from} ({v.num_tokens} "
                f"tokens, {v.layout.describe()}): {nearest}; {self.used_tokens} distinct tokens used "
                f"-> {self.vocab_path}"
            )
        return (
            f"tokenized {self.segments} segments of {self.clips} clips in {self.seconds:.2f} s: vocabulary fitted on "
            f"the {v.fitted_on['segments']} segments of the train split ({self.split.describe()}): {v.num_tokens} "
            f"tokens over {len(v)} distinct segment matrices ({self.empty_segments} empty segments -> token 0); "
            f"{nearest}; {v.layout.describe()}, {v.seconds:g} s segments, Jaccard threshold {v.threshold:g}"
            f"{' (approximate MinHash LSH)' if v.lsh else ''} -> {self.vocab_path}"
        )


def tokenize_store(
    store: Path,
    cell: float = 3.0,
    seconds: float | None = None,
    threshold: float = 0.3,
    approximate: bool = False,
    vocabulary: Path | None = None,
    split: Split | None = None,
    camera_cell: float = tok.field_lib.DEFAULT_CAMERA_CELL,
) -> TokenizeResult:
    """Split the store's clips into videos (train / val / test), build the vocabulary over the train split's segments
    only (sources in store order), give every other segment its nearest entry, and save tokens per clip.

    So no val or test segment is ever a vocabulary entry unless the same matrix occurs in train. With `vocabulary`
    (another dataset's vocab.npz) the vocabulary is frozen instead: every segment gets its nearest entry, so a model
    trained on that dataset reads this one (transfer, fine-tuning).
    """
    store = Path(store)
    sources = store_lib.read_store(store)
    if not sources:
        raise UserError(f"{store}: the store has no sources. Add some with `trajsv ingest --out {store}`.")
    seconds = seconds or sources[0].metadata.get("clip_config", {}).get("segment_seconds", 1.0)
    split = split or Split()
    with files.locked(store, "tokenize"):
        return _tokenize_locked(store, sources, cell, camera_cell, seconds, threshold, approximate, vocabulary, split)


def _train_segments(sources, offsets: dict[str, np.ndarray], split: Split) -> dict[str, np.ndarray]:
    """Per source, bool [S]: the segments of clips in train videos."""
    videos, _ = examples_lib.plan_videos(sources, split.clips_per_video, split.train_fraction, split.val_fraction)
    train = {s.source_id: np.zeros(s.num_clips, bool) for s in sources}
    for video in videos:
        if video.split == "train":
            train[video.source_id][video.first_clip : video.first_clip + video.num_clips] = True
    return {sid: np.repeat(clip_train, np.diff(offsets[sid])) for sid, clip_train in train.items()}


def _tokenize_locked(
    store, sources, cell, camera_cell, seconds, threshold, approximate, vocabulary, split
) -> TokenizeResult:
    t0 = time.perf_counter()
    layout = tok.field_lib.GridLayout.of([s.field for s in sources], cell, camera_cell)
    if vocabulary is not None:
        vocab = tok.Vocabulary.load(vocabulary)
        if abs(vocab.seconds - seconds) > 1e-9:
            raise UserError(f"{vocabulary}: made of {vocab.seconds:g} s segments, the store's clips use {seconds:g} s.")
        layout = vocab.layout
        for source in sources:
            vocab.grid_of(source.field, f"{vocabulary} for source {source.source_id}")
    else:
        vocab = tok.Vocabulary(threshold, cell, seconds, approximate, layout=layout, camera_cell=camera_cell)
    matrices, offsets = {}, {}
    for source in tqdm(sources, desc="segments", unit="source", leave=False, disable=len(sources) < 2):
        matrices[source.source_id], offsets[source.source_id] = tok.source_segment_matrices(
            source, vocab.cell, seconds, layout, vocab.camera_cell
        )
    in_train = _train_segments(sources, offsets, split)
    if vocabulary is None:
        fitted = {sid: np.asarray(vocab.tokenize(matrices[sid][in_train[sid]])) for sid in matrices}
        vocab.fitted_on = {
            "split": "train",
            **dataclasses.asdict(split),
            "segments": int(sum(m.sum() for m in in_train.values())),
            "sources": [s.source_id for s in sources],
        }
    total, empty, used, similarities = 0, 0, set(), []
    for source in sources:
        sid = source.source_id
        tokens = np.zeros(len(matrices[sid]), np.int32)
        rest = np.ones(len(tokens), bool) if vocabulary is not None else ~in_train[sid]
        if vocabulary is None:
            tokens[in_train[sid]] = fitted[sid]
        assigned = matrices[sid][rest]
        tokens[rest], sims = vocab.assign_with_similarity(assigned)
        similarities.append(sims[assigned.any(1)])
        total += len(tokens)
        empty += int((~matrices[sid].any(1)).sum())
        used |= set(tokens.tolist())
        store_lib.write_tokens(store, sid, tokens, offsets[sid])
    if vocabulary is not None:  # the same bytes: a run trained on that dataset checks the vocabulary's digest
        files.atomic_write(store / store_lib.VOCAB_FILE, lambda tmp: shutil.copyfile(vocabulary, tmp))
    else:
        vocab.save(store / store_lib.VOCAB_FILE)
    files.atomic_json(store / store_lib.TOKENS_DIR / SPLIT_FILE, dataclasses.asdict(split))
    sims = np.concatenate(similarities)
    assigned = {
        "segments": len(sims),
        "split_segments": "all" if vocabulary is not None else "val, test and clips in no video",
        "median_similarity": float(np.median(sims)) if len(sims) else 1.0,
        "below_threshold": int((sims <= vocab.threshold).sum()),
        "unknown": int((sims == 0).sum()),
    }
    clips = sum(s.num_clips for s in sources)
    return TokenizeResult(
        total, clips, vocab.num_tokens, len(used - {0}), empty, time.perf_counter() - t0, vocab,
        store / store_lib.VOCAB_FILE, vocabulary, split, assigned,
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


def checked_split(store: Path, clips_per_video: int | None, train_fraction: float | None, val_fraction: float | None):
    """The store's split (`read_split`); UserError if a value given differs from the one tokenize used."""
    split = read_split(store)
    given = {"clips_per_video": clips_per_video, "train_fraction": train_fraction, "val_fraction": val_fraction}
    differ = [
        f"{k}={v:g} (tokenized with {getattr(split, k):g})"
        for k, v in given.items()
        if v is not None and v != getattr(split, k)
    ]
    if differ:
        flags = " ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in given.items() if v is not None)
        raise UserError(
            f"{store}: {', '.join(differ)}: the vocabulary was fitted on the train split tokenize made, so the "
            f"dataset must use the same. Leave the flags out, or re-run `trajsv tokenize {store} {flags}`."
        )
    return split


def write_dataset(
    store: Path,
    out: Path,
    clips_per_video: int | None = None,
    objects: int = 32,
    train_fraction: float | None = None,
    shards: int = 4,
    val_fraction: float | None = None,
    fps: float | None = None,
) -> DatasetResult:
    """Write the padded per-video TFRecord shards of every split, with counts and drops.

    The split is the one `trajsv tokenize` made (the values given must agree with it). `fps` resamples every source
    to one rate (default: the highest source rate, nothing resampled). The vocabulary is copied next to the shards,
    so that the dataset directory is all training needs (on a TPU pod it can be copied to a bucket alone).
    """
    files.output_folder(out, "dataset", create=False)
    sources = store_lib.read_store(store)
    split = checked_split(Path(store), clips_per_video, train_fraction, val_fraction)
    tokens = {s.source_id: store_lib.read_tokens(store, s) for s in sources}
    vocab_path = Path(store) / store_lib.VOCAB_FILE
    vocab = tok.Vocabulary.load(vocab_path)  # read and checked before it is copied
    config = examples_lib.ExampleConfig.for_sources(sources, clips=split.clips_per_video, objects=objects, fps=fps)
    with files.locked(out, "dataset"):
        info = write_lib.prepare_store(
            store, out, config, shards, tokens, split.train_fraction, split.val_fraction, vocab
        )
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
            f"{counts['val']} val, {counts['test']} test"
            for source, counts in zip(self.sources, self.videos, strict=True)
        ]
        if self.vocab is not None:
            parts.append(f"vocabulary: {self.vocab.num_tokens} tokens over {len(self.vocab)} distinct segment matrices")
        return "\n".join(parts) or f"{self.store}: empty store"


def store_info(store: Path) -> StoreInfo:
    """What a store holds: its sources, the videos they make (with the split `trajsv tokenize` made, else the
    paper's n = 16 and 80 % train), its vocabulary."""
    sources = store_lib.read_store(store)
    tokenized = (Path(store) / store_lib.TOKENS_DIR / SPLIT_FILE).exists()
    split = read_split(Path(store)) if tokenized else Split()
    planned, _ = examples_lib.plan_videos(sources, split.clips_per_video, split.train_fraction, split.val_fraction)
    videos = [
        {name: sum(v.split == name and v.source_id == s.source_id for v in planned) for name in clips_lib.SPLITS}
        for s in sources
    ]
    vocab_path = Path(store) / store_lib.VOCAB_FILE
    vocab = tok.Vocabulary.load(vocab_path) if vocab_path.exists() else None
    return StoreInfo(Path(store), sources, videos, split.clips_per_video, vocab)


def plot_clips(source: store_lib.Source, tokens: list[np.ndarray], cell: float, seconds: float, path: Path, count=3):
    """Picture of `count` clips spread over the match: trajectories over their segment matrices on the pitch."""
    full = [c for c in range(source.num_clips) if len(tokens[c]) >= 8] or list(range(source.num_clips))
    chosen = [full[i] for i in np.linspace(0, len(full) - 1, count).round().astype(int)]
    clips = [source.clip(c) for c in chosen]
    grid = source.field.grid(cell)
    matrices, counts = tok.clip_segment_matrices(clips, source.fps, grid, seconds)
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
        source.field,
        grid,
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
    split = Split(o.clips_per_video, o.train_fraction, o.val_fraction)
    tokenized = tokenize_store(store, o.cell, seconds, o.threshold, o.approximate, split=split)
    echo(tokenized)
    written = write_dataset(store, out / "tfrecords", objects=o.objects, shards=o.shards)
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
