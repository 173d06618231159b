"""Tests of the TrajSV model: shapes, masking invariances, finite edge cases, jit/grad, and parity with the peer."""

from __future__ import annotations

import dataclasses
import functools
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import shared_path, tiny_model_overrides

from input_pipeline import reader
from trajsv_jax import config as config_lib
from trajsv_jax.errors import UserError
from trajsv_jax.models import MAB, MSB, LSTMEncoder, TrajSV, TrajSVConfig, count_params, mab, msb
from trajsv_jax.training import sharding
from trajsv_jax.training import trajsv as trajsv_trainer

# A small model keeps the tests fast; the paper-sized one runs only in the parameter-count and peer-parity tests.
SMALL = TrajSVConfig(vocab_size=64, d_model=32, ffn=64, visual_dim=24, vrnet_hidden=48, out_dim=16)
CELLS = 35 * 23


def make_batch(cfg: TrajSVConfig, b: int = 3, n: int = 6, m: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """A random batch with some padded segments, padded clips and missing visual vectors."""
    rng = np.random.default_rng(seed)
    segment_mask = np.ones((b, n, m), bool)
    segment_mask[:, :, m - 4 :] = False
    clip_mask = np.ones((b, n), bool)
    clip_mask[:, n - 2 :] = False
    visual_mask = clip_mask.copy()
    visual_mask[:, 0] = False
    return {
        "tokens": np.where(segment_mask, rng.integers(1, cfg.vocab_size, (b, n, m)), 0).astype(np.int32),
        "matrices": rng.random((b, n, m, CELLS)) < 0.02,
        "segment_mask": segment_mask,
        "clip_mask": clip_mask,
        "visual": rng.normal(size=(b, n, max(cfg.visual_dim, 1))).astype(np.float32),
        "visual_mask": visual_mask,
    }


def shaped_variables(cfg: TrajSVConfig, batch: dict[str, np.ndarray]) -> dict:
    """Random numpy parameters of the right shapes for a model variant: the real init is exercised by the `small`
    fixture, and skipping it here saves compiling one initialiser per variant."""
    shapes = jax.eval_shape(TrajSV(cfg).init, jax.random.key(0), batch)
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map(lambda s: rng.normal(0, 0.05, s.shape).astype(s.dtype), shapes)


def shaped_apply(cfg: TrajSVConfig, batch: dict[str, np.ndarray]) -> tuple[dict, jax.Array]:
    """Run a model variant on `shaped_variables`."""
    variables = shaped_variables(cfg, batch)
    return variables, jax.jit(TrajSV(cfg).apply)(variables, batch)


# Jitted encode of the small model, shared by the tests below; shapes that repeat compile once.
encode = jax.jit(functools.partial(TrajSV(SMALL).apply, method=TrajSV.encode))


@pytest.fixture(scope="module")
def small() -> tuple[dict, dict[str, np.ndarray]]:
    batch = make_batch(SMALL)
    return jax.jit(TrajSV(SMALL).init)(jax.random.key(0), batch), batch


def test_shapes_and_unit_norm(small):
    variables, batch = small
    out = encode(variables, batch)
    assert out["video"].shape == (3, SMALL.out_dim)
    assert out["clips"].shape == (3, 6, SMALL.d_model + SMALL.visual_dim)
    np.testing.assert_allclose(np.linalg.norm(out["video"], axis=-1), 1.0, rtol=1e-5)


def test_padding_does_not_change_output(small):
    variables, batch = small
    v = encode(variables, batch)["video"]
    rng = np.random.default_rng(1)
    changed = dict(batch)
    # Garbage in padded segments, in padded clips, and in visual vectors marked missing.
    changed["tokens"] = np.where(batch["segment_mask"], batch["tokens"], rng.integers(1, SMALL.vocab_size, (3, 6, 16)))
    changed["tokens"][~batch["clip_mask"]] = rng.integers(1, SMALL.vocab_size, (6, 16))
    changed["visual"] = np.where(batch["visual_mask"][..., None], batch["visual"], 100.0).astype(np.float32)
    np.testing.assert_allclose(encode(variables, changed)["video"], v, atol=1e-6)


def test_shorter_video_equals_differently_padded(small):
    variables, batch = small
    v = encode(variables, batch)["video"]  # 4 valid clips of 12 segments, padded to n=6, m=16
    trimmed = {k: x[:, :5] for k, x in batch.items()}
    trimmed = {**trimmed, "tokens": trimmed["tokens"][..., :13], "segment_mask": trimmed["segment_mask"][..., :13]}
    np.testing.assert_allclose(encode(variables, trimmed)["video"], v, atol=1e-5)
    wider = {k: np.concatenate([x, np.zeros_like(x)], axis=1) for k, x in batch.items()}
    np.testing.assert_allclose(encode(variables, wider)["video"], v, atol=1e-5)


def test_empty_clip_and_single_clip_video_are_finite(small):
    variables, batch = small
    edge = {k: x.copy() for k, x in batch.items()}
    edge["segment_mask"][0, 1] = False  # a valid clip without any valid segment
    edge["tokens"][0, 1] = 0
    edge["clip_mask"][1, 1:] = False  # a video of a single clip
    edge["clip_mask"][2] = False  # a fully padded video
    out = encode(variables, edge)
    assert np.isfinite(out["video"]).all() and np.isfinite(out["clips"]).all()


def test_trajectory_only_and_matrices_modes():
    traj_only = dataclasses.replace(SMALL, visual_dim=0, layers=1)
    _, v = shaped_apply(traj_only, make_batch(traj_only))
    assert v.shape == (3, SMALL.out_dim) and np.isfinite(v).all()
    matrices = dataclasses.replace(SMALL, embedding="matrices", layers=1)
    variables, v = shaped_apply(matrices, make_batch(matrices))
    assert variables["params"]["crnet"]["embed"]["kernel"].shape == (CELLS, SMALL.d_model)
    assert v.shape == (3, SMALL.out_dim) and np.isfinite(v).all()


def test_bfloat16_compute_keeps_float32_params():
    cfg = dataclasses.replace(SMALL, dtype="bfloat16", layers=1)
    variables, v = shaped_apply(cfg, make_batch(cfg))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(variables))
    assert v.dtype == jnp.float32 and np.isfinite(v).all()


def test_jit_grad_with_dropout(small):
    variables, batch = small
    model = TrajSV(SMALL)

    @jax.jit
    def loss_and_grad(params, key):
        def loss(p):
            v = model.apply({"params": p}, batch, deterministic=False, rngs={"dropout": key})
            return -jnp.sum(v[0] * v[1]), v

        return jax.value_and_grad(loss, has_aux=True)(params)

    (value, v1), grads = loss_and_grad(variables["params"], jax.random.key(1))
    assert np.isfinite(value)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(np.isfinite(g).all() for g in leaves)
    assert any(np.abs(g).max() > 0 for g in leaves)
    (_, v2), _ = loss_and_grad(variables["params"], jax.random.key(2))
    assert not np.allclose(v1, v2)  # dropout is active


def test_param_count_matches_torch_peer():
    # 18,711,936 = sum(p.numel() for p in TrajSV(4096).parameters()) for ../shared/peers/torch_trajsv.py
    # (vocab 4096, visual 512), computed once with torch 2.13.0 CPU (CRNet 955,904 + VRNet 17,756,032).
    cfg = TrajSVConfig(vocab_size=4096, visual_dim=512)
    batch = make_batch(cfg, b=1, n=2)
    shapes = jax.eval_shape(TrajSV(cfg).init, jax.random.key(0), batch)
    assert count_params(shapes["params"]) == 18_711_936


def test_pure_mab_equals_flax_wrapper():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 3, 10)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(2, 5, 7)), jnp.float32)
    mask = jnp.asarray([[True, True, False, True, False], [False] * 5])
    block = MAB(dim_out=8, heads=2)
    variables = block.init(jax.random.key(0), x, y, mask)
    out = block.apply(variables, x, y, mask)
    np.testing.assert_array_equal(out, mab(variables["params"], x, y, mask, heads=2))
    assert np.isfinite(out).all()  # the second row has every key masked
    self_block = MSB(dim_out=8, heads=2)
    variables = self_block.init(jax.random.key(0), y, mask)
    np.testing.assert_array_equal(self_block.apply(variables, y, mask), msb(variables["params"], y, mask, heads=2))


def peer_params(sd: dict[str, np.ndarray], d: int = 128, heads: int = 2) -> dict:
    """Our parameter pytree holding the weights of the PyTorch peer's state dict (Linear weights transposed)."""

    def lin(p: str) -> dict:
        return {"kernel": sd[p + ".weight"].T, "bias": sd[p + ".bias"]}

    def ln(p: str) -> dict:
        return {"scale": sd[p + ".weight"], "bias": sd[p + ".bias"]}

    crnet = {"embed": {"embedding": sd["crnet.embed.weight"]}, "pos": sd["crnet.pos"]}
    crnet |= {"ffn0": lin("crnet.ffn.0"), "ffn1": lin("crnet.ffn.2")}
    for i in range(2):
        p = f"crnet.encoder.layers.{i}."
        w, b = sd[p + "self_attn.in_proj_weight"], sd[p + "self_attn.in_proj_bias"]
        attn = {
            name: {
                "kernel": w[j * d : (j + 1) * d].T.reshape(d, heads, -1),
                "bias": b[j * d : (j + 1) * d].reshape(heads, -1),
            }
            for j, name in enumerate(["query", "key", "value"])
        }
        attn["out"] = {
            "kernel": sd[p + "self_attn.out_proj.weight"].T.reshape(heads, -1, d),
            "bias": sd[p + "self_attn.out_proj.bias"],
        }
        crnet[f"layer{i}"] = {"self_attn": attn, "linear1": lin(p + "linear1"), "linear2": lin(p + "linear2")}
        crnet[f"layer{i}"] |= {"norm1": ln(p + "norm1"), "norm2": ln(p + "norm2")}
    names = {"q": "q", "k": "k", "v": "v", "o": "o", "ln0": "ln0", "ln1": "ln1", "rff0": "rff.0", "rff1": "rff.2"}
    vrnet = {
        block: {
            ours: (ln if ours.startswith("ln") else lin)(f"vrnet.{block}.{theirs}") for ours, theirs in names.items()
        }
        for block in ["msb1", "msb2", "pma", "msb3"]
    }
    vrnet |= {"seed": sd["vrnet.seed"].reshape(1, d), "rff0": lin("vrnet.rff.0"), "rff1": lin("vrnet.rff.2")}
    return {"crnet": crnet, "vrnet": vrnet}


def test_matches_torch_peer_numerically():
    """With the peer's weights loaded, eval-mode outputs agree: the two models are the same function."""
    torch = pytest.importorskip("torch", reason="the test extra's torch==2.13.0 runs the PyTorch peer")
    sys.path.insert(0, str(shared_path("peers/torch_trajsv.py").parent))
    torch_trajsv = pytest.importorskip("torch_trajsv")
    torch.manual_seed(0)
    peer = torch_trajsv.TrajSV(512).eval()
    tokens, visual, clip_mask = (x[0] for x in torch_trajsv.make_batch(2, 512))
    with torch.no_grad():
        expected = peer(tokens, visual, clip_mask).numpy()
    tokens = tokens.numpy().astype(np.int32)
    batch = {"tokens": tokens, "segment_mask": tokens != 0, "clip_mask": clip_mask.numpy()}
    batch |= {"visual": visual.numpy(), "visual_mask": clip_mask.numpy()}
    params = peer_params({k: v.numpy() for k, v in peer.state_dict().items()})
    got = jax.jit(TrajSV(TrajSVConfig(vocab_size=512)).apply)({"params": params}, batch)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_hashed_dropout_keeps_one_minus_rate_and_depends_on_the_key():
    from trajsv_jax.models.dropout import Dropout, keep_mask

    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a, b = np.asarray(keep_mask(key_a, (1000, 1000), 0.3)), np.asarray(keep_mask(key_b, (1000, 1000), 0.3))
    assert abs(a.mean() - 0.7) < 0.002 and abs(b.mean() - 0.7) < 0.002  # 1e6 draws: sd 4.6e-4
    assert abs((a & b).mean() - 0.49) < 0.002  # two keys: independent masks
    assert abs((a[:, 1:] & a[:, :-1]).mean() - 0.49) < 0.002  # neighbours independent
    x = jnp.ones((256, 512))
    y = Dropout(0.3).apply({}, x, deterministic=False, rngs={"dropout": key_a})
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.7], rtol=1e-6)
    np.testing.assert_array_equal(Dropout(0.3).apply({}, x, deterministic=True), x)


# ------------------------------------------------------------------------- Table V ablations: LSTM / BiLSTM, Mean / MLP

TINY = TrajSVConfig(vocab_size=50, segments=6, d_model=16, heads=2, ffn=32, vrnet_hidden=32, out_dim=8)


def ragged_batch(cfg: TrajSVConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """`make_batch` with 5 clips of 6 segments, valid segments 0 … 6 per clip (left-aligned, as the pipeline writes
    them): clip (0, 1) has none, clip (0, 2) all, the last clip of every video is padding."""
    batch = make_batch(cfg, b=3, n=5, m=6, seed=seed)
    lengths = np.random.default_rng(seed).integers(1, 7, (3, 5))
    lengths[0, 1], lengths[0, 2] = 0, 6
    batch["segment_mask"] = np.arange(6) < lengths[..., None]
    batch["tokens"] = np.where(batch["segment_mask"], batch["tokens"], 0).astype(np.int32)
    batch["matrices"] &= batch["segment_mask"][..., None]
    return batch


def with_garbage_in_padding(batch: dict[str, np.ndarray], vocab_size: int) -> dict[str, np.ndarray]:
    """The batch with random tokens / matrices in padded segments and clips, and large missing visual vectors."""
    rng = np.random.default_rng(1)
    pad = ~batch["segment_mask"] | ~batch["clip_mask"][..., None]
    out = dict(batch)
    out["tokens"] = np.where(pad, rng.integers(1, vocab_size, pad.shape), batch["tokens"]).astype(np.int32)
    out["matrices"] = np.where(pad[..., None], rng.random(batch["matrices"].shape) < 0.1, batch["matrices"])
    out["visual"] = np.where(batch["visual_mask"][..., None], batch["visual"], 100.0).astype(np.float32)
    return out


@pytest.mark.parametrize(
    "clip_encoder, video_encoder, visual_dim, embedding, dtype",
    [
        ("transformer", "mean", 8, "tokens", "float32"),
        ("transformer", "mlp", 0, "tokens", "bfloat16"),
        ("lstm", "vrnet", 8, "tokens", "float32"),
        ("lstm", "mean", 0, "matrices", "float32"),
        ("lstm", "mlp", 8, "tokens", "bfloat16"),
        ("bilstm", "vrnet", 0, "tokens", "bfloat16"),
        ("bilstm", "mean", 8, "tokens", "bfloat16"),
        ("bilstm", "mlp", 0, "matrices", "float32"),
    ],
)
def test_ablation_variants_are_unit_norm_padding_invariant_and_finite(
    clip_encoder, video_encoder, visual_dim, embedding, dtype
):
    """Every clip × video encoder pair (the default pair is tested above), with visual_dim 0 and > 0, both
    embeddings, bfloat16 compute with float32 parameters."""
    cfg = dataclasses.replace(
        TINY,
        clip_encoder=clip_encoder,
        video_encoder=video_encoder,
        visual_dim=visual_dim,
        embedding=embedding,
        dtype=dtype,
    )
    batch = ragged_batch(cfg)
    variables = shaped_variables(cfg, batch)
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(variables))
    run = jax.jit(functools.partial(TrajSV(cfg).apply, method=TrajSV.encode))
    out = run(variables, batch)
    d_clip = cfg.d_model + visual_dim
    assert out["clips"].shape == (3, 5, d_clip) and out["clips"].dtype == jnp.dtype(dtype)
    assert out["video"].shape == (3, d_clip if video_encoder == "mean" else cfg.out_dim)
    assert out["video"].dtype == jnp.float32 and np.isfinite(out["clips"]).all()
    np.testing.assert_allclose(np.linalg.norm(out["video"], axis=-1), 1.0, rtol=1e-5)
    if clip_encoder != "transformer":
        np.testing.assert_array_equal(out["clips"][0, 1, : cfg.d_model], 0)  # a clip without valid segments
    changed = run(variables, with_garbage_in_padding(batch, cfg.vocab_size))
    np.testing.assert_array_equal(changed["video"], out["video"])
    valid = batch["clip_mask"]
    np.testing.assert_array_equal(np.asarray(changed["clips"])[valid], np.asarray(out["clips"])[valid])
    edge = {k: x.copy() for k, x in batch.items()}
    edge["clip_mask"][1, 1:] = False  # a video of a single clip
    edge["clip_mask"][2] = False  # a fully padded video
    assert np.isfinite(run(variables, edge)["video"]).all()


def numpy_lstm(cell: dict, xs: np.ndarray) -> np.ndarray:
    """Hidden states [L, h] of flax's LSTM cell parameters run over xs [L, d] from a zero state."""
    h = c = np.zeros(cell["hi"]["bias"].shape, np.float64)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    out = []
    for x in xs:
        z = {g: x @ cell[f"i{g}"]["kernel"] + h @ cell[f"h{g}"]["kernel"] + cell[f"h{g}"]["bias"] for g in "ifgo"}
        c = sigmoid(z["f"]) * c + sigmoid(z["i"]) * np.tanh(z["g"])
        h = sigmoid(z["o"]) * np.tanh(c)
        out.append(h)
    return np.array(out)


def test_lstm_and_bilstm_equal_a_numpy_lstm_over_the_valid_segments():
    """t = the last hidden state of 2 stacked LSTM layers over each clip's valid segments only; for the BiLSTM, the
    forward state at the last valid segment and the backward one (which read the clip reversed) at the first."""
    lengths = np.array([3, 6, 1, 0, 4])
    rng = np.random.default_rng(0)
    mask = np.arange(6) < lengths[:, None]
    tokens = rng.integers(1, 50, (5, 6)).astype(np.int32)  # tokens in padded segments too: they must not count
    t = {}
    for bidirectional in (False, True):
        cfg = TrajSVConfig(vocab_size=50, d_model=8, layers=2, clip_encoder="bilstm" if bidirectional else "lstm")
        encoder = LSTMEncoder(cfg)
        shapes = jax.eval_shape(encoder.init, jax.random.key(0), tokens, mask)["params"]
        params = jax.tree_util.tree_map(lambda x: rng.normal(0, 0.5, x.shape).astype(np.float32), shapes)
        t[bidirectional] = np.asarray(jax.jit(encoder.apply)({"params": params}, tokens, mask))
        p = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), params)
        for clip, length in enumerate(lengths):
            if length == 0:
                np.testing.assert_array_equal(t[bidirectional][clip], 0)
                continue
            xs = p["embed"]["embedding"][tokens[clip, :length]]
            for i in range(2):
                if bidirectional:
                    forward = numpy_lstm(p[f"layer{i}"]["forward_rnn"]["cell"], xs)
                    backward = numpy_lstm(p[f"layer{i}"]["backward_rnn"]["cell"], xs[::-1])[::-1]
                    xs = np.concatenate([forward, backward], axis=-1)
                    expected = np.concatenate([forward[-1], backward[0]])
                else:
                    xs = numpy_lstm(p[f"layer{i}"]["cell"], xs)
                    expected = xs[-1]
            np.testing.assert_allclose(t[bidirectional][clip], expected, atol=1e-5)
    assert not np.allclose(t[False], t[True])


def test_mean_video_encoder_is_the_masked_mean_of_the_clip_vectors():
    cfg = dataclasses.replace(TINY, clip_encoder="lstm", video_encoder="mean", visual_dim=0, layers=1)
    batch = ragged_batch(cfg)
    batch["clip_mask"][2] = False  # a fully padded video: v = 0, finite
    variables = shaped_variables(cfg, batch)
    model = TrajSV(cfg)
    c = np.asarray(jax.jit(functools.partial(model.apply, method=TrajSV.clips))(variables, batch), np.float64)
    w = batch["clip_mask"][..., None]
    expected = (c * w).sum(1) / np.maximum(w.sum(1), 1)
    v = model.apply(variables, c.astype(np.float32), batch["clip_mask"], method=TrajSV.video)
    assert v.shape == (3, cfg.d_model)
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(v[2], 0)
    normalised = expected / np.maximum(np.linalg.norm(expected, axis=-1, keepdims=True), 1e-12)
    np.testing.assert_allclose(jax.jit(model.apply)(variables, batch), normalised, rtol=1e-5, atol=1e-7)


def test_unknown_encoders_are_user_errors():
    with pytest.raises(
        UserError, match=re.escape("model.clip_encoder='gru': choose one of transformer, lstm, bilstm, none.")
    ):
        TrajSVConfig(clip_encoder="gru")
    with pytest.raises(UserError, match=re.escape("model.video_encoder='max': choose one of vrnet, mean, mlp.")):
        TrajSVConfig(video_encoder="max")
    with pytest.raises(UserError, match="make it even"):
        TrajSVConfig(clip_encoder="bilstm", d_model=15)
    with pytest.raises(UserError, match="needs visual features"):
        TrajSVConfig(clip_encoder="none", visual_dim=0)


def test_visual_only_model_reads_only_the_visual_vectors():
    cfg = dataclasses.replace(TINY, clip_encoder="none", visual_dim=8)
    batch = ragged_batch(cfg)
    variables = shaped_variables(cfg, batch)
    run = jax.jit(functools.partial(TrajSV(cfg).apply, method=TrajSV.encode))
    out = run(variables, batch)
    expected = np.where(batch["visual_mask"][..., None], batch["visual"], 0)
    np.testing.assert_array_equal(out["clips"], expected)
    other = {**batch, "tokens": np.roll(batch["tokens"], 1, axis=-1)}
    np.testing.assert_array_equal(run(variables, other)["video"], out["video"])
    np.testing.assert_allclose(np.linalg.norm(out["video"], axis=-1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_training_steps_run_with_the_ablation_encoders(demo_dataset):
    """2 SGD steps on the demo data over all devices for (bilstm, mlp) and (lstm, mean); a bad value fails in setup."""
    mesh = sharding.make_mesh(jax.device_count())
    for clip_encoder, video_encoder, modules in (("bilstm", "mlp", {"lstm", "mlp"}), ("lstm", "mean", {"lstm"})):
        overrides = [f"--config.model.clip_encoder={clip_encoder}", f"--config.model.video_encoder={video_encoder}"]
        config = config_lib.load_config("configs/demo.py", [*tiny_model_overrides(demo_dataset), *overrides])
        setup = trajsv_trainer.make_setup(config)
        source = reader.tfrecord_source(demo_dataset, "train", setup.example)
        batch = jax.device_put(next(reader.ordered_batches(source, setup.example, 16)), sharding.batch_sharding(mesh))
        state, train_fn, _, vocab = trajsv_trainer.start(config, setup, mesh)
        assert set(state.params) == modules
        losses = []
        for _ in range(2):
            state, metrics = train_fn(state, batch, vocab)
            losses.append(float(metrics["loss"]))
        assert np.isfinite(losses).all() and losses[0] != losses[1]
    bad = [*tiny_model_overrides(demo_dataset), "--config.model.video_encoder=max"]
    with pytest.raises(UserError, match="video_encoder='max'"):
        trajsv_trainer.make_setup(config_lib.load_config("configs/demo.py", bad))
