"""The ScaNN index (trajsv_jax.retrieval.index): exact ground truth, every mode's recall, save/load and its checks."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from trajsv_jax import files
from trajsv_jax.errors import UserError
from trajsv_jax.retrieval import index as index_lib


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, seed: int, clusters: int = 200, spread: float = 0.3) -> np.ndarray:
    """Unit vectors around random cluster centres: a neighbour structure like video embeddings, not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return unit(centres[rng.integers(clusters, size=n)] + spread * rng.standard_normal((n, dim)))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """20k clustered database vectors (64-d) and 200 queries near database rows but not in it."""
    database = clustered(20_000, 64, seed=0)
    rng = np.random.default_rng(1)
    queries = unit(database[rng.choice(len(database), 200, replace=False)] + 0.2 * rng.standard_normal((200, 64)))
    return database, queries


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def test_exact_search_matches_argsort_with_ties_by_index():
    rng = np.random.default_rng(0)
    database = rng.integers(-2, 3, size=(500, 4)).astype(np.float32)  # small integers: many equal scores
    queries = rng.integers(-2, 3, size=(37, 4)).astype(np.float32)
    scores = queries @ database.T
    for k in (1, 10, 500, 600):
        rows, got = index_lib.exact_search(database, queries, k)
        want = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, 500)]
        np.testing.assert_array_equal(rows, want)
        np.testing.assert_array_equal(got, np.take_along_axis(scores, want, 1))
        assert rows.dtype == np.int64 and got.dtype == np.float32


def test_exact_search_blockwise(monkeypatch):
    """Blocks of queries (forced tiny here) give the same answer as one block."""
    rng = np.random.default_rng(2)
    database, queries = unit(rng.standard_normal((300, 8))), unit(rng.standard_normal((50, 8)))
    whole = index_lib.exact_search(database, queries, 5)
    monkeypatch.setattr(index_lib, "SCORE_BLOCK", 700)  # 2 queries per block
    blocked = index_lib.exact_search(database, queries, 5)
    np.testing.assert_array_equal(whole[0], blocked[0])
    assert index_lib.exact_ranks(database, queries, whole[0][:, 3]).tolist() == [4] * 50


def test_exact_ranks_counts_strictly_higher():
    database = np.array([[1.0, 0], [0, 1], [1, 0], [-1, 0]], np.float32)
    queries = np.array([[1.0, 0], [1, 0], [0, 1]], np.float32)
    # ties share the better rank: row 2 scores 1 like row 0, nothing scores strictly higher
    assert index_lib.exact_ranks(database, queries, np.array([2, 3, 0])).tolist() == [1, 4, 2]


def test_resolve_settings_by_size():
    auto = index_lib.resolve_settings
    assert auto(2).mode == "brute_force" and auto(9_999).mode == "brute_force"
    assert auto(10_000).mode == "ah" and auto(99_999).mode == "ah" and auto(100_000).mode == "tree_ah"
    big = auto(1_000_000)
    assert (big.mode, big.num_leaves, big.leaves_to_search, big.training_sample_size, big.reorder) == (
        "tree_ah", 2000, 100, 250_000, 100,
    )  # fmt: skip
    assert auto(10_000).reorder == 100 and auto(5_000).reorder == 0
    chosen = auto(1_000_000, index_lib.IndexSettings(num_leaves=500, leaves_to_search=40, reorder=300))
    assert (chosen.num_leaves, chosen.leaves_to_search, chosen.reorder) == (500, 40, 300)
    forced = auto(20_000, index_lib.IndexSettings(mode="tree_ah"))
    assert forced.num_leaves == 283 and forced.training_sample_size == 20_000
    assert 0 not in (forced.leaves_to_search, forced.reorder)
    with pytest.raises(UserError, match="index mode 'hnsw'"):
        auto(10, index_lib.IndexSettings(mode="hnsw"))
    with pytest.raises(UserError, match="--num-leaves=-3: expected 0"):
        auto(10, index_lib.IndexSettings(num_leaves=-3))


def test_normalize_rejects_nan_and_zero_rows():
    vectors = np.ones((5, 3), np.float32)
    np.testing.assert_allclose(np.linalg.norm(index_lib.normalize(vectors), axis=1), 1, rtol=1e-6)
    vectors[[1, 3], 0] = np.nan
    with pytest.raises(UserError, match="2 of 5 vectors contain NaN"):
        index_lib.normalize(vectors)
    vectors[[1, 3]] = 1.0
    vectors[4] = 0.0
    with pytest.raises(UserError, match="1 of 5 vectors are all zeros"):
        index_lib.build_index(vectors, np.arange(5))


def test_brute_force_is_exact_and_returns_caller_ids(data):
    database, queries = data[0][:5_000], data[1]
    ids = np.arange(len(database), dtype=np.int64) * 7 + 3
    index = index_lib.build_index(database * 3.0, ids)  # scaled: the index normalizes
    assert index.settings.mode == "brute_force"
    rows, scores = index_lib.exact_search(database, queries, 10)
    found, got = index.search(queries, 10)
    np.testing.assert_array_equal(found, ids[rows])
    np.testing.assert_allclose(got, scores, atol=1e-5)
    one, _ = index.search(queries[0] * 2.0, 10)  # a single unnormalized query
    np.testing.assert_array_equal(one, ids[rows[:1]])
    assert index.search_rows(queries, 50_000)[0].shape == (200, 5_000)


@pytest.mark.parametrize("mode", ["ah", "tree_ah"])
def test_approximate_modes_recall(data, mode):
    database, queries = data
    index = index_lib.build_index(database, np.arange(len(database)), index_lib.IndexSettings(mode=mode))
    truth, _ = index_lib.exact_search(database, queries, 10)
    rows, scores = index.search_rows(queries, 10)
    assert recall(rows, truth) >= 0.9
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    # one query at a time takes ScaNN's single-query path (its leaf scoring may differ from the batched one's)
    singles = np.concatenate([index.search_rows(q, 10)[0] for q in queries])
    assert recall(singles, truth) >= 0.9


def test_tree_with_few_leaves_pads_missing_neighbours():
    database = clustered(2_000, 16, seed=3, clusters=40, spread=0.05)
    settings = index_lib.IndexSettings(mode="tree_ah", num_leaves=40, leaves_to_search=1, reorder=20)
    index = index_lib.build_index(database, np.arange(2_000) + 100, settings)
    rows, scores = index.search_rows(database[:20], 1_000)  # more than one leaf holds
    assert rows.shape == (20, 1_000) and (rows == -1).any()
    found = rows >= 0
    assert np.all(found == np.isfinite(scores))
    exact = np.einsum("qd,qkd->qk", database[:20], database[np.where(found, rows, 0)])
    np.testing.assert_allclose(scores[found], exact[found], atol=1e-5)  # re-scored exactly
    ids, _ = index.search(database[:20], 1_000)
    np.testing.assert_array_equal(ids, np.where(found, rows + 100, -1))
    # the single-query path pads the same way (its leaf choice may differ from the batched path's near a boundary)
    one, one_scores = index.search_rows(database[:1], 1_000)
    assert one.shape == (1, 1_000) and (one == -1).any()
    np.testing.assert_array_equal(one == -1, np.isneginf(one_scores))
    np.testing.assert_allclose(one_scores[one >= 0], database[one[one >= 0]] @ database[0], atol=1e-5)


def test_save_load_moved_directory_gives_identical_results(data, tmp_path):
    database, queries = data
    provenance = {"run": "runs/x/train", "checkpoint_step": 120, "split": "test"}
    settings = index_lib.IndexSettings(mode="tree_ah")
    index = index_lib.build_index(database, np.arange(len(database)) * 2, settings, provenance)
    index.save(tmp_path / "built")
    manifest = index.manifest
    assert (manifest["count"], manifest["dim"], manifest["provenance"]) == (20_000, 64, provenance)
    assert manifest["settings"] == dataclasses.asdict(index.settings) and manifest["scann_version"]
    moved = tmp_path / "elsewhere" / "index"
    shutil.copytree(tmp_path / "built", moved)
    shutil.rmtree(tmp_path / "built")
    loaded = index_lib.load_index(moved, expect={"dim": 64, "provenance.run": "runs/x/train"})
    assert loaded.settings == index.settings and loaded.manifest == manifest
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(4)
    index = index_lib.build_index(rng.standard_normal((300, 8)), np.arange(300), provenance={"run": "a"})
    index.save(tmp_path / "index")
    return tmp_path / "index"


def one_line_error(directory, match: str, expect: dict | None = None) -> str:
    with pytest.raises(UserError, match=match) as error:
        index_lib.load_index(directory, expect)
    message = str(error.value)
    assert "\n" not in message and "trajsv index" in message
    return message


def test_load_rejects_wrong_expect(saved):
    message = one_line_error(saved, "provenance.run is 'a', expected 'b'", {"provenance.run": "b"})
    assert str(saved / "manifest.json") in message
    one_line_error(saved, "dim is 8, expected 128", {"dim": 128})
    one_line_error(saved, "has no 'provenance.step'", {"provenance.step": 3})


def resealed(saved, **fields) -> None:
    """The manifest with `fields` changed and sealed again (with the checksum of ids.npy as it is now)."""
    manifest = json.loads((saved / "manifest.json").read_text())
    digests = manifest["files"] | {"ids.npy": files.sha256(saved / "ids.npy")}
    (saved / "manifest.json").write_text(json.dumps(index_lib.sealed(manifest | {"files": digests} | fields)))


def test_load_rejects_tampered_ids_and_vectors(saved):
    ids = np.load(saved / "ids.npy")
    ids[0] = 12345
    np.save(saved / "ids.npy", ids)
    assert f"{saved}: ids.npy changed" in one_line_error(saved, "checksum mismatch")
    # with the manifest edited to match (its checksums can be redone), the arrays themselves are still checked
    np.save(saved / "ids.npy", ids.astype(np.int32))
    resealed(saved)
    one_line_error(saved, "dtype int32, expected int64")
    np.save(saved / "ids.npy", ids[:10])
    resealed(saved)
    one_line_error(saved, r"shape \(10,\), the manifest says \(300,\)")


def test_load_rejects_tampered_manifest_and_searcher(saved):
    manifest = json.loads((saved / "manifest.json").read_text())
    (saved / "manifest.json").write_text(json.dumps(manifest | {"count": 299}))
    one_line_error(saved, "manifest.json: changed since it was written")
    (saved / "manifest.json").write_text(json.dumps(manifest | {"version": 99}))
    one_line_error(saved, "version 99")
    (saved / "manifest.json").write_text("{not json")
    assert str(saved / "manifest.json") in one_line_error(saved, "unreadable index manifest")
    (saved / "manifest.json").write_text(json.dumps(manifest))
    config = (saved / "scann" / "scann_config.pb").read_bytes()
    (saved / "scann" / "scann_config.pb").write_bytes(b"\xff" + config)
    one_line_error(saved, "scann/scann_config.pb changed")
    resealed(saved, files=manifest["files"] | {"scann/scann_config.pb": files.sha256(saved / "scann/scann_config.pb")})
    assert str(saved / "scann") in one_line_error(saved, "ScaNN cannot load")
    shutil.rmtree(saved / "scann")
    one_line_error(saved, "scann/dataset.npy missing")
    with pytest.raises(UserError, match="not a saved index"):
        index_lib.load_index(saved / "missing")


def test_build_rejects_bad_ids():
    vectors = np.ones((3, 4), np.float32)
    with pytest.raises(UserError, match="1 of 3 are repeats"):
        index_lib.build_index(vectors, np.array([1, 1, 2]))
    with pytest.raises(UserError, match="3 integers"):
        index_lib.build_index(vectors, np.arange(2))
