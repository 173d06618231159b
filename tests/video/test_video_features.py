"""`trajsv features`: the default extractor on a real clip, ONNX backbones through cv2.dnn, the SoccerNet import,
writing into the store, and the features reaching the examples, tf.data and the model's visual branch."""

from __future__ import annotations

import argparse
import dataclasses

import cv2
import numpy as np
import onnx
import pytest
from conftest import shared_path
from onnx import TensorProto, helper, numpy_helper

from trajsv_jax import cli
from trajsv_jax.cli import commands
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.errors import UserError
from trajsv_jax.training import trajsv as trajsv_trainer
from trajsv_jax.video import decode
from trajsv_jax.video import features as F

VIDEO = "data/soccertrack/raw_clips/left_camera.mp4"  # real HEVC 3072x1728, 25 fps, 250 frames


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def parse(argv: list[str]) -> argparse.Namespace:
    return cli.build_parser().parse_args(["features", *argv])


def tiny_source(source_id: str, fps: float, lengths, periods, starts, first_frames, metadata=None) -> store_lib.Source:
    """A source with clips of the given lengths (frames) and times; one object walking, seen in every frame."""
    frames = int(sum(lengths))
    positions = np.zeros((frames, 1, 2), np.float32)
    positions[:, 0, 0] = np.linspace(-40, 40, frames)
    return store_lib.Source(
        source_id=source_id,
        fps=fps,
        positions=positions,
        clip_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        clip_period=np.asarray(periods, np.int16),
        clip_start=np.asarray(starts, np.float64),
        clip_first_frame=np.asarray(first_frames, np.int64),
        object_role=np.array([clips_lib.ROLE_BALL], np.int8),
        object_id=np.array(["ball"]),
        metadata=dict(metadata or {}),
    )


# ---------------------------------------------------------------------------------------------- default extractor


def test_default_extractor_on_real_frames():
    path = shared_path(VIDEO)
    frames = dict(decode.frames(path, height=180, stop=26))
    extractor = F.ColourEdgeExtractor()
    vectors = extractor([frames[i] for i in (0, 1, 25)])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    a = vectors[0]
    # each of the three parts is L2-normalised, the whole is unit norm
    for part in (slice(0, 192), slice(192, 320), slice(320, 512)):
        assert np.linalg.norm(a[part]) == pytest.approx(1 / np.sqrt(3), rel=1e-5)
    # deterministic: the same frame (or a copy) gives bit-identical vectors
    np.testing.assert_array_equal(a, F.ColourEdgeExtractor().frame(frames[0].copy()))
    # nearby frames (0.04 s and 1 s apart) are closer than the frame and its mirror image, or a blank frame
    flipped = extractor.frame(cv2.flip(frames[0], 1))
    blank = extractor.frame(np.zeros_like(frames[0]))
    near, second = cosine(a, vectors[1]), cosine(a, vectors[2])
    assert near > 0.99 and second > 0.99
    assert min(near, second) > cosine(a, flipped) + 0.05
    assert cosine(a, flipped) > cosine(a, blank)
    # the descriptor is computed at a fixed size: decoding at another height barely changes it
    other = dict(decode.frames(path, height=360, stop=1))[0]
    assert cosine(a, extractor.frame(other)) > 0.999


def test_video_features_of_a_video_source_through_the_command(tmp_path, capsys):
    path = shared_path(VIDEO)
    # 25 fps clips: 2 s from frame 0 (4 samples), 0.4 s from 100 (1 sample), 2 s from 240 (4 samples, 1 inside
    # the 250-frame video: partial), 2 s from 300 (entirely past the end: no feature, counted)
    source = tiny_source(
        "left_camera",
        25.0,
        [50, 10, 50, 50],
        [1, 1, 1, 1],
        [0.0, 4.0, 9.6, 12.0],
        [0, 100, 240, 300],
        {"video": str(path)},
    )
    store = tmp_path / "store"
    store_lib.write_source(store, source)
    commands.features(parse([str(store), "--height", "144"]))
    report = capsys.readouterr().out
    without = "1 without (1: frames past the end of the video (the video has 250 frames))"
    assert f"4 clips, 3 with features, {without}" in report
    assert "1 from part of their time" in report and "512 dims" in report
    written = store_lib.read_source(store, "left_camera")
    np.testing.assert_array_equal(written.visual_mask, [True, True, True, False])
    np.testing.assert_array_equal(written.visual[3], 0)
    assert written.metadata["visual_features"]["clips_with_features"] == 3
    assert written.metadata["visual_features"]["clips_partial"] == 1
    np.testing.assert_array_equal(written.positions, source.positions)  # the trajectories are untouched
    # clip 0 is the mean of the extractor on frames 6, 18, 31, 43 (centres of 4 equal parts), decoded separately
    np.testing.assert_array_equal(F.sample_frames(0, 50, 4), [6, 18, 31, 43])
    frames = dict(decode.frames(path, height=144, stop=44))
    expected = F.ColourEdgeExtractor()([frames[i] for i in (6, 18, 31, 43)]).mean(0)
    np.testing.assert_allclose(written.visual[0], expected, rtol=1e-5, atol=1e-6)
    assert cosine(written.visual[0], written.visual[1]) > 0.99  # same camera, 4 s apart


def test_video_features_errors_are_one_line(tmp_path):
    path = shared_path(VIDEO)
    store = tmp_path / "store"
    store_lib.write_source(store, tiny_source("a", 10.0, [20], [1], [0.0], [0]))
    store_lib.write_source(store, tiny_source("b", 10.0, [20], [1], [0.0], [0]))
    with pytest.raises(UserError, match="no source has a video") as e:
        commands.features(parse([str(store)]))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="name it with --source ID"):
        commands.features(parse([str(store), "--video", str(path)]))
    with pytest.raises(UserError, match=r"25 fps, but source a was tracked at 10 fps"):
        commands.features(parse([str(store), "--source", "a", "--video", str(path)]))
    with pytest.raises(UserError, match="no such video file"):
        commands.features(parse([str(store), "--source", "a", "--video", str(tmp_path / "missing.mp4")]))


# ---------------------------------------------------------------------------------------------------------- ONNX

WEIGHTS = np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32)


def image_model(path, weights=WEIGHTS):
    """A real ONNX image encoder: GlobalAveragePool → Flatten → MatMul([3, D]); input [N, 3, H, W] → [N, D]."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "pool_project",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weights.shape[1]])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def random_frames(count: int, shape=(90, 160, 3), seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count)]


def test_onnx_image_encoder_matches_numpy(tmp_path):
    model = image_model(tmp_path / "encoder.onnx")
    extractor = F.OnnxExtractor(model, input_size=32, l2=False, batch_size=3)
    # preprocessing: a square frame is resized to S x S, BGR → RGB, / 255, then CLIP's mean / std per channel
    square = random_frames(1, (64, 64, 3))[0]
    manual = cv2.cvtColor(cv2.resize(square, (32, 32)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    manual = ((manual - F.CLIP_MEAN) / F.CLIP_STD).transpose(2, 0, 1)
    np.testing.assert_allclose(extractor.preprocess([square])[0], manual, atol=1e-5)
    frames = random_frames(7)  # 16:9 frames: resize + centre crop; 7 frames = batches of 3, 3 and 1
    blob = extractor.preprocess(frames)
    assert blob.shape == (7, 3, 32, 32)
    expected = blob.mean((2, 3)) @ WEIGHTS
    out = extractor(frames)
    assert out.shape == (7, 512)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    unit = F.OnnxExtractor(model, input_size=32)(frames)  # default: L2-normalised (CLIP embeddings)
    np.testing.assert_allclose(unit, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


def test_onnx_wrong_output_or_unreadable_model_is_one_line_error(tmp_path):
    wrong = image_model(tmp_path / "wide.onnx", np.ones((3, 768), np.float32))
    with pytest.raises(UserError, match=r"output of shape \[1, 768\].*needs 512 values per frame") as e:
        F.OnnxExtractor(wrong, input_size=32)
    assert "\n" not in str(e.value) and "wide.onnx" in str(e.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    with pytest.raises(UserError, match="OpenCV cannot read this ONNX model") as e:
        F.OnnxExtractor(garbage)
    assert "\n" not in str(e.value) and "garbage.onnx" in str(e.value)
    with pytest.raises(UserError, match="no such ONNX model file"):
        F.OnnxExtractor(tmp_path / "missing.onnx")


def test_onnx_video_encoder_takes_one_clip_of_t_frames(tmp_path):
    # two reductions: OpenCV 5.0's ReduceMean over the non-adjacent axes [1, 3, 4] in one node gives wrong values
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["spatial"], axes=[3, 4], keepdims=0),
        helper.make_node("ReduceMean", ["spatial"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["pooled", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "video",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])],
        [numpy_helper.from_array(WEIGHTS, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "video.onnx")
    extractor = F.OnnxExtractor(tmp_path / "video.onnx", input_size=16, clip_frames=4, l2=False)
    frames = random_frames(4, seed=1)
    expected = extractor.preprocess(frames).mean((0, 2, 3)) @ WEIGHTS
    np.testing.assert_allclose(extractor.clip(frames), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------------ SoccerNet


def soccernet_halves(rng) -> dict[int, np.ndarray]:
    return {1: rng.normal(size=(20, 512)).astype(np.float32), 2: rng.normal(size=(30, 512)).astype(np.float32)}


def test_soccernet_import_averages_rows_in_each_clips_time(tmp_path):
    halves = soccernet_halves(np.random.default_rng(2))
    game = tmp_path / "game"
    game.mkdir()
    for half, rows in halves.items():
        np.save(game / f"{half}_ResNET_TF2_PCA512.npy", rows)
    # 10 fps clips: (period, start s, frames)
    clips = [(1, 1.0, 20), (1, 8.0, 40), (2, 0.3, 4), (2, 0.6, 3), (2, 100.0, 20), (3, 0.0, 10)]
    source = tiny_source(
        "g", 10.0, [n for *_, n in clips], [p for p, *_ in clips], [s for _, s, _ in clips], [0] * len(clips)
    )
    features = F.import_soccernet(source, [game])
    np.testing.assert_array_equal(features.mask, [True, True, True, True, False, False])
    h1, h2 = halves[1], halves[2]
    expected = [
        h1[2:6].mean(0),  # [1, 3) s → rows 2..5 (row i is time i / 2 s)
        h1[16:20].mean(0),  # [8, 12) s → rows 16..23, the array ends at row 19: partial
        h2[1],  # [0.3, 0.7) s → row 1 (0.5 s)
        h2[2],  # [0.6, 0.9) s holds no row: the one nearest its centre (0.75 s → row 2)
    ]
    np.testing.assert_allclose(features.visual[:4], np.stack(expected), rtol=1e-6)
    np.testing.assert_array_equal(features.visual[4:], 0)
    assert features.partial == 1
    assert features.missing == {
        "past the end of the half's features (SoccerNet 1_ResNET_TF2_PCA512.npy, 2_ResNET_TF2_PCA512.npy)": 1,
        "period 3 has no feature array (halves [1, 2])": 1,
    }
    # two files and an offset: half 1's video starts 1 s before the tracking's t = 0 → clip 0 is rows 4..7
    np.save(tmp_path / "1_I3D_PCA512.npy", h1)
    np.save(tmp_path / "2_I3D_PCA512.npy", h2)
    shifted = F.import_soccernet(
        source, [tmp_path / "1_I3D_PCA512.npy", tmp_path / "2_I3D_PCA512.npy"], offsets=(1.0, 0.0)
    )
    np.testing.assert_allclose(shifted.visual[0], h1[4:8].mean(0), rtol=1e-6)
    by_name = F.import_soccernet(source, [tmp_path], name="{half}_I3D_PCA512.npy")
    np.testing.assert_array_equal(by_name.visual, features.visual)


def test_soccernet_bad_files_are_one_line_errors(tmp_path):
    source = tiny_source("g", 10.0, [20, 20], [1, 2], [0.0, 0.0], [0, 0])
    np.save(tmp_path / "1_ResNET_TF2_PCA512.npy", np.zeros((20, 256), np.float32))
    np.save(tmp_path / "2_ResNET_TF2_PCA512.npy", np.zeros((20, 512), np.float32))
    with pytest.raises(UserError, match=r"shape \[20, 256\], SoccerNet features must be \[N, 512\]") as e:
        F.import_soccernet(source, [tmp_path])
    assert "\n" not in str(e.value) and "1_ResNET_TF2_PCA512.npy" in str(e.value)
    (tmp_path / "1_ResNET_TF2_PCA512.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(UserError, match=r"not a readable \.npy array"):
        F.import_soccernet(source, [tmp_path])
    (tmp_path / "1_ResNET_TF2_PCA512.npy").unlink()
    with pytest.raises(UserError, match="no such SoccerNet feature file"):
        F.import_soccernet(source, [tmp_path])


# ----------------------------------------------------------------------------- the store, tf.data and the model


def first_clips(source: store_lib.Source, count: int) -> store_lib.Source:
    end = int(source.clip_offsets[count])
    return dataclasses.replace(
        source,
        positions=source.positions[:end],
        clip_offsets=source.clip_offsets[: count + 1],
        clip_period=source.clip_period[:count],
        clip_start=source.clip_start[:count],
        clip_first_frame=source.clip_first_frame[:count],
        metadata=dict(source.metadata),
    )


def test_features_reach_the_store_the_examples_tf_data_and_the_model(bundled_source, tmp_path):
    import jax

    from input_pipeline import examples as ex
    from input_pipeline import reader
    from input_pipeline import write as write_lib
    from trajsv_jax import config as config_lib
    from trajsv_jax import prepare
    from trajsv_jax.models import TrajSV

    store = tmp_path / "store"
    source = first_clips(bundled_source, 48)  # the real match's first 48 clips
    store_lib.write_source(store, source)
    rng = np.random.default_rng(3)
    visual = rng.normal(size=(48, 512)).astype(np.float32)
    mask = np.arange(48) % 5 != 2
    before = (store / "sources" / f"{source.source_id}.npz").read_bytes()
    with pytest.raises(UserError, match=r"shape \[47, 512\] for 48 clips"):
        F.write_features(store, source.source_id, visual[:47], mask)
    bad = visual.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UserError, match="not finite"):
        F.write_features(store, source.source_id, bad, mask)
    assert (store / "sources" / f"{source.source_id}.npz").read_bytes() == before  # nothing written on error
    F.write_features(store, source.source_id, visual, mask, {"extractor": "test"})
    back = store_lib.read_source(store, source.source_id)
    np.testing.assert_array_equal(back.visual_mask, mask)
    np.testing.assert_array_equal(back.visual, np.where(mask[:, None], visual, 0))
    assert back.metadata["visual_features"] == {"extractor": "test"}
    np.testing.assert_array_equal(back.positions, source.positions)

    # trajsv tokenize → trajsv dataset → tf.data: every clip's vector and mask arrive in its example slot
    prepare.tokenize_store(store, split=prepare.Split(4))
    prepare.write_dataset(store, tmp_path / "data", shards=1)
    info = write_lib.read_info(tmp_path / "data")
    assert write_lib.has_visual(info) and info["config"]["visual_dim"] == 512
    config = ex.ExampleConfig(**info["config"])
    seen = []
    for split in ("train", "test"):
        source_split = reader.tfrecord_source(tmp_path / "data", split, config)
        for batch in reader.ordered_batches(source_split, config, 8):
            for b, slot in zip(*np.nonzero(batch["clip_mask"]), strict=True):
                clip = batch["clip_ids"][b, slot]
                assert batch["visual_mask"][b, slot] == mask[clip]
                np.testing.assert_array_equal(batch["visual"][b, slot], np.where(mask[clip], visual[clip], 0))
                seen.append(clip)
    assert len(seen) > 40 and len(set(seen)) == len(seen)  # each clip once (videos do not overlap)
    assert sum(s["stats"]["visual_clips"] for s in info["splits"].values()) == int(mask[seen].sum())

    # training resolves model.visual_dim = -1 to 512, and the model's clip vectors c = [t, y] carry y
    setup = trajsv_trainer.make_setup(
        config_lib.load_config("configs/demo.py", [f"--config.data_dir={tmp_path / 'data'}"])
    )
    assert setup.model.visual_dim == 512
    small = dataclasses.replace(setup.model, d_model=16, ffn=32, vrnet_hidden=32, out_dim=16, layers=1)
    model = TrajSV(small)
    inputs = {k: batch[k] for k in ("tokens", "segment_mask", "clip_mask", "visual", "visual_mask")}
    params = jax.jit(model.init)(jax.random.PRNGKey(0), inputs)
    encode = jax.jit(lambda p, x: model.apply(p, x, method=TrajSV.encode))
    out = encode(params, inputs)
    b, slot = next(zip(*np.nonzero(inputs["visual_mask"]), strict=True))
    np.testing.assert_allclose(np.asarray(out["clips"][b, slot, 16:]), inputs["visual"][b, slot], rtol=1e-6)
    changed = encode(params, dict(inputs, visual=inputs["visual"] + 1.0))
    assert not np.allclose(changed["video"], out["video"])
