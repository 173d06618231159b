"""A moving camera in the front end's single pass, on real frames: `CameraTracker` gives every frame its calibration
and the detectors follow it with `set_geometry`. The pan and zoom are synthetic (real frames warped by a known motion,
as in test_calibrate), so the truth is known; the real clip itself comes from a fixed camera."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path
from test_calibrate import LEFT, SCALE, VIDEO, warp_undistorted

from trajsv_jax.video import calibrate, camera, decode, detect
from trajsv_jax.video.calibrate import apply_homography

FRAMES = 6
CENTRE = np.array([[1, 0, 640], [0, 1, 360], [0, 0, 1.0]])


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Frames 0..5 of the real clip at 1280x720."""
    return [frame for _, frame in decode.frames(shared_path(VIDEO), 720, stop=FRAMES)]


@pytest.fixture(scope="module")
def reference() -> calibrate.Calibration:
    """The landmark calibration of frame 0, at 1280x720."""
    return calibrate.fit(calibrate.read_landmarks(shared_path(LEFT))).scaled(SCALE)


def truth(i: float) -> np.ndarray:
    """The synthetic camera motion at frame i: 8 px/frame right, 3 px/frame up, 1 %/frame zoom about the centre."""
    pan = np.array([[1, 0, 8.0 * i], [0, 1, -3.0 * i], [0, 0, 1]])
    return pan @ CENTRE @ np.diag([1 + 0.01 * i] * 2 + [1]) @ np.linalg.inv(CENTRE)


def people_on_pitch(detector, frame: np.ndarray, geometry: calibrate.Calibration) -> np.ndarray:
    """[N, 2] pitch positions (m) of the people the detector finds in the frame, through `geometry`."""
    found = detector(frame)
    return geometry.image_to_pitch(found.select(found.labels == detect.LABEL_PERSON).foot_points().astype(np.float64))


def share_within(expected: np.ndarray, found: np.ndarray, metres: float) -> float:
    """Share of the expected positions with a found one within `metres`."""
    if len(found) == 0:
        return 0.0
    nearest = np.nanmin(np.linalg.norm(expected[:, None] - found[None], axis=-1), axis=1)
    return float(np.mean(nearest < metres))


def test_tracker_and_detector_follow_a_pan_and_zoom(frames, reference):
    # Successive real frames (players move) as seen by a camera panning and zooming: 43 px and 5 % by frame 5.
    moved = [warp_undistorted(frame, reference, truth(i)) if i else frame for i, frame in enumerate(frames)]
    tracker = camera.CameraTracker(reference)
    following = detect.PitchColourDetector(reference, (1280, 720))
    stale = detect.PitchColourDetector(reference, (1280, 720))  # kept on the reference geometry
    unmoved = detect.PitchColourDetector(reference, (1280, 720))
    xs, ys = np.meshgrid(np.arange(-50.0, 51, 5), np.arange(-30.0, 31, 5))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
    followed, left_behind = np.zeros(FRAMES), np.zeros(FRAMES)  # share of the people within 1 m of the truth
    for i, frame in enumerate(moved):
        geometry = tracker.update(frame)
        assert (geometry is reference) == (i == 0)
        # The frame's calibration puts pitch points where the moved camera sees them.
        true_pixels = reference.distort(apply_homography(truth(i), reference.undistort(reference.pitch_to_image(grid))))
        inside = np.all((true_pixels > 20) & (true_pixels < [1260, 700]), axis=1)
        error = np.linalg.norm(geometry.pitch_to_image(grid[inside]) - true_pixels[inside], axis=1)
        assert inside.sum() > 100 and np.percentile(error, 95) < 1.0, (i, np.percentile(error, 95))  # 0.04-0.16 px
        assert following.set_geometry(geometry) == (i > 0)  # the lines move 11-14 px a frame: redrawn every time
        # People found on the moved frame land where they stand on the unmoved one; a stale detector misplaces them.
        expected = people_on_pitch(unmoved, frames[i], reference)
        assert len(expected) >= 20
        followed[i] = share_within(expected, people_on_pitch(following, frame, geometry), 1.0)
        left_behind[i] = share_within(expected, people_on_pitch(stale, frame, reference), 1.0)
    # Within 1 m, measured: followed 0.84, 0.82, 0.88, 0.80, 0.85 (the warp's blur splits or merges a few blobs);
    # left behind 0.44, 0.32, 0.34, 0.17, 0.06 as the view moves 12 to 62 px away from the reference.
    assert followed.min() >= 0.7 and followed.mean() >= 0.75, followed
    assert left_behind[2:].mean() < 0.4 and np.all(followed[2:] > left_behind[2:] + 0.3), (followed, left_behind)
    motion = tracker.result()
    assert not motion.static and following.rebuilds == FRAMES - 1 and stale.rebuilds == 0
    assert list(motion.frames) == list(range(FRAMES)) and 50 < motion.shift_px[-1] < 75  # measured 61.8 px


def test_a_fixed_camera_keeps_one_calibration_and_its_masks(frames, reference):
    tracker = camera.CameraTracker(reference)
    detector = detect.PitchColourDetector(reference, (1280, 720))
    field = detector.field
    for frame in frames:
        geometry = tracker.update(frame)
        assert geometry is reference and not detector.set_geometry(geometry)
    motion = tracker.result()
    assert motion.static and motion.shift_px.max() < 0.5 and "static camera" in motion.summary()
    assert detector.rebuilds == 0 and detector.field is field
    # A pixel of jitter in a tracked calibration does not redraw the masks either; a 5 px pan and 0.6 % zoom do.
    jitter = reference.with_homography(reference.H @ np.linalg.inv(truth(0.1)))
    assert 0.3 < detector.view_shift(jitter) < 1.5 and not detector.set_geometry(jitter)
    assert detector.set_geometry(reference.with_homography(reference.H @ np.linalg.inv(truth(0.6))))
    assert detector.rebuilds == 1 and detector.field is not field


def test_onnx_detector_field_follows_the_geometry(reference, tmp_path):
    from test_video_frontend import yolo_like_model

    path = tmp_path / "det.onnx"
    yolo_like_model(path, np.zeros((1, 6), np.float32))
    drawn = detect.OnnxDetector(path, (1280, 720), geometry=reference)
    np.testing.assert_array_equal(drawn.field, detect.field_mask(reference, (1280, 720)))
    given = detect.OnnxDetector(path, (1280, 720), field=drawn.field)
    assert given.set_geometry(reference) and given.rebuilds == 1  # a given mask: the first geometry draws its own
    assert not given.set_geometry(reference)
    panned = reference.with_homography(reference.H @ np.linalg.inv(truth(2)))
    assert drawn.set_geometry(panned) and drawn.rebuilds == 1
    np.testing.assert_array_equal(drawn.field, detect.field_mask(panned, (1280, 720)))
    with pytest.raises(ValueError):
        detect.OnnxDetector(path, (1280, 720), field=drawn.field, geometry=reference)


def test_view_follower_recalibrates_after_a_cut_and_leaves_out_a_shot_without_lines(frames, reference):
    """An edited sequence: a first shot calibrated with a view that is 12 px right, 4.5 px up and 1.5 % zoomed away
    from the truth (as if the camera had moved since), a cut to the sky (no lines: refused, its frames left without a
    calibration), a cut back to the pitch: refitted on the painted lines, the view is the true one again."""
    from trajsv_jax.video import shots

    stale = reference.with_homography(reference.H @ np.linalg.inv(truth(1.5)))
    sky = [np.ascontiguousarray(np.resize(f[:250], f.shape)) for f in frames]
    follower, view = camera.ViewFollower(stale), shots.ViewClassifier()
    got = []
    for frame in [*frames, *sky, *frames]:
        view.add(frame)
        got.append(follower.update(frame, view.at_shot_boundary()))
    assert all(c is stale for c in got[:FRAMES])  # within a shot of a fixed camera the given calibration is kept
    assert all(c is None for c in got[FRAMES : 2 * FRAMES])
    assert (follower.refitted, follower.refused, follower.uncalibrated_frames) == (1, 1, FRAMES)
    marks = calibrate.read_landmarks(shared_path(LEFT)).pitch
    before = np.linalg.norm(stale.pitch_to_image(marks) - reference.pitch_to_image(marks), axis=1)
    assert np.median(before) > 10  # px at 720p: the stale view is visibly off
    for c in got[2 * FRAMES :]:
        after = np.linalg.norm(c.pitch_to_image(marks) - reference.pitch_to_image(marks), axis=1)
        assert np.nanmedian(after) < 3.0, after
    assert "1 shots recalibrated on the painted lines, 1 refused" in follower.summary()
