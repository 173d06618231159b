"""Team of each tracked player from the colours of the shirt: two groups of kits, the rest "other".

Each person detection's torso (the box's rows 15-50 % from the top, its middle half across) is sampled, and pixels
of the grass's colour left out (within `GRASS_CHROMA` of the frame's median grass chroma in CIELAB, which also
catches sunlit or shaded grass outside the pitch-colour range); a torso with less than `MIN_SHIRT_SHARE` of other
pixels (a far-away box mostly of grass: clutter) gives nothing. A shirt is several colours (body, sleeves, numbers,
shadow), so a mean colour mixes them: instead the kept pixels of all tracks are quantised into `COLOUR_WORDS`
colours (k-means in CIELAB, lightness included: a white kit and a blue one differ in chroma less than in lightness
under a camera that renders white bluish, and white and black kits differ in lightness only), and a track is its
histogram over those colours (square-rooted: the Hellinger distance). The histograms are split into two groups by
2-means weighted by the frames each track was seen (the two teams' outfield players are the two big groups); a track
far from both centres (over `OUTLIER_FACTOR` times its group's median distance) is a referee or a goalkeeper, and a
track with fewer than `MIN_FRAMES` sampled torsos is unknown: both role "other". Team A is the group seen longer.
"""

from __future__ import annotations

import itertools

import cv2
import numpy as np

from trajsv_jax.data import clips
from trajsv_jax.video import shots

TORSO_ROWS, TORSO_COLUMNS = (0.15, 0.5), (0.25, 0.75)  # fractions of the box
GRASS_CHROMA = 12.0  # Lab (a, b) distance to the grass's chroma under which a pixel is grass
MIN_SHIRT_SHARE = 0.3  # of a torso's pixels, not grass, for the torso to count
PIXELS_PER_TORSO = 24  # at most, evenly spaced, uint8 Lab: 72 bytes a detection, ~225 MB for a whole match's boxes
PALETTE_SAMPLE = 200_000  # pixels the colour words are fitted on (a seeded sample of all of them)
COLOUR_WORDS = 8
MIN_FRAMES = 3  # a track needs this many sampled torsos to be given a team
OUTLIER_FACTOR = 2.5
MIN_OUTLIER_DISTANCE = 0.15  # Hellinger units: tracks closer than this to a centre are never outliers


def grass_chroma(frame: np.ndarray, view: shots.ViewConfig) -> np.ndarray:
    """[2] median Lab (a, b) of the frame's pitch-coloured pixels (on a 160-wide copy); grey if there are none."""
    small = cv2.resize(frame, (160, max(1, round(frame.shape[0] * 160 / frame.shape[1]))), interpolation=cv2.INTER_AREA)
    grass = shots.pitch_mask(cv2.cvtColor(small, cv2.COLOR_BGR2HSV), view) > 0
    if not grass.any():
        return np.array([128.0, 128.0], np.float32)
    return np.median(cv2.cvtColor(small, cv2.COLOR_BGR2LAB)[grass][:, 1:].astype(np.float32), axis=0)


def torso_pixels(frame: np.ndarray, boxes: np.ndarray, view: shots.ViewConfig) -> list[np.ndarray]:
    """Per box, [P, 3] uint8 Lab (L, a, b) of its torso pixels that are not grass ([0, 3] when too few are).

    Lightness is kept: with chroma alone the SoccerTrack left camera's white kit (rendered bluish, its shade near the
    blue kit's chroma) was mixed with the blue one, and white and black kits could not be told apart at all.
    """
    out = [np.zeros((0, 3), np.uint8) for _ in boxes]
    if len(boxes) == 0:
        return out
    grass = grass_chroma(frame, view)
    height, width = frame.shape[:2]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        h, w = y1 - y0, x1 - x0
        r0, r1 = (int(np.clip(y0 + f * h, 0, height)) for f in TORSO_ROWS)
        c0, c1 = (int(np.clip(x0 + f * w, 0, width)) for f in TORSO_COLUMNS)
        crop = frame[r0:r1, c0:c1]
        if crop.size == 0:
            continue
        lab = cv2.cvtColor(crop, cv2.COLOR_BGR2LAB).reshape(-1, 3)
        shirt = lab[np.linalg.norm(lab[:, 1:] - grass, axis=1) > GRASS_CHROMA]
        if len(shirt) >= MIN_SHIRT_SHARE * len(lab):
            step = max(1, len(shirt) // PIXELS_PER_TORSO)
            out[i] = shirt[::step][:PIXELS_PER_TORSO]
    return out


def _two_means(points: np.ndarray, weights: np.ndarray, starts: int = 8, iterations: int = 20) -> np.ndarray:
    """[N] group (0/1) of weighted points: Lloyd's 2-means from every pair of the `starts` heaviest points, the
    partition with the least weighted within-group sum of squares (one start from the two farthest points can leave
    a lone outlier, e.g. a goalkeeper, as a group)."""
    heavy = np.argsort(-weights)[:starts]
    best, best_cost = np.zeros(len(points), np.int64), np.inf
    for i, j in itertools.combinations(heavy, 2):
        centres = points[[i, j]].copy()
        for _ in range(iterations):
            group = np.argmin(np.linalg.norm(points[:, None] - centres[None], axis=-1), axis=1)
            for c in (0, 1):
                if (group == c).any():
                    centres[c] = np.average(points[group == c], axis=0, weights=weights[group == c])
        cost = float(np.sum(weights * np.linalg.norm(points - centres[group], axis=1) ** 2))
        if cost < best_cost:
            best, best_cost = group, cost
    return best


def assign(samples: dict[int, list[np.ndarray]]) -> dict[int, int]:
    """clips.ROLE_TEAM_A / ROLE_TEAM_B / ROLE_OTHER of each track id, from its torsos' pixels (`torso_pixels`)."""
    roles = {i: clips.ROLE_OTHER for i in samples}
    ids = [i for i, torsos in samples.items() if sum(len(t) > 0 for t in torsos) >= MIN_FRAMES]
    if len(ids) < 2:
        return roles
    pixels = [np.concatenate(samples[i]).astype(np.float32) for i in ids]
    everything = np.concatenate(pixels)
    if len(everything) > PALETTE_SAMPLE:
        everything = everything[np.random.default_rng(0).choice(len(everything), PALETTE_SAMPLE, replace=False)]
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, 50, 0.5)
    words = min(COLOUR_WORDS, len(everything))
    _, _, palette = cv2.kmeans(everything, words, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    histograms = np.array(
        [np.bincount(np.argmin(((p[:, None] - palette[None]) ** 2).sum(-1), axis=1), minlength=words) for p in pixels],
        np.float64,
    )
    points = np.sqrt(histograms / histograms.sum(1, keepdims=True))
    weights = np.array([sum(len(t) > 0 for t in samples[i]) for i in ids], np.float64)
    cluster = _two_means(points, weights)
    team_a = int(weights[cluster == 1].sum() > weights[cluster == 0].sum())
    for c in (0, 1):
        members = np.flatnonzero(cluster == c)
        if len(members) == 0:
            continue
        centre = np.average(points[members], axis=0, weights=weights[members])
        distance = np.linalg.norm(points[members] - centre, axis=1)
        limit = max(OUTLIER_FACTOR * np.median(distance), MIN_OUTLIER_DISTANCE)
        for m, d in zip(members, distance, strict=True):
            if d <= limit:
                roles[ids[m]] = clips.ROLE_TEAM_A if c == team_a else clips.ROLE_TEAM_B
    return roles
