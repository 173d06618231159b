"""Input pipeline: store → per-video examples → TFRecord / TFDS → global sharded batches, resumable."""

from __future__ import annotations

import itertools
import json
import socket

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from input_pipeline import examples as ex
from input_pipeline import reader, tfds_builder, write
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.data import tokenize
from trajsv_jax.errors import UserError

CONFIG = ex.ExampleConfig(clips_per_video=3, segments_per_clip=4, fps=10.0, max_objects=6, visual_dim=8)


def random_source(rng, source_id, frames, objects, num_objects, periods, visual_dim=None) -> store_lib.Source:
    """Random walks on the pitch: clip c has frames[c] frames and objects[c] objects, each seen in a random subset."""
    clips = []
    for t, k in zip(frames, objects, strict=True):
        pos = np.full((t, num_objects, 2), np.nan, np.float32)
        ids = rng.choice(num_objects, k, replace=False)
        walk = rng.uniform([-50, -30], [50, 30], (k, 2)) + np.cumsum(rng.normal(0, 0.3, (t, k, 2)), 0)
        seen = rng.random((t, k)) < np.linspace(0.3, 1.0, k)  # different objects, different frame counts
        seen[rng.integers(t, size=k), np.arange(k)] = True
        walk[~seen] = np.nan
        pos[:, ids] = walk
        clips.append(pos)
    c = len(frames)
    visual = None if visual_dim is None else rng.normal(size=(c, visual_dim)).astype(np.float32)
    return store_lib.Source(
        source_id=source_id,
        fps=10.0,
        positions=np.concatenate(clips),
        clip_offsets=np.concatenate([[0], np.cumsum(frames)]).astype(np.int64),
        clip_period=np.asarray(periods, np.int16),
        clip_start=np.arange(c) * 20.0,
        clip_first_frame=np.arange(c, dtype=np.int64) * 200,
        object_role=np.full(num_objects, clips_lib.ROLE_TEAM_A, np.int8),
        object_id=np.array([f"o{i}" for i in range(num_objects)]),
        visual=visual,
        visual_mask=None if visual is None else np.arange(c) % 3 != 1,
    )


def synthetic_sources() -> list[store_lib.Source]:
    rng = np.random.default_rng(0)
    # a: clip 0 has 45 frames (4 segments, the most), 1 is empty, 3 is short (one segment), 4 has 9 > K objects.
    a = random_source(
        rng,
        "a",
        [45, 8, 30, 5, 40, 20, 33, 12, 25],
        [5, 0, 6, 3, 9, 4, 2, 6, 5],
        12,
        [1, 1, 1, 1, 1, 2, 2, 2, 2],
        visual_dim=8,
    )
    b = random_source(rng, "b", rng.integers(4, 45, 60).tolist(), rng.integers(1, 7, 60).tolist(), 7, [1] * 60)
    return [a, b]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A store of synthetic sources, its videos, tokens, TFRecord dataset and prepared TFDS builder."""
    root = tmp_path_factory.mktemp("input")
    for source in synthetic_sources():
        store_lib.write_source(root / "store", source)
    sources = store_lib.read_store(root / "store")
    rng = np.random.default_rng(1)
    tokens = {
        s.source_id: [
            rng.integers(0, 50, len(tokenize.segment_bounds(len(s.clip(c)), s.fps)) - 1) for c in range(s.num_clips)
        ]
        for s in sources
    }
    info = write.prepare_store(root / "store", root / "records", CONFIG, num_shards=3, tokens_by_source=tokens)
    return {"root": root, "sources": sources, "tokens": tokens, "info": info}


def mesh(devices: int = 1, model: int = 1) -> Mesh:
    return Mesh(np.array(jax.devices()[: devices * model]).reshape(devices, model), ("data", "model"))


def check_example(example: dict, sources: list, tokens: dict | None, config: ex.ExampleConfig) -> None:
    """Shapes, masks and padding right, and every clip's frames exactly the store's (kept objects first)."""
    for name, (shape, dtype) in ex.feature_spec(config).items():
        assert example[name].shape == shape and example[name].dtype == dtype, name
    source = sources[int(example["source_index"])]
    assert int(example["video_id"]) >> ex.VIDEO_ID_CLIP_BITS == int(example["source_index"])
    used = example["clip_mask"]
    assert used[0] and np.all(used[: used.sum()])  # filled from the front
    assert np.all(example["clip_ids"][~used] == -1) and np.all(example["tokens"][~used] == 0)
    assert np.all(np.isnan(example["positions"][~used])) and not example["sample_mask"][~used].any()
    for slot in np.flatnonzero(used):
        c = int(example["clip_ids"][slot])
        clip = source.clip(c)
        bounds = tokenize.segment_bounds(len(clip), source.fps, config.segment_seconds)
        np.testing.assert_array_equal(
            example["segment_mask"][slot], np.arange(config.segments_per_clip) < len(bounds) - 1
        )
        np.testing.assert_array_equal(example["sample_mask"][slot].sum(1)[: len(bounds) - 1], np.diff(bounds))
        kept, _, _ = ex.select_objects(clip, config.max_objects)
        frames = example["positions"][slot][example["sample_mask"][slot]]  # [T, K, 2] in frame order
        np.testing.assert_array_equal(frames[:, : len(kept)], clip[:, kept])
        assert np.all(np.isnan(frames[:, len(kept) :]))
        assert np.all(np.isnan(example["positions"][slot][~example["sample_mask"][slot]]))
        if len(kept) < config.max_objects:  # nothing dropped: every seen object-frame is in the example
            assert np.all(np.isnan(np.delete(clip, kept, axis=1)))
        if tokens is not None:
            np.testing.assert_array_equal(example["tokens"][slot][: len(bounds) - 1], tokens[source.source_id][c])
        has_visual = source.visual is not None and bool(source.visual_mask[c])
        assert example["visual_mask"][slot] == has_visual
        np.testing.assert_array_equal(example["visual"][slot], source.visual[c] if has_visual else 0)


def all_examples(data) -> list[dict]:
    videos, _ = ex.plan_videos(data["sources"], CONFIG.clips_per_video)
    return [e for e, _ in ex.video_examples(data["sources"], videos, data["tokens"], CONFIG)]


def test_examples_round_trip_to_store_clips(data):
    examples = all_examples(data)
    assert len(examples) == sum(s["num_examples"] for s in data["info"]["splits"].values())
    for example in examples:
        check_example(example, data["sources"], data["tokens"], CONFIG)
    assert len({int(e["video_id"]) for e in examples}) == len(examples)


def test_drops_are_counted(data):
    a = data["sources"][0]
    clip = a.clip(4)  # 9 objects seen, K = 6
    seen = np.isfinite(clip).all(-1).sum(0)
    kept, dropped, dropped_frames = ex.select_objects(clip, CONFIG.max_objects)
    assert len(kept) == 6 and dropped == 3 and list(kept) == sorted(kept)
    assert seen[kept].min() >= np.delete(seen, kept)[seen[np.delete(np.arange(len(seen)), kept)] > 0].max()
    assert dropped_frames == seen.sum() - seen[kept].sum()
    _, plan_stats = ex.plan_videos([a], CONFIG.clips_per_video)
    assert plan_stats == {"empty_clips": 1, "groups": 0}
    video = clips_lib.Video("a", 0, 3, 1, 0.0, "train")  # holds the empty clip 1 and clip 2
    [(example, stats)] = ex.video_examples([a], [video], None, CONFIG)
    assert stats["empty_clips"] == 1 and stats["clips"] == 2 and list(example["clip_ids"]) == [0, 2, -1]
    assert not example["tokens"].any()
    [(_, stats)] = ex.video_examples([a], [clips_lib.Video("a", 2, 3, 1, 40.0, "train")], None, CONFIG)
    assert (stats["clips_over_max_objects"], stats["dropped_objects"], stats["dropped_object_frames"]) == (
        1,
        3,
        dropped_frames,
    )
    split_stats = [s["stats"] for s in data["info"]["splits"].values()]
    assert sum(s["dropped_object_frames"] for s in split_stats) >= dropped_frames
    assert data["info"]["store"]["stats"] == {"empty_clips": 1, "groups": 0}


def test_bad_clips_are_user_errors(data):
    a = data["sources"][0]
    with pytest.raises(UserError, match="source a clip 0: 45 frames make 4 segments, more than m=3"):
        next(
            ex.video_examples(
                [a],
                [clips_lib.Video("a", 0, 1, 1, 0.0, "train")],
                None,
                ex.ExampleConfig(segments_per_clip=3, max_objects=6, visual_dim=8),
            )
        )


def test_a_faster_source_is_resampled_inside_segments_cut_at_its_own_rate(data):
    """At 5 fps a 10 fps clip keeps every other frame; its segments (and their tokens) stay those of 10 fps."""
    a = data["sources"][0]
    clip = a.clip(0)
    config = ex.ExampleConfig(fps=5.0, max_objects=6, visual_dim=8)
    [(example, _)] = ex.video_examples([a], [clips_lib.Video("a", 0, 1, 1, 0.0, "train")], None, config)
    bounds = tokenize.segment_bounds(len(clip), a.fps)
    kept = ex.resampled_frames(len(clip), a.fps, config.fps)
    assert kept.tolist() == list(range(0, len(clip), 2))
    per_segment = [int(((kept >= lo) & (kept < hi)).sum()) for lo, hi in itertools.pairwise(bounds)]
    assert example["sample_mask"][0].sum(1)[: len(per_segment)].tolist() == per_segment
    assert example["segment_mask"][0].sum() == len(bounds) - 1  # no boundary moved
    assert ex.resampled_frames(10, 25.0, 10.0).tolist() == [0, 3, 5, 8]  # 0, 2.5, 5, 7.5 -> first frame at or after
    with pytest.raises(UserError, match="source a clip 0: 3 tokens for 4 segments"):
        next(ex.video_examples([a], [clips_lib.Video("a", 0, 1, 1, 0.0, "train")], {"a": [np.ones(3)]}, CONFIG))


def read_all(iterator) -> list[dict]:
    return [{k: np.asarray(v) for k, v in batch.items()} for batch in iterator]


def by_video(batches: list[dict]) -> dict[int, dict]:
    return {int(b["video_id"][i]): {k: v[i] for k, v in b.items()} for b in batches for i in range(len(b["video_id"]))}


def test_tfrecords_read_back_equal(data):
    info = json.loads((data["root"] / "records" / write.INFO_FILE).read_text())
    assert info["features"]["positions"] == {"shape": [3, 4, 15, 6, 2], "dtype": "float32"}
    assert [s["file"] for s in info["splits"]["train"]["shards"]] == [
        f"train-0000{i}-of-00003.tfrecord" for i in range(3)
    ]
    expected = {int(e["video_id"]): e for e in all_examples(data)}
    for split in ("train", "test"):
        it = reader.make_iterator(data["root"] / "records", split, 1, mesh(), 0, CONFIG, shuffle=False, num_epochs=1)
        got = by_video(read_all(it))
        assert len(got) == info["splits"][split]["num_examples"]
        for video_id, example in got.items():
            for name in example:
                np.testing.assert_array_equal(example[name], expected[video_id][name], err_msg=name)


def test_tfds_prepares_offline_and_reads_equal(data, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("TFDS tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    builder = tfds_builder.prepare(data["root"] / "store", data["root"] / "tfds", CONFIG, data["tokens"], num_shards=2)
    monkeypatch.undo()
    expected = {int(e["video_id"]): e for e in all_examples(data)}
    for split in ("train", "test"):
        records = data["info"]["splits"][split]
        assert builder.info.splits[split].num_examples == records["num_examples"]
        assert builder.info.splits[split].num_shards == 2
        assert builder.info.metadata[f"{split}_stats"] == records["stats"]
        got = {int(e["video_id"]): e for e in builder.as_dataset(split=split).as_numpy_iterator()}
        assert set(got) <= set(expected) and len(got) == records["num_examples"]
        for video_id, example in got.items():
            for name in example:
                np.testing.assert_array_equal(example[name], expected[video_id][name], err_msg=name)
        it = reader.make_tfds_iterator(builder, split, 1, mesh(), 0, CONFIG, shuffle=False, num_epochs=1)
        streamed = by_video(read_all(it))
        assert streamed.keys() == got.keys()
        for video_id, example in streamed.items():
            for name in example:
                np.testing.assert_array_equal(example[name], got[video_id][name], err_msg=name)


def video_order(data, seed: int, batches: int, global_batch: int = 4) -> list[int]:
    it = reader.make_iterator(data["root"] / "records", "train", global_batch, mesh(), seed, CONFIG, shuffle_buffer=8)
    return [int(v) for _, batch in zip(range(batches), it, strict=False) for v in np.asarray(batch["video_id"])]


def test_same_seed_same_order(data):
    it = reader.make_iterator(data["root"] / "records", "train", 4, mesh(), 0, CONFIG)
    n = 2 * it.batches_per_epoch
    first = video_order(data, 0, n)
    assert first == video_order(data, 0, n)
    assert first != video_order(data, 1, n)
    per_epoch = it.batches_per_epoch * 4
    assert first[:per_epoch] != first[per_epoch:]  # reshuffled each epoch
    assert len(set(first[:per_epoch])) == per_epoch  # an epoch has no repeats


@pytest.mark.parametrize("consumed", ["mid_epoch", "epoch_end"])
def test_state_restore_gives_identical_batches(data, consumed):
    it = reader.make_iterator(data["root"] / "records", "train", 4, mesh(), 7, CONFIG, shuffle_buffer=8)
    skip = it.batches_per_epoch // 2 if consumed == "mid_epoch" else it.batches_per_epoch
    for _ in range(skip):
        next(it)
    state = json.loads(json.dumps(it.state()))
    assert state["epoch"] == skip // it.batches_per_epoch
    following = read_all(next(it) for _ in range(it.batches_per_epoch + 1))  # crosses an epoch boundary
    fresh = reader.make_iterator(data["root"] / "records", "train", 4, mesh(), 0, CONFIG, shuffle_buffer=8)
    fresh.restore(state)
    assert fresh.state() == state
    for a, b in zip(following, read_all(next(fresh) for _ in range(len(following))), strict=True):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_global_arrays_sharded_over_data_axis(data):
    if jax.device_count() < 8:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/conftest.py sets it)")
    for data_devices, model in ((8, 1), (4, 2)):
        m = mesh(data_devices, model)
        it = reader.make_iterator(data["root"] / "records", "train", 8, m, 0, CONFIG)
        batch = next(it)
        assert batch["positions"].shape == (8, *ex.feature_spec(CONFIG)["positions"][0])
        for value in batch.values():
            assert value.sharding.is_equivalent_to(NamedSharding(m, PartitionSpec("data")), value.ndim)
            assert {s.data.shape[0] for s in value.addressable_shards} == {8 // data_devices}
        assert batch["video_id"].dtype == (np.int64 if jax.config.jax_enable_x64 else np.int32)
        spec = ex.feature_spec(CONFIG)
        example = {k: np.asarray(v)[3].astype(spec[k][1]) for k, v in batch.items()}
        check_example(example, data["sources"], data["tokens"], CONFIG)


def test_host_shares_are_equal():
    source = reader.RecordSource(tuple(f"f{i}" for i in range(5)), (4, 4, 3, 3, 3), "test")
    shares = [reader.host_share(source, p, 2, 2) for p in range(2)]
    assert shares == [(("f0", "f2", "f4"), 3), (("f1", "f3"), 3)]  # 10 and 7 examples: both take 3 batches of 2
    with pytest.raises(UserError, match="5 shards for 8 processes"):
        reader.host_share(source, 0, 8, 1)


def test_bad_input_messages(data, tmp_path):
    def one_line_error(match, call):
        with pytest.raises(UserError, match=match) as e:
            call()
        assert "\n" not in str(e.value)

    records = data["root"] / "records"
    one_line_error("no such dataset directory", lambda: reader.make_iterator(tmp_path / "x", "train", 4, mesh(), 0))
    one_line_error("dataset_info.json: missing", lambda: reader.make_iterator(tmp_path, "train", 4, mesh(), 0))
    one_line_error("no shards for split 'valid'", lambda: reader.make_iterator(records, "valid", 4, mesh(), 0, CONFIG))
    one_line_error(
        r"feature 'positions' is \(\[3, 4, 15, 6, 2\], 'float32'\), the example config needs \(\[16,",
        lambda: reader.make_iterator(records, "train", 4, mesh(), 0),
    )
    one_line_error(
        "fewer than one per-host batch", lambda: reader.make_iterator(records, "test", 400, mesh(), 0, CONFIG)
    )
    one_line_error(
        "'data' axis",
        lambda: reader.make_iterator(records, "train", 4, Mesh(np.array(jax.devices()[:1]), ("b",)), 0, CONFIG),
    )
    if jax.device_count() >= 2:
        one_line_error("must divide", lambda: reader.make_iterator(records, "train", 3, mesh(2), 0, CONFIG))


def test_bundled_match_round_trip(request, tmp_path):
    try:
        source = request.getfixturevalue("bundled_source")
    except (pytest.FixtureLookupError, ImportError, AttributeError) as e:
        pytest.skip(f"bundled SkillCorner match not available: {e}")
    config = ex.ExampleConfig.for_sources([source])
    videos, _ = ex.plan_videos([source], config.clips_per_video)
    examples = list(ex.video_examples([source], videos[:4], None, config))
    write.write_tfrecords(iter(examples), tmp_path, "train", 2, config)
    got = by_video(read_all(reader.make_iterator(tmp_path, "train", 1, mesh(), 0, config, shuffle=False, num_epochs=1)))
    for example, _ in examples:
        check_example(example, [source], None, config)
        for name, value in got[int(example["video_id"])].items():
            np.testing.assert_array_equal(value, example[name], err_msg=name)
