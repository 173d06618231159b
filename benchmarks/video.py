"""Benchmark: the video front end's frames/s per stage, at the clip's resolution and at 1280x720; prints JSON.

Runs `trajsv_jax.video.preprocess.run_front_end` (decode → view cues → camera tracking → weight-free detection →
kit colours → tracking → projection and cleaning) on the real SoccerTrack clip (HEVC 3072x1728, 25 fps, 250 frames)
three ways:
  native:            every stage at 3072x1728
  720p_from_native:  the same file decoded at full size and downscaled to 1280x720 before analysis
  720p_file:         a 1280x720 re-encode of the clip (how a 720p broadcast arrives), analysed at 720p
and reports each stage's frames/s (stage time alone; decoding runs ahead in a background thread, so its entry is
the time the analysis waited for frames, and `decode_only_fps` is decoding alone), the whole front end's frames/s,
the calibration's reprojection error on the landmarks, and the line refinement of that calibration on the first
frame. Goal: ≥ 25 fps at 720p for the weight-free path. There is no peer implementation of this front end to
compare against, so there is no ratio here.
Run from the repository root: `python -m benchmarks.video [--video V --landmarks L]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2

from benchmarks import machine
from trajsv_jax.video import calibrate, camera, decode, preprocess

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "soccertrack" / "raw_clips"
GOAL_FPS = 25.0


def reencode(video: Path, out: Path, height: int) -> Path:
    """The clip re-encoded at `height` rows (mp4v), as a smaller broadcast would arrive."""
    info = decode.probe(video)
    size = decode.scaled_size(info, height)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, size)
    for _, frame in decode.frames(video, height):
        writer.write(frame)
    writer.release()
    return out


def decode_only_fps(video: Path, height: int | None) -> float:
    """Frames/s of decoding (and downscaling) alone, in one thread."""
    t0 = time.perf_counter()
    count = sum(1 for _ in decode.frames(video, height))
    return round(count / (time.perf_counter() - t0), 1)


def measure(video: Path, landmarks: Path, height: int | None, repeat: int) -> dict:
    """Best-of-`repeat` stage times of one front-end run."""
    best = None
    for _ in range(repeat):
        config = preprocess.PreprocessConfig(height=height)
        t0 = time.perf_counter()
        result = preprocess.run_front_end(video, landmarks=landmarks, config=config, progress=False)
        wall = time.perf_counter() - t0
        if best is None or wall < best[1]:
            best = (result, wall)
    result, wall = best
    frames = result.counts["frames"]
    return {
        "frame_size": list(result.frame_size),
        "frames": frames,
        "decode_only_fps": decode_only_fps(video, height),
        "stage_fps": {k: round(frames / v, 1) for k, v in result.seconds.items() if v > 0},
        "front_end_fps": round(frames / sum(result.seconds.values()), 1),
        "wall_fps_including_calibration": round(frames / wall, 1),
        "clips": result.source.num_clips,
        "tracks": result.counts["tracks"],
        "detections_per_frame": round(result.counts["detections"] / frames, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=SHARED / "left_camera.mp4", help="video to run on")
    parser.add_argument("--landmarks", type=Path, default=SHARED / "left_keypoints.xml", help="its pitch landmarks")
    parser.add_argument("--repeat", type=int, default=1, help="runs per setting; the fastest is reported")
    args = parser.parse_args()
    fitted = calibrate.fit(calibrate.read_landmarks(args.landmarks))
    info = decode.probe(args.video)
    at_720p = fitted.scaled(decode.scaled_size(info, 720)[0] / info.width)
    _, first = next(decode.frames(args.video, 720, stop=1))
    t0 = time.perf_counter()
    _, line_fit = camera.refine_with_lines(first, at_720p)
    refine_s = time.perf_counter() - t0
    runs = {
        "native": measure(args.video, args.landmarks, None, args.repeat),
        "720p_from_native": measure(args.video, args.landmarks, 720, args.repeat),
    }
    with tempfile.TemporaryDirectory() as tmp:
        small = reencode(args.video, Path(tmp) / "clip_720p.mp4", 720)
        runs["720p_file"] = measure(small, args.landmarks, 720, args.repeat)
    result = {
        "benchmark": "video",
        "video": str(args.video),
        "calibration": fitted.summary(),
        "line_refinement_720p": {"summary": line_fit.summary(), "seconds": round(refine_s, 3)},
        "runs": runs,
        "goal_fps_720p": GOAL_FPS,
        "goal_met_720p_file": runs["720p_file"]["front_end_fps"] >= GOAL_FPS,
        "opencv_threads": cv2.getNumThreads(),
        "machine": machine.describe(["opencv-python-headless", "numpy", "scipy", "filterpy"]),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
