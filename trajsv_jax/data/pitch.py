"""Pitch geometry: the 105 x 68 m frame of reference, its cell grid, and provider coordinates → centred metres.

Every position in trajsv-jax is in centred metres: origin at the centre spot, x along the long side in
[-L/2, L/2], y along the short side in [-W/2, W/2], y pointing "up" (towards the left touchline as seen from the
goal at x = -L/2). L and W are the file's own pitch dimensions; the tokenization grid is `field.Grid` (the
paper's 105 x 68 m).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

PITCH_LENGTH = 105.0
PITCH_WIDTH = 68.0


def to_centred_metres(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    length: float,
    width: float,
    y_down: bool,
) -> np.ndarray:
    """Linear map of a provider's coordinates (x in x_range, y in y_range) onto centred metres → [..., 2] float32.

    x_range/y_range are the provider's coordinates of the pitch edges; `y_down` is True when the provider's y grows
    towards the bottom touchline (Metrica, kloppy's normalised system). Coordinates that already are centred metres
    of the same pitch (SkillCorner, PFF, Hawk-Eye, ...) are only cast, so that no value moves by a rounding error.
    """
    if not y_down and tuple(x_range) == (-length / 2, length / 2) and tuple(y_range) == (-width / 2, width / 2):
        return np.stack([np.asarray(x, np.float32), np.asarray(y, np.float32)], axis=-1)
    u = (np.asarray(x, np.float64) - x_range[0]) / (x_range[1] - x_range[0])
    v = (np.asarray(y, np.float64) - y_range[0]) / (y_range[1] - y_range[0])
    if y_down:
        v = 1.0 - v
    return np.stack([(u - 0.5) * length, (v - 0.5) * width], axis=-1).astype(np.float32)


def off_pitch(positions: np.ndarray, length: float, width: float, margin: float = 0.0) -> np.ndarray:
    """Bool mask [...] of finite positions [..., 2] outside the pitch (plus `margin` metres around it)."""
    x, y = positions[..., 0], positions[..., 1]
    with np.errstate(invalid="ignore"):
        return (np.abs(x) > length / 2 + margin) | (np.abs(y) > width / 2 + margin)


def markings(length: float = PITCH_LENGTH, width: float = PITCH_WIDTH, step: float = 0.5) -> list[np.ndarray]:
    """The painted lines of a pitch (IFAB dimensions) as polylines [P, 2] in centred metres, one point every `step` m.

    Dense points let a lens-distorted camera model bend them: plots draw them, the video front end masks them out.
    """
    hl, hw = length / 2, width / 2

    def segment(a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
        n = max(2, math.ceil(math.dist(a, b) / step) + 1)
        return np.linspace(a, b, n)

    def arc(centre: tuple[float, float], radius: float, start: float, stop: float) -> np.ndarray:
        angles = np.linspace(start, stop, max(8, math.ceil(radius * abs(stop - start) / step) + 1))
        return np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)

    def rectangle(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        return np.concatenate([segment(a, b)[:-1] for a, b in itertools.pairwise(corners)] + [np.array([corners[0]])])

    lines = [rectangle(-hl, -hw, hl, hw), segment((0, -hw), (0, hw)), arc((0, 0), 9.15, 0, 2 * math.pi)]
    for side in (-1, 1):
        goal_line = side * hl
        lines.append(rectangle(goal_line, -20.16, goal_line - side * 16.5, 20.16))
        lines.append(rectangle(goal_line, -9.16, goal_line - side * 5.5, 9.16))
        spot = goal_line - side * 11.0
        half_angle = math.acos(5.5 / 9.15)  # the arc outside the penalty area: 16.5 m - 11 m = 5.5 m from the spot
        facing = 0.0 if side < 0 else math.pi
        lines.append(arc((spot, 0.0), 9.15, facing - half_angle, facing + half_angle))
    return lines
