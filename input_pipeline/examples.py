"""The per-video training example: its one definition (names, shapes, dtypes) and how it is cut from a store.

A video is up to n consecutive clips of one source (`data.clips.Video`). Each clip becomes m segments of up to
s samples (frames) of K object positions; every array is padded to these fixed shapes and carries a mask, so batches
have static shapes. Nothing is dropped silently: objects beyond K and clips without any object are counted in the
stats that come with each example.

Frame rates: an example has one rate (`ExampleConfig.fps`, `trajsv dataset --fps`); a faster source is resampled to it
inside each segment, whose bounds are cut at the source's own rate first (by time), so dropping frames never moves a
segment boundary and the tokens computed at the source's rate still belong to the same segments.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import tokenize
from trajsv_jax.data.store import Source
from trajsv_jax.errors import UserError

VIDEO_ID_CLIP_BITS, VIDEO_ID_SOURCE_BITS = 16, 15
STAT_KEYS = (
    "videos",
    "clips",
    "empty_clips",
    "clips_over_max_objects",
    "dropped_objects",
    "dropped_object_frames",
    "visual_clips",  # clips with a frozen visual vector
)


@dataclasses.dataclass(frozen=True)
class ExampleConfig:
    """Fixed example shapes. `fps` is the highest source frame rate: it sets s = ceil(1.5 * fps * segment_seconds)."""

    clips_per_video: int = 16  # n
    segments_per_clip: int = 16  # m
    fps: float = 10.0
    segment_seconds: float = 1.0
    max_objects: int = 32  # K
    visual_dim: int = 512  # D

    @property
    def samples_per_segment(self) -> int:
        """s: the longest segment `segment_bounds` can cut (round() allows up to 1.5 segment lengths)."""
        return math.ceil(1.5 * self.fps * self.segment_seconds - 1e-9)

    @classmethod
    def for_sources(
        cls,
        sources: Sequence[Source],
        clips: int = 16,
        objects: int = 32,
        segments: int = 16,
        seconds: float = 1.0,
        fps: float | None = None,
    ) -> ExampleConfig:
        """The config that fits these sources: `fps` (default their highest rate), their visual feature dim (else
        the default)."""
        dims = {source.visual.shape[1] for source in sources if source.visual is not None}
        if len(dims) > 1:
            raise UserError(f"sources have visual features of dims {sorted(dims)}; extract them all with one model.")
        if fps is not None and not 0 < fps < math.inf:
            raise UserError(f"fps={fps}: expected a finite rate > 0 (frames per second of the examples).")
        return cls(
            clips_per_video=clips,
            segments_per_clip=segments,
            fps=fps or max((source.fps for source in sources), default=cls.fps),
            segment_seconds=seconds,
            max_objects=objects,
            visual_dim=dims.pop() if dims else cls.visual_dim,
        )

    def describe(self) -> str:
        return (
            f"n={self.clips_per_video} clips x m={self.segments_per_clip} segments x s={self.samples_per_segment} "
            f"samples x K={self.max_objects} objects, {self.segment_seconds:g} s segments at <= {self.fps:g} fps, "
            f"visual D={self.visual_dim}"
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def feature_spec(config: ExampleConfig) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Feature name → (shape, dtype) of one example."""
    n, m, s = config.clips_per_video, config.segments_per_clip, config.samples_per_segment
    k, d = config.max_objects, config.visual_dim
    spec = {
        "positions": ((n, m, s, k, 2), np.float32),  # centred metres, NaN = padding or not seen
        "sample_mask": ((n, m, s), np.bool_),
        "segment_mask": ((n, m), np.bool_),
        "clip_mask": ((n,), np.bool_),
        "tokens": ((n, m), np.int32),  # 0 = padding or empty segment
        "visual": ((n, d), np.float32),  # zeros where absent
        "visual_mask": ((n,), np.bool_),
        "video_id": ((), np.int64),  # source_index << 16 | first clip (fits int32, for JAX without x64)
        "clip_ids": ((n,), np.int64),  # clip index in the source, -1 = padding
        "source_index": ((), np.int32),  # position of the source in the store
        "grid_index": ((n,), np.int32),  # each clip's field grid in the vocabulary's layout (tokenize.rasterize)
    }
    return {name: (shape, np.dtype(dtype)) for name, (shape, dtype) in spec.items()}


def empty_example(config: ExampleConfig) -> dict[str, np.ndarray]:
    """An all-padding example."""
    fill = {"positions": np.nan, "clip_ids": -1}
    return {name: np.full(shape, fill.get(name, 0), dtype) for name, (shape, dtype) in feature_spec(config).items()}


def zero_stats() -> dict[str, int]:
    return dict.fromkeys(STAT_KEYS, 0)


def add_stats(total: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    return {key: int(total.get(key, 0)) + int(more.get(key, 0)) for key in {**total, **more}}


def select_objects(clip: np.ndarray, max_objects: int) -> tuple[np.ndarray, int, int]:
    """Objects kept for a clip [T, K, 2]: those seen, in store order; past `max_objects`, those seen in most frames.

    Returns (kept object indices, dropped objects, dropped object-frames).
    """
    frames_seen = np.isfinite(clip).all(-1).sum(0)
    objects = np.flatnonzero(frames_seen)
    if len(objects) <= max_objects:
        return objects, 0, 0
    order = np.argsort(-frames_seen[objects], kind="stable")  # ties: store order
    dropped = objects[order[max_objects:]]
    return np.sort(objects[order[:max_objects]]), len(dropped), int(frames_seen[dropped].sum())


def resampled_frames(frames: int, fps: float, rate: float) -> np.ndarray:
    """int64 indices of the frames of a clip at `fps` kept at `rate` (all of them when rate >= fps): the first frame
    at or after each sample time k / rate, so the kept frames follow the clock, not the frame count."""
    if rate >= fps - 1e-9:
        return np.arange(frames)
    index = np.unique(np.ceil(np.arange(math.ceil(frames * rate / fps) + 1) * (fps / rate) - 1e-6).astype(np.int64))
    return index[index < frames]


def clip_arrays(clip: np.ndarray, fps: float, config: ExampleConfig, where: str) -> tuple[dict[str, np.ndarray], dict]:
    """positions [m, s, K, 2], sample_mask [m, s], segment_mask [m] of one clip, and its drop stats.

    Segments are cut at the source's rate; a faster source then keeps `resampled_frames` of each at `config.fps`.
    """
    m, s, k = config.segments_per_clip, config.samples_per_segment, config.max_objects
    bounds = tokenize.segment_bounds(len(clip), fps, config.segment_seconds)
    kept_frames = resampled_frames(len(clip), fps, config.fps)
    lengths = np.diff(np.searchsorted(kept_frames, bounds))
    clip = clip[kept_frames]
    if len(lengths) > m:
        raise UserError(
            f"{where}: {len(clip)} frames make {len(lengths)} segments, more than m={m}. "
            f"Re-create the store with clips of at most {m} segments, or raise segments_per_clip."
        )
    if lengths.max() > s:
        raise UserError(
            f"{where}: a segment has {lengths.max()} frames, more than s={s} samples (source at {fps} fps, "
            f"example config at {config.fps} fps). Write the dataset at the run's rate: `trajsv dataset STORE --out "
            f"DIR --fps {config.fps:g}`."
        )
    kept, dropped_objects, dropped_frames = select_objects(clip, k)
    valid = np.arange(s) < lengths[:, None]  # [segments, s]; its True cells in order are the clip's frames
    positions = np.full((m, s, k, 2), np.nan, np.float32)
    positions[: len(lengths), :, : len(kept)][valid] = clip[:, kept]
    sample_mask = np.zeros((m, s), bool)
    sample_mask[: len(lengths)] = valid
    stats = {
        "clips": 1,
        "clips_over_max_objects": int(dropped_objects > 0),
        "dropped_objects": dropped_objects,
        "dropped_object_frames": dropped_frames,
    }
    return {"positions": positions, "sample_mask": sample_mask, "segment_mask": np.arange(m) < len(lengths)}, stats


def usable_clips(source: Source) -> np.ndarray:
    """[C] bool: clips with at least one object seen in some frame."""
    seen = np.isfinite(source.positions).all(-1).any(-1)
    return np.add.reduceat(seen, source.clip_offsets[:-1]) > 0


def plan_videos(
    sources: Sequence[Source], clips_per_video: int, train_fraction: float = 0.8, val_fraction: float = 0.0
) -> tuple[list[clips_lib.Video], dict[str, int]]:
    """Videos of every source (empty clips left out and counted), each marked train, val or test.

    A source is split by time (`clips.make_videos`) unless it belongs to a group (its game or video, set by readers
    of short sequences: a hockey power play, a SportsMOT clip): then its whole group goes to one split
    (`clips.split_groups`, per sport, so that each sport gets its share of train, val and test), and no game or
    video is in two splits.
    """
    videos: list[clips_lib.Video] = []
    grouped: dict[str, list[int]] = {}
    sport_of: dict[str, str] = {}
    empty = 0
    for source in sources:
        usable = usable_clips(source)
        empty += int((~usable).sum())
        made = clips_lib.make_videos(
            source.source_id,
            source.clip_period,
            source.clip_start,
            usable,
            clips_per_video,
            train_fraction,
            val_fraction,
        )
        if source.group is not None:
            grouped.setdefault(str(source.group), []).extend(range(len(videos), len(videos) + len(made)))
            sport_of.setdefault(str(source.group), source.field.sport)
        videos += made
    split: dict[str, str] = {}
    for sport in sorted(set(sport_of.values())):
        sizes = {g: len(v) for g, v in grouped.items() if sport_of[g] == sport}
        split |= clips_lib.split_groups(sizes, train_fraction, val_fraction)
    for group, members in grouped.items():
        for i in members:
            videos[i] = dataclasses.replace(videos[i], split=split[group])
    return videos, {"empty_clips": empty, "groups": len(grouped)}


def video_examples(
    sources: Sequence[Source],
    videos: Iterable[clips_lib.Video],
    tokens_by_source: Mapping[str, Sequence[np.ndarray]] | None,
    config: ExampleConfig,
    vocab: tokenize.Vocabulary | None = None,
) -> Iterator[tuple[dict[str, np.ndarray], dict[str, int]]]:
    """(example, stats) per video. `tokens_by_source[source_id][c]` holds clip c's tokens, one per segment; `vocab`
    (the tokens' vocabulary) gives each source's grid index (0 without it: one field)."""
    index = {source.source_id: i for i, source in enumerate(sources)}
    grids = {
        s.source_id: vocab.layout.index(vocab.grid_of(s.field, s.source_id)) if vocab is not None else 0
        for s in sources
    }
    for video in videos:
        if video.source_id not in index:
            raise UserError(f"video of {video.source_id!r}: no such source among {sorted(index)}.")
        source_index = index[video.source_id]
        source = sources[source_index]
        if video.num_clips > config.clips_per_video:
            raise UserError(
                f"{source.source_id} clip {video.first_clip}: video of {video.num_clips} clips, more than "
                f"n={config.clips_per_video}. Make videos with clips_per_video={config.clips_per_video}."
            )
        tokens = None
        if tokens_by_source is not None:
            if source.source_id not in tokens_by_source:
                raise UserError(f"{source.source_id}: no tokens given for this source. Tokenize it first.")
            tokens = tokens_by_source[source.source_id]
        example, stats = empty_example(config), zero_stats()
        stats["videos"] = 1
        if video.first_clip >> VIDEO_ID_CLIP_BITS or source_index >> VIDEO_ID_SOURCE_BITS:
            raise UserError(
                f"source {source.source_id} clip {video.first_clip}: video ids hold at most "
                f"{1 << VIDEO_ID_SOURCE_BITS} sources of {1 << VIDEO_ID_CLIP_BITS} clips; split the store."
            )
        example["video_id"][...] = (source_index << VIDEO_ID_CLIP_BITS) | video.first_clip
        example["source_index"][...] = source_index
        slot = 0
        for c in range(video.first_clip, video.first_clip + video.num_clips):
            where = f"source {source.source_id} clip {c}"
            clip = source.clip(c)
            if not np.isfinite(clip).any():
                stats["empty_clips"] += 1
                continue
            arrays, clip_stats = clip_arrays(clip, source.fps, config, where)
            stats = add_stats(stats, clip_stats)
            for name, value in arrays.items():
                example[name][slot] = value
            example["clip_mask"][slot] = True
            example["clip_ids"][slot] = c
            example["grid_index"][slot] = grids[source.source_id]
            segments = int(arrays["segment_mask"].sum())
            if tokens is not None:
                clip_tokens = np.asarray(tokens[c])
                if clip_tokens.shape != (segments,):
                    raise UserError(
                        f"{where}: {clip_tokens.shape[0] if clip_tokens.ndim else 0} tokens for {segments} segments. "
                        "Re-tokenize the store with the same segment length."
                    )
                example["tokens"][slot, :segments] = clip_tokens
            if source.visual is not None and source.visual_mask[c]:
                if source.visual.shape[1] != config.visual_dim:
                    raise UserError(
                        f"{where}: visual features of dim {source.visual.shape[1]}, the example config has "
                        f"visual_dim={config.visual_dim}. Set visual_dim to match the feature extractor."
                    )
                example["visual"][slot] = source.visual[c]
                example["visual_mask"][slot] = True
                stats["visual_clips"] += 1
            slot += 1
        if slot == 0:
            raise UserError(
                f"source {source.source_id} clips {video.first_clip}..{video.first_clip + video.num_clips - 1}: "
                "no clip of this video has any object. Make videos with `plan_videos`, which leaves empty clips out."
            )
        yield example, stats
