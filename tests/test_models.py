"""Tests of the TrajSV model: shapes, masking invariances, finite edge cases, jit/grad, and parity with the peer."""

from __future__ import annotations

import dataclasses
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajsv_jax.models import MAB, MSB, TrajSV, TrajSVConfig, count_params, mab, msb

# A small model keeps the tests fast; the paper-sized one runs only in the parameter-count and peer-parity tests.
SMALL = TrajSVConfig(vocab_size=64, d_model=32, ffn=64, visual_dim=24, vrnet_hidden=48, out_dim=16)
CELLS = 35 * 23
PEER_DIR = "/work/shared/peers"  # torch_trajsv.py, the PyTorch peer; its parity test skips without it or torch


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


def shaped_apply(cfg: TrajSVConfig, batch: dict[str, np.ndarray]) -> tuple[dict, jax.Array]:
    """Run a model variant on random numpy parameters of the right shapes: the real init is exercised by the
    `small` fixture, and skipping it here saves compiling one initialiser per variant."""
    model = TrajSV(cfg)
    shapes = jax.eval_shape(model.init, jax.random.key(0), batch)
    rng = np.random.default_rng(0)
    variables = jax.tree_util.tree_map(lambda s: rng.normal(0, 0.05, s.shape).astype(s.dtype), shapes)
    return variables, jax.jit(model.apply)(variables, batch)


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
    # 18,711,936 = sum(p.numel() for p in TrajSV(4096).parameters()) for /work/shared/peers/torch_trajsv.py
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
    torch = pytest.importorskip("torch")
    sys.path.insert(0, PEER_DIR)
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
