"""The video front end on real frames: decoding and its errors, camera-view segmentation, the weight-free and ONNX
detectors, and `trajsv preprocess` writing a store that the rest of the pipeline reads."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import onnx
import pytest
from conftest import one_line_error, shared_path
from onnx import TensorProto, helper, numpy_helper

from trajsv_jax import cli, prepare
from trajsv_jax.data import store
from trajsv_jax.errors import UserError
from trajsv_jax.video import calibrate, decode, detect, shots
from trajsv_jax.video import preprocess as pre

VIDEO = "data/soccertrack/raw_clips/left_camera.mp4"  # real HEVC 3072x1728, 25 fps, 250 frames
LANDMARKS = "data/soccertrack/raw_clips/left_keypoints.xml"


@pytest.fixture(scope="module")
def first_frames():
    """Frames 0..4 of the real clip at 720p."""
    return [frame for _, frame in decode.frames(shared_path(VIDEO), 720, stop=5)]


@pytest.fixture(scope="module")
def geometry():
    """The landmark calibration of the real clip, at 1280x720."""
    fitted = calibrate.fit(calibrate.read_landmarks(shared_path(LANDMARKS)))
    return fitted.scaled(1280 / 3072)


def test_probe_and_downscaled_frames_of_the_real_clip():
    info = decode.probe(shared_path(VIDEO))
    assert (info.width, info.height, info.fps, info.frame_count, info.codec) == (3072, 1728, 25.0, 250, "hevc")
    assert decode.scaled_size(info, 720) == (1280, 720)
    got = list(decode.frames(info.path, 720, start=2, stop=6, keep={3, 5}))
    assert [i for i, _ in got] == [3, 5]
    assert all(f.shape == (720, 1280, 3) and f.dtype == np.uint8 for _, f in got)


def test_bad_video_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError) as e:
        decode.probe(tmp_path / "missing.mp4")
    one_line_error(e, "missing.mp4", "no such video file")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(UserError) as e:
        decode.probe(tmp_path / "empty.mp4")
    one_line_error(e, "empty.mp4", "zero frames")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    with pytest.raises(UserError) as e:
        decode.probe(tmp_path / "text.mp4")
    one_line_error(e, "text.mp4", "ffmpeg")
    # The real clip cut after its headers and first bytes of stream: the codec is known, no frame decodes.
    (tmp_path / "cut.mp4").write_bytes(shared_path(VIDEO).read_bytes()[:3000])
    with pytest.raises(UserError) as e:
        decode.probe(tmp_path / "cut.mp4")
    one_line_error(e, "cut.mp4")
    with pytest.raises(UserError) as e:
        decode.probe(tmp_path)
    one_line_error(e, "folder")


def test_view_classifier_keeps_the_main_camera_and_cuts_at_other_views(first_frames):
    main = first_frames[0]
    sky = cv2.resize(main[:300], (1280, 720))  # trees and sky above the pitch: a crowd/scenery shot
    close_up = cv2.resize(main[520:630, 990:1100], (1280, 720))  # one player filling the frame
    sequence = [main] * 20 + [sky] * 12 + [main] * 3 + [close_up] + [main] * 15 + [close_up] * 6
    classifier = shots.ViewClassifier()
    for frame in sequence:
        classifier.add(frame)
    cues = classifier.cues()
    raw = shots.is_main_camera(cues, shots.ViewConfig())
    assert raw[:20].all() and not raw[20:32].any() and not raw[35] and not raw[51:].any()
    result = shots.segment(cues, fps=25.0)
    # The single close-up frame (35) is closed over, but it is a shot boundary on both sides: clips are cut there.
    assert result.main_camera[35]
    # 32..34 (0.12 s) and the lone frame 35 (its own shot) are too short: dropped and counted.
    assert result.clips == [(0, 20), (36, 51)]
    assert result.short_runs == 2
    assert result.counts()["shots"] == 6  # cuts at 20, 32, 35, 36 and 51


def test_smoothing_is_opening_then_closing():
    decision = np.array([0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 0], bool)
    assert shots.smooth(decision).astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0]


def test_weight_free_detector_finds_the_players_on_a_real_frame(first_frames, geometry):
    detector = detect.PitchColourDetector(geometry, (1280, 720))
    found = detector(first_frames[0])
    people = found.select(found.labels == detect.LABEL_PERSON)
    confident = people.select(people.scores >= 0.5)
    # About 20 players are in view; blobs of two players touching count once, so a range is asked for.
    assert 12 <= len(confident) <= 30, len(confident)
    assert (people.boxes[:, 2] > people.boxes[:, 0]).all() and (people.boxes[:, 3] > people.boxes[:, 1]).all()
    feet = geometry.image_to_pitch(people.foot_points().astype(np.float64))
    assert (np.abs(feet[:, 0]) <= 54.5).all() and (np.abs(feet[:, 1]) <= 36).all()
    assert detector.off_field > 0  # the spectators left of the touchline are counted and dropped
    sky = np.zeros_like(first_frames[0])
    assert len(detector(sky).select(detector(sky).labels == detect.LABEL_PERSON)) == 0


def yolo_like_model(path, boxes: np.ndarray) -> None:
    """A real ONNX graph: image [1, 3, 64, 64] → mean × 0 + fixed [1, 4 + 33, N] rows (the YOLOv8 layout)."""
    rows = np.zeros((1, 4 + 33, len(boxes)), np.float32)
    rows[0, :4] = boxes[:, :4].T
    rows[0, 4 + boxes[:, 5].astype(int), np.arange(len(boxes))] = boxes[:, 4]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("ReduceMean", ["pooled"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "rows"], ["output"]),
        ],
        "yolo_like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(rows.shape))],
        [numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero"), numpy_helper.from_array(rows, "rows")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_onnx_detector_decodes_nms_and_classes(tmp_path):
    # (cx, cy, w, h) in the 64 px input, score, class: two overlapping persons, one ball, one car (class 2).
    boxes = np.array(
        [[20, 30, 8, 16, 0.9, 0], [21, 30, 8, 16, 0.6, 0], [40, 50, 2, 2, 0.4, 32], [10, 10, 6, 6, 0.9, 2]], np.float32
    )
    yolo_like_model(tmp_path / "det.onnx", boxes)
    detector = detect.OnnxDetector(tmp_path / "det.onnx", frame_size=(128, 96), input_size=64)
    found = detector(np.zeros((96, 128, 3), np.uint8))
    order = np.argsort(found.labels)[::-1]
    assert found.labels[order].tolist() == [detect.LABEL_PERSON, detect.LABEL_BALL]  # NMS kept one person
    np.testing.assert_allclose(found.boxes[order[0]], [32, 44, 48, 76])  # ×2: the 128-wide frame was halved
    np.testing.assert_allclose(found.scores[order], [0.9, 0.4], rtol=1e-6)
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(UserError) as e:
        detect.OnnxDetector(tmp_path / "broken.onnx", frame_size=(128, 96))
    one_line_error(e, "broken.onnx", "ONNX")


def test_preprocess_writes_a_store_that_tokenize_and_dataset_read(tmp_path):
    out = tmp_path / "store"
    result = pre.preprocess(
        shared_path(VIDEO), out, landmarks=shared_path(LANDMARKS), source_id="left", max_frames=40, progress=False
    )
    source = store.read_source(out, "left")
    assert source.fps == 25.0 and source.num_clips == 1 and int(source.clip_lengths().sum()) <= 40
    finite = np.isfinite(source.positions).all(-1)
    assert finite.any(1).all() and source.num_objects >= 10
    xy = source.positions[finite]
    assert (np.abs(xy[:, 0]) <= 52.5).all() and (np.abs(xy[:, 1]) <= 34).all()
    assert source.metadata["video"].endswith("left_camera.mp4") and "calibration" in source.metadata
    assert result.counts["segmentation_main_camera_frames"] == 40
    json.dumps(source.metadata)  # the metadata is plain JSON
    assert prepare.tokenize_store(out, 3.0, None, 0.3, False).segments > 0
    assert store.list_sources(out) == ["left"]


def test_preprocess_bad_inputs_write_nothing(tmp_path):
    out = tmp_path / "store"
    video = shared_path(VIDEO)
    collinear = tmp_path / "line.json"
    collinear.write_text(json.dumps({f"({x}, 0)": [100.0 + 10 * x, 200.0] for x in (0, 10, 20, 30, 40)}))
    with pytest.raises(UserError) as e:
        pre.preprocess(video, out, landmarks=collinear, progress=False)
    one_line_error(e, "line.json")
    # Landmarks of another camera: under them the pitch lies outside this frame.
    far = tmp_path / "elsewhere.json"
    corners = {"(0, 0)": [9000, 9000], "(105, 0)": [9900, 9000], "(105, 68)": [9900, 9600], "(0, 68)": [9000, 9600]}
    far.write_text(json.dumps(corners))
    with pytest.raises(UserError) as e:
        pre.preprocess(video, out, landmarks=far, progress=False)
    one_line_error(e, "no pitch visible")
    with pytest.raises(UserError) as e:
        pre.preprocess(video, out, progress=False)
    one_line_error(e, "--landmarks")
    assert not out.exists()


def test_a_video_without_the_pitch_is_one_line_and_writes_nothing(first_frames, tmp_path):
    """Trees and sky only (the top of the real frame), 1 s at 25 fps: no main-camera clip, nothing written."""
    video = tmp_path / "crowd.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (1280, 720))
    for _ in range(25):
        writer.write(cv2.resize(first_frames[0][:280], (1280, 720)))
    writer.release()
    with pytest.raises(UserError) as e:
        pre.preprocess(video, tmp_path / "store", landmarks=shared_path(LANDMARKS), progress=False)
    one_line_error(e, "crowd.mp4", "no main-camera clip", "main_camera_frames 0", "--min-pitch-share 0.25 on 25 frames")
    assert not (tmp_path / "store").exists()


def test_cli_preprocess_reports_one_line_for_a_missing_video(tmp_path, capsys):
    code = cli.main(["preprocess", str(tmp_path / "nope.mp4"), "--landmarks", "x.xml", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope.mp4" in err[0]


def test_preprocessed_video_trains_and_embeds_beside_the_bundled_match(bundled_source, tmp_path, capsys):
    """The video's source in the same store as a provider match: tokenize, dataset, train and embed take it."""
    from conftest import tiny_model_overrides

    from trajsv_jax.retrieval import embed

    out = tmp_path / "store"
    store.write_source(out, bundled_source)
    pre.preprocess(
        shared_path(VIDEO), out, landmarks=shared_path(LANDMARKS), source_id="left", max_frames=100, progress=False
    )
    prepare.tokenize_store(out, split=prepare.Split(4, 0.8, 0.1))
    prepare.write_dataset(out, tmp_path / "tfrecords", shards=2)
    run = tmp_path / "run"
    overrides = [*tiny_model_overrides(tmp_path / "tfrecords"), "--config.max_steps=2", "--config.eval_every_steps=2"]
    assert cli.main(["train", "--config", "configs/demo.py", "--workdir", str(run), *overrides]) == 0
    assert cli.main(["embed", "--workdir", str(run), "--split", "test", "--checkpoint", "latest"]) == 0
    capsys.readouterr()
    embedded = embed.read_embeddings(run / "embeddings" / "test")
    sources = embedded["index"]["sources"]
    video_source = sources.index("left")
    rows = embedded["clip_index"][:, 2] == video_source
    assert rows.any()  # the video's clips were embedded, as finite vectors
    assert np.isfinite(embedded["clips"][rows]).all()
    video_ids = set(embedded["clip_index"][rows, 0].tolist())
    assert np.isfinite(embedded["videos"][np.isin(embedded["video_ids"], list(video_ids))]).all()


def test_prefetched_frames_equal_direct_ones_and_pass_errors_and_stops_on():
    video = shared_path(VIDEO)
    direct = list(decode.frames(video, 180, stop=6))
    ahead = list(decode.prefetched(decode.frames(video, 180, stop=6), depth=2))
    assert [i for i, _ in ahead] == [i for i, _ in direct] == list(range(6))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ahead, direct, strict=True))

    def broken():
        yield 0, direct[0][1]
        raise UserError("clip.mp4: corrupt stream at frame 1.")

    got = decode.prefetched(broken())
    assert next(got)[0] == 0
    with pytest.raises(UserError, match="corrupt stream"):
        next(got)
    early = decode.prefetched(decode.frames(video, 180), depth=2)  # a consumer that stops after one frame
    next(early)
    early.close()  # joins the reading thread, which must not stay blocked on the full queue
    assert not any(t.name == "decode" and t.is_alive() for t in threading.enumerate())


def test_object_columns_are_slots_reused_from_clip_to_clip():
    """Two clips of 20 frames, each with its own tracks: the store needs one column per role and busiest clip."""
    from pathlib import Path

    from trajsv_jax.data import clips
    from trajsv_jax.video import track, trajectories

    to_pitch = np.array([[0.1, 0, -50], [0, -0.1, 30], [0, 0, 1.0]])  # 10 px a metre, y up: a top-down camera
    geometry = calibrate.Calibration(calibrate.oriented(to_pitch), (1000, 600))

    def frame(boxes: dict[int, tuple[float, int]]) -> track.Tracks:
        ids = sorted(boxes)
        xy = np.array([[boxes[i][0], 300.0] for i in ids])
        sizes = np.array([[4.0, 2.0] if boxes[i][1] == detect.LABEL_BALL else [10.0, 30.0] for i in ids])
        box = np.c_[xy[:, 0] - sizes[:, 0], xy[:, 1] - sizes[:, 1], xy[:, 0] + sizes[:, 0], xy[:, 1]]
        labels = np.array([boxes[i][1] for i in ids], np.int8)
        return track.Tracks(
            np.array(ids), box.astype(np.float32), labels, np.ones(len(ids), np.float32), np.arange(len(ids))
        )

    person, ball = detect.LABEL_PERSON, detect.LABEL_BALL
    tracks = [frame({1: (400 + f, person), 2: (600 + 3 * f, ball)}) for f in range(20)]
    tracks += [frame({3: (300 + f, person), 4: (700 - f, person)}) for f in range(20)]
    segmentation = shots.Segmentation(
        main_camera=np.ones(40, bool),
        shot=np.repeat([0, 1], 20).astype(np.int32),
        clips=[(0, 20), (20, 40)],
        short_runs=0,
        cues=None,
    )
    info = decode.VideoInfo(Path("match.mp4"), 1000, 600, 25.0, 40, "h264")
    team_of = {1: clips.ROLE_TEAM_A, 3: clips.ROLE_TEAM_A, 4: clips.ROLE_TEAM_B}
    frames, counts = pre.to_frames(
        tracks, team_of, segmentation, [geometry] * 40, info, trajectories.TrajectoryConfig()
    )
    assert frames.object_role.tolist() == [clips.ROLE_BALL, clips.ROLE_TEAM_A, clips.ROLE_TEAM_B]
    assert frames.object_id.tolist() == ["ball_0", "team_a_0", "team_b_0"]
    assert frames.metadata["clip_track_ids"] == [{0: 2, 1: 1}, {1: 3, 2: 4}]
    np.testing.assert_allclose(frames.positions[0, 1], [-10, 0], atol=0.05)  # track 1: image x 400 → -10 m
    np.testing.assert_allclose(frames.positions[20, 1], [-20, 0], atol=0.05)  # the same column, track 3 from frame 20
    assert np.isnan(frames.positions[20:, 0]).all() and np.isnan(frames.positions[:20, 2]).all()
    assert counts["implausible_jumps_removed"] == 0 and counts["short_tracks_removed"] == 0
