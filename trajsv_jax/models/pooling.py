"""Pooling helpers every model shares: the masked mean over valid rows and torch-style L2 normalisation."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of x [..., k, d] over the rows where mask [..., k] holds, in x's dtype; zeros where no row holds."""
    w = mask[..., None].astype(x.dtype)
    return (x * w).sum(-2) / jnp.maximum(w.sum(-2), 1.0)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Rows over max(‖row‖, eps), as torch.nn.functional.normalize (a zero row stays zero)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)
