"""Cleaning tracked foot points on the pitch: the speed gate, gap filling, smoothing and the removal of stubs."""

from __future__ import annotations

import numpy as np

from trajsv_jax.data import clips
from trajsv_jax.video import trajectories

FPS = 25.0


def walk(frames: int, speed: float = 5.0) -> np.ndarray:
    """[T, 2] a player running along x at `speed` m/s."""
    t = np.arange(frames) / FPS
    return np.stack([-20 + speed * t, np.full(frames, 3.0)], axis=1)


def test_jitter_is_smoothed_and_a_jump_is_removed_and_filled():
    rng = np.random.default_rng(0)
    truth = walk(100)
    seen = truth + rng.normal(0, 0.05, truth.shape)  # 2.5 px of jitter at 2 cm a pixel
    seen[40] += (6.0, -4.0)  # a box that jumped onto a neighbour for one frame
    positions = seen[:, None].astype(np.float32)
    mpp = np.full((100, 1), 0.02, np.float32)  # 2 cm a pixel: near the camera
    out, kept, counts = trajectories.clean(positions, np.array([clips.ROLE_OTHER]), FPS, mpp)
    assert kept.tolist() == [0] and counts["implausible_jumps_removed"] == 1
    assert counts["gap_points_interpolated"] == 1 and np.isfinite(out).all()
    error_raw = np.abs(np.delete(seen - truth, 40, axis=0)).mean()
    error = np.abs(out[:, 0] - truth).mean()
    assert error < 0.6 * error_raw  # smoothing removes most of the jitter without lagging the run


def test_far_from_the_camera_the_gate_allows_for_pixel_noise():
    truth = walk(50)
    seen = truth.copy()
    seen[1::2, 1] += 1.2  # a 2-pixel jitter at 0.6 m a pixel on the far touchline: 1.2 m up and down
    positions = seen[:, None].astype(np.float32)
    roles = np.array([clips.ROLE_OTHER])
    far = trajectories.clean(positions, roles, FPS, np.full((50, 1), 0.6, np.float32))[2]
    near = trajectories.clean(positions, roles, FPS, np.full((50, 1), 0.02, np.float32))[2]
    assert far["implausible_jumps_removed"] == 0
    assert near["implausible_jumps_removed"] > 10  # the same jumps next to the camera are not a person's motion


def test_the_ball_may_move_faster_and_stubs_are_removed():
    shot = walk(30, speed=25.0)  # a 25 m/s pass: too fast for a player, fine for the ball
    stub = np.full((30, 2), np.nan)
    stub[:5] = (10.0, 10.0)  # seen for 0.2 s only
    positions = np.stack([shot, shot, stub], axis=1).astype(np.float32)
    roles = np.array([clips.ROLE_BALL, clips.ROLE_OTHER, clips.ROLE_OTHER])
    mpp = np.full((30, 3), 0.02, np.float32)
    out, kept, counts = trajectories.clean(positions, roles, FPS, mpp)
    assert np.isfinite(out[:, 0]).all()  # the ball's run is intact
    # As a player the same run is too fast: the gate keeps one point each time it restarts after 0.5 s (12 frames) of
    # rejections (frames 0, 13 and 26), which leaves a stub; the stub of 5 frames goes too.
    assert kept.tolist() == [0]
    assert counts["implausible_jumps_removed"] == 27 and counts["short_tracks_removed"] == 2
    assert counts["short_track_points_removed"] == 3 + 5
