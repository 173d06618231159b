"""Camera calibration: image pixels ↔ pitch metres, from annotated landmarks or an imported camera.

A `Calibration` is a homography H from *undistorted* image pixels to centred pitch metres (see pitch.py: origin at the
centre spot, y towards the far touchline), plus an optional pinhole camera matrix and lens distortion coefficients
(OpenCV order) that turn the real, distorted pixels into undistorted ones first. The ground plane is flat, so a
homography is the whole projective part; wide stadium lenses bend the touchlines, which a radial model captures.

`fit` estimates it from landmarks (`read_landmarks`: CVAT XML, SoccerTrack JSON, a plain JSON list) and reports
in-sample and leave-one-out errors, because in-sample errors flatter the model with more parameters. camera.py imports
calibrations (this module's JSON, a bare homography, a SoccerNet camera) and refines or follows them on the frames.
Every bad input is a one-line UserError naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import cv2
import numpy as np

from trajsv_jax.data import pitch
from trajsv_jax.data.ingest.common import json_problem, read_bytes
from trajsv_jax.errors import UserError

PathLike = str | os.PathLike
FORMAT = "trajsv-calibration"
HUGE_FRACTION = 0.015  # a landmark this far off (fraction of the image diagonal) is suspect: RANSAC names it
ABSURD_FRACTION = 0.25  # a fit this far off somewhere cannot be a camera view of these labels
UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
ERROR_KINDS = ("pixels", "metres", "loo_pixels", "loo_metres")  # the per-landmark error arrays of `Residuals`
_LABEL = re.compile(r"^\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)$")


@dataclasses.dataclass(frozen=True)
class Landmarks:
    """Pitch landmarks seen in one image: where they are in the image and on the pitch."""

    image: np.ndarray  # [N, 2] float64 pixels (x right, y down)
    pitch: np.ndarray  # [N, 2] float64 centred metres
    names: tuple[str, ...]  # the labels as written in the file
    image_size: tuple[int, int] | None  # (width, height) when the file says
    source: str  # the file, for messages
    pitch_size: tuple[float, float] = (pitch.PITCH_LENGTH, pitch.PITCH_WIDTH)

    def __len__(self) -> int:
        return len(self.names)

    def select(self, keep: np.ndarray) -> Landmarks:
        keep = np.asarray(keep)
        names = tuple(np.asarray(self.names, dtype=object)[keep])
        return dataclasses.replace(self, image=self.image[keep], pitch=self.pitch[keep], names=names)


def _label_xy(label: str, path: Path, where: str) -> tuple[float, float]:
    match = _LABEL.match(label.strip())
    try:
        x, y = float(match[1]), float(match[2])  # type: ignore[index]
    except (TypeError, ValueError):
        raise UserError(
            f"{path}: landmark label {label!r} ({where}) is not a pitch position '(x,y)' in metres from the corner;"
            " rename it, e.g. '(16.5,0)'."
        ) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise UserError(f"{path}: landmark label {label!r} ({where}) is not finite; rename it, e.g. '(16.5,0)'.")
    return x, y


def _pixel(text: str, path: Path, label: str) -> tuple[float, float]:
    try:
        u, v = (float(s) for s in text.split(","))
    except ValueError:
        raise UserError(
            f"{path}: landmark {label!r} has points={text!r}, not one 'x,y' pixel; keep a single point per label."
        ) from None
    return u, v


def _whole(path: Path, text: str | None, what: str) -> int:
    """An integer attribute of the CVAT file (0 when absent); a UserError naming it when it is not one."""
    try:
        return int(text or 0)
    except ValueError:
        raise UserError(f"{path}: {what} {text!r} is not a whole number. Export the landmarks again.") from None


def _size(path: Path, width: str | None, height: str | None) -> tuple[int, int] | None:
    size = (_whole(path, width, "image width"), _whole(path, height, "image height"))
    return size if min(size) > 0 else None


def _read_cvat(path: Path, data: bytes, frame: int | str | None) -> tuple[list, tuple[int, int] | None]:
    """(label, u, v) of one image of a CVAT 1.1 export ('for images' <image>, or 'for video' <track> points)."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as e:
        raise UserError(f"{path}: not well-formed XML ({e}). Export the landmarks again (CVAT 1.1 XML).") from None
    for image in root.iter("image"):
        wanted = frame is None or str(frame) in (image.get("id"), image.get("name"))
        points = image.findall("points")
        if wanted and points:
            rows = [(p.get("label", ""), *_pixel(p.get("points", ""), path, p.get("label", ""))) for p in points]
            return rows, _size(path, image.get("width"), image.get("height"))
    tracked = [
        (p, track.get("label", ""))
        for track in root.iter("track")
        for p in track.findall("points")
        if p.get("outside", "0") == "0"
    ]
    frames = sorted({_whole(path, p.get("frame"), "track frame") for p, _ in tracked})
    chosen = frames[0] if frame is None and frames else frame
    rows = [(label, *_pixel(p.get("points", ""), path, label)) for p, label in tracked if p.get("frame") == str(chosen)]
    if not rows:
        which = "any image" if frame is None else f"frame {frame!r}"
        raise UserError(
            f"{path}: no landmark <points> for {which} (a CVAT 1.1 XML export has <image> or <track> elements with"
            " <points label='(x,y)'>). Annotate pitch landmarks as points labelled with their pitch position."
        )
    original = root.find("meta/original_size") or root.find("meta/task/original_size")
    return rows, None if original is None else _size(path, original.findtext("width"), original.findtext("height"))


def _read_json_landmarks(path: Path, data: bytes) -> tuple[list, tuple[int, int] | None, bool]:
    """(label, u, v) rows, image size, and whether the positions are already centred metres."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """A JSON object, refused when a key repeats (json keeps the last: a landmark would vanish unnoticed)."""
        keys = [key for key, _ in pairs]
        if twice := sorted({key for key in keys if keys.count(key) > 1}):
            raise UserError(
                f"{path}: the label(s) {', '.join(map(repr, twice))} appear more than once, and JSON keeps only the "
                "last point of each. Give each point its own label (one of them is mislabelled)."
            )
        return dict(pairs)

    try:
        doc = json.loads(data, object_pairs_hook=unique)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: {json_problem(e)}. Re-export the landmarks file.") from None
    expected = (
        'expected {"(x, y)": [u, v], ...} (SoccerTrack) or [{"pitch": [x, y], "image": [u, v]}, ...]'
        ' (optionally {"image_size": [w, h], "landmarks": [...]})'
    )
    size = None
    if isinstance(doc, dict) and isinstance(doc.get("landmarks"), list):
        size = doc.get("image_size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
            raise UserError(f"{path}: image_size must be [width, height] in pixels, got {size!r}.")
        size, doc = (size[0], size[1]), doc["landmarks"]
    try:
        if isinstance(doc, dict):
            if bad := [k for k, v in doc.items() if not (isinstance(v, list) and len(v) == 2)]:
                raise UserError(f"{path}: landmark(s) {', '.join(map(repr, bad))} are not one [u, v] pixel; fix them.")
            return [(str(k), float(v[0]), float(v[1])) for k, v in doc.items()], None, False
        rows = []
        for item in doc:
            x, y = (float(c) for c in item["pitch"])
            u, v = (float(c) for c in item["image"])
            rows.append((str(item.get("name", f"({x:g}, {y:g})")), u, v, x, y))
        return rows, size, True
    except (TypeError, KeyError, ValueError, AttributeError):
        raise UserError(f"{path}: unexpected JSON layout; {expected}.") from None


def read_landmarks(
    path: PathLike,
    pitch_length: float = pitch.PITCH_LENGTH,
    pitch_width: float = pitch.PITCH_WIDTH,
    frame: int | str | None = None,
) -> Landmarks:
    """Landmarks of a CVAT 1.1 XML, a SoccerTrack JSON or a plain JSON list.

    CVAT XML: <points label="(x,y)" points="u,v"/> in the first <image> that has points (or the one whose id or name
    is `frame`), or in <track> elements at the first (or given) frame. SoccerTrack JSON: {"(x, y)": [u, v], ...}. In
    both, labels are metres from a pitch corner (x in 0..length, y in 0..width, y = 0 the far touchline at the top of a
    broadcast image). Plain JSON: [{"pitch": [x, y], "image": [u, v], "name": optional}, ...], or that list under
    "landmarks" beside "image_size": [w, h], with pitch positions already in centred metres (pitch.py: y = +width/2 the
    far touchline).
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a landmarks file" if path.is_dir() else "no such landmarks file"
        raise UserError(f"{path}: {what}. Check the path.")
    data = read_bytes(path, "pitch landmarks")
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    centred = False
    if head == b"<":
        rows, size = _read_cvat(path, data, frame)
    elif head in (b"{", b"["):
        rows, size, centred = _read_json_landmarks(path, data)
    else:
        raise UserError(f"{path}: neither XML nor JSON (empty or another format). Pass a CVAT XML or landmarks JSON.")
    names = tuple(r[0] for r in rows)
    image = np.array([r[1:3] for r in rows], np.float64).reshape(-1, 2)
    if centred:
        xy = np.array([r[3:5] for r in rows], np.float64).reshape(-1, 2)
    else:
        raw = np.array([_label_xy(r[0], path, "pitch landmark") for r in rows], np.float64).reshape(-1, 2)
        xy = pitch.to_centred_metres(
            raw[:, 0],
            raw[:, 1],
            x_range=(0, pitch_length),
            y_range=(0, pitch_width),
            length=pitch_length,
            width=pitch_width,
            y_down=True,
        ).astype(np.float64)
    if not np.isfinite(image).all() or not np.isfinite(xy).all():
        raise UserError(f"{path}: a landmark has a non-finite position. Fix the file.")
    if len(names) < 4:
        raise UserError(
            f"{path}: only {len(names)} landmark(s); a homography needs at least 4 (better 8+ spread over the image)."
        )
    return Landmarks(image, xy.reshape(-1, 2), names, size, str(path), (float(pitch_length), float(pitch_width)))


@dataclasses.dataclass(frozen=True)
class Residuals:
    """Per-landmark errors of a fit: in the image (pitch → image, px) and on the pitch (image → pitch, m).

    loo_*: the error on each landmark when the model is refitted without it (leave-one-out): an honest estimate of
    the error elsewhere in the image, which the in-sample error understates, the more so the more parameters.
    """

    names: tuple[str, ...]
    pixels: np.ndarray
    metres: np.ndarray
    loo_pixels: np.ndarray
    loo_metres: np.ndarray

    def stats(self) -> dict[str, dict[str, float | str]]:
        """{"pixels"|"metres"|"loo_pixels"|"loo_metres": {"mean", "rms", "max", "worst"}}."""
        out: dict[str, dict[str, float | str]] = {}
        for key in ERROR_KINDS:
            e = getattr(self, key)
            worst = int(np.nanargmax(e))
            out[key] = {
                "mean": float(np.mean(e)),
                "rms": float(np.sqrt(np.mean(e**2))),
                "max": float(e[worst]),
                "worst": self.names[worst],
            }
        return out


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Image ↔ pitch mapping: undistort (if dist_coeffs) with camera_matrix, then the homography H.

    H maps undistorted image pixels (homogeneous) to centred pitch metres; it is scaled so that det(H) < 0, which puts
    the ground in front of the camera at a positive homogeneous coordinate (image points above the horizon → NaN).
    """

    H: np.ndarray  # [3, 3] float64
    image_size: tuple[int, int] | None  # (width, height) of the frames it applies to
    camera_matrix: np.ndarray | None = None  # [3, 3]; used (with dist_coeffs) to undistort and re-distort
    dist_coeffs: np.ndarray | None = None  # OpenCV order (k1, k2, p1, p2, k3, ...); None = no lens model
    pitch_size: tuple[float, float] = (pitch.PITCH_LENGTH, pitch.PITCH_WIDTH)
    model: str = "none"  # "none" (plain homography), "radial" (k1, k2) or "camera" (an imported camera)
    reason: str = ""  # why this model, in words
    source: str = ""
    residuals: Residuals | None = None
    dropped: tuple[str, ...] = ()  # landmarks left out as outliers

    # ---- mapping -------------------------------------------------------------------------------------------------
    def undistort(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] image pixels → undistorted pixels (the same points when there is no lens model)."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        if self.dist_coeffs is None or len(points) == 0:
            return points
        return cv2.undistortPoints(
            points[:, None], self.camera_matrix, self.dist_coeffs, P=self.camera_matrix, criteria=UNDISTORT_CRITERIA
        )[:, 0].astype(np.float64)

    def distort(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] undistorted pixels → real image pixels (inverse of `undistort`)."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        if self.dist_coeffs is None or len(points) == 0:
            return points
        rays = np.linalg.solve(self.camera_matrix, np.c_[points, np.ones(len(points))].T).T
        image, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), self.camera_matrix, self.dist_coeffs)
        return image[:, 0].astype(np.float64)

    def image_to_pitch(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] image pixels → [N, 2] centred metres; NaN for points at or above the horizon."""
        return apply_homography(self.H, self.undistort(points))

    def pitch_to_image(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] centred metres → [N, 2] image pixels; NaN for points behind the camera."""
        return self.distort(apply_homography(np.linalg.inv(self.H), np.asarray(points, np.float64).reshape(-1, 2)))

    def sees(
        self,
        points: np.ndarray,
        pixels: np.ndarray,
        frame_size: tuple[int, int],
        margin: float = 0.1,
        tolerance: float = 0.5,
    ) -> np.ndarray:
        """[N] bool: pitch points [N, 2] whose images `pixels` [N, 2] (pitch_to_image) lie in the frame, widened by
        `margin` of its size on each side, and map back to within `tolerance` metres of themselves.

        A lens-distortion polynomial folds points far outside the picture back into it; the round trip rejects them.
        """
        width, height = frame_size
        inside = np.isfinite(pixels).all(1)
        inside &= (pixels[:, 0] >= -margin * width) & (pixels[:, 0] <= (1 + margin) * width - 1)
        inside &= (pixels[:, 1] >= -margin * height) & (pixels[:, 1] <= (1 + margin) * height - 1)
        back = self.image_to_pitch(np.where(inside[:, None], pixels, 0))
        return inside & (np.linalg.norm(back - points, axis=1) < tolerance)

    def with_homography(self, H: np.ndarray) -> Calibration:
        """The same camera with another homography (a moved camera); residuals no longer apply."""
        return dataclasses.replace(self, H=oriented(H), residuals=None)

    def scaled(self, factor: float) -> Calibration:
        """The calibration of frames resized by `factor` (cv2.resize convention: pixel centres scale about -0.5)."""
        offset = 0.5 * factor - 0.5
        T = np.array([[factor, 0, offset], [0, factor, offset], [0, 0, 1.0]])
        residuals = self.residuals and dataclasses.replace(
            self.residuals, pixels=self.residuals.pixels * factor, loo_pixels=self.residuals.loo_pixels * factor
        )
        return dataclasses.replace(
            self,
            H=oriented(self.H @ np.linalg.inv(T)),
            image_size=self.image_size and (round(self.image_size[0] * factor), round(self.image_size[1] * factor)),
            camera_matrix=None if self.camera_matrix is None else T @ self.camera_matrix,
            residuals=residuals,
        )

    # ---- the visible pitch -----------------------------------------------------------------------------------------
    def pitch_polygon(self, image_size: tuple[int, int] | None = None) -> np.ndarray:
        """int32 [P, 2] image polygon of the visible pitch, following lens curvature; empty [0, 2] if none is seen.

        In undistorted pixels the pitch outline is straight: the pitch rectangle (cut at the horizon) maps to a convex
        polygon, which clips the undistorted image border (densely sampled, so the curved border is followed); the
        result is densified and re-distorted, so that the polygon bends with the lens like the painted lines do.
        """
        width, height = image_size or self.image_size or (0, 0)
        if not width or not height:
            raise UserError(f"{self.source or 'calibration'}: no image size known; pass image_size=(width, height).")
        length, wide = self.pitch_size
        corners = np.array(
            [[-length / 2, -wide / 2], [length / 2, -wide / 2], [length / 2, wide / 2], [-length / 2, wide / 2]]
        )
        to_image = np.linalg.inv(self.H)
        depth = np.c_[corners, np.ones(4)] @ to_image[2]
        if depth.max() <= 0:
            return np.zeros((0, 2), np.int32)
        ground = _clip_halfplane(corners, to_image[2], 1e-3 * depth.max())  # in front of the camera, not at infinity
        area = apply_homography(to_image, ground)
        step = max(width, height) / 256
        border = _densify(np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1.0]]), step)
        visible = _clip_convex(self.undistort(border), area)
        if len(visible) < 3:
            return np.zeros((0, 2), np.int32)
        outline = self.distort(_densify(visible, step))
        outline = np.clip(np.round(outline), 0, [width - 1, height - 1]).astype(np.int32)
        keep = np.r_[True, np.any(outline[1:] != outline[:-1], axis=1)]
        outline = outline[keep]
        return outline if cv2.contourArea(outline) > 0 else np.zeros((0, 2), np.int32)

    # ---- words and files -----------------------------------------------------------------------------------------
    def summary(self) -> str:
        """One line: which model, why, and its errors."""
        lens = "plain homography (no lens model)"
        if self.model == "radial":
            k = self.dist_coeffs
            lens = f"radial lens model (k1={k[0]:.3f}, k2={k[1]:.3f}, f={self.camera_matrix[0, 0]:.0f} px)"
        elif self.model == "camera":
            lens = "imported camera" + (" with lens distortion" if self.dist_coeffs is not None else "")
        text = f"{lens}: {self.reason}" if self.reason else lens
        if self.residuals is not None:
            s = self.residuals.stats()
            text += (
                f"; {len(self.residuals.names)} landmarks: RMS {s['pixels']['rms']:.1f} px / {s['metres']['rms']:.2f} m"
                f" (max {s['pixels']['max']:.1f} px at {s['pixels']['worst']!r}), leave-one-out RMS"
                f" {s['loo_pixels']['rms']:.1f} px / {s['loo_metres']['rms']:.2f} m"
                f" (max {s['loo_metres']['max']:.2f} m at {s['loo_metres']['worst']!r})"
            )
        if self.dropped:
            text += f"; {len(self.dropped)} outlier landmark(s) dropped: {', '.join(map(repr, self.dropped))}"
        return text + (f" [{self.source}]" if self.source else "")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict that `from_json` turns back into an equal Calibration (floats round-trip exactly)."""
        r = self.residuals
        return {
            "format": FORMAT,
            "homography": self.H.tolist(),
            "direction": "image_to_pitch",
            "pitch_axes": "trajsv",
            "image_size": None if self.image_size is None else list(self.image_size),
            "camera_matrix": None if self.camera_matrix is None else self.camera_matrix.tolist(),
            "dist_coeffs": None if self.dist_coeffs is None else self.dist_coeffs.tolist(),
            "pitch_size": list(self.pitch_size),
            "model": self.model,
            "reason": self.reason,
            "source": self.source,
            "residuals": r and {"names": list(r.names), **{k: getattr(r, k).tolist() for k in ERROR_KINDS}},
            "dropped": list(self.dropped),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Calibration:
        """The Calibration of a `to_json` dict (KeyError, TypeError or ValueError when it is damaged)."""
        r = d.get("residuals")
        return cls(
            H=np.asarray(d["homography"], np.float64),
            image_size=None if d.get("image_size") is None else (int(d["image_size"][0]), int(d["image_size"][1])),
            camera_matrix=_optional_array(d.get("camera_matrix")),
            dist_coeffs=_optional_array(d.get("dist_coeffs")),
            pitch_size=(float(d["pitch_size"][0]), float(d["pitch_size"][1])),
            model=d["model"],
            reason=d["reason"],
            source=d["source"],
            residuals=r and Residuals(tuple(r["names"]), *(np.asarray(r[k], np.float64) for k in ERROR_KINDS)),
            dropped=tuple(d["dropped"]),
        )


def _optional_array(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, np.float64)


# ---- geometry helpers ----------------------------------------------------------------------------------------------
def apply_homography(H: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Homography on [N, 2] points; NaN where the homogeneous coordinate is not positive (beyond the horizon)."""
    q = np.c_[points, np.ones(len(points))] @ H.T
    with np.errstate(divide="ignore", invalid="ignore"):
        out = q[:, :2] / q[:, 2:]
    out[q[:, 2] <= 0] = np.nan
    return out


def oriented(H: np.ndarray) -> np.ndarray:
    """H scaled to unit Frobenius norm with det < 0 (image y down, pitch y up: the ground then has w > 0)."""
    H = np.asarray(H, np.float64) / np.linalg.norm(H)
    return -H if np.linalg.det(H) > 0 else H


def _densify(polygon: np.ndarray, step: float) -> np.ndarray:
    """A closed polygon with extra vertices so that no edge is longer than `step`."""
    out = []
    for a, b in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        n = max(1, math.ceil(np.linalg.norm(b - a) / step))
        out.append(a + (b - a) * np.arange(n)[:, None] / n)
    return np.concatenate(out)


def _clip_halfplane(polygon: np.ndarray, h: np.ndarray, floor: float) -> np.ndarray:
    """The part of a polygon where h · (x, y, 1) >= floor (Sutherland–Hodgman against one line)."""
    g = np.c_[polygon, np.ones(len(polygon))] @ h - floor
    out = []
    for i in range(len(polygon)):
        j = (i + 1) % len(polygon)
        if g[i] >= 0:
            out.append(polygon[i])
        if (g[i] >= 0) != (g[j] >= 0):
            out.append(polygon[i] + (polygon[j] - polygon[i]) * g[i] / (g[i] - g[j]))
    return np.array(out).reshape(-1, 2)


def _clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman: the part of polygon `subject` (any shape) inside the convex polygon `clip`."""
    signed_area = np.sum(clip[:, 0] * np.roll(clip[:, 1], -1) - np.roll(clip[:, 0], -1) * clip[:, 1])
    if signed_area < 0:
        clip = clip[::-1]
    for a, b in zip(clip, np.roll(clip, -1, axis=0), strict=True):
        if len(subject) == 0:
            break
        normal = np.array([a[1] - b[1], b[0] - a[0]])  # points inside for a counter-clockwise (x, y) polygon
        subject = _clip_halfplane(subject, np.r_[normal, -normal @ a], 0.0)
    return subject


# ---- fitting ---------------------------------------------------------------------------------------------------------
def _normaliser(points: np.ndarray) -> np.ndarray:
    """Hartley's similarity: centroid to the origin, mean distance √2."""
    c = points.mean(axis=0)
    s = math.sqrt(2) / max(np.mean(np.linalg.norm(points - c, axis=1)), 1e-12)
    return np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1]])


def _at(lm: Landmarks, i: int) -> str:
    return f"{lm.names[i]!r} at ({lm.image[i, 0]:.0f}, {lm.image[i, 1]:.0f}) px"


def _duplicates(lm: Landmarks) -> list[str]:
    """Every group of landmarks at one pitch position (within 1 cm) or one pixel, each member with its pixel."""
    groups = []
    for what, pts, tol in (("pitch position", lm.pitch, 0.01), ("pixel", lm.image, 1.0)):
        close = np.linalg.norm(pts[:, None] - pts[None], axis=-1) < tol
        grouped: set[int] = set()
        for i in range(len(pts)):
            members = [int(j) for j in np.flatnonzero(close[i]) if j not in grouped]
            if len(members) > 1:
                grouped.update(members)
                groups.append(f"{' and '.join(_at(lm, j) for j in members)} share a {what}")
    return groups


def _check_geometry(lm: Landmarks) -> None:
    """One-line UserErrors for landmarks that cannot define a homography (duplicates aside: `_duplicates`)."""
    where = lm.source
    for what, pts in (("pitch", lm.pitch), ("image", lm.image)):
        s = np.linalg.svd(pts - pts.mean(axis=0), compute_uv=False)
        if s[1] < 0.02 * s[0]:
            raise UserError(
                f"{where}: all {len(pts)} landmarks lie (nearly) on one line in the {what}; a homography needs"
                " landmarks off that line too (e.g. penalty-box corners)."
            )
    Tp, Ti = _normaliser(lm.pitch), _normaliser(lm.image)
    p = np.c_[lm.pitch, np.ones(len(lm))] @ Tp.T
    q = np.c_[lm.image, np.ones(len(lm))] @ Ti.T
    zero = np.zeros_like(p)
    A = np.r_[np.c_[p, zero, -q[:, :1] * p], np.c_[zero, p, -q[:, 1:2] * p]]
    s = np.linalg.svd(A, compute_uv=False)
    if s[-2] < 1e-6 * s[0]:
        raise UserError(
            f"{where}: the {len(lm)} landmarks do not determine a homography (fewer than 4 in general position, e.g."
            " 3 of 4 on one line); add landmarks off the lines already used."
        )


def _initial_focal(H_p2i: np.ndarray, size: tuple[int, int]) -> float:
    """Focal length (px) from a plane homography, square pixels and the principal point at the image centre.

    With K = diag(f, f, 1) after centring, the columns h1, h2 of K⁻¹H are orthogonal and of equal norm: two linear
    equations in 1/f² (Zhang 2000), solved by least squares; a 60° view when they give nothing positive.
    """
    G = np.array([[1, 0, -size[0] / 2], [0, 1, -size[1] / 2], [0, 0, 1]]) @ H_p2i
    a = np.array([G[0, 0] * G[0, 1] + G[1, 0] * G[1, 1], G[0, 0] ** 2 + G[1, 0] ** 2 - G[0, 1] ** 2 - G[1, 1] ** 2])
    b = np.array([G[2, 0] * G[2, 1], G[2, 0] ** 2 - G[2, 1] ** 2])
    inv_f2 = -(a @ b) / max(a @ a, 1e-300)
    return 1 / math.sqrt(inv_f2) if inv_f2 > 0 else 0.87 * size[0]


def _lens_is_monotonic(camera_matrix: np.ndarray, dist: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether r·(1 + k1 r² + k2 r⁴) keeps growing until it reaches the image corners (else it folds back)."""
    corners = np.array([[0, 0], [size[0], size[1]], [0, size[1]], [size[0], 0]]) - camera_matrix[:2, 2]
    reach = np.max(np.linalg.norm(corners / np.diag(camera_matrix)[:2], axis=1))
    r = np.linspace(0, 4 * reach + 1, 4000)
    rd = r * (1 + dist[0] * r**2 + dist[1] * r**4)
    falling = np.flatnonzero(np.diff(rd) <= 0)
    return len(falling) == 0 or rd[falling[0]] > reach * 1.05


def _solve(image: np.ndarray, xy: np.ndarray, size: tuple[int, int] | None, radial: bool, base: Calibration):
    """One model fitted to the points (None if the radial solve fails or folds)."""
    H_p2i, _ = cv2.findHomography(xy, image, 0)
    if H_p2i is None or not np.isfinite(H_p2i).all() or abs(np.linalg.det(H_p2i)) < 1e-300:
        return None
    if not radial:
        return dataclasses.replace(base, H=oriented(np.linalg.inv(H_p2i)), camera_matrix=None, dist_coeffs=None)
    f = _initial_focal(H_p2i, size)
    K0 = np.array([[f, 0, size[0] / 2], [0, f, size[1] / 2], [0, 0, 1]])
    flags = (
        cv2.CALIB_USE_INTRINSIC_GUESS
        | cv2.CALIB_FIX_PRINCIPAL_POINT
        | cv2.CALIB_ZERO_TANGENT_DIST
        | cv2.CALIB_FIX_K3
        | cv2.CALIB_FIX_ASPECT_RATIO
    )
    obj = np.c_[xy, np.zeros(len(xy))].astype(np.float32)
    try:
        _, K, dist, _, _ = cv2.calibrateCamera([obj], [image.astype(np.float32)], size, K0, np.zeros(5), flags=flags)
    except cv2.error:
        return None
    dist = dist.ravel().astype(np.float64)
    if not (np.isfinite(K).all() and np.isfinite(dist).all() and K[0, 0] > 0 and _lens_is_monotonic(K, dist, size)):
        return None
    lens = dataclasses.replace(base, camera_matrix=K, dist_coeffs=dist)
    H_p2i, _ = cv2.findHomography(xy, lens.undistort(image), 0)
    if H_p2i is None or not np.isfinite(H_p2i).all():
        return None
    return dataclasses.replace(lens, H=oriented(np.linalg.inv(H_p2i)))


def _errors(calib: Calibration, image: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    px = np.linalg.norm(calib.pitch_to_image(xy) - image, axis=1)
    m = np.linalg.norm(calib.image_to_pitch(image) - xy, axis=1)
    return np.nan_to_num(px, nan=np.inf), np.nan_to_num(m, nan=np.inf)


def _fit_model(lm: Landmarks, size, radial: bool, base: Calibration) -> Calibration | None:
    """A model with its in-sample and leave-one-out residuals (None if it cannot be fitted)."""
    calib = _solve(lm.image, lm.pitch, size, radial, base)
    if calib is None:
        return None
    px, m = _errors(calib, lm.image, lm.pitch)
    loo_px, loo_m = np.full(len(lm), np.inf), np.full(len(lm), np.inf)
    for i in range(len(lm) if len(lm) > 4 else 0):
        keep = np.arange(len(lm)) != i
        held = _solve(lm.image[keep], lm.pitch[keep], size, radial, base)
        if held is not None:
            loo_px[i], loo_m[i] = (e[0] for e in _errors(held, lm.image[i : i + 1], lm.pitch[i : i + 1]))
    return dataclasses.replace(calib, residuals=Residuals(lm.names, px, m, loo_px, loo_m))


def _outliers(
    lm: Landmarks, calib: Calibration, size, radial: bool, base: Calibration, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, pixel errors under the others' fit) of landmarks far off the fit of the others; none if unclear.

    The landmark worst off its leave-one-out fit is peeled off and the model refitted, up to a tenth of them, while
    that error exceeds `threshold`; they count as outliers only when the rest then fit within `threshold` and each
    peeled one stays beyond it. In-sample errors would not do: a gross outlier drags the fit towards itself.
    """
    keep, model = np.ones(len(lm), bool), calib
    for _ in range(max(1, len(lm) // 10) if len(lm) >= 6 else 0):
        loo = np.full(len(lm), -np.inf)
        loo[keep] = model.residuals.loo_pixels  # type: ignore[union-attr]
        if loo.max() <= threshold:
            break
        keep[int(np.argmax(loo))] = False
        model = _fit_model(lm.select(keep), size, radial, base)
        if model is None:
            break
    off = _errors(model, lm.image, lm.pitch)[0] if model is not None else np.full(len(lm), np.inf)
    clear = keep.all() or (off[keep].max() <= threshold and off[~keep].min() > threshold)
    return (np.flatnonzero(~keep) if clear else np.zeros(0, int)), off


def _rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e**2)))


def fit(
    landmarks: Landmarks,
    distortion: str = "auto",
    image_size: tuple[int, int] | None = None,
    drop_outliers: bool = False,
) -> Calibration:
    """Calibrate from landmarks: a homography, after a radial lens model when asked or when it pays off.

    distortion: "none" (plain homography, least squares in pixels), "radial" (pinhole camera with k1, k2 from
    cv2.calibrateCamera on the planar landmarks: principal point at the image centre, square pixels, no tangential
    term, k3 = 0; then the homography of the undistorted points) or "auto" (radial when there are ≥ 8 landmarks
    covering ≥ 10% of the image and it cuts the leave-one-out pixel RMS by ≥ 20%, else none).
    A landmark far off the others' fit (RANSAC outlier, > 1.5% of the image diagonal) is a UserError naming it,
    unless drop_outliers, which refits without it and records it in `dropped`. Landmarks sharing a pitch position or
    a pixel (a click given a neighbour's label) are a UserError naming every one with its pixel; drop_outliers leaves
    out those of them off the fit of the others.
    """
    where = landmarks.source
    if len(landmarks) < 4:
        raise UserError(f"{where}: only {len(landmarks)} landmark(s); a homography needs at least 4 (better 8+).")
    size = tuple(image_size or landmarks.image_size or ()) or None
    duplicates = _duplicates(landmarks)
    if duplicates and not drop_outliers:
        raise UserError(
            f"{where}: {'; '.join(duplicates)} (mislabelled?). Fix or delete the wrong ones, or pass "
            "--drop-landmark-outliers to leave out those off the fit of the others."
        )
    _check_geometry(landmarks)
    base = Calibration(np.eye(3), size, pitch_size=landmarks.pitch_size, source=where)  # type: ignore[arg-type]
    plain = _solve(landmarks.image, landmarks.pitch, size, False, base)
    if (
        plain is None
        or np.linalg.cond(_normaliser(landmarks.pitch) @ plain.H @ np.linalg.inv(_normaliser(landmarks.image))) > 1e8
    ):
        raise UserError(f"{where}: the landmarks give a singular or ill-conditioned homography; check their labels.")
    w = np.c_[plain.undistort(landmarks.image), np.ones(len(landmarks))] @ plain.H[2]
    if (w < 0).all():
        raise UserError(
            f"{where}: the landmarks' pitch positions are a mirror image of the view (one axis flipped); labels must"
            " have y = 0 on the far touchline (top of the image) and x growing to the right as seen from the camera."
        )
    if (w < 0).any():
        bad = ", ".join(repr(landmarks.names[i]) for i in np.flatnonzero(w < 0)[:5])
        raise UserError(
            f"{where}: landmarks {bad} fall beyond the horizon of the others' homography; fix their labels."
        )

    candidates = {"none": _fit_model(landmarks, size, False, base)}
    spread = size and cv2.contourArea(cv2.convexHull(landmarks.image.astype(np.float32))) / (size[0] * size[1])
    if distortion == "radial":
        if size is None:
            raise UserError(
                f"{where}: a lens model needs the image size (its centre is the principal point);"
                " pass image_size=(width, height)."
            )
        candidates["radial"] = _fit_model(landmarks, size, True, base)
        if candidates["radial"] is None:
            raise UserError(
                f"{where}: the radial lens model does not converge to a valid lens on these landmarks;"
                " use distortion='none' or add landmarks near the image edges."
            )
        chosen, reason = "radial", "radial model requested"
    elif distortion == "none":
        chosen, reason = "none", "plain homography requested"
    elif distortion == "auto":
        chosen = "none"
        if size is None:
            reason = "auto: image size unknown, so no lens model"
        elif len(landmarks) < 8 or spread < 0.1:
            reason = f"auto: {len(landmarks)} landmarks over {spread:.0%} of the image, too few for a lens model"
        else:
            candidates["radial"] = _fit_model(landmarks, size, True, base)
            if candidates["radial"] is None:
                reason = "auto: the radial lens fit does not converge to a valid lens"
            else:
                loo = {k: _rms(c.residuals.loo_pixels) for k, c in candidates.items()}  # type: ignore[union-attr]
                chosen = "radial" if loo["radial"] < 0.8 * loo["none"] else "none"
                reason = (
                    f"auto: leave-one-out RMS {loo['radial']:.1f} px with a radial lens vs {loo['none']:.1f} px"
                    " without" + ("" if chosen == "radial" else ", less than 20% better")
                )
    else:
        raise ValueError(f"distortion must be 'auto', 'none' or 'radial', got {distortion!r}")
    calib = dataclasses.replace(candidates[chosen], model=chosen, reason=reason)  # type: ignore[arg-type]

    diagonal = math.hypot(*size) if size else math.hypot(*np.ptp(landmarks.image, axis=0))
    errors = calib.residuals.pixels  # type: ignore[union-attr]
    # Outliers can also decide the model (a plain homography fits nothing well, so it singles nothing out): each
    # candidate in turn, the chosen one first; the refit without them chooses the model again.
    for name in sorted(candidates, key=lambda name: name != chosen):
        if candidates[name] is not None:
            out, off = _outliers(landmarks, candidates[name], size, name == "radial", base, HUGE_FRACTION * diagonal)
            if len(out):
                break
    if len(out) and drop_outliers:
        refit = fit(landmarks.select(np.isin(np.arange(len(landmarks)), out, invert=True)), distortion, size)
        return dataclasses.replace(refit, dropped=tuple(landmarks.names[i] for i in out))
    if duplicates:
        raise UserError(
            f"{where}: {'; '.join(duplicates)}, and none of them is clearly off the fit of the others. Fix or delete "
            "the wrong ones."
        )
    if len(out):
        bad = ", ".join(f"{_at(landmarks, i)} ({off[i]:.0f} px off)" for i in out)
        raise UserError(
            f"{where}: landmark(s) {bad} do not fit the other {len(landmarks) - len(out)} (mislabelled or"
            " misplaced?); fix or delete them, or pass --drop-landmark-outliers to leave them out."
        )
    if errors.max() > ABSURD_FRACTION * diagonal:
        worst = int(np.argmax(errors))
        raise UserError(
            f"{where}: no camera view fits these landmarks ({landmarks.names[worst]!r} is {errors[worst]:.0f} px off);"
            " check the labels' pitch convention (corner origin, y = 0 on the far touchline) and the pitch size."
        )
    return calib
