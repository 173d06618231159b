"""Benchmark: the player/ball tracker on real SoccerTrack motion: two-stage variants vs stage 2 off; prints JSON.

What it measures: association, on real motion. The input is SoccerTrack's real fish-eye MOT ground truth (3,320
frames, 22 players + the ball, `../shared/data/soccertrack/cvsports22_gt/Fish-eye/fisheye_gt.csv.gz`); the video
itself is not in the data, so there is no detector here. Detections are made from the true boxes by
`trajsv_jax.video.mot_eval.synthetic_detections` (seeded) at three degradation levels (see `LEVELS` and
`mot_eval.Degradation`): each true box is missed at a rate, its sides jittered by a fraction of its size, its score
drawn in the high band [0.6, 1) or, at a rate and always when a box nearer the camera overlaps it (IoU >= 0.1), in
the low band [0.1, 0.5); plus Poisson false boxes each frame at random places. The ball is the id whose boxes are
smallest (checked here from the box sizes, not assumed) and is labelled LABEL_BALL.

Three trackers see the same detections:
  default:    `TrackerConfig()`, the two-stage tracker (low-score boxes continue tracks seen in the last 5 frames)
  bytetrack:  ByteTrack's rule, low-score boxes continue only tracks seen in the previous frame (low_score_max_misses 0)
  sort_like:  the same with stage 2 off (low_score = high_score = 0.5, so low-score boxes are dropped; ball boxes
              under 0.5 too, as `validate` then wants ball_new_track_score >= 0.5)
and each gets MOTA, IDF1, HOTA (+ DetA, AssA), id switches, misses, false positives (`mot_eval.mot_scores`, IoU 0.5
for CLEAR/IDF1) and frames/s of `Tracker.update` alone (best of --repeat). What it does not measure: detector
errors that are not in this model (persistent false people such as the unannotated referee, merged boxes, boxes
drifting over several frames), nor the video decoding and detection time (`benchmarks.video`).
Run from the repository root: `python -m benchmarks.tracking [--seed S --repeat N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmarks import machine
from trajsv_jax.video import mot_eval
from trajsv_jax.video.detect import LABEL_BALL
from trajsv_jax.video.track import TrackerConfig

SHARED_GT = Path(__file__).resolve().parents[2] / "shared/data/soccertrack/cvsports22_gt/Fish-eye/fisheye_gt.csv.gz"
LEVELS = {
    "mild": mot_eval.Degradation(miss_rate=0.05, jitter=0.02, low_score_rate=0.05, false_positives=1.0),
    "moderate": mot_eval.Degradation(),  # miss 10%, jitter 3%, low score 10%, 2 false boxes a frame
    "hard": mot_eval.Degradation(miss_rate=0.2, jitter=0.05, low_score_rate=0.3, false_positives=5.0),
}
TRACKERS = {
    "default": TrackerConfig(),
    "bytetrack": TrackerConfig(low_score_max_misses=0),
    "sort_like": TrackerConfig(low_score=0.5, ball_new_track_score=0.5),
}
REPORTED = ("mota", "idf1", "hota", "deta", "assa", "id_switches", "misses", "false_positives", "num_predictions")


def ball_id(ground_truth: list[mot_eval.Frame]) -> tuple[int, dict]:
    """The ball's id: the smallest median box area, under half the smallest player's; and the median box sizes."""
    ids = np.concatenate([f[0] for f in ground_truth])
    boxes = np.concatenate([f[1] for f in ground_truth])
    sizes = {int(i): np.median(boxes[ids == i, 2:] - boxes[ids == i, :2], axis=0) for i in np.unique(ids)}
    ball = min(sizes, key=lambda i: sizes[i].prod())
    smallest_player = min((s for i, s in sizes.items() if i != ball), key=lambda s: s.prod())
    if sizes[ball].prod() * 2 > smallest_player.prod():
        raise SystemExit(f"no id has boxes clearly smaller than the players' (smallest: {ball}, {sizes[ball]})")
    return ball, {
        "ball_median_wh_px": [round(float(v), 1) for v in sizes[ball]],
        "smallest_player_median_wh_px": [round(float(v), 1) for v in smallest_player],
    }


def run_level(
    ground_truth: list[mot_eval.Frame], ball: int, degradation: mot_eval.Degradation, seed: int, repeat: int
) -> dict:
    """Both trackers on one degradation level's detections: their scores and frames/s."""
    detections = mot_eval.synthetic_detections(ground_truth, [ball], degradation, seed)
    scores = np.concatenate([d.scores for d in detections])
    out = {
        "degradation": dataclasses.asdict(degradation),
        "detections_per_frame": round(len(scores) / len(detections), 2),
        "low_score_share": round(float((scores < 0.5).mean()), 3),
        "ball_detections_per_frame": round(
            sum(int((d.labels == LABEL_BALL).sum()) for d in detections) / len(detections), 3
        ),
    }
    for name, config in TRACKERS.items():
        runs = [mot_eval.track_sequence(detections, config) for _ in range(repeat)]
        hypotheses, seconds = runs[0][0], min(s for _, s in runs)
        result = mot_eval.mot_scores(ground_truth, hypotheses)
        out[name] = {k: round(result[k], 4) if isinstance(result[k], float) else result[k] for k in REPORTED}
        out[name]["tracker_fps"] = round(len(detections) / seconds, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ground-truth", type=Path, default=SHARED_GT, help="MOT ground-truth CSV (gzipped or not)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic detections")
    parser.add_argument("--repeat", type=int, default=1, help="tracker runs per setting; the fastest is reported")
    args = parser.parse_args()
    described = machine.describe(["numpy", "scipy", "filterpy", "motmetrics"])
    ground_truth = mot_eval.read_mot_csv(args.ground_truth)
    ball, sizes = ball_id(ground_truth)
    result = {
        "benchmark": "tracking",
        "ground_truth": str(args.ground_truth),
        "frames": len(ground_truth),
        "true_boxes": sum(len(f[0]) for f in ground_truth),
        "objects": len(np.unique(np.concatenate([f[0] for f in ground_truth]))),
        "ball_id": ball,
        **sizes,
        "seed": args.seed,
        "levels": {
            name: run_level(ground_truth, ball, level, args.seed, args.repeat) for name, level in LEVELS.items()
        },
        "machine": described,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
