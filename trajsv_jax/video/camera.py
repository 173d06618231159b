"""Calibrations from elsewhere and from the frames: imported files, pitch-line refinement, a moving camera.

`read_calibration` imports calibrate.py's own JSON, a bare homography, or a SoccerNet camera (sn-calibration, TVCalib).
`refine_with_lines` corrects a roughly right calibration so that the projected pitch markings lie on the painted lines
detected in a frame, where enough lines are visible. `CameraTracker` follows a moving camera from the calibrated
reference frame, one frame at a time, and gives each frame its calibration; `ViewFollower` does so across the cuts of
an edited video, refitting the view on the lines at each. Every bad input is a one-line UserError naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.optimize import least_squares

from trajsv_jax.data import pitch
from trajsv_jax.data.ingest.common import json_problem, read_bytes
from trajsv_jax.errors import UserError
from trajsv_jax.video import shots
from trajsv_jax.video.calibrate import FORMAT, Calibration, PathLike, apply_homography, oriented

LINE_CONTRAST = 25  # top-hat of the HSV value: how much brighter than the grass around a painted line is
LINE_MAX_SATURATION = 90  # painted lines are white: low saturation
MAX_NFEV = 60  # least-squares evaluations per stage: ample from 30 px off (about 45 used per stage at 720p)
LINE_STAGES = ((4.0, 5.0), (1.0, 2.0))  # (blur of the distance transform in px at 720p, soft-L1 scale in px)
LK_WINDOW, LK_LEVELS = (11, 11), 3  # Lucas–Kanade window and pyramid levels of the camera tracker
CORNER_QUALITY = (
    0.005  # its goodFeaturesToTrack quality level (at half size): finds lines and texture, not only players
)

# ---- imported calibrations ------------------------------------------------------------------------------------------
SOCCERNET_KEYS = (
    "pan_degrees",
    "tilt_degrees",
    "roll_degrees",
    "position_meters",
    "x_focal_length",
    "y_focal_length",
    "principal_point",
)


def soccernet_camera(d: dict[str, Any], source: str = "") -> Calibration:
    """A SoccerNet camera dict (sn-calibration / TVCalib) as a Calibration.

    Follows SoccerNet/sn-calibration src/camera.py (`from_json_parameters`, `project_point`, `distort`) and
    src/soccerpitch.py: world origin at the centre spot, x along the length, y towards the near ("bottom") touchline,
    z down into the ground (goal crossbars at z = -2.44); rotation R = (Rz(pan) · Rx(tilt) · Rz(roll))ᵀ maps world to
    camera; a point X projects to K · distort(R (X - position)). On the ground (z = 0), [u v 1]ᵀ ~ K [r1 r2 t] [x y 1]ᵀ
    with t = -R · position; our y is SoccerNet's -y. Their distortion (radial k1..k6 rational, tangential p1 p2, thin
    prism s1..s4) is OpenCV's 12-coefficient model in the same order; the image is 2 × principal_point, as there.
    """
    try:
        pan, tilt, roll = (math.radians(float(d[k])) for k in ("pan_degrees", "tilt_degrees", "roll_degrees"))
        position = np.asarray(d["position_meters"], np.float64).reshape(3)
        cx, cy = (float(c) for c in d["principal_point"])
        K = np.array([[float(d["x_focal_length"]), 0, cx], [0, float(d["y_focal_length"]), cy], [0, 0, 1]])
        radial = np.zeros(6)
        radial[: len(d.get("radial_distortion", []))] = d.get("radial_distortion", [])
        tangential = np.asarray(d.get("tangential_distortion", [0, 0]), np.float64).reshape(2)
        prism = np.asarray(d.get("thin_prism_distortion", [0, 0, 0, 0]), np.float64).reshape(4)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{source}: not a valid SoccerNet camera (needs {', '.join(SOCCERNET_KEYS)}).") from None
    rx = np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]])
    R = (_rotation_z(pan) @ rx @ _rotation_z(roll)).T
    t = -R @ position
    H_p2i = K @ np.c_[R[:, 0], -R[:, 1], t]  # our (x, y) = SoccerNet (x, -y)
    if not np.isfinite(H_p2i).all() or abs(np.linalg.det(H_p2i)) < 1e-12 * np.linalg.norm(H_p2i) ** 3:
        raise UserError(f"{source}: the SoccerNet camera sees the ground edge-on (singular homography).")
    if position[2] >= 0:
        raise UserError(
            f"{source}: camera position z = {position[2]:g} m: SoccerNet's z points down, a camera above"
            " the ground has z < 0. Check position_meters."
        )
    dist = np.r_[radial[:2], tangential, radial[2:], prism]
    return Calibration(
        oriented(np.linalg.inv(H_p2i)),
        (round(2 * cx), round(2 * cy)),
        K,
        dist if dist.any() else None,
        model="camera",
        reason="SoccerNet camera (pan/tilt/roll, position, focal lengths)",
        source=source,
    )


def _rotation_z(angle: float) -> np.ndarray:
    return np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])


def read_calibration(path: PathLike, direction: str | None = None, pitch_axes: str | None = None) -> Calibration:
    """A calibration file: this module's JSON, a JSON with a 3x3 "homography", or a SoccerNet camera JSON.

    Homography JSON: {"homography": [[...], [...], [...]], "direction": ..., "pitch_axes": ..., "image_size": [w, h]}.
    direction is "pitch_to_image" (default: TVCalib, SoccerNet and most tools give the world plane → image) or
    "image_to_pitch"; pitch_axes is "soccernet" (default: centred metres, y towards the near touchline, as TVCalib
    and SoccerNet) or "trajsv" (centred metres, y towards the far touchline). The arguments override the file's keys.
    The homography applies to undistorted pixels; this module's own files carry their lens model with them.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {'a folder, not' if path.is_dir() else 'no such'} calibration file. Check the path.")
    try:
        d = json.loads(read_bytes(path, "camera calibration"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: {json_problem(e)}. Pass a calibration JSON file.") from None
    if not isinstance(d, dict):
        raise UserError(f"{path}: a calibration JSON is an object with a 'homography' or SoccerNet camera keys.")
    if d.get("format") == FORMAT:
        try:
            return Calibration.from_json(d)
        except (KeyError, TypeError, ValueError, IndexError):
            raise UserError(
                f"{path}: a damaged {FORMAT} file. Re-create it with `trajsv preprocess VIDEO --landmarks FILE` "
                "(the source's metadata holds it)."
            ) from None
    if "homography" not in d:
        if any(k in d for k in SOCCERNET_KEYS):
            return soccernet_camera(d, str(path))
        raise UserError(
            f"{path}: no 'homography' and no SoccerNet camera keys ({', '.join(SOCCERNET_KEYS)}). Pass a calibration"
            " JSON."
        )
    direction = direction or d.get("direction", "pitch_to_image")
    pitch_axes = pitch_axes or d.get("pitch_axes", "soccernet")
    if direction not in ("pitch_to_image", "image_to_pitch") or pitch_axes not in ("soccernet", "trajsv"):
        raise UserError(
            f"{path}: direction {direction!r} / pitch_axes {pitch_axes!r}: use 'pitch_to_image' or"
            " 'image_to_pitch', and 'soccernet' or 'trajsv'."
        )
    try:
        H = np.asarray(d["homography"], np.float64).reshape(3, 3)
        size = d.get("image_size")
        size = None if size is None else (int(size[0]), int(size[1]))
    except (TypeError, ValueError, IndexError):
        raise UserError(f"{path}: 'homography' must be a 3x3 list of numbers, image_size [w, h].") from None
    if not np.isfinite(H).all() or np.linalg.cond(H) > 1e12:
        raise UserError(f"{path}: the homography is singular or not finite. Check the file.")
    H = np.linalg.inv(H) if direction == "pitch_to_image" else H
    if pitch_axes == "soccernet":
        H = np.diag([1.0, -1.0, 1.0]) @ H
    return Calibration(
        oriented(H),
        size,
        model="none",
        reason=f"imported homography ({direction}, {pitch_axes} axes)",
        source=str(path),
    )


# ---- painted lines --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LineFit:
    """How `refine_with_lines` went: the evidence (line pixels, marking points) and the distances it moved."""

    line_pixels: int  # painted-line pixels found near the projected markings
    points: int  # marking points (every `step` m) projected into the frame
    mean_px_before: float  # mean distance of those points to the nearest line pixel (capped at the search radius)
    mean_px_after: float
    inlier_share: float  # share of points within `inlier_px` of a line pixel after the refinement
    shift_px: float  # the largest move of a marking point in the image
    iterations: int  # least-squares function evaluations, all stages

    def summary(self) -> str:
        return (
            f"refined on {self.line_pixels} painted-line pixels: {self.points} marking points, mean distance"
            f" {self.mean_px_before:.1f} → {self.mean_px_after:.1f} px, {self.inlier_share:.0%} on a line, view moved"
            f" ≤ {self.shift_px:.1f} px ({self.iterations} evaluations)"
        )


def line_pixels(frame_bgr: np.ndarray, config: shots.ViewConfig | None = None) -> np.ndarray:
    """uint8 mask (255) of painted-line pixels: thin, bright, unsaturated ridges on the grass.

    Grass is found by colour (shots.pitch_mask) and closed over the lines and players; a white top-hat with a kernel
    a few line widths wide keeps bright structures thinner than the kernel (lines, not shirts or sky).
    """
    hsv = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2HSV)
    height = frame_bgr.shape[0]
    grass = shots.pitch_mask(hsv, config or shots.ViewConfig())
    field = cv2.morphologyEx(grass, cv2.MORPH_CLOSE, _disc(height * 0.01))
    ridge = cv2.morphologyEx(hsv[..., 2], cv2.MORPH_TOPHAT, _disc(height * 0.0075))
    return ((ridge > LINE_CONTRAST) & (hsv[..., 1] < LINE_MAX_SATURATION) & (field > 0)).astype(np.uint8) * 255


def _disc(radius: float) -> np.ndarray:
    size = 2 * max(1, round(radius)) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def refine_with_lines(
    frame_bgr: np.ndarray,
    calibration: Calibration,
    max_shift: float = 0.04,
    step: float = 0.5,
    inlier_px: float = 3.0,
    min_line_share: float = 0.002,
    min_inlier_share: float = 0.9,
) -> tuple[Calibration, LineFit]:
    """The calibration corrected so that the pitch markings it projects lie on the painted lines seen in the frame.

    Marking points (pitch.markings, every `step` m) that the calibration puts in the frame are moved by a homography
    of the undistorted image (8 parameters; the lens model stays) that minimises a robust (soft-L1) sum of their
    distances to the nearest line pixel, sampled bilinearly from a distance transform; a blurred transform first
    widens the basin, a sharper one then settles the lines. Only line pixels within `max_shift` (fraction of the image
    diagonal) of the projected markings count, and a correction that moves a marking point further is refused, as
    are frames with fewer line pixels than `min_line_share` of the frame or a result with fewer than
    `min_inlier_share` of the points within `inlier_px` of a line: it works where lines are seen, else a UserError.
    """
    where = calibration.source or "calibration"
    size = _check_frame_size(calibration, frame_bgr)
    radius = max_shift * math.hypot(*size)
    marks = np.concatenate(pitch.markings(*calibration.pitch_size, step=step))
    start = calibration.pitch_to_image(marks)
    seen = calibration.sees(marks, start, size, margin=0.0, tolerance=0.5 * step)
    marks, start = marks[seen], start[seen]
    if len(marks) < 50:
        raise UserError(f"{where}: only {len(marks)} pitch-marking points fall in the frame; refine another frame.")
    near = np.full((size[1], size[0]), 255, np.uint8)
    near[np.round(start[:, 1]).astype(int), np.round(start[:, 0]).astype(int)] = 0
    lines = line_pixels(frame_bgr) & ((cv2.distanceTransform(near, cv2.DIST_L2, 5) <= radius) * np.uint8(255))
    found = cv2.countNonZero(lines)
    if found < min_line_share * size[0] * size[1]:
        raise UserError(
            f"{where}: only {found} painted-line pixels near the pitch markings (need"
            f" {min_line_share * size[0] * size[1]:.0f}); calibrate from landmarks instead."
        )
    distance = np.minimum(cv2.distanceTransform(255 - lines, cv2.DIST_L2, 5), radius).astype(np.float32)

    # The correction G = N⁻¹ (I + P) N on undistorted pixels, N scaling the frame to about [-1, 1]: P's 8 entries
    # are all of order "fraction of the frame", so one step size suits them all.
    N = np.array([[2 / size[0], 0, -1], [0, 2 / size[0], -size[1] / size[0]], [0, 0, 1]])
    undistorted = apply_homography(np.linalg.inv(calibration.H), marks)

    def correction(p: np.ndarray) -> np.ndarray:
        return np.linalg.solve(N, (np.eye(3) + np.r_[p, 0].reshape(3, 3)) @ N)

    def project(p: np.ndarray) -> np.ndarray:
        return calibration.distort(apply_homography(correction(p), undistorted))

    def residuals(p: np.ndarray, field: np.ndarray) -> np.ndarray:
        xy = np.nan_to_num(project(p), nan=-radius).astype(np.float32)
        return cv2.remap(
            field, xy[:, :1], xy[:, 1:], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=radius
        )[:, 0]

    p, evaluations = np.zeros(8), 0
    for blur, scale in LINE_STAGES:
        field = cv2.GaussianBlur(distance, (0, 0), blur * size[1] / 720)
        result = least_squares(
            residuals, p, args=(field,), loss="soft_l1", f_scale=scale, x_scale="jac", diff_step=1e-3, max_nfev=MAX_NFEV
        )
        p, evaluations = result.x, evaluations + result.nfev
    after = residuals(p, distance)
    report = LineFit(
        found,
        len(marks),
        float(residuals(np.zeros(8), distance).mean()),
        float(after.mean()),
        float(np.mean(after <= inlier_px)),
        float(np.nanmax(np.linalg.norm(project(p) - start, axis=1))),
        evaluations,
    )
    if not report.shift_px <= radius:
        raise UserError(
            f"{where}: the line fit moved the view by {report.shift_px:.0f} px (more than {radius:.0f} px): it"
            " diverged; calibrate this frame from landmarks instead."
        )
    if report.inlier_share < min_inlier_share:
        raise UserError(
            f"{where}: after the line fit only {report.inlier_share:.0%} of the pitch markings lie on painted lines"
            f" (need {min_inlier_share:.0%}); calibrate this frame from landmarks instead."
        )
    refined = calibration.with_homography(calibration.H @ np.linalg.inv(correction(p)))
    return dataclasses.replace(refined, reason=f"{calibration.reason}; {report.summary()}".lstrip("; ")), report


def _check_frame_size(calibration: Calibration, frame: np.ndarray) -> tuple[int, int]:
    """The frame's (width, height), which must be the calibration's when it says."""
    size = (frame.shape[1], frame.shape[0])
    if calibration.image_size is not None and tuple(calibration.image_size) != size:
        raise UserError(
            f"{calibration.source or 'calibration'}: made for {calibration.image_size[0]}x"
            f"{calibration.image_size[1]} frames, these are {size[0]}x{size[1]}; use"
            f" calibration.scaled({size[0] / calibration.image_size[0]:.6g})."
        )
    return size


# ---- moving cameras -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CameraMotion:
    """Per-frame camera motion relative to the reference frame (the one `reference` was calibrated on).

    motion[i] maps undistorted pixels of the reference frame to those of frame frames[i]; a camera that never moves
    more than the threshold is `static` and every motion is the identity (one calibration for all frames).
    """

    reference: Calibration
    frames: np.ndarray  # [T] frame indices
    motion: np.ndarray  # [T, 3, 3]
    shift_px: np.ndarray  # [T] median displacement of the reference frame's features, px
    inliers: np.ndarray  # [T] RANSAC inliers of the match (0: lost, previous motion kept)
    static: bool

    def calibration(self, i: int) -> Calibration:
        """The calibration of the i-th frame (position in `frames`, not frame index)."""
        if self.static:
            return self.reference
        return self.reference.with_homography(self.reference.H @ np.linalg.inv(self.motion[i]))

    def summary(self) -> str:
        what = "static camera, one calibration kept" if self.static else "moving camera"
        lost = int(np.sum(self.inliers == 0))
        return f"{what}: max shift {self.shift_px.max():.2f} px over {len(self.frames)} frames" + (
            f", {lost} frames without a match" if lost else ""
        )


class CameraTracker:
    """Follows a moving camera frame by frame from the calibrated reference frame, in the same pass as detection.

    Corners (goodFeaturesToTrack) inside the pitch area (`mask`, default the calibration's pitch polygon) of a key
    frame are followed into each frame with pyramidal Lucas–Kanade, seeded by the previous motion, and a RANSAC
    homography on their undistorted positions gives the key → frame motion. Matching against a key frame rather than
    the previous frame does not drift; a new key frame is taken when fewer than half of its corners survive. To be
    cheap (its frames/s: the "camera" stage of benchmarks/video.py), corners are only searched in key frames, at half
    size, and the flow uses small windows: the prediction from the previous motion leaves little to find.
    """

    def __init__(
        self, calibration: Calibration, mask: np.ndarray | None = None, static_px: float = 1.0, max_features: int = 400
    ):
        self.reference = calibration
        self.mask, self.static_px, self.max_features = mask, static_px, max_features
        self._key: np.ndarray | None = None  # grey key frame
        self._key_points = np.zeros((0, 2), np.float32)  # its corners
        self._key_undistorted = np.zeros((0, 2))  # the same, undistorted
        self._key_motion = np.eye(3)  # reference → key frame
        self._reference_points: np.ndarray | None = None  # the first key frame's corners, undistorted
        self._motions: list[np.ndarray] = []
        self._shifts: list[float] = []
        self._inliers: list[int] = []
        self._moved = False  # whether the view has moved by static_px yet

    def update(self, frame_bgr: np.ndarray) -> Calibration:
        """The calibration of this frame, the next one of the video: the reference one while the camera stays put.

        Until the view has moved by `static_px` the reference calibration is returned, so that a static camera's frames
        all share it exactly; a frame without a match keeps the previous motion.
        """
        if not self._motions:
            _check_frame_size(self.reference, frame_bgr)
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
        count, motion = (0, np.eye(3)) if self._key is None else self._match(grey)
        if self._key is None or 8 <= count < max(40, len(self._key_points) // 2):
            count = self._take_key_frame(grey, motion, count)
        motion = motion / motion[2, 2]
        self._motions.append(motion)
        reference = self._reference_points
        moved = np.zeros(1) if reference is None else apply_homography(motion, reference) - reference
        shift = float(np.nanmedian(np.linalg.norm(moved, axis=-1)))
        self._shifts.append(shift)
        self._inliers.append(count)
        self._moved = self._moved or not shift < self.static_px  # NaN (lost to infinity) counts as moved
        return self._calibration(motion) if self._moved else self.reference

    def result(self) -> CameraMotion:
        """The motion of every frame given to `update` so far (frames numbered from 0)."""
        if not self._motions:
            raise UserError(f"{self.reference.source or 'video'}: no frames to follow the camera in.")
        count, static = len(self._motions), not self._moved
        motion = np.repeat(np.eye(3)[None], count, 0) if static else np.array(self._motions)
        return CameraMotion(
            self.reference, np.arange(count), motion, np.array(self._shifts), np.array(self._inliers), static
        )

    def _calibration(self, motion: np.ndarray) -> Calibration:
        return self.reference.with_homography(self.reference.H @ np.linalg.inv(motion))

    def _match(self, grey: np.ndarray) -> tuple[int, np.ndarray]:
        """(RANSAC inliers, reference → frame motion) of the key frame's corners followed into `grey`."""
        last = self._motions[-1]
        predicted = self.reference.distort(
            apply_homography(last @ np.linalg.inv(self._key_motion), self._key_undistorted)
        )
        predicted = np.where(np.isfinite(predicted), predicted, self._key_points).astype(np.float32)
        tracked, status, _ = cv2.calcOpticalFlowPyrLK(
            self._key,
            grey,
            self._key_points.reshape(-1, 1, 2),
            predicted.reshape(-1, 1, 2),
            winSize=LK_WINDOW,
            maxLevel=LK_LEVELS,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        ok = status.ravel() == 1
        if ok.sum() < 8:
            return 0, last
        G, good = cv2.findHomography(
            self._key_undistorted[ok], self.reference.undistort(tracked[ok, 0]), cv2.RANSAC, 1.5
        )
        return (0, last) if G is None else (int(good.sum()), G @ self._key_motion)

    def _take_key_frame(self, grey: np.ndarray, motion: np.ndarray, count: int) -> int:
        """Make `grey` the key frame if it has corners on the pitch; the inlier count to report for the frame."""
        area = self.mask
        if area is None:
            area = np.zeros(grey.shape, np.uint8)
            polygon = self._calibration(motion).pitch_polygon((grey.shape[1], grey.shape[0]))
            if len(polygon):
                cv2.fillPoly(area, [polygon], 255)
        half = (grey.shape[1] // 2, grey.shape[0] // 2)
        corners = cv2.goodFeaturesToTrack(
            cv2.resize(grey, half, interpolation=cv2.INTER_AREA),
            self.max_features,
            CORNER_QUALITY,
            5,
            mask=cv2.resize(area, half, interpolation=cv2.INTER_NEAREST),
            blockSize=5,
        )
        if corners is None or len(corners) < 8:
            return count
        # Half-size pixel centres scale about -0.5 (cv2.resize): full = 2 half + 0.5.
        self._key, self._key_points, self._key_motion = grey, np.ascontiguousarray(corners[:, 0] * 2 + 0.5), motion
        self._key_undistorted = self.reference.undistort(self._key_points)
        if self._reference_points is None:
            self._reference_points = self._key_undistorted
            return len(self._key_points)
        return count


class ViewFollower:
    """The calibration of every frame of an edited video: camera tracking within a shot, and at every shot boundary a
    new start from the painted lines.

    A cut breaks the optical flow, and the new shot's view is unknown. Broadcast main-camera shots return to views
    near the last one (after a replay or a close-up), so the last calibrated view is refitted to the new shot's lines
    (`refine_with_lines`); where that is refused (no lines, a view too far away) the shot has no calibration: its
    frames get None and are left out, counted, until a later cut refits. The first frame uses the given calibration.
    """

    def __init__(self, calibration: Calibration):
        self.last = calibration  # the last frame's calibration: the starting guess after a cut
        self.tracker: CameraTracker | None = CameraTracker(calibration)
        self.shots: list[CameraMotion] = []  # each finished calibrated shot's motion
        self.refitted = self.refused = self.uncalibrated_frames = 0

    def update(self, frame_bgr: np.ndarray, new_shot: bool) -> Calibration | None:
        """The calibration of this frame (the next of the video), or None in a shot the lines could not calibrate."""
        if new_shot:
            if self.tracker is not None:
                self.shots.append(self.tracker.result())
            try:
                start, _ = refine_with_lines(frame_bgr, self.last)
                self.tracker, self.refitted = CameraTracker(start), self.refitted + 1
            except UserError:
                self.tracker, self.refused = None, self.refused + 1
        if self.tracker is None:
            self.uncalibrated_frames += 1
            return None
        self.last = self.tracker.update(frame_bgr)
        return self.last

    def summary(self) -> str:
        shots = self.shots + ([self.tracker.result()] if self.tracker is not None else [])
        moving = [s for s in shots if not s.static]
        text = (
            f"{len(moving)} of {len(shots)} calibrated shots with a moving camera"
            if moving
            else f"static camera in {len(shots)} calibrated shot(s), one calibration each"
        )
        text += f", largest move {max((float(s.shift_px.max()) for s in shots), default=0.0):.2f} px"
        if self.refitted or self.refused:
            text += (
                f"; {self.refitted} shots recalibrated on the painted lines, {self.refused} refused"
                f" ({self.uncalibrated_frames} frames without a calibration, left out)"
            )
        return text
