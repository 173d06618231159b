"""Pictures of the front end's work: tracks drawn over a video frame, and the resulting trajectories on a pitch."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np

from trajsv_jax import pitch, plots
from trajsv_jax.video import decode, detect
from trajsv_jax.video.preprocess import FrontEndResult

TRAIL_FRAMES = 50  # how much of each track's past the frame picture shows (2 s at 25 fps)


def _colour(track_id: int) -> tuple[int, int, int]:
    hue = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(v) for v in bgr)


def draw_tracks(result: FrontEndResult, frame: np.ndarray, index: int) -> np.ndarray:
    """The frame with the projected pitch lines, each track's box and id, and its foot-point trail."""
    canvas = frame.copy()
    geometry, size = result.calibration, result.frame_size
    for line in pitch.markings():
        pixels = detect.visible_pixels(geometry, line, size)
        cv2.polylines(canvas, [np.round(pixels).astype(np.int32)], False, (255, 255, 0), 1, cv2.LINE_AA)
    trails: dict[int, list[np.ndarray]] = {}
    for tracks in result.tracks[max(0, index - TRAIL_FRAMES) : index + 1]:
        feet = detect.Detections(tracks.boxes, tracks.scores, tracks.labels).foot_points()
        for track_id, foot in zip(tracks.ids, feet, strict=True):
            trails.setdefault(int(track_id), []).append(foot)
    for track_id, points in trails.items():
        line = np.round(np.array(points)).astype(np.int32)
        cv2.polylines(canvas, [line], False, _colour(track_id), 2, cv2.LINE_AA)
    now = result.tracks[index]
    for track_id, box, label in zip(now.ids, now.boxes, now.labels, strict=True):
        colour = (0, 255, 255) if label == detect.LABEL_BALL else _colour(int(track_id))
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
        "foot points through the calibration; dot = last position",
        fontsize=9,
    )
    pitch_png = Path(plots.save(fig, out / "trajectories.png"))
    return [frame_png, pitch_png]
