"""Trajectory tokenization (paper IV-B, play2vec): 1 s segments → binary cell grids → Jaccard tokens."""

from __future__ import annotations

import numpy as np


def num_segments(frames: int, fps: float, seconds: float = 1.0) -> int:
    """Segments in a clip of `frames` frames: round(T / (fps * seconds)), at least 1 (Python's round, as play2vec)."""
    return max(1, round(frames / (fps * seconds)))


def segment_bounds(frames: int, fps: float, seconds: float = 1.0) -> np.ndarray:
    """[S + 1] frame offsets of the near-equal segments of a clip (numpy.array_split's rule: longer pieces first)."""
    pieces = num_segments(frames, fps, seconds)
    q, r = divmod(frames, pieces)
    sizes = np.full(pieces, q, np.int64)
    sizes[:r] += 1
    return np.concatenate([[0], np.cumsum(sizes)])
