"""Triple contrastive loss: the formula (numpy reference), global-batch negatives under sharding, sanity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajsv_jax.training import losses, sharding

B, D, F = 16, 8, 5


def np_info_nce(a: np.ndarray, b: np.ndarray, tau: float, exclude_positive: bool, reduction: str) -> float:
    """Eq. 12-13 written out with loops in float64."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    total = []
    for x, y in ((a, b), (b, a)):
        for i in range(len(x)):
            den = sum(np.exp(x[i] @ y[j] / tau) for j in range(len(y)) if not (exclude_positive and j == i))
            total.append(-np.log(np.exp(x[i] @ y[i] / tau) / den))
    total = np.array(total).reshape(2, -1).sum(0)
    return float(total.mean() if reduction == "mean" else total.sum())


def embeddings(seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=(B, D)).astype(np.float32) for _ in range(3))


@pytest.mark.parametrize("exclude_positive", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_numpy_reference(exclude_positive, reduction):
    v1, v2, v3 = embeddings()
    kw = {"exclude_positive": exclude_positive, "reduction": reduction}
    got = losses.triple_loss(v1, v2, v3, alpha=0.5, beta=0.3, tau=0.1, **kw)
    want = sum(
        w * np_info_nce(x, y, 0.1, exclude_positive, reduction)
        for w, x, y in ((0.5, v1, v2), (0.3, v1, v3), (0.2, v2, v3))
    )
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_aligned_pairs_score_lower_than_shuffled():
    rng = np.random.default_rng(1)
    v1 = rng.normal(size=(B, D)).astype(np.float32)
    noisy = [v1 + 0.1 * rng.normal(size=v1.shape).astype(np.float32) for _ in range(2)]
    aligned = losses.triple_loss(v1, *noisy)
    perm = rng.permutation(B)
    shuffled = losses.triple_loss(v1, noisy[0][perm], noisy[1][perm[::-1]])
    assert float(aligned) < float(shuffled)
    assert float(losses.info_nce(v1, noisy[0], 0.1)) < float(losses.info_nce(v1, noisy[0][perm], 0.1))


def loss_of_params(params: dict, x: jax.Array) -> jax.Array:
    """Three views through one linear layer, as a model producing v1, v2, v3 from its inputs."""
    v = jnp.einsum("vbf,fd->vbd", x, params["w"]) + params["b"]
    return losses.triple_loss(v[0], v[1], v[2])


def test_sharded_global_batch_equals_single_device():
    assert jax.device_count() == 8
    mesh = sharding.make_mesh()
    assert dict(mesh.shape) == {"data": 8, "model": 1}
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, B, F)).astype(np.float32)
    params = {"w": rng.normal(size=(F, D)).astype(np.float32), "b": rng.normal(size=D).astype(np.float32)}
    vs = embeddings(3)

    grad_v = jax.jit(jax.value_and_grad(lambda a, b, c: losses.triple_loss(a, b, c), argnums=(0, 1, 2)))
    grad_p = jax.jit(jax.value_and_grad(loss_of_params))

    single = jax.devices()[0]
    ref_v = grad_v(*jax.device_put(vs, single))
    ref_p = grad_p(jax.device_put(params, single), jax.device_put(x, single))

    batch = sharding.batch_sharding(mesh)
    sharded_vs = jax.device_put(vs, batch)
    assert len(sharded_vs[0].addressable_shards) == 8 and sharded_vs[0].addressable_shards[0].data.shape == (2, D)
    x_sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data")))
    got_v = grad_v(*sharded_vs)
    got_p = grad_p(jax.device_put(params, sharding.replicated(mesh)), x_sharded)

    for got, ref in ((got_v, ref_v), (got_p, ref_p)):
        for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
            np.testing.assert_allclose(np.asarray(g), np.asarray(r), rtol=1e-5, atol=1e-5)
    # negatives are the whole global batch: the sharded loss is the loss of the gathered batch, not a mean of shards
    per_shard = np.mean([float(losses.triple_loss(*(v[i : i + 2] for v in vs))) for i in range(0, B, 2)])
    assert abs(float(got_v[0]) - per_shard) > 1e-3


def test_make_mesh_sizes():
    mesh = sharding.make_mesh(data=4, model=2)
    assert mesh.axis_names == ("data", "model") and dict(mesh.shape) == {"data": 4, "model": 2}
    with pytest.raises(ValueError):
        sharding.make_mesh(data=16)
