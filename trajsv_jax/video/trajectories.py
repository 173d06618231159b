"""Tracked foot points on the pitch → clean trajectories: implausible jumps cut, short gaps filled, jitter smoothed.

A blob's bottom edge moves with the legs, the shadow and the blobs it merges with, so raw foot points jitter by a few
pixels from frame to frame: centimetres near the camera, metres on the far touchline, where one pixel covers more
ground. Four steps, each counted in the report:
1. **Speed gate**: a point farther from the object's last kept point than a person (12 m/s, above sprint speed) or a
   ball (40 m/s, a hard shot) can move in the time between them, plus the measurement noise there (`noise_pixels`
   times the metres one pixel covers at that point), is a detection error (a box jumping onto a neighbour, a merge):
   it is removed, and the trajectory continues from the last kept point. After `reset_seconds` of rejected points
   in a row the object is taken to be where it is now seen (the earlier anchor was the error).
2. **Gaps** of up to `max_gap_seconds` inside a track (missed detections, removed jumps) are filled linearly, as
   trackers' post-processing does (ByteTrack's interpolation); longer gaps stay unseen (NaN).
3. **Smoothing**: each run of consecutive frames is smoothed with a Savitzky–Golay filter (quadratic, 0.5 s window),
   which removes jitter without the lag of a moving average; runs shorter than the window are left as they are.
4. **Stubs**: objects seen for less than `min_seconds` in all are removed: flickering clutter, not players.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy.signal import savgol_filter

from trajsv_jax.data import clips
from trajsv_jax.video import detect, track


@dataclasses.dataclass(frozen=True)
class TrajectoryConfig:
    max_person_speed: float = 12.0  # m/s
    max_ball_speed: float = 40.0  # m/s
    noise_pixels: float = 4.0  # foot-point jitter allowed on top of the speed, in image pixels
    reset_seconds: float = 0.5  # rejected points in a row after which the gate restarts from the current one
    max_gap_seconds: float = 0.4  # longest gap inside a track that is filled by interpolation
    smoothing_seconds: float = 0.5  # Savitzky–Golay window
    min_seconds: float = 0.5  # shortest total time an object must be seen to be kept


def project(tracks: list[track.Tracks], calibrations: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids [U], labels [U], positions [T, U, 2], metres_per_pixel [T, U]) of the tracks of T frames on the pitch.

    Each frame's foot points go through its own calibration (frames sharing one calibration object, all of a static
    camera's, are projected together; frames without one have no tracks); metres_per_pixel is the ground one image
    pixel covers there (the larger of its two directions), which sets the speed gate's allowance for pixel noise.
    """
    ids = np.concatenate([t.ids for t in tracks]) if tracks else np.zeros(0, np.int64)
    unique, column = np.unique(ids, return_inverse=True)
    labels = np.zeros(len(unique), np.int8)
    if len(ids):
        labels[column] = np.concatenate([t.labels for t in tracks])
    frame_of = np.concatenate([np.full(len(t), f) for f, t in enumerate(tracks)]).astype(np.int64)
    feet = np.concatenate([detect.Detections(t.boxes, t.scores, t.labels).foot_points() for t in tracks]).reshape(-1, 2)
    positions = np.full((len(tracks), len(unique), 2), np.nan, np.float32)
    metres_per_pixel = np.full((len(tracks), len(unique)), np.nan, np.float32)
    view_of = np.array([id(c) for c in calibrations])[frame_of]
    for key, geometry in {id(c): c for c in calibrations if c is not None}.items():  # None: no tracks there
        rows = view_of == key
        at = feet[rows].astype(np.float64)
        ground = geometry.image_to_pitch(at)
        positions[frame_of[rows], column[rows]] = ground
        steps = [np.linalg.norm(geometry.image_to_pitch(at + d) - ground, axis=1) for d in ((1, 0), (0, 1))]
        metres_per_pixel[frame_of[rows], column[rows]] = np.maximum(*steps)
    return unique, labels, positions, metres_per_pixel


def _gate(track: np.ndarray, allowed: np.ndarray, max_step: float, reset: int) -> np.ndarray:
    """[T] bool: points of one object's [T, 2] track kept by the speed gate; allowed [T] = noise in metres."""
    keep = np.isfinite(track).all(1)
    last, rejected = None, 0
    for t in np.flatnonzero(keep):
        too_far = last is not None and np.linalg.norm(track[t] - track[last]) > max_step * (t - last) + allowed[t]
        if too_far and rejected < reset:
            keep[t] = False
            rejected += 1
        else:
            last, rejected = t, 0
    return keep


def _fill_gaps(track: np.ndarray, max_gap: int) -> tuple[np.ndarray, int]:
    """[T, 2] track with interior gaps of at most `max_gap` frames interpolated linearly; and the points filled."""
    seen = np.flatnonzero(np.isfinite(track).all(1))
    out, filled = track.copy(), 0
    for a, b in itertools.pairwise(seen):
        if 1 < b - a <= max_gap + 1:
            w = (np.arange(a + 1, b) - a)[:, None] / (b - a)
            out[a + 1 : b] = (1 - w) * track[a] + w * track[b]
            filled += b - a - 1
    return out, filled


def _smooth_runs(track: np.ndarray, window: int) -> np.ndarray:
    """Savitzky–Golay over each run of consecutive finite points of a [T, 2] track."""
    out = track.copy()
    seen = np.isfinite(track).all(1)
    edges = np.flatnonzero(np.diff(np.r_[0, seen.astype(np.int8), 0]))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= window:
            out[start:stop] = savgol_filter(track[start:stop], window, 2, axis=0)
    return out


def clean(
    positions: np.ndarray,
    roles: np.ndarray,
    fps: float,
    metres_per_pixel: np.ndarray,
    config: TrajectoryConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(positions [T, K', 2], kept object indices [K'], counts) from [T, K, 2] centred metres (NaN = not seen).

    metres_per_pixel [T, K]: the ground one image pixel covers at each point (sets the gate's noise allowance).
    """
    config = config or TrajectoryConfig()
    window = max(3, round(config.smoothing_seconds * fps) | 1)  # odd, at least 3
    reset, max_gap = round(config.reset_seconds * fps), round(config.max_gap_seconds * fps)
    out = np.full_like(positions, np.nan)
    jumps = filled = 0
    for k in range(positions.shape[1]):
        speed = config.max_ball_speed if roles[k] == clips.ROLE_BALL else config.max_person_speed
        allowed = np.nan_to_num(config.noise_pixels * metres_per_pixel[:, k])
        keep = _gate(positions[:, k], allowed, speed / fps, reset)
        jumps += int(np.isfinite(positions[:, k]).all(1).sum() - keep.sum())
        out[keep, k] = positions[keep, k]
        out[:, k], n = _fill_gaps(out[:, k], max_gap)
        filled += n
        out[:, k] = _smooth_runs(out[:, k], window)
    seen = np.isfinite(out).all(-1).sum(0)
    kept = np.flatnonzero(seen >= config.min_seconds * fps)
    counts = {
        "implausible_jumps_removed": jumps,
        "gap_points_interpolated": filled,
        "short_tracks_removed": int(positions.shape[1] - len(kept)),
        "short_track_points_removed": int(seen.sum() - seen[kept].sum()),
    }
    return out[:, kept], kept, counts
