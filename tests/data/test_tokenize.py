"""The tokenizer against the literal play2vec reference (shared/peers/play2vec_tokenizer.py) and on hand-made cases."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from trajsv_jax.data import tokenize as tk
from trajsv_jax.errors import UserError

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared/peers/play2vec_tokenizer.py"
FPS = 10.0


@pytest.fixture(scope="module")
def ref():
    """The reference module, loaded from its path beside the repository."""
    if not REFERENCE.exists():
        pytest.skip(f"shared/peers/play2vec_tokenizer.py not found: {REFERENCE} (the oracle lives beside the repo)")
    spec = importlib.util.spec_from_file_location("play2vec_tokenizer", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def match(bundled_source, ref):
    """(clips with their never-seen objects dropped, our matrices, segments per clip, the reference's segments)."""
    src = bundled_source
    clips = [src.clip(c) for c in range(src.num_clips)]
    clips = [c[:, ~np.isnan(c).all((0, 2))] for c in clips]  # NaN objects are skipped anyway: only speeds up the oracle
    matrices, counts = tk.clip_segment_matrices(clips, src.fps)
    reference = [s for c in clips for s in ref.segment_matrices(c, src.fps)]
    return clips, matrices, counts, reference


def as_sets(matrices) -> list[frozenset]:
    return [frozenset(np.flatnonzero(row).tolist()) for row in np.asarray(matrices)]


def as_rows(sets: list[set], cell: float = 3.0) -> np.ndarray:
    rows = np.zeros((len(sets), tk.num_cells(cell)), bool)
    for r, s in enumerate(sets):
        rows[r, list(s)] = True
    return rows


# ------------------------------------------------------------------------------------------------ real match, oracle


def test_real_match_segment_matrices_equal_reference(match, bundled_source):
    _, matrices, counts, reference = match
    assert len(reference) == len(matrices) == counts.sum() > 3000
    assert as_sets(matrices) == reference
    # straight from the source: all its 400+ object slots, mostly NaN
    from_source, offsets = tk.source_segment_matrices(bundled_source)
    assert np.array_equal(from_source, matrices) and offsets.tolist() == [0, *np.cumsum(counts).tolist()]


def test_real_match_tokens_incremental_equal_reference(match, ref):
    """First 60 clips, one tokenize call per clip, against one reference Corpus scanning them in order."""
    _, matrices, counts, reference = match
    n = int(counts[:60].sum())
    expected = ref.Corpus().tokenize(reference[:n])
    vocab = tk.Vocabulary()
    ours = np.concatenate([vocab.tokenize(m) for m in np.split(matrices[:n], np.cumsum(counts[:60])[:-1])])
    assert ours.tolist() == expected
    assert vocab.num_tokens == max(expected)


@pytest.mark.slow
def test_real_match_tokens_equal_reference(match, ref):
    corpus = ref.Corpus()
    expected = corpus.tokenize(match[3])
    vocab = tk.Vocabulary()
    assert vocab.tokenize(match[1]).tolist() == expected
    assert (vocab.num_tokens, len(vocab)) == (corpus.next_token - 1, len(corpus.tokens))


def test_approximate_mode_agrees_on_real_match(match):
    """LSH candidates + exact verification vs exact, on the ~3,460 distinct segments of the match.

    Measured: decision 0.997, ARI 0.996. The defaults (128 bands of 3) find a J = 0.31 neighbour with P = 0.97 and
    a J ≥ 0.4 one with P > 0.9997, and most parents are at J ≥ 0.4; the bounds allow ~5 times the measured misses,
    while fewer bands (64 of 3: decision 0.97, ARI 0.90) or a broken candidate step fail them.
    """
    matrices = match[1]
    exact, approx = tk.Vocabulary(), tk.Vocabulary(approximate=True)
    result = tk.agreement(exact, approx, exact.tokenize(matrices), approx.tokenize(matrices))
    print(result)
    assert result["decision"] >= 0.985 and result["new_token"] >= 0.985 and result["ari"] >= 0.97
    # approximate misses can only open extra tokens (candidates are verified exactly)
    assert approx.num_tokens >= exact.num_tokens


# -------------------------------------------------------------------------------------------------- cells and grid


def test_rounded_key_is_pythons_round_for_every_fraction():
    b = np.concatenate([np.full(n + 1, n) for n in range(1, 806)])
    a = np.concatenate([np.arange(n + 1) for n in range(1, 806)])
    ours = np.asarray(jax.jit(tk._rounded_key)(a.astype(np.float32), b.astype(np.float32)))
    expected = np.array([round(round(x / y, 2) * 100) for x, y in zip(a.tolist(), b.tolist(), strict=True)])
    assert np.array_equal(ours, expected)
    b = np.random.default_rng(0).integers(1, 30000, 100_000)  # finer grids: e.g. 0.5 m cells give 28,560
    a = (np.random.default_rng(1).random(len(b)) * (b + 1)).astype(np.int64)
    ours = np.asarray(jax.jit(tk._rounded_key)(a.astype(np.float32), b.astype(np.float32)))
    assert ours.tolist() == [round(round(x / y, 2) * 100) for x, y in zip(a.tolist(), b.tolist(), strict=True)]


@pytest.mark.parametrize("cell", [3.0, 5.0, 2.5, 0.7])
def test_cells_at_every_edge_equal_reference(ref, cell):
    """float32 coordinates at, just below and just above every cell edge, and outside the pitch, vs the reference."""
    grid = tk.field_lib.SOCCER.grid(cell)
    cols, rows = grid.cols, grid.rows
    edges_x, edges_y = tk._cell_edges(grid)
    axes = []
    for half, n, ours in ((52.5, cols, edges_x), (34.0, rows, edges_y)):
        edge = np.concatenate([(np.arange(n + 1) * cell - half).astype(np.float32), ours])
        axes.append(np.concatenate([edge, np.nextafter(edge, -np.inf), np.nextafter(edge, np.inf), [-1e-30, 0, 1e-30]]))
    x = np.concatenate([axes[0], [-60.0, 70.0]]).astype(np.float32)
    y = np.resize(np.concatenate([axes[1], [-50.0, 40.0]]), len(x)).astype(np.float32)
    points = np.stack([x, y], -1)[:, None, :]  # one frame per point → one segment per point when fps = 1 / seconds
    ours = as_sets(tk.segment_matrices(points, fps=1.0, cell=cell))
    assert ours == ref.segment_matrices(points, 1.0, cell=cell)
    assert all(len(s) == 1 for s in ours)


def test_nan_short_clips_and_segment_counts_equal_reference(ref):
    rng = np.random.default_rng(1)
    clips = []
    for frames in (1, 3, 4, 14, 15, 16, 24, 25, 26, 35, 160):
        pos = rng.uniform([-55, -36], [55, 36], (frames, 6, 2)).astype(np.float32)
        pos[rng.random((frames, 6)) < 0.3] = np.nan  # missing objects
        pos[rng.random((frames, 6)) < 0.1, 0] = np.nan  # half-missing: skipped too
        pos[0] = np.nan  # a frame with nothing
        clips.append(pos)
    clips.append(np.full((12, 3, 2), np.nan, np.float32))
    expected = [ref.segment_matrices(c, FPS) for c in clips]
    matrices, counts = tk.clip_segment_matrices(clips, FPS)
    assert counts.tolist() == [len(e) for e in expected] == [tk.num_segments(len(c), FPS) for c in clips]
    assert as_sets(matrices) == [s for e in expected for s in e]
    assert as_sets(tk.segment_matrices(clips[7], FPS)) == expected[7]
    assert expected[-1] == [frozenset()]


def test_segment_matrices_jit_other_cells_and_batched_rasterize(ref):
    rng = np.random.default_rng(2)
    pos = rng.uniform([-52.5, -34], [52.5, 34], (47, 9, 2)).astype(np.float32)
    jitted = jax.jit(tk.segment_matrices, static_argnums=(1, 2, 3))
    for cell, seconds in ((3.0, 1.0), (5.0, 1.0), (3.0, 2.0)):
        expected = ref.segment_matrices(pos, FPS, cell=cell, seconds=seconds)
        assert as_sets(jitted(pos, FPS, cell, seconds)) == expected
        assert jitted(pos, FPS, cell, seconds).shape == (len(expected), tk.num_cells(cell))
    batch = rng.uniform([-52.5, -34], [52.5, 34], (2, 3, 10, 9, 2)).astype(np.float32)
    batch[0, 1, :, 4:] = np.nan  # padding objects
    grids = jax.jit(tk.rasterize, static_argnames="grid")(batch, grid=3.0)
    assert grids.shape == (2, 3, 805) and grids.dtype == bool
    for b in range(2):
        assert np.array_equal(grids[b], tk.segment_matrices(batch[b].reshape(30, 9, 2), FPS))


# ------------------------------------------------------------------------------------------------------ vocabulary


def compare_with_corpus(ref, sets: list[set], threshold: float = 0.3) -> tk.Vocabulary:
    vocab = tk.Vocabulary(threshold=threshold)
    ours = vocab.tokenize(as_rows(sets))
    assert ours.tolist() == ref.Corpus(threshold).tokenize([frozenset(s) for s in sets])
    return vocab


def test_empty_segments_are_token_zero(ref):
    vocab = compare_with_corpus(ref, [set(), {1, 2}, set(), {1, 2}, {400}])
    assert vocab.tokenize(as_rows([set()])).tolist() == [0]
    assert len(vocab) == 2 and vocab.num_tokens == 2


def test_rounding_ties_and_threshold_edges(ref):
    """Jaccard exactly 0.125, 0.3, 0.305 (rounds to 0.3: new token), 0.315 (0.32: parent) and 0.31."""
    base = set(range(200))
    cases = [
        [set(range(8)), {0}],  # 1 / 8 = 0.125 → 0.12
        [set(range(10)), set(range(3))],  # 0.3 is not > 0.3
        [set(range(130)), set(range(69, 200))],  # 61 / 200 = 0.305 → round(0.305, 2) = 0.3
        [set(range(130)), set(range(67, 200))],  # 63 / 200 = 0.315 → 0.32
        [set(range(100)), set(range(69, 169))],  # 31 / 169 = 0.183...
        [base, set(range(62))],  # 62 / 200 = 0.31
    ]
    for sets in cases:
        compare_with_corpus(ref, sets)
    compare_with_corpus(ref, [s for c in cases for s in c])
    vocab = compare_with_corpus(ref, cases[2], threshold=0.29)  # 0.3 > 0.29: parent
    assert vocab.num_tokens == 1


def test_first_of_equal_rounded_similarities_wins(ref):
    a, b = set(range(0, 600, 2)), set(range(1, 600, 2))
    probe = set(range(300))  # J = 150 / 450 = 0.33 with both a and b
    vocab = compare_with_corpus(ref, [a, b, probe])
    assert vocab.parents.tolist() == [-1, -1, 0]
    # unrounded 0.5017 and 0.5033 both round to 0.50: the earlier one wins although the later one is closer
    first, second, near = set(range(301)), set(range(298, 600)), set(range(600))
    assert compare_with_corpus(ref, [first, second, near]).parents.tolist() == [-1, -1, 0]
    assert compare_with_corpus(ref, [second, first, near]).parents.tolist() == [-1, -1, 0]


def test_random_streams_match_corpus_in_several_calls(ref):
    rng = np.random.default_rng(3)
    centres = [rng.choice(805, 30, replace=False) for _ in range(12)]
    sets = []
    for _ in range(400):
        c = centres[rng.integers(12)]
        sets.append(set(c[rng.random(30) < 0.6].tolist()) | set(rng.choice(805, 5).tolist()))
    sets[17] = set()
    expected = ref.Corpus().tokenize([frozenset(s) for s in sets])
    vocab = tk.Vocabulary(block=64)  # many tiles, crossing calls
    rows = as_rows(sets)
    ours = np.concatenate([vocab.tokenize(rows[a:b]) for a, b in ((0, 50), (50, 51), (51, 51), (51, 260), (260, 400))])
    assert ours.tolist() == expected


def test_save_load_round_trip_and_bad_files(tmp_path, ref):
    rng = np.random.default_rng(4)
    rows = rng.random((300, 805)) < 0.03
    vocab = tk.Vocabulary(threshold=0.25)
    vocab.tokenize(rows[:200])
    vocab.save(tmp_path / "v.npz")
    loaded = tk.Vocabulary.load(tmp_path / "v.npz")
    assert (len(loaded), loaded.num_tokens, loaded.threshold) == (len(vocab), vocab.num_tokens, 0.25)
    assert np.array_equal(loaded.matrices(), vocab.matrices()) and np.array_equal(loaded.parents, vocab.parents)
    assert np.array_equal(loaded.tokenize(rows), vocab.tokenize(rows))
    approx = tk.Vocabulary(approximate=tk.LSHParams(bands=8, cap=2))
    approx.tokenize(rows[:100])
    approx.save(tmp_path / "a.npz")
    again = tk.Vocabulary.load(tmp_path / "a.npz")
    assert again.lsh == approx.lsh and np.array_equal(again.tokenize(rows), approx.tokenize(rows))
    data = (tmp_path / "v.npz").read_bytes()
    for name, content in (("cut.npz", data[: len(data) // 2]), ("junk.npz", b"not a vocabulary")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match=re.escape(name)):
            tk.Vocabulary.load(tmp_path / name)
    with pytest.raises(UserError, match=r"missing\.npz"):
        tk.Vocabulary.load(tmp_path / "missing.npz")


def test_bad_arguments_raise_user_errors():
    with pytest.raises(UserError):
        tk.Vocabulary(threshold=1.5)
    with pytest.raises(UserError):
        tk.Vocabulary().tokenize(np.zeros((3, 100), bool))
    with pytest.raises(UserError):
        tk.LSHParams(rows=5)


# ------------------------------------------------------------------------------------------- on-device assignment


def test_assign_tokens(ref):
    rng = np.random.default_rng(5)
    rows = rng.random((150, 805)) < 0.04
    vocab = tk.Vocabulary()
    tokens = vocab.tokenize(rows)
    v_rows, v_tokens = vocab.device_arrays()
    assign = jax.jit(tk.assign_tokens, static_argnames="block")
    assert np.array_equal(assign(rows, v_rows, v_tokens, block=32), tokens)  # in-vocabulary rows: their own token
    assert assign(np.zeros((2, 805), bool), v_rows, v_tokens).tolist() == [0, 0]
    # an unseen segment gets the token of its most similar entry, and the vocabulary does not grow
    probe = rows[7].copy()
    probe[np.flatnonzero(probe)[:2]] = False
    sims = [len(set(np.flatnonzero(probe)) & s) / len(set(np.flatnonzero(probe)) | s) for s in as_sets(v_rows)]
    assert assign(probe[None], v_rows, v_tokens, block=16).tolist() == [int(v_tokens[int(np.argmax(sims))])]
    assert len(vocab) == 150
