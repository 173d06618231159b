"""Trajectory tokenization (paper IV-B, play2vec): 1 s segments → binary cell grids → Jaccard tokens.

A clip is cut into ~1 s segments (`segment_bounds`); a segment's matrix marks every grid cell that any object occupies
in any of its frames (`segment_matrices`, `rasterize`). A `Vocabulary` maps each distinct matrix to a token with
play2vec's greedy rule: scanned in order, a segment takes the token of the first most similar earlier distinct segment
when that rounded Jaccard similarity is > threshold, else a new token; token 0 is the empty segment.

Everything here reproduces the literal reference (shared/peers/play2vec_tokenizer.py) exactly, only fast:
- Cells: the reference floors (x + L/2) / cell in float32 (NumPy 2 keeps Python floats weak). That map is monotone,
  so it is captured by its jump points, precomputed per cell size; comparing float32 coordinates with them on device
  is exact and needs no float64.
- Tokens: the greedy scan is not really sequential. Distinct segment i's best earlier segment j* (first argmax of the
  rounded Jaccard over j < i) does not depend on tokens, so all of them come from blockwise matmuls; i gets a new token
  iff that best is ≤ threshold, else j*'s token, resolved by pointer jumping over the parent forest.
- Rounding: Python's round(a / b, 2) is reproduced in integers (see `_rounded_key`), checked exhaustively in tests.

Fields: each source is rasterized on its field's grid (`data.field`: 3 m cells on the 105 x 68 m pitch, the rink, a
court, or the camera plane); a vocabulary's `GridLayout` puts the grids of its sources side by side in one cell space,
so segments of two fields share no cell and never share a token. On the soccer grid everything is as in play2vec.

Approximate mode (`LSHParams`) replaces the all-pairs search by MinHash LSH candidates, verified exactly, for corpora
of millions of segments. `assign_tokens` maps segments to their nearest vocabulary token on device, without growing it.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from trajsv_jax import files
from trajsv_jax.data import field as field_lib
from trajsv_jax.data.field import Grid, GridLayout
from trajsv_jax.data.store import Source
from trajsv_jax.errors import UserError

FORMAT_NAME = "trajsv-vocabulary"
FORMAT_VERSION = 2  # 2: grid layout (fields), fitted-on record; version 1 files read as the soccer grid
# _ROUND_UP[m]: Python's round() of the double nearest (2m + 1) / 200 goes up to (m + 1) / 100 (exact-half ties).
_ROUND_UP = np.array([round((2 * m + 1) / 200, 2) > m / 100 for m in range(101)])


def num_segments(frames: int, fps: float, seconds: float = 1.0) -> int:
    """Segments in a clip of `frames` frames: round(T / (fps * seconds)), at least 1 (Python's round, as play2vec)."""
    return max(1, round(frames / (fps * seconds)))


def segment_bounds(frames: int, fps: float, seconds: float = 1.0) -> np.ndarray:
    """[S + 1] frame offsets of the near-equal segments of a clip (numpy.array_split's rule: longer pieces first)."""
    pieces = num_segments(frames, fps, seconds)
    q, r = divmod(frames, pieces)
    sizes = np.full(pieces, q, np.int64)
    sizes[:r] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


GridLike = float | Grid | GridLayout  # a float is the cell size (metres) of the soccer grid


def as_layout(grid: GridLike) -> GridLayout:
    """The layout of a soccer cell size, a grid, or a layout."""
    if isinstance(grid, GridLayout):
        return grid
    return GridLayout((grid if isinstance(grid, Grid) else field_lib.SOCCER.grid(float(grid)),))


def num_cells(grid: GridLike = 3.0) -> int:
    """Cells of the grid (layout), the length of a segment matrix: 35 * 23 = 805 for 3 m cells on the pitch."""
    return as_layout(grid).num_cells


# ---------------------------------------------------------------------------------------------------- segment matrices


def _ordered(x: np.ndarray) -> np.ndarray:
    """float32 → int64 keys with the same order (-0 and +0 share 0)."""
    bits = x.view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def _from_ordered(k: np.ndarray) -> np.ndarray:
    bits = np.where(k >= 0, k, -k | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def _axis_edges(half: float, cell: float, n: int) -> np.ndarray:
    """[n - 1] float32: edge e - 1 is the smallest float32 x that the reference puts in cell ≥ e along this axis."""
    target = np.arange(1, n)
    lo = np.full(n - 1, _ordered(np.array([-1e6], np.float32))[0])  # reference cell < target
    hi = np.full(n - 1, _ordered(np.array([1e6], np.float32))[0])  # reference cell ≥ target
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        ok = np.floor((_from_ordered(mid) + np.float32(half)) / np.float32(cell)) >= target
        lo, hi = np.where(ok, lo, mid), np.where(ok, mid, hi)
    return _from_ordered(hi)


@functools.lru_cache(maxsize=32)
def _cell_edges(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Jump points of the reference's cell map along x and y; cell index = number of edges ≤ coordinate."""
    return _axis_edges(grid.length / 2, grid.cell, grid.cols), _axis_edges(grid.width / 2, grid.cell, grid.rows)


def _grid_cells(pos: jax.Array, grid: Grid, offset: int) -> jax.Array:
    """int32 [...] flat cell of each position [..., 2] on `grid`, shifted by `offset`."""
    edges_x, edges_y = _cell_edges(grid)
    ix = jnp.searchsorted(jnp.asarray(edges_x), pos[..., 0], side="right").astype(jnp.int32)
    iy = jnp.searchsorted(jnp.asarray(edges_y), pos[..., 1], side="right").astype(jnp.int32)
    return offset + ix * grid.rows + iy


def rasterize(
    segment_positions: jax.Array | np.ndarray, grid: GridLike = 3.0, grid_index: jax.Array | None = None
) -> jax.Array:
    """[..., s, K, 2] positions (centred field units, NaN = absent or padding) → bool [..., C] occupied cells.

    Flat index offset + ix * rows + iy of the segment's grid; positions outside the field go to the nearest border
    cell. `grid` is a soccer cell size, a `Grid` or a `GridLayout`; with a layout of several grids, `grid_index`
    (int, broadcast from the leading dims, e.g. [B] for [B, n, m, s, K, 2]) says which grid each segment is on. Exact
    for float32 input (the store's dtype; others are cast first). Pure and jit-able with `grid` static.
    """
    layout = as_layout(grid)
    pos = jnp.asarray(segment_positions, jnp.float32)
    *lead, s, k, _ = pos.shape
    c = layout.num_cells
    cells = [_grid_cells(pos, g, o) for g, o in zip(layout.grids, layout.offsets, strict=True)]
    flat = cells[0]
    if len(cells) > 1:
        if grid_index is None:
            raise ValueError("rasterize: a layout of several grids needs grid_index")
        index = jnp.asarray(grid_index, jnp.int32)
        index = index.reshape(*index.shape, *(1,) * (len(lead) + 2 - index.ndim))
        flat = jnp.choose(jnp.clip(index, 0, len(cells) - 1), cells, mode="clip")
    flat = jnp.where(jnp.isnan(pos).any(-1), c, flat).reshape(-1, s * k)
    n = flat.shape[0]
    out = jnp.zeros((n, c + 1), jnp.bool_).at[jnp.arange(n)[:, None], flat].set(True)
    return out[:, :c].reshape(*lead, c)


_rasterize_jit = jax.jit(rasterize, static_argnames="grid")


def _segment_index(lengths: Sequence[int], fps: float, seconds: float) -> np.ndarray:
    """[S_total, L] frame indices into the concatenated clips, one row per segment, padded with sum(lengths)."""
    starts, sizes, offset = [], [], 0
    for t in lengths:
        bounds = segment_bounds(int(t), fps, seconds)
        starts.append(offset + bounds[:-1])
        sizes.append(np.diff(bounds))
        offset += int(t)
    start, size = np.concatenate(starts), np.concatenate(sizes)
    step = np.arange(size.max())
    return np.where(step < size[:, None], start[:, None] + step, offset)


def _bucket(n: int, least: int = 1) -> int:
    """The power of two ≥ n (and ≥ least): padded shapes, so clips of many lengths share a few compilations."""
    return max(least, 1 << max(0, int(n) - 1).bit_length())


def segment_matrices(
    positions: jax.Array | np.ndarray, fps: float, cell: float | Grid = 3.0, seconds: float = 1.0
) -> jax.Array:
    """Positions [T, K, 2] of one clip → bool [S, cols * rows]: the cells occupied in each segment.

    Jit-able with fps, cell (a soccer cell size or a `Grid`) and seconds static (T, hence S, comes from the shape).
    Equal to the reference's `segment_matrices` (as sets of flat indices) for float32 positions. Segments, their
    length and the objects are padded to powers of two, so calling it clip by clip compiles only a few shapes.
    """
    t, k = positions.shape[0], positions.shape[1]
    if isinstance(positions, np.ndarray):  # padded on the host: one device call per clip
        padded = np.full((t + 1, _bucket(k), 2), np.nan, np.float32)
        padded[:t, :k] = positions
    else:  # traced (inside a jit) or on device
        padded = jnp.full((t + 1, _bucket(k), 2), jnp.nan, jnp.float32).at[:t, :k].set(positions)
    index = _segment_index([t], fps, seconds)
    rows, width = _bucket(len(index)), _bucket(index.shape[1])
    index = np.pad(index, ((0, rows - len(index)), (0, width - index.shape[1])), constant_values=t)
    return _rasterize_jit(padded[index], grid=cell)[: num_segments(t, fps, seconds)]


def _seen_first(clips: Sequence[np.ndarray]) -> np.ndarray:
    """Clips [T_c, K_c, 2] → their frames concatenated, [sum T_c + 1, K', 2], each frame's seen objects first.

    K' is the most objects seen in one frame; the extra last frame is all NaN (padding for `_segment_index`).
    """
    frame, points, offset = [], [], 0
    for c in clips:
        c = np.asarray(c, np.float32)
        f, o = np.nonzero(~(np.isnan(c[..., 0]) | np.isnan(c[..., 1])))
        frame.append(f + offset)
        points.append(c[f, o])
        offset += len(c)
    frame_of, xy = np.concatenate(frame), np.concatenate(points)
    first = np.concatenate([[0], np.cumsum(np.bincount(frame_of, minlength=offset))])[frame_of]
    rank = np.arange(len(frame_of)) - first  # nonzero lists the points frame by frame
    out = np.full((offset + 1, int(rank.max(initial=0)) + 1, 2), np.nan, np.float32)
    out[frame_of, rank] = xy
    return out


def clip_segment_matrices(
    clips: Sequence[np.ndarray], fps: float, cell: float | Grid = 3.0, seconds: float = 1.0, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Many clips ([T_c, K_c, 2] each) → (bool [S_total, cols * rows] segment matrices in order, [C] segments per clip).

    `cell` is a soccer cell size or the `Grid` of the clips' field.

    One jitted `rasterize` over fixed-size chunks of segments, so clip lengths cause no recompilation. Each frame's
    seen objects are moved to the front first (a segment's cells do not depend on who is where), so the work scales
    with the objects seen per frame, not with all objects of the match.
    """
    frames = _seen_first(clips)
    offset = len(frames) - 1
    frames = np.pad(frames, ((0, 0), (0, _bucket(frames.shape[1]) - frames.shape[1]), (0, 0)), constant_values=np.nan)
    index = _segment_index([len(c) for c in clips], fps, seconds)
    index = np.pad(index, ((0, 0), (0, _bucket(index.shape[1]) - index.shape[1])), constant_values=offset)
    counts = np.array([num_segments(len(c), fps, seconds) for c in clips], np.int64)
    out = np.empty((len(index), num_cells(cell)), bool)
    chunk = min(chunk, _bucket(len(index), 64))
    for a in range(0, len(index), chunk):
        part = index[a : a + chunk]
        part = np.concatenate([part, np.full((chunk - len(part), part.shape[1]), offset)])
        out[a : a + chunk] = np.asarray(_rasterize_jit(frames[part], grid=cell))[: len(index) - a]
    return out, counts


def place(matrices: np.ndarray, layout: GridLayout, grid: Grid, where: str = "") -> np.ndarray:
    """Segment matrices [S, grid cells] of one grid → [S, layout cells], in the grid's own range of the layout."""
    if layout.grids == (grid,):
        return matrices
    offset = layout.offsets[layout.index(grid, where)]
    out = np.zeros((len(matrices), layout.num_cells), bool)
    out[:, offset : offset + grid.num_cells] = matrices
    return out


def source_segment_matrices(
    source: Source, cell: float = 3.0, seconds: float = 1.0, layout: GridLayout | None = None,
    camera_cell: float = field_lib.DEFAULT_CAMERA_CELL,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """All clips of a store Source → (bool [S, C] segment matrices on the source's field grid, placed in `layout`
    (default: that grid alone), int64 [C + 1] clip offsets in S)."""
    grid = source.field.grid(cell, camera_cell)
    clips = [source.clip(c) for c in range(source.num_clips)]
    matrices, counts = clip_segment_matrices(clips, source.fps, grid, seconds)
    return place(matrices, layout or GridLayout((grid,)), grid, source.source_id), np.concatenate(
        [[0], np.cumsum(counts)]
    )


# -------------------------------------------------------------------------------------------------- rounded Jaccard


def _rounded_key(inter: jax.Array, union: jax.Array) -> jax.Array:
    """int32 100 * round(inter / union, 2) exactly as Python has it, for integer-valued float32 0 ≤ inter ≤ union.

    k = floor(100 * inter / union + 0.5) in float32 is within one of the answer; integer comparisons of 200 * inter
    with the two neighbouring rounding midpoints (2k ± 1) * union fix it, and a quotient exactly on a midpoint takes
    Python's choice from `_ROUND_UP` (round() rounds the double nearest the midpoint). Exact while 201 * union < 2^31.
    """
    union = jnp.maximum(union, 1.0)
    k = jnp.floor(100.0 * inter / union + 0.5).astype(jnp.int32)
    a, b = 200 * inter.astype(jnp.int32), union.astype(jnp.int32)
    low, high = (2 * k - 1) * b, (2 * k + 1) * b  # 200 * the midpoints below and above k
    up = jnp.asarray(_ROUND_UP, jnp.int32)
    k = jnp.where(a < low, k - 1, jnp.where(a > high, k + 1, k))
    k = jnp.where(a == low, k - 1 + up[jnp.clip(k - 1, 0, 100)], k)
    return jnp.where(a == high, k + up[jnp.clip(k, 0, 100)], k)


def _unpack(words: jax.Array) -> jax.Array:
    """uint32 [n, W] packed rows → float32 [n, 32 W] bits (in a fixed order: only dot products are taken)."""
    bits = (words[:, :, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return bits.reshape(words.shape[0], -1).astype(jnp.float32)


@jax.jit
def _best_tile(q, q_size, q0, r, r_size, r0, best, arg):
    """Fold one tile into the running (best rounded key, first argmax) of query rows q0.. over earlier rows r0.. ."""
    inter = jnp.dot(_unpack(q), _unpack(r).T, precision=jax.lax.Precision.HIGHEST)  # exact: 0/1 products
    key = _rounded_key(inter, q_size[:, None] + r_size[None, :] - inter)
    rows, cols = q0 + jnp.arange(q.shape[0])[:, None], r0 + jnp.arange(r.shape[0])[None, :]
    key = jnp.where(cols < rows, key, -1)
    tile_best, tile_arg = key.max(1), jnp.argmax(key, 1).astype(jnp.int32) + r0
    better = tile_best > best  # tiles come in increasing r0, so ties keep the earlier argmax
    return jnp.where(better, tile_best, best), jnp.where(better, tile_arg, arg)


def _exact_best(words: np.ndarray, first_query: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """For rows first_query.. of packed rows: best rounded key (-1 if none) and first argmax over all earlier rows.

    Tiles of [q, block] rows (q = block, or less for a few new rows) are float32 matmuls, ~14 ms for 1024 x 1024 on
    2 CPU cores; column tiles run in order, so the running best keeps the first of equal keys.
    """
    n, m = len(words), len(words) - first_query
    q = min(block, 1 << max(4, (m - 1).bit_length()))  # few shapes, so few compilations
    padded = np.zeros((max(-(-n // block) * block, first_query + -(-m // q) * q), words.shape[1]), np.uint32)
    padded[:n] = words
    sizes = np.bitwise_count(padded).sum(1).astype(np.float32)
    dev_words, dev_sizes = jnp.asarray(padded[: -(-n // block) * block]), jnp.asarray(sizes[: -(-n // block) * block])
    best, arg = [], []
    for q0 in range(first_query, n, q):
        tiles = -(-min(q0 + q, n) // block)  # column tiles before the end of this query block
        b, a = _best_rows(padded[q0 : q0 + q], sizes[q0 : q0 + q], q0, dev_words, dev_sizes, tiles, block)
        best.append(np.asarray(b))
        arg.append(np.asarray(a))
    return np.concatenate(best)[:m], np.concatenate(arg)[:m]


@functools.partial(jax.jit, static_argnames="block")
def _best_rows(q, q_size, q0, words, sizes, tiles, block: int) -> tuple[jax.Array, jax.Array]:
    """`_best_tile` folded over the first `tiles` column tiles of `words` in order, in one device call."""

    def fold(i, carry):
        r0 = i * block
        r = jax.lax.dynamic_slice_in_dim(words, r0, block)
        r_size = jax.lax.dynamic_slice_in_dim(sizes, r0, block)
        return _best_tile(q, q_size, q0, r, r_size, r0, *carry)

    init = (jnp.full(q.shape[0], -1, jnp.int32), jnp.zeros(q.shape[0], jnp.int32))
    return jax.lax.fori_loop(0, tiles, fold, init)


# ------------------------------------------------------------------------------------------------ approximate search


@dataclasses.dataclass(frozen=True)
class LSHParams:
    """MinHash LSH of approximate mode: `bands` bands of `rows` MinHash values each (num_perm = bands * rows).

    Two segments are candidates when one band agrees: P = 1 - (1 - J^rows)^bands, 0.97 at J = 0.3 and > 0.9999 at
    J = 0.5 with the defaults. Of each bucket only the `cap` latest earlier members are checked, which bounds the work
    to bands * cap pairs per segment; three-value bands keep buckets small enough for that to cost little recall.
    Candidates are verified with the exact rounded Jaccard, so a miss can only turn a parent into a new token or into
    a less similar (or later) parent.
    """

    bands: int = 128
    rows: int = 3
    cap: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.bands >= 1 and 1 <= self.rows <= 4 and self.cap >= 1):
            raise UserError(f"LSH needs bands >= 1, 1 <= rows <= 4 and cap >= 1, got {self}")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


@functools.partial(jax.jit, static_argnames="rows")
def _segment_min(perms_t: jax.Array, cell: jax.Array, row: jax.Array, rows: int) -> jax.Array:
    return jax.ops.segment_min(perms_t[cell], row, num_segments=rows + 1, indices_are_sorted=True)[:rows]


def _minhash(packed: np.ndarray, c: int, params: LSHParams, chunk: int = 16384) -> np.ndarray:
    """[n, num_perm] uint16 MinHash signatures of non-empty packed rows (min of a random cell permutation each)."""
    perms = np.stack([np.random.default_rng([params.seed, p]).permutation(c) for p in range(params.num_perm)])
    perms_t = jnp.asarray(perms.T.astype(np.int32))
    out = np.empty((len(packed), params.num_perm), np.uint16)
    for a in range(0, len(packed), chunk):
        row, cell = np.nonzero(np.unpackbits(packed[a : a + chunk], axis=1)[:, :c])
        size = 1 << max(16, (len(row) - 1).bit_length())  # padding goes to the dropped segment `chunk`
        row, cell = np.pad(row, (0, size - len(row)), constant_values=chunk), np.pad(cell, (0, size - len(cell)))
        out[a : a + chunk] = np.asarray(_segment_min(perms_t, cell, row, chunk))[: len(packed) - a]
    return out


@jax.jit
def _pair_keys(words: jax.Array, sizes: jax.Array, i: jax.Array, j: jax.Array) -> jax.Array:
    """Rounded Jaccard keys of row pairs (i, j) of packed uint32 rows."""
    inter = jax.lax.population_count(words[i] & words[j]).sum(1).astype(jnp.float32)
    return _rounded_key(inter, sizes[i] + sizes[j] - inter)


def _approx_best(
    packed: np.ndarray, signatures: np.ndarray, first_query: int, params: LSHParams
) -> tuple[np.ndarray, np.ndarray]:
    """As `_exact_best` but over LSH candidates: per band, each row i ≥ first_query meets the `cap` latest earlier
    rows of its bucket. Returns the best rounded key (-1 without candidates) and its earliest row."""
    words = packed.view(np.uint32)
    dev_words, dev_sizes = jnp.asarray(words), jnp.asarray(np.bitwise_count(words).sum(1).astype(np.float32))
    best = np.full(len(packed) - first_query, np.iinfo(np.int64).max)  # min of (127 - key) << 32 | row
    for b in range(params.bands):
        band = signatures[:, b * params.rows : (b + 1) * params.rows].astype(np.uint64)
        bucket = (band << (16 * np.arange(params.rows, dtype=np.uint64))).sum(1, dtype=np.uint64)
        order = np.argsort(bucket, kind="stable")  # members of a bucket in scan order
        in_bucket = bucket[order]
        same = [(in_bucket[d:] == in_bucket[:-d]) & (order[d:] >= first_query) for d in range(1, params.cap + 1)]
        q = np.concatenate([order[d + 1 :][m] for d, m in enumerate(same)])
        c = np.concatenate([order[: -d - 1][m] for d, m in enumerate(same)])
        if not len(q):
            continue
        size = 1 << max(12, (len(q) - 1).bit_length())  # few distinct shapes, few compilations
        keys = np.asarray(_pair_keys(dev_words, dev_sizes, np.resize(q, size), np.resize(c, size)))[: len(q)]
        np.minimum.at(best, q - first_query, ((127 - keys.astype(np.int64)) << 32) | c)
    found = best < np.iinfo(np.int64).max
    return np.where(found, 127 - (best >> 32), -1), np.where(found, best & 0xFFFFFFFF, 0)


# ------------------------------------------------------------------------------------------------------- vocabulary


def _pack(matrices: np.ndarray) -> np.ndarray:
    """bool [n, C] → uint8 [n, 8 * ceil(C / 64)] packed rows (whole uint64 words, so they view as uint32 too)."""
    width = -(-matrices.shape[1] // 64) * 64
    padded = np.zeros((len(matrices), width), bool)
    padded[:, : matrices.shape[1]] = matrices
    return np.packbits(padded, axis=1)


def _keys(packed: np.ndarray) -> np.ndarray:
    """One comparable, sortable opaque value per packed row."""
    return np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()


class Vocabulary:
    """play2vec's token corpus (reference `Corpus`): distinct segment → token, growing as segments are tokenized.

    Exact mode (default) gives exactly the reference's tokens; `approximate=True` (or an `LSHParams`) switches to
    MinHash LSH candidates, for corpora too big for all-pairs similarity. `block` is the tile size of the exact search.
    `layout` holds the grids of the fields it tokenizes (default: the soccer pitch at `cell` metres); `fitted_on`
    records which segments built it (`trajsv tokenize`: the train split), so evaluation can tell it saw no test data.
    Tokens are 0 (empty segment), 1 .. num_tokens, and `unknown_token` for a segment that shares no cell with any
    entry (`assign`); `vocab_size` counts them all.
    """

    def __init__(
        self,
        threshold: float = 0.3,
        cell: float = 3.0,
        seconds: float = 1.0,
        approximate: bool | LSHParams = False,
        block: int = 1024,
        layout: GridLayout | None = None,
        camera_cell: float = field_lib.DEFAULT_CAMERA_CELL,
        fitted_on: dict | None = None,
    ) -> None:
        if not 0.0 <= threshold < 1.0:
            raise UserError(f"tokenizer threshold must be in [0, 1), got {threshold}")
        if not 0.0 < cell < float("inf") or not 0.0 < seconds < float("inf") or not 0.0 < camera_cell <= 1.0:
            raise UserError(
                f"grid cell ({cell} m), camera-plane cell ({camera_cell} of the width) and segment length ({seconds} "
                "s) must be finite numbers > 0 (the camera-plane cell at most 1)"
            )
        lsh = LSHParams() if approximate is True else approximate or None
        self.threshold, self.cell, self.seconds = float(threshold), float(cell), float(seconds)
        self.camera_cell = float(camera_cell)
        self.layout = layout or as_layout(self.cell)
        self.fitted_on = dict(fitted_on or {})
        self.lsh, self.block = lsh, block
        self.num_cells = self.layout.num_cells
        if lsh and self.num_cells > 1 << 16:
            raise UserError(
                f"approximate mode supports up to 65536 cells, {self.layout.describe()} has {self.num_cells}"
            )
        self._packed = _pack(np.zeros((0, self.num_cells), bool))
        self._tokens = np.zeros(0, np.int32)
        self._parents = np.zeros(0, np.int32)
        self._signatures = np.zeros((0, lsh.num_perm if lsh else 0), np.uint16)
        self._sorted_keys = _keys(self._packed)
        self._sorted_entry = np.zeros(0, np.int64)
        self.next_token = 1

    def __len__(self) -> int:
        """Distinct (non-empty) segments seen."""
        return len(self._tokens)

    @property
    def num_tokens(self) -> int:
        """Real tokens (1 .. num_tokens); 0, the empty segment, is not counted."""
        return self.next_token - 1

    @property
    def unknown_token(self) -> int:
        """The token `assign` gives a segment that shares no cell with any entry (after 1 .. num_tokens)."""
        return self.next_token

    @property
    def vocab_size(self) -> int:
        """Token ids in use: 0, 1 .. num_tokens and unknown_token."""
        return self.next_token + 1

    def grid_of(self, field: field_lib.Field, where: str = "") -> Grid:
        """The grid this vocabulary uses for `field` (UserError when it has none for it)."""
        grid = field.grid(self.cell, self.camera_cell)
        self.layout.index(grid, where)
        return grid

    @property
    def tokens(self) -> np.ndarray:
        """int32 [E] token of each distinct segment, in the order they were first seen."""
        return self._tokens.copy()

    @property
    def parents(self) -> np.ndarray:
        """int32 [E] the earlier distinct segment whose token each one took, or -1 where it opened a new token."""
        return self._parents.copy()

    def matrices(self) -> np.ndarray:
        """bool [E, C] the distinct segments, in the order they were first seen."""
        return np.unpackbits(self._packed, axis=1)[:, : self.num_cells].astype(bool)

    def device_arrays(self) -> tuple[jax.Array, jax.Array]:
        """(bool [E, C] segments, int32 [E] tokens) on device, the vocabulary arguments of `assign_tokens`."""
        return jnp.asarray(self.matrices()), jnp.asarray(self._tokens)

    def assign(self, matrices: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """bool [N, C] segments → int32 [N] tokens of their most similar entries (`assign_tokens`), the vocabulary
        frozen: how val / test segments, and data tokenized for another dataset's model, get their tokens."""
        return self.assign_with_similarity(matrices, chunk)[0]

    def assign_with_similarity(self, matrices: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """(int32 [N] tokens as `assign`, float32 [N] Jaccard similarity of each to its entry; 1 for empty)."""
        if matrices.ndim != 2 or matrices.shape[1] != self.num_cells:
            raise UserError(
                f"expected segment matrices [N, {self.num_cells}] ({self.layout.describe()}), got {matrices.shape}"
            )
        arrays = self.device_arrays()
        tokens, sims = [np.zeros(0, np.int32)], [np.zeros(0, np.float32)]
        chunk = min(chunk, _bucket(len(matrices), 64))  # padded blocks: a few shapes, a few compilations
        for i in range(0, len(matrices), chunk):
            part = matrices[i : i + chunk]
            tok, sim = _assign(np.pad(part, ((0, chunk - len(part)), (0, 0))), *arrays, self.unknown_token)
            tokens.append(np.asarray(tok)[: len(part)])
            sims.append(np.asarray(sim)[: len(part)])
        return np.concatenate(tokens).astype(np.int32), np.concatenate(sims)

    def tokenize(self, matrices: np.ndarray | jax.Array) -> np.ndarray:
        """bool [N, C] segment matrices in scan order → int32 [N] tokens (0 = empty), adding new segments.

        Calls compose: tokenizing clips one call at a time equals one reference Corpus scanning them in order.
        """
        rows = np.asarray(matrices).astype(bool, copy=False)
        if rows.ndim != 2 or rows.shape[1] != self.num_cells:
            raise UserError(
                f"expected segment matrices [N, {self.num_cells}] for {self.cell} m cells, got {rows.shape}"
            )
        packed = _pack(rows)
        keys, first, inverse = np.unique(_keys(packed), return_index=True, return_inverse=True)
        where = np.minimum(np.searchsorted(self._sorted_keys, keys), max(len(self) - 1, 0))
        known = (self._sorted_keys[where] == keys) if len(self) else np.zeros(len(keys), bool)
        entry = np.where(known, self._sorted_entry[where] if len(self) else 0, -1)
        fresh = ~known & rows[first].any(1)
        new = np.flatnonzero(fresh)[np.argsort(first[fresh], kind="stable")]  # first-occurrence order
        entry[new] = len(self) + np.arange(len(new))
        if len(new):
            self._add(packed[first[new]], keys[new])
        tokens = np.concatenate([[0], self._tokens])[entry + 1]
        return np.where(rows.any(1), tokens[inverse.ravel()], 0).astype(np.int32)

    def tokenize_clips(
        self, clips: Sequence[np.ndarray], fps: float, field: field_lib.Field = field_lib.SOCCER
    ) -> list[np.ndarray]:
        """Positions of clips of one field in scan order → one int32 token array per clip (its segments)."""
        grid = self.grid_of(field)
        matrices, counts = clip_segment_matrices(clips, fps, grid, self.seconds)
        return np.split(self.tokenize(place(matrices, self.layout, grid)), np.cumsum(counts)[:-1])

    def _add(self, packed: np.ndarray, keys: np.ndarray) -> None:
        """Append new distinct segments (in scan order), deciding their tokens with the greedy rule."""
        start = len(self)
        self._packed = np.concatenate([self._packed, packed])
        if self.lsh:
            self._signatures = np.concatenate([self._signatures, _minhash(packed, self.num_cells, self.lsh)])
            best, arg = _approx_best(self._packed, self._signatures, start, self.lsh)
        else:
            best, arg = _exact_best(self._packed.view(np.uint32), start, self.block)
        opens = (best < 0) | ~(best / 100 > self.threshold)  # the reference: new token unless best > threshold
        parent = np.concatenate([np.arange(start), np.where(opens, start + np.arange(len(best)), arg)])
        while np.any(parent[parent] != parent):  # pointer jumping to the token-owning root
            parent = parent[parent]
        tokens = np.concatenate([self._tokens, np.zeros(len(best), np.int32)])
        tokens[start:][opens] = self.next_token + np.arange(opens.sum())
        self._tokens = tokens[parent].astype(np.int32)
        self._parents = np.concatenate([self._parents, np.where(opens, -1, arg)]).astype(np.int32)
        self.next_token += int(opens.sum())
        order = np.argsort(keys)
        pos = np.searchsorted(self._sorted_keys, keys)
        self._sorted_keys = np.insert(self._sorted_keys, pos[order], keys[order])
        self._sorted_entry = np.insert(self._sorted_entry, pos[order], start + order)

    def save(self, path: str | Path) -> None:
        """Write the vocabulary to an .npz file (packed distinct segments, tokens, parents and settings).

        Written to a temporary name and renamed into place, so a failed write never leaves a half-written file.
        """
        arrays = {
            "format": np.array(FORMAT_NAME),
            "version": FORMAT_VERSION,
            "packed": self._packed,
            "tokens": self._tokens,
            "parents": self._parents,
            "next_token": self.next_token,
            "threshold": self.threshold,
            "cell": self.cell,
            "seconds": self.seconds,
            "num_cells": self.num_cells,
            "lsh": np.array(dataclasses.astuple(self.lsh) if self.lsh else [], np.int64),
            "camera_cell": self.camera_cell,
            "layout": np.array(json.dumps(self.layout.as_list())),
            "fitted_on": np.array(json.dumps(self.fitted_on, sort_keys=True)),
        }
        files.atomic_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a vocabulary written by `save` (a local path or a bucket's); UserError naming the file if it is not
        one or is damaged."""
        try:
            with np.load(io.BytesIO(epath.Path(path).read_bytes()), allow_pickle=False) as z:
                version = int(z["version"])
                if str(z["format"]) != FORMAT_NAME or version not in (1, FORMAT_VERSION):
                    raise ValueError(f"format {z['format']} version {z['version']}")
                lsh = LSHParams(*(int(v) for v in z["lsh"])) if len(z["lsh"]) else None
                extra = {}
                if version >= 2:
                    extra = {
                        "layout": GridLayout.from_list(json.loads(str(z["layout"])), str(path)),
                        "camera_cell": float(z["camera_cell"]),
                        "fitted_on": json.loads(str(z["fitted_on"])),
                    }
                vocab = cls(float(z["threshold"]), float(z["cell"]), float(z["seconds"]), lsh or False, **extra)
                packed, tokens, parents = z["packed"], z["tokens"].astype(np.int32), z["parents"].astype(np.int32)
                next_token = int(z["next_token"])
                if (
                    int(z["num_cells"]) != vocab.num_cells
                    or packed.shape[1:] != vocab._packed.shape[1:]
                    or packed.dtype != np.uint8
                    or not len(packed) == len(tokens) == len(parents)
                    or (len(tokens) and (tokens.min() < 1 or tokens.max() >= next_token))
                ):
                    raise ValueError("inconsistent arrays")
        except FileNotFoundError:
            raise UserError(f"{path}: no vocabulary. Build one with `trajsv tokenize`.") from None
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error, UserError) as err:
            raise UserError(
                f"{path}: not a readable trajsv vocabulary ({err}). Rebuild it with `trajsv tokenize`."
            ) from err
        vocab._packed, vocab._tokens, vocab._parents, vocab.next_token = packed, tokens, parents, next_token
        keys = _keys(packed)
        vocab._sorted_entry = np.argsort(keys)
        vocab._sorted_keys = keys[vocab._sorted_entry]
        if lsh:
            vocab._signatures = _minhash(packed, vocab.num_cells, lsh)
        return vocab


# ---------------------------------------------------------------------------------------- on-device token assignment


@functools.partial(jax.jit, static_argnames="block")
def assign_tokens(
    matrices: jax.Array,
    vocab_matrices: jax.Array,
    vocab_tokens: jax.Array,
    unknown: int | jax.Array | None = None,
    block: int = 512,
) -> jax.Array:
    """bool [N, C] segments → int32 [N] token of the most similar vocabulary entry (Jaccard, first on ties); 0 = empty.

    For val / test segments and training-time variants (augmented or unseen clips): never grows the vocabulary, so a
    segment that is not in it gets the token of its nearest entry, however far (the reference would open a new token
    when the best rounded Jaccard is ≤ threshold). An in-vocabulary segment gets its own token. A segment that shares
    no cell with any entry (similarity 0: a field or a corner the vocabulary never saw) gets `unknown`, given (the
    vocabulary's `unknown_token`), else the first entry's. Scans the vocabulary in blocks of `block` (512: the
    fastest of 128 … 4096 tried on a 2-core CPU; the result does not depend on it).
    """
    return _assign(matrices, vocab_matrices, vocab_tokens, unknown, block)[0]


@functools.partial(jax.jit, static_argnames="block")
def _assign(matrices, vocab_matrices, vocab_tokens, unknown=None, block: int = 512) -> tuple[jax.Array, jax.Array]:
    """(`assign_tokens`, float32 [N] Jaccard similarity of each segment to its entry, 1 for empty segments)."""
    x = matrices.astype(jnp.float32)
    size = x.sum(1)
    e = vocab_matrices.shape[0]
    pad = -e % block
    v = jnp.pad(vocab_matrices.astype(jnp.float32), ((0, pad), (0, 0))).reshape(-1, block, x.shape[1])
    toks = jnp.pad(vocab_tokens.astype(jnp.int32), (0, pad)).reshape(-1, block)
    valid = (jnp.arange(e + pad) < e).reshape(-1, block)

    def scan(carry, blk):
        best, tok = carry
        vb, tb, ok = blk
        inter = jnp.dot(x, vb.T, precision=jax.lax.Precision.HIGHEST)
        # distinct fractions with denominators ≤ C differ by ≥ 1 / C², above float32 rounding while C < 2896 (cells of
        # 2 m or more): the order, hence the argmax, is exact there
        sim = jnp.where(ok[None, :], inter / jnp.maximum(size[:, None] + vb.sum(1)[None, :] - inter, 1.0), -1.0)
        b_best, b_arg = sim.max(1), jnp.argmax(sim, 1)
        better = b_best > best  # earlier blocks win ties
        return (jnp.where(better, b_best, best), jnp.where(better, tb[b_arg], tok)), None

    init = (jnp.full(x.shape[0], -1.0, jnp.float32), jnp.zeros(x.shape[0], jnp.int32))
    (best, tok), _ = jax.lax.scan(scan, init, (v, toks, valid))
    if unknown is not None:
        tok = jnp.where(best > 0, tok, jnp.asarray(unknown, jnp.int32))
    return jnp.where(size > 0, tok, 0), jnp.where(size > 0, jnp.maximum(best, 0.0), 1.0)


# ------------------------------------------------------------------------------------------------------- agreement


def adjusted_rand_index(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same items (1 = same partition, ~0 = chance)."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    _, joint = np.unique(ia.astype(np.int64) * (ib.max() + 1) + ib, return_counts=True)

    def pairs(counts: np.ndarray) -> float:
        return float((counts.astype(np.float64) * (counts - 1) / 2).sum())

    index, sa, sb = pairs(joint), pairs(np.bincount(ia)), pairs(np.bincount(ib))
    expected = sa * sb / pairs(np.array([len(a)]))
    top = (sa + sb) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def agreement(exact: Vocabulary, approx: Vocabulary, exact_tokens: np.ndarray, approx_tokens: np.ndarray) -> dict:
    """How far approximate mode strays from exact over the same segments (both vocabularies fed the same calls).

    decision: fraction of distinct segments with the same decision (new token, or the same parent segment);
    new_token: fraction with the same new-or-not decision; ari: adjusted Rand index of the tokens of all segments.
    """
    pe, pa = exact.parents, approx.parents
    return {
        "distinct_segments": len(pe),
        "decision": float(np.mean(pe == pa)),
        "new_token": float(np.mean((pe < 0) == (pa < 0))),
        "ari": adjusted_rand_index(exact_tokens, approx_tokens),
        "tokens_exact": exact.num_tokens,
        "tokens_approx": approx.num_tokens,
    }
