"""Broadcast video → a source in the trajectory store (paper IV-A): the whole front end in one pass over the frames.

decode (downscaled to `height` rows) → per frame: camera-view cues and detections → main-camera clips (shots.py)
→ one tracker per clip (track.py) → foot points through the calibration → centred metres → `store.source_from_frames`,
the same path provider data takes, so `trajsv tokenize / dataset / train / embed` run on the result unchanged.
Nothing is written until every stage has succeeded; every detection or frame left out is counted in the metadata.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from trajsv_jax.data import clips, store
from trajsv_jax.errors import UserError
from trajsv_jax.video import calibrate, camera, decode, detect, shots, teams, track, trajectories

ROLE_ORDER = (clips.ROLE_BALL, clips.ROLE_TEAM_A, clips.ROLE_TEAM_B, clips.ROLE_OTHER)  # object columns, in this order
STAGES = ("detector", "tracker", "cleaning")  # the PreprocessConfig parts whose thresholds `--set` changes
MIN_HEIGHT = 120  # rows: fewer leave players a few pixels tall


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    height: int | None = 720  # rows the frames are downscaled to before any analysis (None: native size)
    view: shots.ViewConfig = dataclasses.field(default_factory=shots.ViewConfig)
    detector: detect.PitchColourConfig = dataclasses.field(default_factory=detect.PitchColourConfig)
    tracker: track.TrackerConfig = dataclasses.field(default_factory=track.TrackerConfig)
    cleaning: trajectories.TrajectoryConfig = dataclasses.field(default_factory=trajectories.TrajectoryConfig)
    clip: clips.ClipConfig = dataclasses.field(default_factory=clips.ClipConfig)

    def validate(self) -> None:
        """A UserError naming the flag of a bad value, before any frame is read."""
        if self.height is not None and self.height < MIN_HEIGHT:
            raise UserError(
                f"--height {self.height}: too few rows to see the players; use 0 (native size) or at least "
                f"{MIN_HEIGHT}, e.g. 720."
            )
        self.view.validate()
        self.tracker.validate()


def with_settings(config: PreprocessConfig, settings: Sequence[str]) -> PreprocessConfig:
    """`config` with `STAGE.NAME=VALUE` settings applied (`trajsv preprocess --set`): any threshold of the detector,
    the tracker or the trajectory cleaning, each a finite number >= 0 of its default's type."""
    changes: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    for item in settings:
        key, _, text = item.partition("=")
        stage, _, name = key.partition(".")
        part = getattr(config, stage) if stage in STAGES else None
        if part is None or name not in {f.name for f in dataclasses.fields(part)}:
            known = ", ".join(
                f"{s}.{f.name}={getattr(getattr(config, s), f.name)}"
                for s in STAGES
                for f in dataclasses.fields(getattr(config, s))
            )
            raise UserError(f"--set {item}: no such setting. The settings, with their values: {known}.")
        kind = type(getattr(part, name))
        try:
            value = kind(text)
        except ValueError:
            value = math.nan
        if not 0 <= value < math.inf:
            raise UserError(f"--set {item}: {key} takes a finite {kind.__name__} >= 0 (now {getattr(part, name)}).")
        changes[stage][name] = value
    return dataclasses.replace(config, **{s: dataclasses.replace(getattr(config, s), **changes[s]) for s in STAGES})


@dataclasses.dataclass
class FrontEndResult:
    """What the front end produced, besides the source it wrote: enough to draw and report it."""

    source: store.Source
    drops: clips.Drops
    segmentation: shots.Segmentation
    calibrations: list[Any]  # per analysed frame, calibrate.Calibration at the analysed size (one object if static)
    tracks: list[track.Tracks]  # per analysed frame (empty outside clips)
    team_of: dict[int, int]  # clips.ROLE_* of each player track id (teams.py)
    frame_size: tuple[int, int]
    seconds: dict[str, float]  # wall time per stage
    counts: dict[str, int]


def load_calibration(
    info: decode.VideoInfo,
    landmarks: Path | None,
    calibration: Path | None,
    distortion: str,
    drop_outliers: bool = False,
):
    """The calibration at the video's native size, from landmarks (fitted; `drop_outliers` leaves out those off the
    fit of the others: calibrate.fit) or an imported calibration file."""
    if (landmarks is None) == (calibration is None):
        raise UserError(
            f"{info.path}: give exactly one of --landmarks (pitch landmarks: CVAT XML or JSON) or --calibration "
            "(a homography / SoccerNet camera JSON); --refine-lines then fits that view to the painted lines."
        )
    if landmarks is not None:
        points = calibrate.read_landmarks(landmarks)
        fitted = calibrate.fit(points, distortion=distortion, drop_outliers=drop_outliers)
    else:
        fitted = camera.read_calibration(calibration)
    size = fitted.image_size
    if size is not None and tuple(size) != (info.width, info.height):
        factor = info.width / size[0]
        if abs(info.height / size[1] - factor) > 1e-3:
            raise UserError(
                f"{landmarks or calibration}: made for {size[0]}x{size[1]} images, but {info.path} is "
                f"{info.width}x{info.height} (another aspect ratio). Annotate a frame of this video."
            )
        fitted = fitted.scaled(factor)
    return fitted


def detector_for(onnx: Path | None, geometry, frame_size: tuple[int, int], config: PreprocessConfig, where: Path):
    """The ONNX detector the user supplies, or the weight-free pitch-colour detector."""
    if onnx is not None:
        return detect.OnnxDetector(onnx, frame_size=frame_size, geometry=geometry)
    detector = detect.PitchColourDetector(geometry, frame_size, config.detector, config.view)
    if not detector.field.any():
        raise UserError(
            f"{where}: no pitch visible: under this calibration the pitch lies outside the frame. Check that the "
            "landmarks or calibration belong to this video."
        )
    return detector


def run_front_end(
    video: str | os.PathLike,
    *,
    landmarks: Path | None = None,
    calibration: Path | None = None,
    onnx_detector: Path | None = None,
    distortion: str = "auto",
    drop_landmark_outliers: bool = False,
    refine_lines: bool = False,
    config: PreprocessConfig | None = None,
    source_id: str | None = None,
    max_frames: int | None = None,
    allow_short_video: bool = False,
    progress: bool = True,
) -> FrontEndResult:
    """Run every stage on the first `max_frames` frames (all by default) of `video`; the source is not yet written.

    refine_lines: fit the calibration to the painted lines of the first frame (camera.refine_with_lines), starting
    from the landmarks' or imported view; a UserError where the lines do not confirm a refined view.
    allow_short_video: use a video whose frames end before the container's frame count (decode.missing_frames),
    counting the missing frames, instead of refusing it.
    """
    config = config or PreprocessConfig()
    config.validate()
    if max_frames is not None and max_frames < 1:
        raise UserError(f"--max-frames {max_frames}: must be at least 1 (leave it out for every frame).")
    info = decode.probe(video)
    fitted = load_calibration(info, landmarks, calibration, distortion, drop_landmark_outliers)
    size = decode.scaled_size(info, config.height)
    geometry = fitted.scaled(size[0] / info.width)
    line_fit = None
    if refine_lines:
        _, first = next(decode.frames(info.path, config.height, stop=1))
        geometry, line_fit = camera.refine_with_lines(first, geometry)
    detector = detector_for(onnx_detector, geometry, size, config, info.path)
    view = shots.ViewClassifier(config.view)
    detections: list[detect.Detections] = []
    torsos: list[list[np.ndarray]] = []  # per frame and detection: the torso's shirt pixels (teams.py)
    calibrations: list[calibrate.Calibration | None] = []  # per frame (the same object while the camera stays put)
    follower = camera.ViewFollower(geometry)
    # Wall time of each stage in this thread; decoding runs ahead in another (decode.prefetched): "decode_wait" is the
    # time spent waiting for it, so the stages add up to the front end's wall time.
    seconds = dict.fromkeys(("decode_wait", "segment", "camera", "detect", "teams", "track", "project"), 0.0)
    total = min(filter(None, (info.frame_count, max_frames)), default=None)
    frames = decode.prefetched(decode.frames(info.path, config.height, stop=max_frames))
    bar = tqdm(total=total, desc=f"preprocess {info.path.name}", unit="frame", disable=not progress)
    while True:
        t0 = time.perf_counter()
        item = next(frames, None)
        t1 = time.perf_counter()
        if item is None:
            break
        view.add(item[1])
        t2 = time.perf_counter()
        calibrations.append(follower.update(item[1], view.at_shot_boundary()))
        t_camera = time.perf_counter()
        if calibrations[-1] is None:  # a shot the painted lines could not calibrate: left out (counted)
            detections.append(detect.Detections.empty())
        else:
            detector.set_geometry(calibrations[-1])
            detections.append(detector(item[1]))
        t3 = time.perf_counter()
        torsos.append(teams.torso_pixels(item[1], detections[-1].boxes, config.view))
        seconds["decode_wait"] += t1 - t0
        seconds["segment"] += t2 - t1
        seconds["camera"] += t_camera - t2
        seconds["detect"] += t3 - t_camera
        seconds["teams"] += time.perf_counter() - t3
        bar.update()
    bar.close()
    missing = decode.missing_frames(info, len(detections), max_frames, allow_short_video)
    segmentation = shots.segment(view.cues(), info.fps, config.view, config.clip.min_seconds)
    if not segmentation.clips:
        counts = ", ".join(f"{k} {v}" for k, v in segmentation.counts().items())
        raise UserError(
            f"{info.path}: no main-camera clip of at least {config.clip.min_seconds} s ({counts}); rejected by the "
            f"view cues: {shots.explain(segmentation.cues, config.view) or 'no frame'}. Check the video, or change "
            "those thresholds."
        )
    t0 = time.perf_counter()
    tracks = [track.Tracks.empty() for _ in detections]
    next_id = 1  # ids stay unique across clips: a track never continues over a cut
    static_balls = 0
    for start, stop in segmentation.clips:
        tracker = track.Tracker(config.tracker, first_id=next_id)
        for f in range(start, stop):
            tracks[f] = tracker.update(detections[f])
        next_id = tracker.next_id
        static_balls += tracker.static_balls
    seconds["track"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    team_of = teams.assign(track_torsos(tracks, torsos))
    seconds["teams"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    frames_data, cleaning = to_frames(tracks, team_of, segmentation, calibrations, info, config.cleaning)
    source, drops = store.source_from_frames(
        frames_data, store.safe_source_id(source_id or f"video_{info.path.stem}"), config.clip
    )
    seconds["project"] = time.perf_counter() - t0
    if source.num_clips == 0:
        raise UserError(
            f"{info.path}: main-camera clips were found but no tracked object stayed on the pitch long enough "
            f"({drops.as_dict()}). Check the calibration (objects may project off the pitch)."
        )
    counts = {
        "frames": len(detections),
        "frames_missing": missing,
        "landmark_outliers_dropped": len(fitted.dropped),
        "detections": int(sum(len(d) for d in detections)),
        "ball_detections": int(sum((d.labels == detect.LABEL_BALL).sum() for d in detections)),
        "detections_off_field": int(getattr(detector, "off_field", 0)),
        "frames_without_grass": int(getattr(detector, "no_grass_frames", 0)),
        "frames_without_calibration": follower.uncalibrated_frames,
        "shots_recalibrated": follower.refitted,
        "shots_refused": follower.refused,
        "tracked_boxes": int(sum(len(t) for t in tracks)),
        "tracks": len({int(i) for t in tracks for i in t.ids}),
        "static_ball_candidates_dropped": static_balls,
        **cleaning,
        **{f"segmentation_{k}": v for k, v in segmentation.counts().items()},
    }
    source.metadata.update(
        video=str(info.path.resolve()),
        video_size=[info.width, info.height],
        analysed_size=list(size),
        codec=info.codec,
        calibration=geometry.to_json(),  # of the first frame, at the analysed size
        view_cues=shots.explain(segmentation.cues, config.view),
        camera_motion=follower.summary(),
        calibration_summary=fitted.summary(),
        line_refinement=line_fit and line_fit.summary(),
        detector=str(onnx_detector) if onnx_detector else "pitch-colour (weight-free)",
        front_end_counts=counts,
        front_end_seconds=seconds,
    )
    return FrontEndResult(source, drops, segmentation, calibrations, tracks, team_of, size, seconds, counts)


def track_torsos(tracks: list[track.Tracks], torsos: list[list[np.ndarray]]) -> dict[int, list[np.ndarray]]:
    """The torso pixels of each player track's detections, frame by frame."""
    out: dict[int, list[np.ndarray]] = {}
    for frame_tracks, frame_torsos in zip(tracks, torsos, strict=True):
        for i, d, label in zip(frame_tracks.ids, frame_tracks.detections, frame_tracks.labels, strict=True):
            if label == detect.LABEL_PERSON:
                out.setdefault(int(i), []).append(frame_torsos[d])
    return out


def to_frames(
    tracks: list[track.Tracks],
    team_of: dict[int, int],
    segmentation: shots.Segmentation,
    calibrations: list[calibrate.Calibration],
    info: decode.VideoInfo,
    config: trajectories.TrajectoryConfig,
) -> tuple[clips.Frames, dict[str, int]]:
    """Each clip's tracks → clean trajectories on the pitch (trajectories.py) → clips.Frames for the store.

    A track lives in one clip (ids never continue over a cut), so the store's object columns are slots reused from
    clip to clip, one pool per role (ball, team A, team B, other): a whole match needs as many columns as its busiest
    clip, not one per track. The track id in each clip's columns is kept in the metadata ("clip_track_ids").
    team_of: the role (teams.py) of each player track; ball tracks are the ball.
    """
    per_clip, counts = [], collections.Counter()
    for start, stop in segmentation.clips:
        ids, labels, positions, metres_per_pixel = trajectories.project(tracks[start:stop], calibrations[start:stop])
        roles = np.array(
            [
                clips.ROLE_BALL if b == detect.LABEL_BALL else team_of.get(int(i), clips.ROLE_OTHER)
                for b, i in zip(labels, ids, strict=True)
            ],
            np.int8,
        )
        positions, kept, cleaning = trajectories.clean(positions, roles, info.fps, metres_per_pixel, config)
        counts.update(cleaning)
        per_clip.append((start, ids[kept], roles[kept], positions))
    pool = {r: max([int((roles == r).sum()) for *_, roles, _ in per_clip], default=0) for r in ROLE_ORDER}
    first = dict(zip(ROLE_ORDER, np.cumsum([0, *(pool[r] for r in ROLE_ORDER)]).tolist(), strict=False))
    positions = np.full((len(tracks), sum(pool.values()), 2), np.nan, np.float32)
    clip_track_ids = []
    for start, ids, roles, clip_positions in per_clip:
        column = np.zeros(len(ids), np.int64)
        for r in ROLE_ORDER:
            column[roles == r] = first[r] + np.arange(int((roles == r).sum()))
        positions[start : start + len(clip_positions), column] = clip_positions
        clip_track_ids.append({int(c): int(i) for c, i in zip(column, ids, strict=True)})
    slot_roles = np.concatenate([np.full(pool[r], r, np.int8) for r in ROLE_ORDER])
    index = np.arange(len(tracks))
    frames = clips.Frames(
        positions=positions,
        frame_id=index.astype(np.int64),
        period=np.ones(len(tracks), np.int16),
        timestamp=index / info.fps,
        object_role=slot_roles,
        object_id=np.array([f"{clips.ROLE_NAMES[r]}_{k - first[r]}" for k, r in enumerate(slot_roles)]),
        fps=info.fps,
        pitch_length=105.0,
        pitch_width=68.0,
        metadata={"provider": "video", "files": {"video": str(info.path)}, "clip_track_ids": clip_track_ids},
        shot=np.where(segmentation.main_camera, segmentation.shot, -1).astype(np.int32),
    )
    return frames, dict(counts)


def preprocess(video: str | os.PathLike, out_store: str | os.PathLike, **kwargs) -> FrontEndResult:
    """Run the front end and add its source to `out_store` (written only when every stage succeeded)."""
    result = run_front_end(video, **kwargs)
    store.write_source(out_store, result.source)
    return result


def report(result: FrontEndResult, store_path: Path, pictures: list[Path]) -> str:
    """A few lines for the terminal: what was found, what was dropped, how fast each stage ran."""
    c, s, source = result.counts, result.seconds, result.source
    frames = max(c["frames"], 1)
    speed = ", ".join(f"{k} {frames / v:.0f} fps" for k, v in s.items() if v > 0)
    drops = ", ".join(f"{k} {v}" for k, v in result.drops.as_dict().items() if v)
    return "\n".join(
        [
            f"{source.source_id} -> {store_path}: {source.num_clips} clips, {source.num_objects} tracked objects, "
            f"{int(source.clip_lengths().sum())} frames at {source.fps:g} fps",
            *(
                f"  video: {m} of the {c['frames'] + m} frames the container declares are missing (it ends early)"
                for m in [c["frames_missing"]]
                if m
            ),
            f"  calibration: {source.metadata['calibration_summary']}",
            *(f"  line refinement: {r}" for r in [source.metadata["line_refinement"]] if r),
            f"  camera: {source.metadata['camera_motion']}",
            f"  segmentation: {c['segmentation_main_camera_frames']}/{c['frames']} frames main camera, "
            f"{c['segmentation_shots']} shots, {c['segmentation_clips']} clips, "
            f"{c['segmentation_short_runs_dropped']} runs under the minimum dropped",
            f"  rejected by the view cues: {source.metadata['view_cues'] or 'no frame'}",
            f"  detection: {c['detections']} boxes ({c['ball_detections']} ball), "
            f"{c['detections_off_field']} candidates off the pitch dropped; tracking: {c['tracks']} tracks, "
            f"{c['tracked_boxes']} tracked boxes, {c['static_ball_candidates_dropped']} ball candidates that never "
            "moved left out (a spare ball lying still, a painted spot)",
            f"  on the pitch: {c['implausible_jumps_removed']} implausible jumps removed, "
            f"{c['gap_points_interpolated']} gap points filled, {c['short_tracks_removed']} tracks seen too briefly "
            f"removed ({c['short_track_points_removed']} points)",
            f"  dropped on the way to clips: {drops or 'nothing'}",
            f"  speed at {result.frame_size[0]}x{result.frame_size[1]}: {speed}; "
            f"whole front end {frames / sum(s.values()):.1f} fps",
            *(f"  picture: {p}" for p in pictures),
        ]
    )
