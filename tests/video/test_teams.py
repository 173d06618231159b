"""Teams from kit colours: torso pixels without the grass, colour histograms, two groups and the outliers."""

from __future__ import annotations

import numpy as np

from trajsv_jax.data import clips
from trajsv_jax.video import shots, teams

GRASS_BGR = (40, 140, 60)
KITS_BGR = {"blue": (200, 80, 20), "red": (30, 30, 210), "yellow": (20, 220, 230)}


def player(frame: np.ndarray, x: int, y: int, kit: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Draw a 20 x 60 px player (shirt over shorts and legs) with some shading noise; its box."""
    frame[y : y + 30, x : x + 20] = np.clip(np.array(kit) + rng.normal(0, 12, (30, 20, 3)), 0, 255)
    frame[y + 30 : y + 60, x + 4 : x + 16] = (235, 235, 235)  # white shorts and socks, the same for both teams
    return np.array([x, y, x + 20, y + 60], np.float32)


def test_two_kits_are_two_teams_and_the_referee_is_other():
    rng = np.random.default_rng(0)
    kits = ["blue"] * 5 + ["red"] * 5 + ["yellow"]
    samples: dict[int, list[np.ndarray]] = {i: [] for i in range(len(kits) + 1)}
    for _ in range(6):  # frames
        frame = np.zeros((300, 800, 3), np.uint8) + np.array(GRASS_BGR, np.uint8)
        boxes = [player(frame, 20 + 70 * i, 100, KITS_BGR[k], rng) for i, k in enumerate(kits)]
        boxes.append(np.array([780, 100, 800, 160], np.float32))  # a box of grass only: clutter
        for i, torso in enumerate(teams.torso_pixels(frame, np.array(boxes), shots.ViewConfig())):
            samples[i].append(torso)
    assert len(samples[len(kits)][0]) == 0  # the grass-only box gives no pixels
    roles = teams.assign(samples)
    blue, red = {roles[i] for i in range(5)}, {roles[i] for i in range(5, 10)}
    assert len(blue) == 1 and len(red) == 1 and blue | red == {clips.ROLE_TEAM_A, clips.ROLE_TEAM_B}
    assert roles[10] == clips.ROLE_OTHER  # the referee's yellow is far from both kits
    assert roles[11] == clips.ROLE_OTHER  # no shirt pixels at all


def test_too_few_tracks_or_frames_leave_everyone_other():
    one = {7: [np.full((10, 2), 150.0, np.float32)] * 5}
    assert teams.assign(one) == {7: clips.ROLE_OTHER}
    brief = {1: [np.full((10, 2), 150.0, np.float32)] * 2, 2: [np.full((10, 2), 100.0, np.float32)] * 2}
    assert teams.assign(brief) == {1: clips.ROLE_OTHER, 2: clips.ROLE_OTHER}
