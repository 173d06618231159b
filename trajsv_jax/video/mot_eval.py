"""Scoring a tracker against MOT ground truth (`mot_scores`: CLEAR-MOT, IDF1, HOTA) on real or synthetic detections.

CLEAR-MOT (MOTA, id switches) and IDF1 come from motmetrics. HOTA (Luiten et al., IJCV 2021) is computed here
(`hota`): motmetrics 1.4 has none, and TrackEval, its reference implementation, requires opencv-python, which clashes
with this project's opencv-python-headless (both install the `cv2` package). `hota` follows TrackEval 1.3.0's
`HOTA.eval_sequence` step for step.

Without a detector, `read_mot_csv` reads MOTChallenge-style ground truth (e.g. SoccerTrack's real fish-eye boxes),
`synthetic_detections` degrades it into detections in a seeded, documented way (`Degradation`) and `track_sequence`
runs the tracker over them: this measures association on real motion, not detection (tests/test_track.py,
benchmarks/tracking.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from trajsv_jax.errors import UserError
from trajsv_jax.video.detect import LABEL_BALL, LABEL_PERSON, Detections
from trajsv_jax.video.track import Tracker, TrackerConfig, iou

Frame = tuple[np.ndarray, np.ndarray]  # one frame's ids [N] and boxes [N, 4] x0, y0, x1, y1
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)  # the IoU thresholds HOTA averages over: 0.05, 0.10, ..., 0.95
_EPS = np.finfo(float).eps
_MOT_COLUMNS = ("frame", "id", "bb_left", "bb_top", "bb_width", "bb_height")


def mot_scores(ground_truth: Sequence[Frame], hypotheses: Sequence[Frame], iou_threshold: float = 0.5) -> dict:
    """CLEAR-MOT, identity and HOTA scores of per-frame (ids [N], boxes [N, 4] x0, y0, x1, y1) lists.

    For CLEAR-MOT and IDF1 a hypothesis box can match a ground-truth box only if their IoU is at least `iou_threshold`
    (0.5, the MOTChallenge convention); HOTA averages over IoU thresholds itself. Returns mota, idf1, idp, idr,
    precision, recall, motp (mean 1 − IoU of the matched pairs, lower is better: motmetrics' convention), id_switches,
    false_positives, misses, num_frames, num_objects (ground-truth boxes), num_predictions, num_unique_objects, and
    hota, deta, assa (see `hota`).
    """
    try:
        import motmetrics
    except ImportError as e:
        raise UserError("mot_scores needs motmetrics, which is not installed: pip install -e '.[test]'.") from e
    _check_lengths(ground_truth, hypotheses)
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for gt_ids, hyp_ids, overlap in _frames(ground_truth, hypotheses):
        # motmetrics.distances.iou_matrix calls np.asfarray, gone in NumPy 2: the same matrix from `iou`.
        distances = np.where(overlap >= iou_threshold, 1 - overlap, np.nan)
        accumulator.update(gt_ids.tolist(), hyp_ids.tolist(), distances)
    names = {
        "mota": "mota",
        "idf1": "idf1",
        "idp": "idp",
        "idr": "idr",
        "precision": "precision",
        "recall": "recall",
        "motp": "motp",
        "num_switches": "id_switches",
        "num_false_positives": "false_positives",
        "num_misses": "misses",
        "num_frames": "num_frames",
        "num_objects": "num_objects",
        "num_predictions": "num_predictions",
        "num_unique_objects": "num_unique_objects",
    }
    row = motmetrics.metrics.create().compute(accumulator, metrics=list(names), return_dataframe=False)
    rates = ("mota", "idf1", "idp", "idr", "precision", "recall", "motp")
    scores = {ours: float(row[theirs]) if ours in rates else int(row[theirs]) for theirs, ours in names.items()}
    return scores | hota(ground_truth, hypotheses)


def hota(ground_truth: Sequence[Frame], hypotheses: Sequence[Frame]) -> dict:
    """HOTA, DetA and AssA (Luiten et al. 2021), each averaged over the IoU thresholds α in `HOTA_ALPHAS`.

    Per frame, ground-truth and hypothesis boxes are matched once (Hungarian) maximising IoU × the global alignment of
    their two ids (how much of the two tracks' lives they overlap, summed over the sequence); at each α, the pairs with
    IoU ≥ α are true positives (TP), the other boxes false negatives (FN) and false positives (FP). DetA = TP / (TP +
    FN + FP); AssA = the mean over TPs of TPA / (TPA + FNA + FPA), where TPA counts the TPs of that pair of ids and
    TPA + FNA, TPA + FPA the boxes of its ground-truth and its hypothesis id; HOTA_α = sqrt(DetA_α · AssA_α).
    """
    _check_lengths(ground_truth, hypotheses)
    gt_index = _id_index(ground_truth)
    hyp_index = _id_index(hypotheses)
    frames = [
        (np.array([gt_index[i] for i in gt_ids], np.int64), np.array([hyp_index[i] for i in hyp_ids], np.int64), sim)
        for gt_ids, hyp_ids, sim in _frames(ground_truth, hypotheses)
    ]
    gt_count = np.zeros(len(gt_index))
    hyp_count = np.zeros(len(hyp_index))
    overlap_count = np.zeros((len(gt_index), len(hyp_index)))  # per id pair: Σ over frames of a soft match share
    for g, h, sim in frames:
        denominator = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        overlap_count[g[:, None], h[None, :]] += np.where(denominator > _EPS, sim / np.maximum(denominator, _EPS), 0)
        gt_count[g] += 1
        hyp_count[h] += 1
    alignment = overlap_count / np.maximum(gt_count[:, None] + hyp_count[None, :] - overlap_count, _EPS)

    tp = np.zeros(len(HOTA_ALPHAS))
    pair_tp = np.zeros((len(HOTA_ALPHAS), len(gt_index), len(hyp_index)))  # TPA of every id pair at every α
    for g, h, sim in frames:
        rows, cols = linear_sum_assignment(-alignment[g[:, None], h[None, :]] * sim)
        for a, alpha in enumerate(HOTA_ALPHAS):
            ok = sim[rows, cols] >= alpha - _EPS
            tp[a] += ok.sum()
            pair_tp[a, g[rows[ok]], h[cols[ok]]] += 1
    fn, fp = gt_count.sum() - tp, hyp_count.sum() - tp
    pair_ass = pair_tp / np.maximum(1, gt_count[:, None] + hyp_count[None, :] - pair_tp)
    ass_a = (pair_tp * pair_ass).sum(axis=(1, 2)) / np.maximum(1, tp)
    det_a = tp / np.maximum(1, tp + fn + fp)
    return {"hota": float(np.sqrt(det_a * ass_a).mean()), "deta": float(det_a.mean()), "assa": float(ass_a.mean())}


def _check_lengths(ground_truth: Sequence[Frame], hypotheses: Sequence[Frame]) -> None:
    if len(ground_truth) != len(hypotheses):
        raise UserError(
            f"mot_scores: {len(ground_truth)} ground-truth frames but {len(hypotheses)} hypothesis frames; "
            "pass one (ids, boxes) pair per frame to both, empty arrays for frames without boxes."
        )


def _frames(ground_truth: Sequence[Frame], hypotheses: Sequence[Frame]):
    """(ground-truth ids [N], hypothesis ids [M], IoU [N, M]) of each frame."""
    for (gt_ids, gt_boxes), (hyp_ids, hyp_boxes) in zip(ground_truth, hypotheses, strict=True):
        overlap = iou(np.asarray(gt_boxes, np.float64).reshape(-1, 4), np.asarray(hyp_boxes, np.float64).reshape(-1, 4))
        yield np.asarray(gt_ids).reshape(-1), np.asarray(hyp_ids).reshape(-1), overlap


def _id_index(frames: Sequence[Frame]) -> dict:
    """Each id seen in `frames` → 0, 1, ... in sorted order."""
    ids = np.unique(np.concatenate([np.asarray(f[0]).reshape(-1) for f in frames] or [np.zeros(0)]))
    return {i: k for k, i in enumerate(ids.tolist())}


# ------------------------------------------------------------------------------------------- ground truth, detections


def read_mot_csv(path: str | Path) -> list[Frame]:
    """MOTChallenge-style ground truth (a CSV, gzipped or not, with a header naming at least `_MOT_COLUMNS`).

    Returns one (ids, boxes x0, y0, x1, y1) pair for every frame number from the first to the last, in order; frames
    without a box get empty arrays.
    """
    if not Path(path).is_file():
        raise UserError(f"{path}: no such MOT ground-truth file.")
    table = np.genfromtxt(path, delimiter=",", names=True)
    missing = [c for c in _MOT_COLUMNS if c not in (table.dtype.names or ())]
    if missing or table.size == 0:
        raise UserError(f"{path}: not MOT ground truth (needs a header and rows with {', '.join(_MOT_COLUMNS)}).")
    table = np.atleast_1d(table)
    frame = table["frame"].astype(np.int64)
    boxes = np.stack(
        [
            table["bb_left"],
            table["bb_top"],
            table["bb_left"] + table["bb_width"],
            table["bb_top"] + table["bb_height"],
        ],
        axis=1,
    ).astype(np.float32)
    ids = table["id"].astype(np.int64)
    order = np.argsort(frame, kind="stable")
    starts = np.searchsorted(frame[order], np.arange(frame.min(), frame.max() + 2))
    return [(ids[order[a:b]], boxes[order[a:b]]) for a, b in itertools.pairwise(starts)]


@dataclasses.dataclass(frozen=True)
class Degradation:
    """How `synthetic_detections` turns ground-truth boxes into detections. Rates are per box and frame.

    Scores: a detected box scores uniformly in the high band [0.6, 1) (it may start a track), or in the low band
    [0.1, 0.5) (the tracker's stage 2 only) with probability `low_score_rate`, and always when it is partly hidden: it
    overlaps, with IoU ≥ `occluded_iou`, a true box whose bottom edge is lower in the image (an object nearer the
    camera, in front). Partly hidden players are ByteTrack's case for its second, low-score stage.
    """

    miss_rate: float = 0.1  # a true box is not detected
    jitter: float = 0.03  # std of each box side's shift, as a fraction of the box's width (x) or height (y)
    low_score_rate: float = 0.1  # a detected box scores in the low band
    occluded_iou: float = 0.1  # a box overlapped this much by a true box in front of it scores in the low band
    false_positives: float = 2.0  # mean false boxes per frame (Poisson): see `synthetic_detections`


def synthetic_detections(
    ground_truth: Sequence[Frame], ball_ids: Sequence[int], degradation: Degradation, seed: int = 0
) -> list[Detections]:
    """Detections made from ground truth: true boxes missed, jittered and scored as `degradation` says (seeded).

    Boxes of `ball_ids` are labelled LABEL_BALL, the others LABEL_PERSON. Each false positive copies the size and
    label of a random true box of the frame, has its top-left corner uniformly inside the bounding rectangle of all
    the true boxes of the sequence, and scores uniformly in [0.1, 1): it changes place every frame, so it tests track
    starting and gating, not a persistent distractor (an unannotated referee).
    """
    rng = np.random.default_rng(seed)
    d = degradation
    nonempty = [f[1] for f in ground_truth if len(f[1])]
    if not nonempty:
        return [Detections.empty() for _ in ground_truth]
    every = np.concatenate(nonempty)
    lo, hi = every[:, :2].min(0), every[:, 2:].max(0)
    out = []
    for ids, boxes in ground_truth:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        labels = np.where(np.isin(ids, ball_ids), LABEL_BALL, LABEL_PERSON).astype(np.int8)
        behind = boxes[:, None, 3] < boxes[None, :, 3]  # [i, j]: i's feet are higher in the image, so j hides i
        hidden = ((iou(boxes, boxes) >= d.occluded_iou) & behind).any(axis=1)
        low = (rng.random(len(boxes)) < d.low_score_rate) | hidden
        scores = np.where(low, rng.uniform(0.1, 0.5, len(boxes)), rng.uniform(0.6, 1.0, len(boxes)))
        size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
        boxes = boxes + rng.normal(0, d.jitter, boxes.shape) * size
        keep = rng.random(len(boxes)) >= d.miss_rate
        n_false = rng.poisson(d.false_positives) if len(boxes) else 0
        source = rng.integers(0, max(len(boxes), 1), n_false)
        corner = rng.uniform(lo, hi, (n_false, 2))
        false_boxes = np.concatenate([corner, corner + size[source, :2]], axis=1)
        out.append(
            Detections(
                np.concatenate([boxes[keep], false_boxes]).astype(np.float32),
                np.concatenate([scores[keep], rng.uniform(0.1, 1.0, n_false)]).astype(np.float32),
                np.concatenate([labels[keep], labels[source]]).astype(np.int8),
            )
        )
    return out


def track_sequence(detections: Sequence[Detections], config: TrackerConfig | None = None) -> tuple[list[Frame], float]:
    """A fresh `Tracker` run over `detections`: each frame's confirmed (ids, boxes), and the seconds spent tracking."""
    tracker = Tracker(config)
    out, seconds = [], 0.0
    for dets in detections:
        t0 = time.perf_counter()
        tracks = tracker.update(dets)
        seconds += time.perf_counter() - t0
        out.append((tracks.ids, tracks.boxes))
    return out, seconds
