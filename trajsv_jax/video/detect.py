"""Player and ball detection: what every detector returns (`Detections`) and the detectors."""

from __future__ import annotations

import abc
import dataclasses
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from trajsv_jax.data import pitch
from trajsv_jax.errors import UserError
from trajsv_jax.video import shots

LABEL_BALL, LABEL_PERSON = 0, 1
REBUILD_PX = 3.0  # a new calibration that moves the view by more (px at the analysed size) redraws a detector's masks
VIEW_POINTS = np.concatenate(pitch.markings(step=2.0))  # where the view is measured: the painted lines, every 2 m


@dataclasses.dataclass
class Detections:
    """Boxes found in one frame, in pixels of the frame they were found in."""

    boxes: np.ndarray  # [N, 4] float32 x0, y0, x1, y1
    scores: np.ndarray  # [N] float32 confidence in [0, 1]
    labels: np.ndarray  # [N] int8 LABEL_BALL or LABEL_PERSON

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int8))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, keep: np.ndarray) -> Detections:
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def foot_points(self) -> np.ndarray:
        """[N, 2] image points that touch the ground: bottom centre of a person, centre of a ball."""
        x = (self.boxes[:, 0] + self.boxes[:, 2]) / 2
        bottom = np.where(self.labels == LABEL_BALL, (self.boxes[:, 1] + self.boxes[:, 3]) / 2, self.boxes[:, 3])
        return np.stack([x, bottom], axis=1)


@dataclasses.dataclass(frozen=True)
class PitchColourConfig:
    """Settings of the weight-free detector. Sizes in metres become pixels through the calibration."""

    person_height: float = 1.8  # metres
    height_tolerance: float = 0.5  # log-scale spread of a person's blob height around the expected one
    min_person_fraction: float = 0.35  # smallest blob, as a fraction of the expected height, that may be a person
    max_width_ratio: float = 1.3  # wider blobs (relative to height) are split into several people
    ball_diameter: float = 0.22  # metres
    min_fill: float = 0.2  # blob area / box area: thin diagonal strokes (lines, shadows) fall below
    line_mask_metres: float = 0.3  # painted lines are masked this wide on each side of their centre line
    pitch_margin: float = 2.0  # metres around the lines where feet still count (throw-ins, corners)
    min_grass_share: float = 0.5  # of the visible pitch area: below it the frame does not show this view's grass
    rebuild_px: float = REBUILD_PX  # set_geometry redraws the masks when the view moved by more (px)


class _FollowsView(abc.ABC):
    """A detector whose masks are drawn from the calibration (`_draw`) and follow a moving camera (`set_geometry`).

    Drawing them (whole-frame masks from every painted line) costs about as much as detecting, while a panning camera
    moves the view by a few pixels a frame: the masks are redrawn only when the view has moved by more than
    `rebuild_px` since they were drawn.
    """

    frame_size: tuple[int, int]
    rebuild_px: float
    geometry: Any = None  # the calibration of the current frames
    rebuilds: int = 0  # times set_geometry redrew the masks
    _drawn: tuple[np.ndarray, np.ndarray] | None = None  # VIEW_POINTS' pixels and visibility when they were drawn

    @abc.abstractmethod
    def _draw(self, geometry) -> None:
        """Draw the masks for `geometry`."""

    def _adopt(self, geometry) -> None:
        self.geometry = geometry
        self._drawn = _view(geometry, self.frame_size)
        self._draw(geometry)

    def set_geometry(self, geometry) -> bool:
        """Use `geometry` (a calibration at the frame size) from the next frame on; True if the masks were redrawn."""
        if geometry is self.geometry and self._drawn is not None:  # a static camera's: nothing to measure
            return False
        self.geometry = geometry
        if self._drawn is not None and self.view_shift(geometry) <= self.rebuild_px:
            return False
        self._adopt(geometry)
        self.rebuilds += 1
        return True

    def view_shift(self, geometry) -> float:
        """How far (px) `geometry` moves the painted lines seen in the frame from where the masks were drawn.

        The largest move of a line point seen under either calibration; infinite when one loses it behind the camera.
        """
        if self._drawn is None:
            return np.inf
        (before, seen_before), (after, seen_after) = self._drawn, _view(geometry, self.frame_size)
        seen = seen_before | seen_after
        moves = np.nan_to_num(np.linalg.norm(after[seen] - before[seen], axis=1), nan=np.inf)
        return float(moves.max(initial=0.0))


def _view(geometry, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """VIEW_POINTS' image pixels under `geometry` and whether the frame shows them (`Calibration.sees`)."""
    pixels = geometry.pitch_to_image(VIEW_POINTS)
    return pixels, geometry.sees(VIEW_POINTS, pixels, frame_size)


class PitchColourDetector(_FollowsView):
    """Weight-free players and ball: pixels that are neither grass nor painted line, grouped into blobs.

    Grass is found by colour (`shots.pitch_mask`); the painted lines are known from the calibration and masked out;
    what remains on the pitch is people, the ball, and clutter. A blob is scored as a person by how well its height
    matches a 1.8 m person standing at its foot point (the calibration gives the pixels per metre there), so partial or
    merged blobs get low scores that the tracker's second, low-confidence stage can still use. Small round white blobs
    are ball candidates. `geometry` is the calibration scaled to the frames given (`pitch_to_image`, `image_to_pitch`);
    a moving camera gives each frame its own with `set_geometry`.
    """

    def __init__(self, geometry, frame_size: tuple[int, int], config: PitchColourConfig | None = None, view=None):
        self.config = config or PitchColourConfig()
        self.view = view or shots.ViewConfig()
        self.frame_size, self.rebuild_px = frame_size, self.config.rebuild_px
        self._adopt(geometry)
        self.off_field = 0  # detections whose foot point is off the pitch (+ margin): dropped, counted
        self.no_grass_frames = 0  # frames skipped: the calibrated pitch area is not grass (another view, a fade)
        self._open = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        self._close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def _draw(self, geometry) -> None:
        self.field, self.search, self.lines = _masks(geometry, self.frame_size, self.config)
        self._field_pixels = max(1, cv2.countNonZero(self.field))

    def __call__(self, frame: np.ndarray) -> Detections:
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        grass = shots.pitch_mask(hsv, self.view)
        # Everything that is not grass is foreground: where the pitch area shows no grass, every pixel would be.
        if cv2.countNonZero(cv2.bitwise_and(grass, self.field)) < self.config.min_grass_share * self._field_pixels:
            self.no_grass_frames += 1
            return Detections.empty()
        foreground = cv2.bitwise_and(cv2.bitwise_not(grass), self.search)
        foreground = cv2.bitwise_and(foreground, cv2.bitwise_not(self.lines))
        white = cv2.inRange(hsv, (0, 0, 160), (180, 80, 255))
        ball_candidates = cv2.bitwise_and(foreground, white)
        people = cv2.morphologyEx(foreground, cv2.MORPH_OPEN, self._open)
        people = cv2.morphologyEx(people, cv2.MORPH_CLOSE, self._close)
        persons = self._people(people)
        balls = self._balls(ball_candidates)
        if len(persons) and len(balls):  # white kit is not a ball: drop candidates on a person
            centre = (balls.boxes[:, :2] + balls.boxes[:, 2:]) / 2
            box = persons.boxes[None]
            inside = (centre[:, None] >= box[..., :2]) & (centre[:, None] <= box[..., 2:])
            balls = balls.select(~inside.all(-1).any(1))
        return _concat(persons, balls)

    def _people(self, mask: np.ndarray) -> Detections:
        cfg = self.config
        _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        x, y, w, h, area = (stats[1:, i].astype(np.float32) for i in range(5))
        keep = (h >= 4) & (area >= 6) & (area >= cfg.min_fill * w * h)
        x, y, w, h = x[keep], y[keep], w[keep], h[keep]
        feet = np.stack([x + w / 2, y + h], axis=1)
        inside = on_field(self.field, feet)
        self.off_field += int((~inside).sum())
        x, y, w, h, feet = x[inside], y[inside], w[inside], h[inside], feet[inside]
        if len(x) == 0:
            return Detections.empty()
        expected = cfg.person_height * pixels_per_metre(self.geometry, feet)
        # Merged people side by side: split a blob much wider than a person into equal columns.
        parts = np.maximum(1, np.floor(w / (cfg.max_width_ratio * 0.45 * expected)).astype(int))
        boxes, scores = [], []
        for i in range(len(x)):
            part = w[i] / parts[i]
            for j in range(parts[i]):
                boxes.append((x[i] + j * part, y[i], x[i] + (j + 1) * part, y[i] + h[i]))
                scores.append(np.exp(-0.5 * (np.log(h[i] / expected[i]) / cfg.height_tolerance) ** 2))
        boxes, scores = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
        heights = boxes[:, 3] - boxes[:, 1]
        keep = heights >= cfg.min_person_fraction * np.repeat(expected, parts)
        keep &= heights <= 3.0 * np.repeat(expected, parts)
        return Detections(boxes[keep], scores[keep], np.full(int(keep.sum()), LABEL_PERSON, np.int8))

    def _balls(self, mask: np.ndarray) -> Detections:
        count, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
        if count <= 1:
            return Detections.empty()
        w, h, area = (stats[1:, i].astype(np.float32) for i in (2, 3, 4))
        centre = centroids[1:].astype(np.float32)
        diameter = self.config.ball_diameter * pixels_per_metre(self.geometry, centre)
        size = np.maximum(w, h)
        keep = (size >= 0.5 * diameter) & (size <= 2.5 * diameter + 2) & (np.minimum(w, h) >= 0.5 * size)
        keep &= area >= 0.4 * w * h
        inside = on_field(self.field, centre)
        self.off_field += int((keep & ~inside).sum())
        keep &= inside
        if not keep.any():
            return Detections.empty()
        r = np.maximum(size[keep], 2.0) / 2
        c = centre[keep]
        boxes = np.stack([c[:, 0] - r, c[:, 1] - r, c[:, 0] + r, c[:, 1] + r], axis=1)
        scores = np.clip(area[keep] / (w[keep] * h[keep]), 0, 1)
        return Detections(boxes, scores, np.full(len(r), LABEL_BALL, np.int8))


def _concat(*parts: Detections) -> Detections:
    return Detections(
        np.concatenate([p.boxes for p in parts]).astype(np.float32),
        np.concatenate([p.scores for p in parts]).astype(np.float32),
        np.concatenate([p.labels for p in parts]).astype(np.int8),
    )


def visible_pixels(geometry, points: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Image points [M, 2] of the pitch points [N, 2] the camera sees (see `Calibration.sees`), clipped to the frame."""
    pixels = geometry.pitch_to_image(points)
    seen = geometry.sees(points, pixels, frame_size)
    return np.clip(pixels[seen], 0, np.array(frame_size) - 1)


def pixels_per_metre(geometry, points: np.ndarray) -> np.ndarray:
    """[N] image pixels per metre of ground at image points [N, 2], in the less foreshortened direction.

    A standing person appears about this scale times their height: both are set by the distance to the camera.
    """
    ground = geometry.image_to_pitch(np.asarray(points, np.float64))
    a, b, c, d = (geometry.pitch_to_image(ground + step) for step in ((0.5, 0), (-0.5, 0), (0, 0.5), (0, -0.5)))
    return np.maximum(np.linalg.norm(a - b, axis=1), np.linalg.norm(c - d, axis=1))


def field_mask(geometry, frame_size: tuple[int, int], margin: float = 2.0) -> np.ndarray:
    """uint8 mask of the frame (width, height) where the pitch, extended by `margin` metres, is seen."""
    width, height = frame_size
    outline = pitch.markings(pitch.PITCH_LENGTH + 2 * margin, pitch.PITCH_WIDTH + 2 * margin)[0]
    field = np.zeros((height, width), np.uint8)
    corners = visible_pixels(geometry, outline, frame_size)
    if len(corners) >= 3:
        cv2.fillPoly(field, [np.round(corners).astype(np.int32)], 255)
    return field


def on_field(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[N] bool: image points [N, 2] inside the field mask."""
    x = np.clip(np.round(points[:, 0]).astype(int), 0, field.shape[1] - 1)
    y = np.clip(np.round(points[:, 1]).astype(int), 0, field.shape[0] - 1)
    inside = (
        (points[:, 0] >= 0) & (points[:, 0] < field.shape[1]) & (points[:, 1] >= 0) & (points[:, 1] < field.shape[0])
    )
    return inside & (field[y, x] > 0)


def _masks(geometry, frame_size: tuple[int, int], config: PitchColourConfig):
    """(field, search, lines) uint8 masks: where feet may be, where people's pixels may be, painted lines."""
    field = field_mask(geometry, frame_size, config.pitch_margin)
    ys, xs = np.nonzero(field[::16, ::16])
    if len(xs) == 0:
        return field, field, field
    # People stand up from their feet: extend the field upwards by the tallest person (near the camera) in pixels.
    scale = pixels_per_metre(geometry, np.stack([xs, ys], axis=1) * 16.0)
    tallest = int(np.ceil(1.5 * config.person_height * scale.max()))
    search, done = field.copy(), 0
    while done < tallest:  # OR of the mask shifted up by 1..tallest rows, in log2(tallest) steps
        step = min(done + 1, tallest - done)
        search[:-step] |= search[step:]
        done += step
    lines = np.zeros_like(field)
    for line in pitch.markings():
        pixels = geometry.pitch_to_image(line)
        seen = geometry.sees(line, pixels, frame_size)
        thickness = 2 * config.line_mask_metres * pixels_per_metre(geometry, np.where(seen[:, None], pixels, 0))
        for i in np.flatnonzero(seen[:-1] & seen[1:]):
            a, b = (tuple(int(v) for v in np.round(q)) for q in pixels[i : i + 2])
            cv2.line(lines, a, b, 255, max(1, round(float(thickness[i]))))
    return field, search, lines


class OnnxDetector(_FollowsView):
    """A detector the user supplies as ONNX (YOLOv8-style export), run through OpenCV's dnn module.

    The model takes [1, 3, S, S] RGB in [0, 1] (letterboxed) and returns [1, 4 + C, N] or [1, N, 4 + C] rows of
    (cx, cy, w, h, C class scores) in input pixels, as `yolo export format=onnx` writes. COCO's classes are the
    default: person 0, sports ball 32. Boxes go through per-class NMS; feet outside `field` are dropped and counted.
    The field mask is given (`field`), or drawn from a calibration (`geometry`, or the first `set_geometry`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        frame_size: tuple[int, int],
        field: np.ndarray | None = None,
        input_size: int = 640,
        person_class: int = 0,
        ball_class: int = 32,
        min_score: float = 0.1,
        nms_iou: float = 0.6,
        geometry=None,
        rebuild_px: float = REBUILD_PX,
    ):
        if field is not None and geometry is not None:
            raise ValueError("give the field mask or the geometry to draw it from, not both")
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such ONNX model file. Check the path given to --detector.")
        try:
            self.net = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as e:
            message = " ".join(str(e).split())[-160:]
            raise UserError(f"{self.path}: OpenCV cannot load this ONNX model ({message}). Re-export it.") from None
        self.frame_size, self.field, self.input_size, self.rebuild_px = frame_size, field, input_size, rebuild_px
        if geometry is not None:
            self._adopt(geometry)
        self.classes = {person_class: LABEL_PERSON, ball_class: LABEL_BALL}
        self.min_score, self.nms_iou = min_score, nms_iou
        self.off_field = 0
        self.scale = min(input_size / frame_size[0], input_size / frame_size[1])

    def _draw(self, geometry) -> None:
        self.field = field_mask(geometry, self.frame_size)

    def __call__(self, frame: np.ndarray) -> Detections:
        resized = cv2.resize(frame, (round(frame.shape[1] * self.scale), round(frame.shape[0] * self.scale)))
        canvas = np.full((self.input_size, self.input_size, 3), 114, np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        self.net.setInput(cv2.dnn.blobFromImage(canvas, 1 / 255.0, swapRB=True))
        try:
            out = np.asarray(self.net.forward())
        except cv2.error as e:
            message = " ".join(str(e).split())[-160:]
            raise UserError(f"{self.path}: the model failed on a {self.input_size} px input ({message}).") from None
        rows = out.reshape(out.shape[-2], out.shape[-1]) if out.ndim == 3 and out.shape[0] == 1 else None
        if rows is None or max(rows.shape) < 5:
            raise UserError(
                f"{self.path}: output shape {list(out.shape)}, expected [1, 4 + classes, boxes] (a YOLOv8-style "
                "detection export). Export the detector with its box decoding included."
            )
        features_first = rows.shape[1] < 5 or rows.shape[0] <= rows.shape[1]  # [4 + C, N] as YOLOv8 writes it
        rows = rows.T if features_first else rows
        if max(self.classes) >= rows.shape[1] - 4:
            raise UserError(f"{self.path}: {rows.shape[1] - 4} classes, but class {max(self.classes)} is asked for.")
        found = [self._class(rows, c, label) for c, label in self.classes.items()]
        detections = _concat(*found)
        if self.field is not None and len(detections):
            inside = on_field(self.field, detections.foot_points())
            self.off_field += int((~inside).sum())
            detections = detections.select(inside)
        return detections

    def _class(self, rows: np.ndarray, column: int, label: int) -> Detections:
        scores = rows[:, 4 + column]
        rows, scores = rows[scores >= self.min_score], scores[scores >= self.min_score]
        if len(rows) == 0:
            return Detections.empty()
        cx, cy, w, h = (rows[:, i] / self.scale for i in range(4))
        xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
        keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.min_score, self.nms_iou), int)
        keep = keep.reshape(-1)
        boxes = np.concatenate([xywh[keep, :2], xywh[keep, :2] + xywh[keep, 2:]], axis=1)
        return Detections(boxes.astype(np.float32), scores[keep].astype(np.float32), np.full(len(keep), label, np.int8))
