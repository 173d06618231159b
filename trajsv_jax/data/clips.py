"""Frames → clips → videos, as the paper cuts broadcast video (section IV-A, VI-A (2)).

A clip is a run of consecutive main-camera frames: frames where at least one object is on the pitch, never across a
period boundary, a time gap or (for video) a shot boundary. Runs shorter than 0.4 s are dropped; runs longer than m
segments are split into near-equal pieces (never truncated). A video is a run of up to n consecutive clips of one
period. Every object-frame or clip that is removed is counted in a `Drops` report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any

import numpy as np

from trajsv_jax.data import field as field_lib
from trajsv_jax.data import pitch

ROLE_BALL, ROLE_TEAM_A, ROLE_TEAM_B, ROLE_OTHER = 0, 1, 2, 3
ROLE_NAMES = ("ball", "team_a", "team_b", "other")


@dataclasses.dataclass
class Frames:
    """Frame-level tracking from any reader, before clipping. Arrays are aligned on the frame axis F."""

    positions: np.ndarray  # [F, K, 2] float32 centred metres, NaN = not seen
    frame_id: np.ndarray  # [F] int64 provider frame number
    period: np.ndarray  # [F] int16, 1-based
    timestamp: np.ndarray  # [F] float64 seconds since the start of the period
    object_role: np.ndarray  # [K] int8, ROLE_*
    object_id: np.ndarray  # [K] str provider ids
    fps: float
    pitch_length: float  # the field's length along x: metres, or the image width in pixels on the camera plane
    pitch_width: float  # across (y): metres, or the image height in pixels
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    shot: np.ndarray | None = None  # [F] int32 camera shot of a video frame: a clip never spans a shot boundary
    sport: str = "soccer"  # field.SPORTS or any plain name
    field_kind: str = field_lib.METRIC  # or field_lib.CAMERA (uncalibrated video, pixels)

    @property
    def field(self) -> field_lib.Field:
        return field_lib.Field(self.sport, self.field_kind, float(self.pitch_length), float(self.pitch_width))


@dataclasses.dataclass
class Drops:
    """Counts of everything removed on the way from frames to clips; nothing is dropped without a count here."""

    nan_coordinates: int = 0  # object-frames with one coordinate missing (NaN)
    off_pitch: int = 0  # object-frames outside the pitch (plus margin), infinite coordinates included
    frames_without_detections: int = 0  # not main camera (replays, close-ups) or nothing on the pitch
    short_clips: int = 0  # runs shorter than the minimum clip length
    short_clip_frames: int = 0
    clips_split: int = 0  # long runs split into pieces of at most m segments (kept, not dropped)
    empty_clips: int = 0  # clips in a store with no object at all (kept out of videos)

    def add(self, other: Drops) -> Drops:
        return Drops(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ClipConfig:
    fps_tolerance: float = 1.5  # a gap longer than this many frame intervals ends a clip
    min_seconds: float = 0.4
    max_segments: int = 16  # m
    segment_seconds: float = 1.0
    off_pitch_margin: float = 0.0  # metres beyond the touch/goal lines still counted as on the pitch


def clean_positions(frames: Frames, margin: float = 0.0) -> tuple[np.ndarray, Drops]:
    """Positions with half-missing and off-pitch coordinates set to NaN, and their counts.

    A point with one coordinate NaN is half-missing; an infinite or huge one (1e300 overflows float32 to inf) is
    somewhere, just not on the pitch, so it counts as off-pitch.
    """
    with np.errstate(over="ignore"):
        pos = np.array(frames.positions, dtype=np.float32, copy=True)
    nan = np.isnan(pos)
    half = nan.any(-1) & ~nan.all(-1)
    pos[half] = np.nan
    outside = pitch.off_pitch(pos, frames.pitch_length, frames.pitch_width, margin)
    pos[outside] = np.nan
    return pos, Drops(nan_coordinates=int(half.sum()), off_pitch=int(outside.sum()))


def runs(
    detected: np.ndarray, period: np.ndarray, timestamp: np.ndarray, max_gap: float, shot: np.ndarray | None = None
) -> np.ndarray:
    """[R, 2] (start, stop) frame ranges of consecutive detected frames within a period (and shot), without gaps."""
    cut = np.ones(len(detected), bool)  # frame i cannot continue a run from frame i - 1
    cut[1:] = (period[1:] != period[:-1]) | (np.diff(timestamp) > max_gap)
    if shot is not None:
        cut[1:] |= shot[1:] != shot[:-1]
    prev_detected = np.concatenate([[False], detected[:-1]])
    starts = np.flatnonzero(detected & (cut | ~prev_detected))
    ends = np.append(np.flatnonzero(~detected | cut), len(detected))
    stops = ends[np.searchsorted(ends, starts, side="right")]
    return np.stack([starts, stops], axis=1).astype(np.int64)


def split_long(start: int, stop: int, max_frames: int) -> list[tuple[int, int]]:
    """Split [start, stop) into the fewest near-equal pieces of at most max_frames frames (numpy.array_split)."""
    pieces = math.ceil((stop - start) / max_frames)
    return [(int(p[0]), int(p[-1]) + 1) for p in np.array_split(np.arange(start, stop), pieces)]


def clip_ranges(frames: Frames, positions: np.ndarray, config: ClipConfig) -> tuple[list[tuple[int, int]], Drops]:
    """Frame ranges of the clips in `frames` (positions already cleaned), with the drops this causes."""
    detected = np.isfinite(positions).all(-1).any(-1)
    drops = Drops(frames_without_detections=int((~detected).sum()))
    max_frames = round(config.max_segments * config.segment_seconds * frames.fps)
    min_frames = config.min_seconds * frames.fps - 1e-6
    ranges: list[tuple[int, int]] = []
    max_gap = config.fps_tolerance / frames.fps
    for start, stop in runs(detected, frames.period, frames.timestamp, max_gap, frames.shot):
        if stop - start < min_frames:
            drops.short_clips += 1
            drops.short_clip_frames += int(stop - start)
            continue
        pieces = split_long(int(start), int(stop), max_frames)
        drops.clips_split += len(pieces) > 1
        ranges.extend(pieces)
    return ranges, drops


SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Video:
    """A run of up to n consecutive clips of one source and period: clips first_clip .. first_clip + num_clips."""

    source_id: str
    first_clip: int
    num_clips: int
    period: int
    start: float  # seconds since the start of the period
    split: str  # one of SPLITS


def make_videos(
    source_id: str,
    clip_period: np.ndarray,
    clip_start: np.ndarray,
    usable: np.ndarray,
    clips_per_video: int = 16,
    train_fraction: float = 0.8,
    val_fraction: float = 0.0,
) -> list[Video]:
    """Group a source's usable clips into videos of up to n consecutive clips per period, then split by time.

    The first `train_fraction` of the videos in time order are "train", the rest "test": no clip is in both. The
    last `val_fraction` (of all videos) of the train time range is held out as "val", for early stopping, so that
    model selection never sees the test videos.
    Clips that are not `usable` (no object at all) break a run instead of being bridged over.
    """
    groups: list[tuple[int, int]] = []
    c, total = 0, len(clip_period)
    while c < total:
        if not usable[c]:
            c += 1
            continue
        stop = c + 1
        while stop < total and stop - c < clips_per_video and usable[stop] and clip_period[stop] == clip_period[c]:
            stop += 1
        groups.append((c, stop))
        c = stop
    order = sorted(range(len(groups)), key=lambda g: (int(clip_period[groups[g][0]]), float(clip_start[groups[g][0]])))
    n_train = math.floor(train_fraction * len(groups) + 1e-9)
    n_fit = n_train - min(math.floor(val_fraction * len(groups) + 1e-9), n_train)
    split = {g: "train" if rank < n_fit else "val" if rank < n_train else "test" for rank, g in enumerate(order)}
    return [
        Video(source_id, a, b - a, int(clip_period[a]), float(clip_start[a]), split[g])
        for g, (a, b) in enumerate(groups)
    ]


def split_groups(sizes: dict[str, int], train_fraction: float = 0.8, val_fraction: float = 0.0) -> dict[str, str]:
    """Whole groups (games, videos) → split, in proportion to their videos: groups in the order of a hash of their
    name (fixed, unrelated to content or time) fill train up to `train_fraction - val_fraction` of all videos, then
    val up to `train_fraction`, then test. A group goes where the share of videos before it falls."""
    order = sorted(sizes, key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    total, before, out = max(sum(sizes.values()), 1), 0, {}
    for group in order:
        share = before / total
        out[group] = "train" if share < train_fraction - val_fraction else "val" if share < train_fraction else "test"
        before += sizes[group]
    return out
