"""Intra-/inter-clip variants and re-tokenization: counts, donors from other videos, masks, sharding, real tokens."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from input_pipeline import examples as ex
from trajsv_jax.data import tokenize
from trajsv_jax.training import sharding, variants

B, N, M, S, K, D = 8, 3, 4, 3, 5, 2


def synthetic_batch(seed: int = 0) -> dict[str, np.ndarray]:
    """Clips of random lengths; a seen position of video b, object k, frame t is (10 b + k, t), visual (b, c)."""
    rng = np.random.default_rng(seed)
    sample_mask = rng.random((B, N, M, S)) < 0.7
    clip_mask = sample_mask.any((2, 3))
    clip_mask[0, 2] = False  # a padding clip
    sample_mask &= clip_mask[..., None, None]
    frame = np.cumsum(sample_mask.reshape(B, N, -1), -1).reshape(B, N, M, S) - 1
    seen = sample_mask[..., None] & (rng.random((B, N, M, S, K)) < 0.6) & (rng.random((B, N, 1, 1, K)) < 0.8)
    x = 10.0 * np.arange(B)[:, None, None, None, None] + np.arange(K)
    positions = np.stack(np.broadcast_arrays(x, frame[..., None]), -1).astype(np.float32)
    positions[~seen] = np.nan
    visual = np.stack(np.broadcast_arrays(*np.meshgrid(np.arange(B), np.arange(N), indexing="ij")), -1)
    return {
        "positions": positions,
        "sample_mask": sample_mask,
        "segment_mask": sample_mask.any(-1),
        "clip_mask": clip_mask,
        "tokens": rng.integers(1, 50, (B, N, M)).astype(np.int32) * sample_mask.any(-1),
        "visual": visual.astype(np.float32) * clip_mask[..., None],
        "visual_mask": clip_mask.copy(),
        "clip_ids": np.where(clip_mask, np.arange(N), -1),
        "video_id": np.arange(B),
    }


def trajectory(batch: dict, b: int, c: int, k: int) -> np.ndarray:
    """[frames, 2] positions of one object in one clip, in frame order."""
    return batch["positions"][b, c][..., k, :][batch["sample_mask"][b, c]]


def assert_batches_equal(got: dict, want: dict) -> None:
    for name in want:
        np.testing.assert_array_equal(np.asarray(got[name]), want[name], err_msg=name)


@pytest.mark.parametrize("fn", [variants.intra_clip, variants.inter_clip])
def test_zero_delta_is_identity(fn):
    batch = synthetic_batch()
    assert_batches_equal(fn(jax.random.key(0), batch, 0.0), batch)


def test_intra_clip_replaces_round_delta_trajectories_from_other_videos():
    batch = synthetic_batch(1)
    delta = np.linspace(0.0, 1.0, B).astype(np.float32)
    out = {k: np.asarray(v) for k, v in variants.intra_clip(jax.random.key(3), batch, delta).items()}
    for name in ("sample_mask", "segment_mask", "clip_mask", "tokens", "visual"):
        np.testing.assert_array_equal(out[name], batch[name], err_msg=name)
    present = np.isfinite(batch["positions"][..., 0]).any((2, 3))
    changed = ~(np.isclose(out["positions"], batch["positions"], equal_nan=True).all((2, 3, 5)))
    np.testing.assert_array_equal(changed.sum(-1), np.round(delta[:, None] * present.sum(-1)))
    assert not (changed & ~present).any() and changed.sum() > 10
    assert np.isnan(out["positions"][~batch["sample_mask"]]).all()  # padding stays padding
    for b, c, k in zip(*np.nonzero(changed), strict=True):
        got = trajectory(out, b, c, k)
        xs = np.unique(got[np.isfinite(got[:, 0]), 0])
        if len(xs) == 0:  # the donor's clip ended before this clip's seen frames
            continue
        donor_video, donor_object = divmod(int(xs[0]), 10)
        assert len(xs) == 1 and donor_video != b
        want = trajectory(batch, donor_video, c, donor_object)[: len(got)]
        np.testing.assert_array_equal(got[: len(want)], want)  # frame-aligned, same clip slot
        assert np.isnan(got[len(want) :]).all()


def test_inter_clip_replaces_round_delta_clips_from_other_videos():
    batch = synthetic_batch(2)
    delta = np.linspace(0.0, 1.0, B).astype(np.float32)
    out = {k: np.asarray(v) for k, v in variants.inter_clip(jax.random.key(4), batch, delta).items()}
    np.testing.assert_array_equal(out["clip_mask"], batch["clip_mask"])
    np.testing.assert_array_equal(out["video_id"], batch["video_id"])
    source = out["visual"].astype(int)  # (video, clip slot) each clip came from
    changed = source[..., 0] != np.arange(B)[:, None]
    np.testing.assert_array_equal(changed.sum(-1), np.round(delta * batch["clip_mask"].sum(-1)))
    assert not (changed & ~batch["clip_mask"]).any()
    np.testing.assert_array_equal(
        source[~changed & batch["clip_mask"], 1], np.nonzero(batch["clip_mask"])[1][~changed[batch["clip_mask"]]]
    )
    for b, c in zip(*np.nonzero(batch["clip_mask"]), strict=True):
        db, dc = source[b, c]
        assert batch["clip_mask"][db, dc]
        for name in variants.CLIP_FIELDS:
            if name in batch:
                np.testing.assert_array_equal(out[name][b, c], batch[name][db, dc], err_msg=name)


def test_sample_delta_range_and_determinism():
    d = variants.sample_delta(jax.random.key(0), 1000)
    assert d.shape == (1000,) and float(d.min()) >= 0.0 and float(d.max()) <= 0.2 and float(d.max()) > 0.19
    np.testing.assert_array_equal(d, variants.sample_delta(jax.random.key(0), 1000))


@pytest.fixture(scope="module")
def real_batch(bundled_source):
    """8 videos of 4 clips of the bundled match, with tokens from a vocabulary over all its segments."""
    source = bundled_source
    vocab = tokenize.Vocabulary()
    matrices, offsets = tokenize.source_segment_matrices(source)
    tokens = vocab.tokenize(matrices)
    per_clip = [tokens[offsets[c] : offsets[c + 1]] for c in range(source.num_clips)]
    config = ex.ExampleConfig.for_sources([source], clips=4)
    videos, _ = ex.plan_videos([source], config.clips_per_video)
    pairs = list(ex.video_examples([source], videos[:B], {source.source_id: per_clip}, config))
    assert sum(stats["dropped_objects"] for _, stats in pairs) == 0  # K = 32 keeps every object: tokens comparable
    batch = {name: np.stack([e[name] for e, _ in pairs]) for name in pairs[0][0]}
    batch.pop("clip_ids"), batch.pop("video_id")  # int64 (no x64 on device)
    return batch, vocab.device_arrays()


def test_retokenize_reproduces_stored_tokens(real_batch):
    batch, (vocab_matrices, vocab_tokens) = real_batch
    assert batch["segment_mask"].sum() > 100 and (batch["tokens"] > 0).sum() > 100
    retok = jax.jit(variants.retokenize, static_argnames="grids")
    np.testing.assert_array_equal(retok(batch, vocab_matrices, vocab_tokens, grids=3.0), batch["tokens"])


def test_sharded_jit_equals_single_device(real_batch):
    batch, (vocab_matrices, vocab_tokens) = real_batch
    mesh = sharding.make_mesh()

    @functools.partial(jax.jit, static_argnames="grids")
    def step(rng, batch, vocab_matrices, vocab_tokens, grids):
        d_key, a_key, b_key = jax.random.split(rng, 3)
        delta = variants.sample_delta(d_key, batch["clip_mask"].shape[0], 0.5)
        v2 = variants.intra_clip(a_key, batch, delta)
        v2 = {**v2, "tokens": variants.retokenize(v2, vocab_matrices, vocab_tokens, grids)}
        return v2, variants.inter_clip(b_key, batch, delta)

    single = jax.devices()[0]
    ref = step(jax.random.key(7), jax.device_put(batch, single), vocab_matrices, vocab_tokens, grids=3.0)
    sharded = jax.device_put(batch, sharding.batch_sharding(mesh))
    assert len(sharded["positions"].addressable_shards) == 8
    got = step(jax.random.key(7), sharded, vocab_matrices, vocab_tokens, grids=3.0)
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(g), np.asarray(r))
    v2, v3 = ref
    # trajectories and clips moved (tokens of V2 may well stay: a segment's nearest entry is often its original)
    assert not np.array_equal(np.asarray(v2["positions"]), batch["positions"], equal_nan=True)
    assert not np.array_equal(np.asarray(v3["positions"]), batch["positions"], equal_nan=True)
