"""The two video variants of triple contrastive learning (paper IV-D) and re-tokenization, on device.

- Intra-clip video V2 (`intra_clip`): in every clip, a δ fraction of the object trajectories present is replaced
  by trajectories of the same clip slot of OTHER videos of the batch.
- Inter-clip video V3 (`inter_clip`): a δ fraction of each video's valid clips is replaced by clips of OTHER videos.

The paper draws replacements "from the whole training set"; here the pool is the GLOBAL batch (every device's videos
when the batch is a sharded jax.Array under jit), shuffled anew each step, which approximates it without a host
round trip. Per video δ ~ U[0, max_delta] (`sample_delta`); a clip (or video) with x candidates replaces
round(δ · x) of them (round half to even), chosen uniformly without replacement. Each replacement is drawn uniformly
from all candidates of the other videos; where there are none (a batch of one video, or no other video with objects
in that clip slot) nothing is replaced. Everything is vectorised, pure and deterministic for a fixed key.

Intra-clip changes positions only: call `retokenize` to bring tokens in line (visual features stay, the frames are
the same). Inter-clip moves whole clips, tokens and visual features included, so its tokens stay valid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from trajsv_jax.data import tokenize

Batch = dict[str, jax.Array]
# per-clip features ([B, n, ...]) that travel with a clip in `inter_clip`; clip_mask stays (both clips are valid)
CLIP_FIELDS = ("positions", "sample_mask", "segment_mask", "tokens", "visual", "visual_mask", "clip_ids", "grid_index")


def sample_delta(rng: jax.Array, batch_size: int, max_delta: float = 0.2) -> jax.Array:
    """float32 [B] noise rates δ ~ U[0, max_delta], one per video."""
    return jax.random.uniform(rng, (batch_size,), jnp.float32, 0.0, max_delta)


def _choose(rng: jax.Array, eligible: jax.Array, count: jax.Array) -> jax.Array:
    """bool like `eligible` [..., L]: `count` [...] of its True entries along the last axis, uniformly at random."""
    keys = jnp.where(eligible, jax.random.uniform(rng, eligible.shape), 2.0)
    rank = jnp.argsort(jnp.argsort(keys, axis=-1), axis=-1)
    return eligible & (rank < count[..., None])


def _other_video_donors(rng: jax.Array, eligible: jax.Array, queries: int) -> tuple[jax.Array, jax.Array]:
    """For eligible [B, L] candidates: flat indices [B, queries] into B * L of uniform draws from the other videos'
    eligible candidates, and bool [B] whether a video has any such candidate.

    The eligible candidates, listed in (video, item) order, hold video b's own ones in one run starting at start[b];
    a uniform rank among the others skips that run.
    """
    own = eligible.sum(1)
    start = jnp.cumsum(own) - own
    others = own.sum() - own
    order = jnp.argsort(~eligible.reshape(-1), stable=True)  # eligible candidates first, in (video, item) order
    rank = jnp.floor(jax.random.uniform(rng, (eligible.shape[0], queries)) * others[:, None]).astype(jnp.int32)
    rank = jnp.minimum(rank, jnp.maximum(others - 1, 0)[:, None])
    rank = jnp.where(rank < start[:, None], rank, rank + own[:, None])
    return order[rank], others > 0


def _per_video(delta: jax.Array | float, batch_size: int) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(delta, jnp.float32), (batch_size,))


def intra_clip(rng: jax.Array, batch: Batch, delta: jax.Array | float) -> Batch:
    """V2: replace round(δ_b · present) object trajectories of each clip by same-slot trajectories of other videos.

    A trajectory is one object slot k of a clip, over all its samples; it is present if seen in some sample. The
    donor (video b' ≠ b, same clip slot c, a present object slot k') is aligned frame by frame (its t-th frame goes
    to the t-th frame of the clip, NaN past the donor's end), so sample and segment masks stay as they are.
    """
    pos, mask = batch["positions"], batch["sample_mask"]
    b, n, m, s, k, _ = pos.shape
    pos = pos.reshape(b, n, m * s, k, 2)
    mask = mask.reshape(b, n, m * s)
    seen = jnp.isfinite(pos).all(-1) & mask[..., None]  # [B, n, J, K]
    present = seen.any(2) & batch["clip_mask"][..., None]  # [B, n, K]
    pick_key, donor_key = jax.random.split(rng)
    donor, available = jax.vmap(lambda e, r: _other_video_donors(r, e, k), in_axes=(1, 0), out_axes=1)(
        present, jax.random.split(donor_key, n)
    )  # donor [B, n, K] flat in (b', k'), available [B, n]
    count = jnp.round(_per_video(delta, b)[:, None] * present.sum(-1)).astype(jnp.int32)
    replace = _choose(pick_key, present, jnp.where(available, count, 0))  # [B, n, K]

    donor_video, donor_object = donor // k, donor % k
    frames = mask.sum(-1)  # [B, n]
    frame_of = jnp.cumsum(mask, -1) - 1  # [B, n, J]: frame index of each valid sample
    sample_of_frame = jnp.argsort(~mask, axis=-1, stable=True)  # [B, n, J]: valid samples first, in frame order
    clip = jnp.arange(n)[None, :, None, None]
    dv, do = donor_video[:, :, None, :], donor_object[:, :, None, :]  # [B, n, 1, K]
    t = jnp.broadcast_to(frame_of[..., None], (b, n, m * s, k))
    in_donor = mask[..., None] & (t < frames[dv, clip])
    source_sample = sample_of_frame[dv, clip, jnp.clip(t, 0, m * s - 1)]
    moved = jnp.where(in_donor[..., None], pos[dv, clip, source_sample, do], jnp.nan)
    new = jnp.where(replace[:, :, None, :, None], moved, pos)
    return {**batch, "positions": new.reshape(b, n, m, s, k, 2)}


def inter_clip(rng: jax.Array, batch: Batch, delta: jax.Array | float) -> Batch:
    """V3: replace round(δ_b · valid clips) clips of each video by valid clips of other videos (any slot).

    Every per-clip feature (`CLIP_FIELDS` present in the batch) moves with the clip; a replaced slot stays valid.
    `clip_ids` then index the donor video's source.
    """
    valid = batch["clip_mask"]
    b, n = valid.shape
    pick_key, donor_key = jax.random.split(rng)
    donor, available = _other_video_donors(donor_key, valid, n)  # [B, n] flat in (b', c')
    count = jnp.round(_per_video(delta, b) * valid.sum(-1)).astype(jnp.int32)
    replace = _choose(pick_key, valid, jnp.where(available, count, 0))
    out = dict(batch)
    for name in CLIP_FIELDS:
        if name in batch:
            x = batch[name]
            moved = x.reshape(b * n, *x.shape[2:])[donor]
            out[name] = jnp.where(replace.reshape(b, n, *(1,) * (x.ndim - 2)), moved, x)
    return out


def segment_matrices(batch: Batch, grids: tokenize.GridLike = 3.0) -> jax.Array:
    """bool [B, n, m, C] occupied cells of every segment of the batch (padding samples left out), each clip on its
    field's grid of the layout `grids` (`grid_index`). `grids` static."""
    pos = jnp.where(batch["sample_mask"][..., None, None], batch["positions"], jnp.nan)
    return tokenize.rasterize(pos, grids, batch.get("grid_index"))


def retokenize(
    batch: Batch,
    vocab_matrices: jax.Array,
    vocab_tokens: jax.Array,
    grids: tokenize.GridLike = 3.0,
    unknown: int | None = None,
) -> jax.Array:
    """int32 [B, n, m] tokens of the batch's segments: rasterized, then the nearest vocabulary entry (`assign_tokens`;
    `unknown` for a segment sharing no cell with any entry). 0 where the segment mask is off or the segment is empty.
    Jit with `grids` and `unknown` static.
    """
    matrices = segment_matrices(batch, grids)
    flat = matrices.reshape(-1, matrices.shape[-1])
    tokens = tokenize.assign_tokens(flat, vocab_matrices, vocab_tokens, unknown)
    return jnp.where(batch["segment_mask"], tokens.reshape(batch["segment_mask"].shape), 0)
