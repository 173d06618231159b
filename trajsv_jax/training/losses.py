"""Triple contrastive loss (paper IV-D, Eq. 12-14): symmetric InfoNCE between the original videos and two variants.

Choices, where the paper's text and common practice differ:

- Denominator. Eq. 12 as printed sums over j ≠ i, i.e. the positive is left out of its own denominator (the
  "decoupled" form). By default we include it (`exclude_positive=False`): that is the standard InfoNCE / CLIP /
  SimCLR form, a cross-entropy over all j, bounded below by 0 and a bound on mutual information, and it is what the
  peer PyTorch implementation (`F.cross_entropy`) computes, so results compare. The printed form is available with
  `exclude_positive=True`; its loss is unbounded below (it keeps rewarding a positive that already dominates).
- Reduction. Eq. 12 sums over the batch; we take the mean by default (`reduction="mean"`), like the peer's
  cross-entropy. A sum scales loss and gradients with the batch size, so a learning rate (0.01 in the paper) would
  mean different steps at different batch sizes and device counts; the mean keeps it batch-size independent.
  `reduction="sum"` gives Eq. 12 literally.
- Negatives. Every other video of the GLOBAL batch. Under `jax.jit` with inputs sharded over the mesh's "data" axis,
  `a @ b.T` on the global arrays is the full [B, B] similarity matrix: XLA inserts the all-gather of the sharded
  operand itself, so no collective is written here and the loss equals the single-device one for the same batch.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Reduction = Literal["mean", "sum"]


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Rows scaled to unit L2 norm (a no-op on already normalised rows)."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


def _directional(logits: jax.Array, exclude_positive: bool) -> jax.Array:
    """[B] -log p(positive) of each row of a [B, B] logit matrix whose diagonal holds the positives."""
    positive = jnp.diagonal(logits)
    if exclude_positive:
        logits = jnp.where(jnp.eye(logits.shape[0], dtype=bool), -jnp.inf, logits)
    return jax.nn.logsumexp(logits, axis=1) - positive


def info_nce(
    a: jax.Array,
    b: jax.Array,
    tau: float,
    exclude_positive: bool = False,
    reduction: Reduction = "mean",
) -> jax.Array:
    """Symmetric InfoNCE L(A, B) = L_{A,B} + L_{B,A} (Eq. 12-13) of [B, d] embeddings; rows i of a and b are positives.

    Rows are L2-normalised here (idempotent if the model already did), similarities are dot products over tau.
    """
    a, b = l2_normalize(a.astype(jnp.float32)), l2_normalize(b.astype(jnp.float32))
    logits = jnp.dot(a, b.T, precision=jax.lax.Precision.HIGHEST) / tau
    per_row = _directional(logits, exclude_positive) + _directional(logits.T, exclude_positive)
    return per_row.mean() if reduction == "mean" else per_row.sum()


def triple_loss_terms(
    v1: jax.Array,
    v2: jax.Array,
    v3: jax.Array,
    alpha: float = 0.5,
    beta: float = 0.3,
    tau: float = 0.1,
    exclude_positive: bool = False,
    reduction: Reduction = "mean",
) -> dict[str, jax.Array]:
    """Eq. 14 and its three terms: {"loss", "l12" = L(V1, V2), "l13" = L(V1, V3), "l23" = L(V2, V3)}."""
    kw = {"tau": tau, "exclude_positive": exclude_positive, "reduction": reduction}
    terms = {"l12": info_nce(v1, v2, **kw), "l13": info_nce(v1, v3, **kw), "l23": info_nce(v2, v3, **kw)}
    return {"loss": alpha * terms["l12"] + beta * terms["l13"] + (1 - alpha - beta) * terms["l23"], **terms}


def triple_loss(v1: jax.Array, v2: jax.Array, v3: jax.Array, **kwargs) -> jax.Array:
    """Eq. 14: α L(V1, V2) + β L(V1, V3) + (1 − α − β) L(V2, V3) for original (v1), intra- (v2), inter-clip (v3).

    Keyword arguments as `triple_loss_terms` (alpha 0.5, beta 0.3, tau 0.1 by default).
    """
    return triple_loss_terms(v1, v2, v3, **kwargs)["loss"]
