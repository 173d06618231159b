"""Pictures of the front end's work: tracks drawn over a video frame, and the resulting trajectories on a pitch."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np

from trajsv_jax import plots
from trajsv_jax.data import clips, pitch
from trajsv_jax.video import decode, detect
from trajsv_jax.video.preprocess import FrontEndResult

TRAIL_FRAMES = 50  # how much of each track's past the frame picture shows (2 s at 25 fps)


def _bgr(colour: str) -> tuple[int, int, int]:
    """A matplotlib '#rrggbb' colour as OpenCV's (b, g, r)."""
    return tuple(int(colour[i : i + 2], 16) for i in (5, 3, 1))


BALL_BGR = (0, 255, 255)  # yellow: black would not show on the grass


def _colour(result: FrontEndResult, track_id: int, label: int) -> tuple[int, int, int]:
    """The track's team colour, as in the pitch plots (plots.ROLE_COLOURS)."""
    if label == detect.LABEL_BALL:
        return BALL_BGR
    return _bgr(plots.ROLE_COLOURS[result.team_of.get(track_id, clips.ROLE_OTHER)])


def draw_tracks(result: FrontEndResult, frame: np.ndarray, index: int) -> np.ndarray:
    """The frame with the projected pitch lines, each track's box and id, and its foot-point trail, by team."""
    canvas = frame.copy()
    geometry, size = result.calibrations[index], result.frame_size
    for line in pitch.markings() if geometry is not None else []:
        pixels = detect.visible_pixels(geometry, line, size)
        cv2.polylines(canvas, [np.round(pixels).astype(np.int32)], False, (255, 255, 0), 1, cv2.LINE_AA)
    trails: dict[tuple[int, int], list[np.ndarray]] = {}
    for tracks in result.tracks[max(0, index - TRAIL_FRAMES) : index + 1]:
        feet = detect.Detections(tracks.boxes, tracks.scores, tracks.labels).foot_points()
        for track_id, label, foot in zip(tracks.ids, tracks.labels, feet, strict=True):
            trails.setdefault((int(track_id), int(label)), []).append(foot)
    for (track_id, label), points in trails.items():
        line = np.round(np.array(points)).astype(np.int32)
        cv2.polylines(canvas, [line], False, _colour(result, track_id, label), 2, cv2.LINE_AA)
    now = result.tracks[index]
    for track_id, box, label in zip(now.ids, now.boxes, now.labels, strict=True):
        colour = _colour(result, int(track_id), int(label))
        x0, y0, x1, y1 = (int(v) for v in np.round(box))
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 2)
        cv2.putText(canvas, str(track_id), (x0, y0 - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return canvas


def save_pictures(result: FrontEndResult, out_dir: str | Path) -> list[Path]:
    """tracks_frame.png (the middle frame of the longest clip) and trajectories.png (that clip on the pitch)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start, stop = max(result.segmentation.clips, key=lambda r: r[1] - r[0])
    index = (start + stop) // 2
    height = result.frame_size[1]
    _, frame = next(decode.frames(result.source.metadata["video"], height, start=index, stop=index + 1))
    frame_png = out / "tracks_frame.png"
    cv2.imwrite(str(frame_png), draw_tracks(result, frame, index))

    source = result.source
    clip = int(np.searchsorted(source.clip_first_frame, start, side="right")) - 1
    positions = source.clip(max(clip, 0))
    fig, ax = plt.subplots(figsize=(9, 6.2))
    plots.draw_pitch(ax)
    plots.draw_play(ax, positions, source.object_role)
    seconds = len(positions) / source.fps
    ax.set_title(
        f"{source.source_id}: {positions.shape[1]} tracked objects over {seconds:.1f} s (frames {start}-{stop - 1})\n"
        "foot points through the calibration; red / blue: the two teams (not their kits' colours), grey: other,"
        " black: ball; dot = last position",
        fontsize=9,
    )
    pitch_png = Path(plots.save(fig, out / "trajectories.png"))
    return [frame_png, pitch_png]
