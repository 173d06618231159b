"""Multi-object tracking of players and the ball (ByteTrack-style); `mot_eval` scores it against ground truth.

Players (ByteTrack, Zhang et al. 2022): one constant-velocity Kalman filter per track on the box (cx, cy, w, h) with
noise proportional to the box size; association cost 1 − IoU between predicted and detected boxes, solved with the
Hungarian algorithm and gated by a minimum IoU. Stage 1 matches the high-score detections to every confirmed track
(lost ones included, so they can come back within `max_age` frames); stage 2 matches the low-score detections to the
confirmed tracks still unmatched and seen within the last few frames (`low_score_max_misses`; ByteTrack: the previous
frame only): a player half hidden behind another keeps its track
instead of being lost, while low-score boxes never start tracks, which keeps their false positives out. Stage 3
matches the remaining high-score detections to the tentative tracks; the rest start tentative tracks.

The ball needs its own handling: it is 5-10 px wide and moves tens of px a frame, so consecutive boxes do not overlap
and IoU is useless. Ball detections are matched by the distance between their centre and the Kalman-predicted centre
(constant velocity on (cx, cy)), gated by a radius that grows with the frames since the track's last hit. There is one
ball: at most one ball track is confirmed (reported); the other ball tracks are candidates, and the longest-lived
(most hits) established candidate takes over when the confirmed ball is not seen (see `Tracker._pick_ball`). Only a
candidate that has moved can: a spare ball lying still behind a goal line, always seen, would otherwise outlive the
match ball, which players hide, and take its place for good; such never-moving candidates are counted
(`Tracker.static_balls`).

A track is confirmed after `min_hits` consecutive hits and only then gets an id: ids are unique across classes and
stable for the track's life. `Tracker.update` reports the confirmed tracks matched in the frame, with their detection
boxes (not the filtered ones: the filter lags behind a player who stops or turns, and the front end smooths
trajectories on the pitch later).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from filterpy.common import Q_discrete_white_noise
from filterpy.kalman import KalmanFilter
from scipy.optimize import linear_sum_assignment

from trajsv_jax.errors import UserError
from trajsv_jax.video.detect import LABEL_BALL, LABEL_PERSON, Detections

# Player filter noise as a fraction of the box size per frame (ByteTrack's / BoT-SORT's values).
_STD_POSITION, _STD_VELOCITY = 1 / 20, 1 / 160
_BALL_MEASURE_PX = 2.0  # standard deviation of a detected ball centre
_INFEASIBLE = 1e6  # cost of a pair outside the gate: the assignment takes one only when it must, and drops it


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """Thresholds of `Tracker`; the defaults are ByteTrack's (MOT17) where it has one. Scores are in [0, 1]."""

    high_score: float = 0.5  # detections at or above it: stage 1 (and they may start tracks)
    low_score: float = 0.1  # [low_score, high_score): stage 2 only; below: ignored. = high_score turns stage 2 off
    new_track_score: float = 0.6  # an unmatched high-score detection starts a track only from this score
    match_iou: float = 0.2  # stage 1: least IoU of a predicted and a detected box to match
    low_match_iou: float = 0.5  # stage 2: stricter, low-score boxes are less trustworthy
    # Stage 2 serves confirmed tracks unseen for at most this many frames. ByteTrack: 0 (seen in the previous frame
    # only); 5 keeps a player through a short occlusion where one missed frame would otherwise lose him for good
    # (benchmarks/tracking.py, RESULTS.md: IDF1 and id switches with 0 and 5).
    low_score_max_misses: int = 5
    tentative_match_iou: float = 0.3  # stage 3: tentative tracks have no velocity yet
    max_age: int = 30  # frames a confirmed player track is kept unseen for re-association, then it dies
    min_hits: int = 3  # consecutive hits that confirm a track; tentative tracks die at their first miss
    ball_new_track_score: float = 0.3  # ball detectors are less confident: a lower bar to start a ball track
    ball_gate_px: float = 40.0  # a ball detection matches if its centre is this close to the predicted one...
    ball_gate_growth_px: float = 15.0  # ... plus this for every frame missed since the track's last hit
    ball_accel_px: float = 8.0  # standard deviation of the ball's velocity change per frame (process noise)
    ball_max_age: int = 10  # frames a ball track is kept unseen
    ball_moved_widths: float = 1.0  # a ball track may be the ball once it moved this many box widths from its start

    def validate(self) -> None:
        """Raise UserError naming the inconsistent thresholds."""
        problems = []
        if not 0 <= self.low_score <= self.high_score <= 1:
            problems.append(f"need 0 <= low_score ({self.low_score}) <= high_score ({self.high_score}) <= 1")
        if self.new_track_score < self.high_score:
            problems.append(f"new_track_score ({self.new_track_score}) is below high_score ({self.high_score})")
        if self.ball_new_track_score < self.low_score:
            problems.append(f"ball_new_track_score ({self.ball_new_track_score}) is below low_score ({self.low_score})")
        for name in ("match_iou", "low_match_iou", "tentative_match_iou"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} ({getattr(self, name)}) is not in (0, 1]")
        for name in ("max_age", "min_hits", "ball_max_age"):
            if getattr(self, name) < 1:
                problems.append(f"{name} ({getattr(self, name)}) is below 1")
        if self.low_score_max_misses < 0:
            problems.append(f"low_score_max_misses ({self.low_score_max_misses}) is below 0")
        if self.ball_moved_widths < 0:
            problems.append(f"ball_moved_widths ({self.ball_moved_widths}) is below 0")
        if problems:
            raise UserError(
                f"tracker settings: {'; '.join(problems)}. Fix these values (`trajsv preprocess --set "
                "tracker.NAME=VALUE`; defaults: TrackerConfig())."
            )


@dataclasses.dataclass
class Tracks:
    """The confirmed tracks matched in one frame: their ids, and which detections they matched (box, label, score)."""

    ids: np.ndarray  # [M] int64, unique across classes, stable over a track's life
    boxes: np.ndarray  # [M, 4] float32 x0, y0, x1, y1 pixels: the matched detection's box
    labels: np.ndarray  # [M] int8 LABEL_BALL or LABEL_PERSON
    scores: np.ndarray  # [M] float32 the matched detection's score
    detections: np.ndarray  # [M] int64 index of the matched detection in the frame's Detections

    @classmethod
    def empty(cls) -> Tracks:
        return cls(
            np.zeros(0, np.int64),
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.int8),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
        )

    def __len__(self) -> int:
        return len(self.ids)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of boxes a [N, 4] and b [M, 4] (x0, y0, x1, y1)."""
    a, b = a[:, None, :], b[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def _assign(cost: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost matching (rows, cols) over the allowed pairs only (Hungarian algorithm)."""
    if cost.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = linear_sum_assignment(np.where(allowed, cost, _INFEASIBLE))
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


class _Track:
    """One tracked object: its Kalman filter, its last detection and its hit/miss counts."""

    def __init__(self, kf: KalmanFilter, dets: Detections, k: int, label: int):
        self.kf, self.label = kf, label
        self._take(dets, k)
        self.start = self.box  # the first box: whether the object ever moved from it (balls)
        self.moved = False
        self.id = 0  # given at confirmation
        self.hits = 1  # detections matched (consecutive while tentative)
        self.misses = 0  # frames since the last hit

    def _take(self, dets: Detections, k: int) -> None:
        """Remember detection k of `dets` (the class's detections of this frame) as the last one matched."""
        self.box, self.score, self.detection = dets.boxes[k], float(dets.scores[k]), int(k)

    def hit(self, z: np.ndarray, dets: Detections, k: int, r: np.ndarray) -> None:
        self.kf.update(z, R=r)
        self._take(dets, k)
        self.hits += 1
        self.misses = 0


def _cxcywh(boxes: np.ndarray) -> np.ndarray:
    return np.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2,
            (boxes[:, 1] + boxes[:, 3]) / 2,
            boxes[:, 2] - boxes[:, 0],
            boxes[:, 3] - boxes[:, 1],
        ],
        axis=1,
    ).astype(np.float64)


def _person_noise(w: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Process noise Q [8, 8] and measurement noise R [4, 4] of a player box of size w x h."""
    pos = np.array([w, h, w, h]) * _STD_POSITION
    return np.diag(np.concatenate([pos, np.array([w, h, w, h]) * _STD_VELOCITY]) ** 2), np.diag(pos**2)


def _person_filter(z: np.ndarray) -> KalmanFilter:
    """Constant-velocity filter on (cx, cy, w, h) started at measurement z, velocity 0 and uncertain."""
    kf = KalmanFilter(dim_x=8, dim_z=4)
    kf.F = np.eye(8)
    kf.F[:4, 4:] = np.eye(4)
    kf.H = np.eye(4, 8)
    kf.x = np.concatenate([z, np.zeros(4)])[:, None]
    size = np.array([z[2], z[3], z[2], z[3]])
    kf.P = np.diag(np.concatenate([2 * _STD_POSITION * size, 10 * _STD_VELOCITY * size]) ** 2)
    return kf


class Tracker:
    """Online tracker: feed it every frame's detections in order with `update`; see the module doc for the method."""

    def __init__(self, config: TrackerConfig | None = None, first_id: int = 1):
        """first_id: the id the first confirmed track gets (trackers of successive clips continue each other's ids)."""
        self.config = config or TrackerConfig()
        self.config.validate()
        self.persons: list[_Track] = []  # confirmed (tracked or lost) and tentative
        self.balls: list[_Track] = []  # candidates; the confirmed ball is self.ball
        self.ball: _Track | None = None
        self.next_id = first_id  # the id the next confirmed track gets
        self._static_ended = 0  # established ball candidates that ended without ever moving
        self._ball_q = Q_discrete_white_noise(
            dim=2, dt=1.0, var=self.config.ball_accel_px**2, block_size=2, order_by_dim=False
        )
        self._ball_r = np.eye(2) * _BALL_MEASURE_PX**2

    def update(self, detections: Detections) -> Tracks:
        """Advance one frame: predict, associate `detections`, start and end tracks; the confirmed tracks matched."""
        c = self.config
        scores = detections.scores
        person = (detections.labels == LABEL_PERSON) & (scores >= c.low_score)
        ball = (detections.labels == LABEL_BALL) & (scores >= c.low_score)
        out = self._update_persons(detections.select(person)) + self._update_balls(detections.select(ball))
        if not out:
            return Tracks.empty()
        out.sort(key=lambda t: t.id)
        origin = {LABEL_PERSON: np.flatnonzero(person), LABEL_BALL: np.flatnonzero(ball)}
        return Tracks(
            np.array([t.id for t in out], np.int64),
            np.array([t.box for t in out], np.float32).reshape(-1, 4),
            np.array([t.label for t in out], np.int8),
            np.array([t.score for t in out], np.float32),
            np.array([origin[t.label][t.detection] for t in out], np.int64),
        )

    # ------------------------------------------------------------------------------------------------------ players

    def _update_persons(self, dets: Detections) -> list[_Track]:
        c = self.config
        for t in self.persons:
            if t.misses:
                t.kf.x[6:8] = 0  # a lost player keeps his size (ByteTrack)
            t.kf.predict(Q=_person_noise(*t.kf.x[2:4, 0])[0])
        z = _cxcywh(dets.boxes)
        high = np.flatnonzero(dets.scores >= c.high_score)
        low = np.flatnonzero(dets.scores < c.high_score)
        confirmed = [t for t in self.persons if t.id]
        tentative = [t for t in self.persons if not t.id]
        matched: list[_Track] = []

        def match(tracks: list[_Track], det_index: np.ndarray, min_iou: float) -> tuple[list[_Track], np.ndarray]:
            """Match tracks to dets[det_index] by IoU; the unmatched tracks and detection indices."""
            overlap = iou(self._predicted_boxes(tracks), dets.boxes[det_index])
            rows, cols = _assign(1 - overlap, overlap >= min_iou)
            for r, k in zip(rows, det_index[cols], strict=True):
                w, h = z[k, 2], z[k, 3]
                tracks[r].hit(z[k], dets, k, _person_noise(w, h)[1])
                matched.append(tracks[r])
            hit_rows = set(rows.tolist())
            return [t for i, t in enumerate(tracks) if i not in hit_rows], np.delete(det_index, cols)

        unmatched, high = match(confirmed, high, c.match_iou)
        recent = [t for t in unmatched if t.misses <= c.low_score_max_misses]  # long-lost tracks take no low box
        match(recent, low, c.low_match_iou)
        still_tentative, high = match(tentative, high, c.tentative_match_iou)
        dead = {id(t) for t in still_tentative}
        for t in self.persons:
            if t not in matched:
                t.misses += 1
                if t.misses > c.max_age:
                    dead.add(id(t))
        self.persons = [t for t in self.persons if id(t) not in dead]
        for k in high[dets.scores[high] >= c.new_track_score]:
            t = _Track(_person_filter(z[k]), dets, k, LABEL_PERSON)
            self.persons.append(t)
            matched.append(t)
        for t in matched:
            if not t.id and t.hits >= c.min_hits:
                t.id, self.next_id = self.next_id, self.next_id + 1
        return [t for t in matched if t.id]

    @staticmethod
    def _predicted_boxes(tracks: list[_Track]) -> np.ndarray:
        if not tracks:
            return np.zeros((0, 4))
        cx, cy, w, h = np.array([t.kf.x[:4, 0] for t in tracks]).T
        w, h = np.maximum(w, 1), np.maximum(h, 1)
        return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)

    # --------------------------------------------------------------------------------------------------------- ball

    def _ball_filter(self, centre: np.ndarray) -> KalmanFilter:
        """Constant-velocity filter on (cx, cy, vx, vy) started at `centre`, velocity 0 ± the largest gate."""
        kf = KalmanFilter(dim_x=4, dim_z=2)
        kf.F = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)
        kf.H = np.eye(2, 4)
        kf.Q = self._ball_q
        kf.x = np.concatenate([centre, np.zeros(2)])[:, None]
        kf.P = np.diag([_BALL_MEASURE_PX**2] * 2 + [self.config.ball_gate_px**2] * 2)
        return kf

    def _update_balls(self, dets: Detections) -> list[_Track]:
        """Associate ball detections by gated centre distance: the confirmed ball first, then the candidates."""
        c = self.config
        tracks = ([self.ball] if self.ball else []) + self.balls
        for t in tracks:
            t.kf.predict()
        centres = _cxcywh(dets.boxes)[:, :2]
        free = np.arange(len(dets))
        matched: list[_Track] = []
        for group in ([self.ball] if self.ball else [], self.balls):
            if not group:
                continue
            predicted = np.array([t.kf.x[:2, 0] for t in group])
            dist = np.linalg.norm(predicted[:, None] - centres[free][None], axis=-1)
            gate = c.ball_gate_px + c.ball_gate_growth_px * np.array([t.misses for t in group])
            rows, cols = _assign(dist, dist <= gate[:, None])
            for r, k in zip(rows, free[cols], strict=True):
                group[r].hit(centres[k], dets, k, self._ball_r)
                matched.append(group[r])
            free = np.delete(free, cols)
        for t in tracks:
            if t not in matched:
                t.misses += 1
            elif not t.moved:
                shift = (t.box[:2] + t.box[2:] - t.start[:2] - t.start[2:]) / 2  # of the box centre since the start
                t.moved = bool(np.linalg.norm(shift) > c.ball_moved_widths * (t.start[2] - t.start[0]))
        alive = [t for t in self.balls if t in matched or (t.hits >= c.min_hits and t.misses <= c.ball_max_age)]
        self._static_ended += sum(self._static(t) for t in self.balls if t not in alive)
        self.balls = alive
        if self.ball and self.ball.misses > c.ball_max_age:
            self.ball = None
        for k in free[dets.scores[free] >= c.ball_new_track_score]:
            t = _Track(self._ball_filter(centres[k]), dets, k, LABEL_BALL)
            self.balls.append(t)
            matched.append(t)
        self._pick_ball(matched)
        return [self.ball] if self.ball and self.ball in matched else []

    def _static(self, t: _Track) -> bool:
        """Whether a ball candidate is established (min_hits) and never moved: never the ball (`_pick_ball`)."""
        return t.hits >= self.config.min_hits and not t.moved

    @property
    def static_balls(self) -> int:
        """Established ball candidates that never moved, so were never reported (a spare ball, a spot, clutter)."""
        return self._static_ended + sum(self._static(t) for t in self.balls)

    def _pick_ball(self, matched: list[_Track]) -> None:
        """One confirmed ball: the longest-lived established candidate seen now replaces a missing or younger ball.

        An established candidate has `min_hits` hits and has moved (`ball_moved_widths`). If the confirmed ball was not
        matched this frame and such a candidate was, the one with the most hits (then the best score) becomes the ball
        when it has more hits than the current ball or there is none; the old ball track is dropped. A brief false
        positive thus never takes over a ball tracked for long, a ball track stuck on a false positive gives way once
        the real ball has been followed for longer, and a ball lying still never takes over.
        """
        if self.ball and self.ball in matched:
            return
        ready = [t for t in self.balls if t in matched and t.hits >= self.config.min_hits and t.moved]
        if not ready:
            return
        best = max(ready, key=lambda t: (t.hits, t.score))
        if self.ball is None or best.hits > self.ball.hits:
            self.balls.remove(best)
            self.ball = best
            if not best.id:
                best.id, self.next_id = self.next_id, self.next_id + 1
