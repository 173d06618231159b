"""The player/ball tracker (video.track) on synthetic scenes and real SoccerTrack ground truth, and its scores
(video.mot_eval: MOTA and IDF1 from motmetrics, HOTA computed here) on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import shared_path

from trajsv_jax.errors import UserError
from trajsv_jax.video import mot_eval
from trajsv_jax.video.detect import LABEL_BALL, LABEL_PERSON, Detections
from trajsv_jax.video.track import Tracker, TrackerConfig, Tracks, iou

FISHEYE_GT = "data/soccertrack/cvsports22_gt/Fish-eye/fisheye_gt.csv.gz"
FISHEYE_BALL = 23  # "sports ball", line 23 of labels.txt; test_fisheye_ground_truth checks it by box size
# Stage 2 off: every box under high_score is dropped (validate wants ball_new_track_score >= low_score).
SORT_LIKE = TrackerConfig(low_score=0.5, ball_new_track_score=0.5)


def box(cx: float, cy: float, w: float = 20, h: float = 50) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def detections(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(labels, np.int8)
    )


def reported_id(tracks: Tracks, true_box: list[float]) -> int | None:
    """The id reported on `true_box` (the tracker reports the detection boxes, here the true ones), if any."""
    hit = np.flatnonzero(np.all(np.isclose(tracks.boxes, np.array(true_box, np.float32)), axis=1))
    return int(tracks.ids[hit[0]]) if len(hit) else None


# ------------------------------------------------------------------------------------------------------------ iou


def test_iou_hand_computed():
    a = np.array([[0, 0, 10, 10], [0, 0, 4, 4]], np.float64)
    b = np.array([[5, 0, 15, 10], [2, 2, 6, 6], [20, 20, 30, 30], [0, 0, 10, 10]], np.float64)
    # [0,0,10,10] vs [5,0,15,10]: 50 / (100 + 100 - 50) = 1/3; vs [2,2,6,6] (inside): 16 / 100; disjoint: 0; same: 1.
    # [0,0,4,4] vs [5,0,15,10]: 0; vs [2,2,6,6]: 4 / (16 + 16 - 4) = 1/7; disjoint: 0; vs [0,0,10,10]: 16 / 100.
    expected = [[1 / 3, 0.16, 0, 1], [0, 1 / 7, 0, 0.16]]
    np.testing.assert_allclose(iou(a, b), expected, atol=1e-12)
    assert iou(a, np.zeros((0, 4))).shape == (2, 0)


# --------------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"low_score": 0.7}, "low_score (0.7)"),
        ({"high_score": 1.5, "new_track_score": 1.6}, "high_score (1.5)"),
        ({"new_track_score": 0.4}, "new_track_score (0.4)"),
        ({"ball_new_track_score": 0.05}, "ball_new_track_score (0.05)"),
        ({"match_iou": 0.0}, "match_iou (0.0)"),
        ({"low_match_iou": 1.2}, "low_match_iou (1.2)"),
        ({"max_age": 0}, "max_age (0)"),
        ({"min_hits": 0}, "min_hits (0)"),
    ],
)
def test_config_validate_names_the_bad_value(overrides, named):
    with pytest.raises(UserError) as error:
        Tracker(TrackerConfig(**overrides))
    assert named in str(error.value) and "\n" not in str(error.value)


def test_default_and_sort_like_configs_are_valid():
    TrackerConfig().validate()
    SORT_LIKE.validate()


# -------------------------------------------------------------------------------------------------------- players


def test_crossing_players_keep_their_ids_and_confirm_after_min_hits():
    """Two players cross (their boxes overlap with IoU up to 0.67) while a third stands still: no id ever changes."""
    tracker = Tracker()
    ids: dict[str, set[int]] = {"a": set(), "b": set(), "c": set()}
    for f in range(60):
        players = {"a": box(100 + 5 * f, 200), "b": box(400 - 5 * f, 210), "c": box(250, 400)}
        tracks = tracker.update(detections(list(players.values()), [0.9] * 3, [LABEL_PERSON] * 3))
        assert len(tracks) == (0 if f < TrackerConfig().min_hits - 1 else 3)  # tentative until the 3rd hit
        for name, true_box in players.items():
            if f >= TrackerConfig().min_hits - 1:
                ids[name].add(reported_id(tracks, true_box))
    assert iou(np.array([box(250, 200)]), np.array([box(250, 210)]))[0, 0] > 0.6  # they really overlap
    assert all(len(s) == 1 for s in ids.values()) and len(set.union(*ids.values())) == 3, ids


def test_ids_continue_from_first_id_and_tracks_name_their_detections():
    tracker = Tracker(first_id=100)
    boxes = [box(100, 200), box(300, 200), box(500, 200)]
    for _ in range(3):
        tracks = tracker.update(detections(boxes, [0.9, 0.05, 0.9], [LABEL_PERSON] * 3))  # the middle one: too low
    assert tracks.ids.tolist() == [100, 101] and tracker.next_id == 102
    assert tracks.detections.tolist() == [0, 2]  # indices into the frame's detections, skipped ones included


def occluded_walk(config: TrackerConfig) -> list[int | None]:
    """A player walks right at 3 px/frame, is partly hidden (score 0.3) for 10 frames in which he stops, walks on.

    The id reported on him each frame. Without stage 2 his track coasts on at 3 px/frame while unseen, 30 px past
    him (1.5 box widths) when he reappears, so it cannot match him again.
    """
    tracker = Tracker(config)
    out = []
    x = 100.0
    for f in range(40):
        hidden = 15 <= f < 25
        x += 0 if hidden else 3
        true_box = box(x, 300)
        tracks = tracker.update(detections([true_box], [0.3 if hidden else 0.9], [LABEL_PERSON]))
        out.append(reported_id(tracks, true_box))
    return out


def test_stage_two_keeps_a_partly_hidden_player():
    with_stage_2 = occluded_walk(TrackerConfig())
    assert with_stage_2[:2] == [None, None] and set(with_stage_2[2:]) == {1}  # reported every frame, one id
    without = occluded_walk(SORT_LIKE)
    assert without[2:15] == [1] * 13 and without[15:25] == [None] * 10  # lost while hidden...
    assert None not in without[27:] and set(without[27:]) == {2}  # ... and back under a new id


@pytest.mark.parametrize(("gap", "same_id"), [(10, True), (30, True), (31, False)])
def test_a_lost_player_comes_back_with_his_id_within_max_age(gap, same_id):
    """A player walking steadily is not detected for `gap` frames: max_age (30) frames unseen keep his track."""
    tracker = Tracker()
    before, after = set(), set()
    for f in range(20 + gap + 10):
        true_box = box(100 + 3 * f, 300)
        seen = not 20 <= f < 20 + gap
        tracks = tracker.update(detections([true_box] if seen else [], [0.9] * seen, [LABEL_PERSON] * seen))
        if not seen:
            assert len(tracks) == 0
        elif f >= 20 + gap + TrackerConfig().min_hits - 1:
            after.add(reported_id(tracks, true_box))
        elif TrackerConfig().min_hits - 1 <= f < 20:
            before.add(reported_id(tracks, true_box))
    assert len(before) == 1 and len(after) == 1 and (before == after) == same_id, (before, after)


# ----------------------------------------------------------------------------------------------------------- ball


def ball_box(f: int) -> list[float]:
    """A 8 px ball moving about 25 px a frame on a gentle curve: consecutive boxes never overlap."""
    return box(100 + 20 * f, 300 + 15 * f - 0.2 * f * f, 8, 8)


def test_ball_tracked_by_distance_one_ball_reported():
    """The fast ball keeps one id; a second, still ball (a spare on the touchline) is never reported."""
    tracker = Tracker()
    assert iou(np.array([ball_box(0)]), np.array([ball_box(1)]))[0, 0] == 0  # IoU could not follow it
    spare = box(50, 50, 8, 8)
    ball_ids = set()
    for f in range(40):
        dets = detections([ball_box(f), spare, box(300, 500)], [0.9, 0.5, 0.9], [LABEL_BALL, LABEL_BALL, LABEL_PERSON])
        tracks = tracker.update(dets)
        balls = tracks.labels == LABEL_BALL
        assert balls.sum() == (f >= TrackerConfig().min_hits - 1)
        if balls.any():
            assert reported_id(tracks, ball_box(f)) == tracks.ids[balls][0]
            ball_ids.update(tracks.ids[balls].tolist())
    assert len(ball_ids) == 1


def test_brief_false_ball_does_not_take_over():
    """While the ball is unseen for 6 frames a false ball is seen in all of them: the real ball keeps its id."""
    tracker = Tracker()
    false_ball = box(1500, 100, 8, 8)
    reported = []
    for f in range(45):
        missing = 30 <= f < 36
        tracks = tracker.update(detections([false_ball if missing else ball_box(f)], [0.9], [LABEL_BALL]))
        assert (tracks.labels == LABEL_BALL).sum() <= 1
        assert reported_id(tracks, false_ball) is None
        reported.append(reported_id(tracks, ball_box(f)))
    assert reported[2:30] == [1] * 28 and reported[30:36] == [None] * 6 and reported[36:] == [1] * 9


# --------------------------------------------------------------------------------------------------------- scores


def test_mot_scores_hand_computed():
    """4 frames, ground truth 1 (frames 0-3) and 2 (frames 0-1), boxes far apart; every hypothesis box is exact.

    Hypotheses: 10 on object 1 in frames 0-1, 11 on it in frames 2-3 (a switch); 12 on object 2 in frame 0 only (a
    miss in frame 1); 13 a false box in frame 3.
      CLEAR: 6 true boxes, 1 miss, 1 false positive, 1 switch → MOTA = 1 − 3/6 = 0.5.
      IDF1: best one-to-one id map 1↔10 (or 11) = 2 boxes, 2↔12 = 1: IDTP = 3 of 6 true and 6 predicted boxes
        → IDF1 = 2·3 / (6 + 6) = 0.5.
      HOTA (IoU 1 or 0, so every α is alike): TP = 5, FN = 1, FP = 1 → DetA = 5/7. AssA over the 5 TPs: (1, 10)
        TPA 2 of 4 + 2 − 2 → 0.5 for 2 TPs, (1, 11) the same, (2, 12) TPA 1 of 2 + 1 − 1 → 0.5 → AssA = 0.5;
        HOTA = sqrt(5/7 · 0.5) = sqrt(5/14).
    """
    one, two, false = box(100, 100), box(400, 100), box(700, 400)
    gt = [([1, 2], [one, two]), ([1, 2], [one, two]), ([1], [one]), ([1], [one])]
    hyp = [([10, 12], [one, two]), ([10], [one]), ([11], [one]), ([11, 13], [one, false])]
    s = mot_eval.mot_scores(gt, hyp)
    assert (s["misses"], s["false_positives"], s["id_switches"], s["num_objects"]) == (1, 1, 1, 6)
    assert s["mota"] == pytest.approx(0.5) and s["idf1"] == pytest.approx(0.5)
    assert s["deta"] == pytest.approx(5 / 7) and s["assa"] == pytest.approx(0.5)
    assert s["hota"] == pytest.approx(math.sqrt(5 / 14))


def test_hota_averages_over_localisation_thresholds():
    """One object, one exact-id hypothesis box with IoU 0.52 in 5 frames: a TP for α = 0.05..0.50 (10 of the 19 α),
    else a FN + a FP. DetA_α = AssA_α = HOTA_α = 1 for those 10, 0 for the others → each averages to 10/19.
    CLEAR at IoU ≥ 0.5 sees a perfect track (MOTA 1); with no hypothesis at all everything is 0."""
    gt = [([1], [[0, 0, 10, 10]])] * 5
    hyp = [([7], [[0, 0, 10, 5.2]])] * 5
    s = mot_eval.mot_scores(gt, hyp)
    assert s["hota"] == pytest.approx(10 / 19) and s["deta"] == pytest.approx(10 / 19)
    assert s["assa"] == pytest.approx(10 / 19) and s["mota"] == pytest.approx(1)
    assert mot_eval.mot_scores(gt, gt)["hota"] == pytest.approx(1)
    empty = mot_eval.mot_scores(gt, [(np.zeros(0, np.int64), np.zeros((0, 4)))] * 5)
    assert (empty["hota"], empty["mota"], empty["misses"]) == (0, 0, 5)


def test_hota_matches_by_identity_alignment_not_iou_alone():
    """Objects 1 and 2 tracked exactly as a and b for 4 frames, far apart; in frame 5 they stand 4 px apart (10 px
    boxes) and a lies 3 px right of 1 (IoU 7/13 = 0.54 with 1, 9/11 = 0.82 with 2), b 1 px right of 1 (0.82 with 1).

    HOTA matches 1↔a, 2↔b, the consistent ids (IoU alone would swap them). α ≤ 0.50 (10 α): all 10 boxes TP, AssA 1
    → HOTA_α 1. α ≥ 0.55 (9 α): frame 5's pairs fail, TP 8, FN 2, FP 2 → DetA 8/12; each pair TPA 4 of 5 + 5 − 4
    → AssA 2/3 → HOTA_α 2/3. HOTA = (10 + 9 · 2/3) / 19 = 16/19 (the swapped matching would give 0.73).
    """

    def square(x: float) -> list[float]:
        return [x, 0, x + 10, 10]

    gt = [([1, 2], [square(0), square(100)])] * 4 + [([1, 2], [square(0), square(4)])]
    hyp = [(["a", "b"], [square(0), square(100)])] * 4 + [(["a", "b"], [square(3), square(1)])]
    assert mot_eval.hota(gt, hyp)["hota"] == pytest.approx(16 / 19)


def test_mot_scores_rejects_frame_count_mismatch():
    with pytest.raises(UserError, match="3 ground-truth frames but 2 hypothesis frames"):
        mot_eval.mot_scores([([], [])] * 3, [([], [])] * 2)


def test_read_mot_csv(tmp_path):
    """Boxes become x0, y0, x1, y1; every frame from the first to the last is there, empty when it has no box."""
    path = tmp_path / "gt.csv"
    path.write_text("frame,id,bb_left,bb_top,bb_width,bb_height\n3,7,10,20,5,8\n1,2,0,0,1,1\n1,4,5,5,2,2\n")
    frames = mot_eval.read_mot_csv(path)
    assert [f[0].tolist() for f in frames] == [[2, 4], [], [7]]
    np.testing.assert_array_equal(frames[2][1], [[10, 20, 15, 28]])
    (tmp_path / "bad.csv").write_text("frame,id,x,y\n1,2,3,4\n")
    with pytest.raises(UserError, match="bb_width"):
        mot_eval.read_mot_csv(tmp_path / "bad.csv")


def test_synthetic_detections_follow_the_degradation():
    """No noise: the true boxes come back, the ball labelled, the hidden player (behind, IoU 0.51) in the low band."""
    front, behind, ball = box(100, 105), box(105, 100), box(300, 300, 8, 8)
    gt = [([1, 2, 9], [front, behind, ball])] * 50
    clean = mot_eval.Degradation(miss_rate=0, jitter=0, low_score_rate=0, false_positives=0)
    dets = mot_eval.synthetic_detections(gt, [9], clean)
    np.testing.assert_array_equal(dets[0].boxes, np.array([front, behind, ball], np.float32))
    assert dets[0].labels.tolist() == [LABEL_PERSON, LABEL_PERSON, LABEL_BALL]
    scores = np.stack([d.scores for d in dets])
    assert (scores[:, [0, 2]] >= 0.6).all() and ((scores[:, 1] >= 0.1) & (scores[:, 1] < 0.5)).all()
    noisy = mot_eval.Degradation(miss_rate=0.5, false_positives=3)
    first, again = (mot_eval.synthetic_detections(gt, [9], noisy, seed=1) for _ in range(2))
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(first, again, strict=True))  # seeded
    assert 2.5 < np.mean([len(d) for d in first]) < 6  # 1.5 true + 3 false boxes a frame on average


# ---------------------------------------------------------------------------------------- real SoccerTrack boxes


@pytest.fixture(scope="module")
def fisheye_gt() -> list[mot_eval.Frame]:
    return mot_eval.read_mot_csv(shared_path(FISHEYE_GT))


def test_fisheye_ground_truth(fisheye_gt):
    """The README's counts, and id 23 is the ball: its boxes are ~10 px, every player's over 25 px tall."""
    assert len(fisheye_gt) == 3320 and sum(len(ids) for ids, _ in fisheye_gt) == 75780
    ids = np.concatenate([ids for ids, _ in fisheye_gt])
    heights = np.concatenate([boxes[:, 3] - boxes[:, 1] for _, boxes in fisheye_gt])
    median_height = {int(i): float(np.median(heights[ids == i])) for i in np.unique(ids)}
    assert sorted(median_height) == list(range(1, 24))
    assert median_height[FISHEYE_BALL] < 15 and min(h for i, h in median_height.items() if i != FISHEYE_BALL) > 25


def test_tracker_on_real_motion(fisheye_gt):
    """300 real frames (22 players + ball), detections from the ground truth (10% missed, 3% jitter, low scores when
    partly hidden, 2 false boxes a frame): high scores, few switches, and stage 2 beats the SORT-like baseline."""
    gt = fisheye_gt[:300]
    dets = mot_eval.synthetic_detections(gt, [FISHEYE_BALL], mot_eval.Degradation(), seed=0)
    byte = mot_eval.mot_scores(gt, mot_eval.track_sequence(dets)[0])
    sort = mot_eval.mot_scores(gt, mot_eval.track_sequence(dets, SORT_LIKE)[0])
    assert byte["mota"] > 0.83 and byte["idf1"] > 0.88 and byte["hota"] > 0.75 and byte["id_switches"] <= 6, byte
    assert byte["false_positives"] <= 5, byte
    assert byte["mota"] > sort["mota"] + 0.05 and byte["hota"] > sort["hota"] + 0.05, (byte, sort)
