"""Nearest-video search: a ScaNN index over unit video vectors (dot product = cosine), saved with a manifest.

`build_index` picks the ScaNN configuration by database size (`resolve_settings`): exact brute force for small
databases, asymmetric hashing (AH) with exact re-scoring of the best candidates for medium ones, and a k-means tree
over AH for large ones (the paper's Table X scale: 1M videos). `Index.save` / `load_index` keep the searcher, the
caller's ids, the vectors and a manifest (what was built, from what, the sha256 of every file of the folder and of
the manifest itself, written last); loading checks all of it, so a stale, damaged or half-written index fails with
one line that says what to rebuild. Scores outside [-1, 1] (unit vectors) are refused at search time.
`exact_search` / `exact_ranks` are the blockwise numpy ground truth the tests, the evaluation and the benchmark
measure ScaNN against.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import scann

from trajsv_jax import files
from trajsv_jax.errors import UserError

FORMAT_NAME = "trajsv-index"
FORMAT_VERSION = 2  # 2: sha256 of every file (1: of the ids and vectors only)
MANIFEST_FILE = "manifest.json"
SEARCHER_DIR = "scann"
ASSETS_FILE = f"{SEARCHER_DIR}/scann_assets.pbtxt"  # ScaNN's list of the files its searcher reads
REQUIRED_FILES = ("ids.npy", "vectors.npy", f"{SEARCHER_DIR}/scann_config.pb", ASSETS_FILE)
MODES = ("auto", "brute_force", "ah", "tree_ah")
BRUTE_FORCE_BELOW = 10_000  # exact search over fewer vectors costs well under a millisecond per query
TREE_FROM = 100_000  # from here a partitioning tree pays for itself (benchmarks/retrieval.py: ~3x faster at 100k)
SCORE_BLOCK = 1 << 25  # float32 scores held at once by the exact search (128 MiB)
SCORE_EPS = 1e-3  # float32 dot products of unit vectors stay far inside [-1 - eps, 1 + eps]
REBUILD = "Rebuild it with `trajsv index`."


@dataclasses.dataclass(frozen=True)
class IndexSettings:
    """How to build the ScaNN searcher; 0 means "choose by size" (see `resolve_settings`)."""

    mode: str = "auto"  # "auto" | "brute_force" | "ah" | "tree_ah"
    num_leaves: int = 0  # tree: 0 = auto (2·sqrt(n), 2000 at 1M)
    leaves_to_search: int = 0  # tree: 0 = auto (5 % of the leaves)
    training_sample_size: int = 0  # tree: 0 = auto (all vectors, at most 250k)
    dims_per_block: int = 2  # asymmetric hashing
    anisotropic_threshold: float = 0.2
    reorder: int = 0  # exact re-scoring of this many candidates; 0 = auto (100)


def resolve_settings(count: int, settings: IndexSettings = IndexSettings()) -> IndexSettings:
    """The settings actually built for `count` vectors: the mode chosen and every automatic field filled in.

    Fields the mode does not use come back 0 (tree fields outside "tree_ah", reorder for "brute_force").
    """
    if settings.mode not in MODES:
        raise UserError(f"index mode {settings.mode!r}: expected one of {', '.join(MODES)}.")
    for name in ("num_leaves", "leaves_to_search", "training_sample_size", "reorder"):
        if getattr(settings, name) < 0:
            flag = f"--{name.replace('_', '-')}"
            raise UserError(f"index setting {flag}={getattr(settings, name)}: expected 0 (automatic) or more.")
    if count < 1:
        raise UserError("cannot build an index over 0 vectors: embed some videos first (`trajsv embed`).")
    mode = settings.mode
    if mode == "auto":
        mode = "brute_force" if count < BRUTE_FORCE_BELOW else "ah" if count < TREE_FROM else "tree_ah"
    if mode == "brute_force":
        return dataclasses.replace(
            settings, mode=mode, num_leaves=0, leaves_to_search=0, training_sample_size=0, reorder=0
        )
    reorder = min(settings.reorder or 100, count)
    if mode == "ah":
        return dataclasses.replace(
            settings, mode=mode, num_leaves=0, leaves_to_search=0, training_sample_size=0, reorder=reorder
        )
    leaves = settings.num_leaves or max(2, min(round(2 * math.sqrt(count)), count // 50))
    return dataclasses.replace(
        settings,
        mode=mode,
        num_leaves=leaves,
        leaves_to_search=min(settings.leaves_to_search or max(1, round(0.05 * leaves)), leaves),
        training_sample_size=min(settings.training_sample_size or 250_000, count),
        reorder=reorder,
    )


def normalize(vectors: np.ndarray) -> np.ndarray:
    """float32 [N, d] rows scaled to unit L2 norm, so dot product = cosine similarity."""
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise UserError(f"expected vectors of shape [N, d], got {vectors.shape}.")
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    if not (len(norms) == 0 or 0 < norms.min() <= norms.max() < np.inf):  # NaN fails too; runs on every query
        bad = int((~np.isfinite(vectors).all(1)).sum())
        if bad:
            raise UserError(f"{bad} of {len(vectors)} vectors contain NaN or inf. Re-embed them with `trajsv embed`.")
        zero = int((~vectors.any(1)).sum())
        if zero:
            raise UserError(f"{zero} of {len(vectors)} vectors are all zeros and have no direction.")
        bad = int((~(np.isfinite(norms) & (norms > 0))).sum())
        raise UserError(f"{bad} of {len(vectors)} vectors have a norm float32 cannot hold (overflow or underflow).")
    return vectors / norms[:, None]


def _score_blocks(database: np.ndarray, queries: np.ndarray):
    """(start, scores [B, N]) for consecutive blocks of queries, at most SCORE_BLOCK scores at a time."""
    database = np.asarray(database, np.float32)
    queries = np.asarray(queries, np.float32)
    step = max(1, SCORE_BLOCK // max(len(database), 1))
    for start in range(0, len(queries), step):
        yield start, queries[start : start + step] @ database.T


def exact_search(database: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows int64 [Q, k], scores float32 [Q, k]) of the k best dot products, best first, ties by lower row."""
    if k < 1:
        raise UserError(f"k={k}: ask for at least one neighbour.")
    k = min(k, len(database))
    rows_out = np.empty((len(queries), k), np.int64)
    scores_out = np.empty((len(queries), k), np.float32)
    for start, scores in _score_blocks(database, queries):
        b = len(scores)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.arange(k)[None]
        kth = np.take_along_axis(scores, np.broadcast_to(top, (b, k)), 1).min(1)
        # every row scoring at least the k-th best score, in (query, row) order; then best first, ties by row
        q, r = np.nonzero(scores >= kth[:, None])
        s = scores[q, r]
        order = np.lexsort((r, -s, q))
        q, r, s = q[order], r[order], s[order]
        first = np.searchsorted(q, np.arange(b))
        take = (first[:, None] + np.arange(k)).reshape(-1)
        rows_out[start : start + b] = r[take].reshape(b, k)
        scores_out[start : start + b] = s[take].reshape(b, k)
    return rows_out, scores_out


def exact_ranks(database: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """int64 [Q]: 1-based rank of row truth[q] for query q (rows scoring strictly higher + 1), exact dot product."""
    truth = np.asarray(truth, np.int64)
    ranks = np.empty(len(queries), np.int64)
    for start, scores in _score_blocks(database, queries):
        own = scores[np.arange(len(scores)), truth[start : start + len(scores)]]
        ranks[start : start + len(scores)] = (scores > own[:, None]).sum(1) + 1
    return ranks


def _manifest_digest(manifest: dict) -> str:
    """sha256 of a manifest's fields other than "sha256", as they read back from JSON."""
    fields = json.loads(json.dumps({k: v for k, v in manifest.items() if k != "sha256"}, default=str))
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def sealed(manifest: dict) -> dict:
    """The manifest with the sha256 of its other fields, so a change to the manifest itself is seen as well."""
    return {**manifest, "sha256": _manifest_digest(manifest)}


def verify_folder(path: Path, manifest: dict, required: tuple[str, ...], fix: str) -> None:
    """Check a folder against its manifest (read from `path`): the manifest's own seal, a checksum for each
    `required` file, every file it lists unchanged (names must be plain names inside the folder). UserError naming
    what differs, ending with `fix`."""
    if manifest.get("sha256") != _manifest_digest(manifest):
        raise UserError(f"{path}: changed since it was written (its checksum differs). {fix}")
    digests = manifest.get("files")
    missing = [name for name in required if not isinstance(digests, dict) or name not in digests]
    if missing:
        raise UserError(f"{path}: lists no checksum of {', '.join(missing)}. {fix}")
    files.verify_checksums(path.parent, digests, str(path.parent), fix)


def load_array(path: Path, dtype: type, fix: str) -> np.ndarray:
    """An .npy of `dtype` (no pickles), or a UserError naming the file."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({type(e).__name__}: {e}). {fix}") from None
    if array.dtype != dtype:
        raise UserError(f"{path}: dtype {array.dtype}, expected {np.dtype(dtype)}. {fix}")
    return array


def _scann_version() -> str:
    return metadata.version("scann")


def _make_searcher(vectors: np.ndarray, s: IndexSettings):
    builder = scann.scann_ops_pybind.builder(vectors, 10, "dot_product")
    if s.mode == "brute_force":
        return builder.score_brute_force().build()
    if s.mode == "tree_ah":
        # Spherical k-means: the vectors are unit-norm and scored by dot product, so the leaves are cones (angle),
        # not balls; with plain k-means the partition, and the recall at a given leaves_to_search, varied from build
        # to build (tests/test_retrieval.py::test_approximate_modes_recall fell under its 0.9 bound now and then).
        builder = builder.tree(
            s.num_leaves, s.leaves_to_search, training_sample_size=s.training_sample_size, spherical=True
        )
    builder = builder.score_ah(s.dims_per_block, anisotropic_quantization_threshold=s.anisotropic_threshold)
    return builder.reorder(s.reorder).build()


class Index:
    """A built or loaded ScaNN searcher with the caller's ids (row i of the vectors is ids[i]) and its manifest;
    `where` names it in errors (its folder once saved or loaded)."""

    def __init__(
        self,
        searcher: Any,
        ids: np.ndarray,
        vectors: np.ndarray,
        settings: IndexSettings,
        manifest: dict,
        where: str = "the index",
    ):
        self.searcher, self.ids, self.vectors = searcher, ids, vectors
        self.settings, self.manifest, self.where = settings, manifest, where

    def __len__(self) -> int:
        return len(self.ids)

    def search_rows(
        self, queries: np.ndarray, k: int, *, leaves_to_search: int | None = None, reorder: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows int64 [Q, k], scores float32 [Q, k]) best first; k is clipped to the index size. Queries are
        normalized here. `leaves_to_search` / `reorder` override the built values for this call (tuning).

        Where ScaNN finds fewer than k candidates (a tree searching few leaves), the rest is row -1, score -inf.
        A score outside [-1, 1] (beyond float32 rounding) means the searcher does not hold unit vectors: UserError.
        """
        queries = normalize(np.atleast_2d(queries))
        if queries.shape[1] != self.vectors.shape[1]:
            raise UserError(f"queries have dim {queries.shape[1]}, the index holds dim {self.vectors.shape[1]}.")
        if k < 1:
            raise UserError(f"k={k}: ask for at least one neighbour.")
        k = min(k, len(self))
        s = self.settings
        pre = -1 if s.mode == "brute_force" else max(reorder or s.reorder, k)
        leaves = -1 if s.mode != "tree_ah" else leaves_to_search or s.leaves_to_search
        if len(queries) == 1:  # the latency-critical path: one query, usually k answers
            found, dist = self.searcher.search(queries[0], k, pre, leaves)
            if len(found) == k:
                return self._checked(found.astype(np.int64)[None], dist[None])
            found, dist, valid = found[None], dist[None], np.ones((1, len(found)), bool)
        else:  # ScaNN pads missing answers with row 0 and a NaN score
            found, dist = self.searcher.search_batched(queries, k, pre, leaves)
            valid = np.isfinite(dist)
        rows = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows[:, : found.shape[1]] = np.where(valid, found.astype(np.int64), -1)
        scores[:, : found.shape[1]] = np.where(valid, dist, -np.inf)
        return self._checked(rows, scores)

    def _checked(self, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores), unless a found row scores outside [-1 - eps, 1 + eps] (or NaN): a corrupt searcher."""
        bad = (rows >= 0) & ~(np.abs(scores) <= 1 + SCORE_EPS)
        if bad.any():
            raise UserError(
                f"{self.where}: ScaNN returned a cosine of {scores[bad][0]:.3g}, outside [-1, 1] for unit vectors "
                f"({bad.sum()} of {(rows >= 0).sum()} scores): its searcher is corrupt. {REBUILD}"
            )
        return rows, scores

    def search(self, queries: np.ndarray, k: int, **overrides: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [Q, k] — the caller's ids, -1 where nothing was found — and scores float32 [Q, k])."""
        rows, scores = self.search_rows(queries, k, **overrides)
        return np.where(rows >= 0, self.ids[rows], -1), scores

    def save(self, directory: str | os.PathLike) -> None:
        """ScaNN's serialized searcher (relative paths, so the folder can move), ids.npy, vectors.npy, then
        manifest.json with the sha256 of each (`self.manifest` gains them), under the folder's lock. The old
        manifest goes first and the new one is renamed into place last: a folder without one is an unfinished
        save, which does not load."""
        directory = Path(directory)
        with files.locked(directory, "index"):
            (directory / MANIFEST_FILE).unlink(missing_ok=True)
            shutil.rmtree(directory / SEARCHER_DIR, ignore_errors=True)
            (directory / SEARCHER_DIR).mkdir()
            self.searcher.serialize(str(directory / SEARCHER_DIR), relative_path=True)
            files.atomic_npy(directory / "ids.npy", self.ids)
            files.atomic_npy(directory / "vectors.npy", self.vectors)
            searcher_files = [f"{SEARCHER_DIR}/{p.name}" for p in sorted((directory / SEARCHER_DIR).iterdir())]
            checksums = files.checksums(directory, ["ids.npy", "vectors.npy", *searcher_files])
            self.manifest = sealed({**self.manifest, "files": checksums})
            self.where = str(directory)
            files.atomic_json(directory / MANIFEST_FILE, self.manifest)


def build_index(
    vectors: np.ndarray,
    ids: np.ndarray,
    settings: IndexSettings = IndexSettings(),
    provenance: dict | None = None,
) -> Index:
    """Normalize `vectors` [N, d], build the searcher (`resolve_settings`) and record what was built in the
    manifest, with the caller's `provenance` (run, checkpoint step, data, split, vocabulary digest...)."""
    vectors = normalize(vectors)
    ids = np.asarray(ids)
    if ids.ndim != 1 or len(ids) != len(vectors) or not np.issubdtype(ids.dtype, np.integer):
        raise UserError(f"ids must be {len(vectors)} integers, one per vector; got {ids.dtype} {ids.shape}.")
    ids = ids.astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        raise UserError(f"ids must be unique; {len(ids) - len(np.unique(ids))} of {len(ids)} are repeats.")
    resolved = resolve_settings(len(vectors), settings)
    start = time.perf_counter()
    searcher = _make_searcher(vectors, resolved)
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "count": len(vectors),
        "dim": vectors.shape[1],
        "settings": dataclasses.asdict(resolved),
        "build_seconds": round(time.perf_counter() - start, 3),
        "scann_version": _scann_version(),
        "provenance": dict(provenance or {}),
    }
    return Index(searcher, ids, vectors, resolved, manifest)


def _lookup(manifest: dict, key: str) -> Any:
    """manifest value at a dotted key ("provenance.run"); KeyError if absent."""
    value: Any = manifest
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def _searcher_files(directory: Path) -> list[str]:
    """The files ScaNN's saved searcher reads, as its scann_assets.pbtxt names them; each must be a plain name."""
    where = str(directory / ASSETS_FILE)
    names = re.findall(r'asset_path:\s*"([^"]*)"', (directory / ASSETS_FILE).read_text(errors="replace"))
    return [f"{SEARCHER_DIR}/{files.checked_name(name, where, REBUILD)}" for name in names]


def load_index(directory: str | os.PathLike, expect: dict | None = None) -> Index:
    """The index saved in `directory`, checked against its manifest (format, the sha256 of every file and of the
    manifest, count, dim, the searcher loads) and against `expect` ({dotted manifest key: value}, e.g. {"dim": 128})."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.exists():
        raise UserError(f"{directory}: not a saved index (no {MANIFEST_FILE}). Build one with `trajsv index`.")
    manifest = files.read_json(path, REBUILD, "index manifest")
    kind, version = (manifest.get("format"), manifest.get("version")) if isinstance(manifest, dict) else (None, None)
    if (kind, version) != (FORMAT_NAME, FORMAT_VERSION):
        raise UserError(
            f"{path}: format {kind!r} version {version!r}, this trajsv reads {FORMAT_NAME!r} version "
            f"{FORMAT_VERSION}. {REBUILD}"
        )
    verify_folder(path, manifest, REQUIRED_FILES, REBUILD)
    try:
        settings = IndexSettings(**manifest["settings"])
        count, dim = int(manifest["count"]), int(manifest["dim"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: unreadable index manifest ({type(e).__name__}: {e}). {REBUILD}") from None
    unlisted = [name for name in _searcher_files(directory) if name not in manifest["files"]]
    if unlisted:
        raise UserError(f"{directory / ASSETS_FILE}: names {', '.join(unlisted)}, which has no checksum. {REBUILD}")
    ids = load_array(directory / "ids.npy", np.int64, REBUILD)
    vectors = load_array(directory / "vectors.npy", np.float32, REBUILD)
    for name, array, shape in (("ids", ids, (count,)), ("vectors", vectors, (count, dim))):
        if array.shape != shape:
            raise UserError(f"{directory / name}.npy: shape {array.shape}, the manifest says {shape}. {REBUILD}")
    for key, wanted in (expect or {}).items():
        try:
            found = _lookup(manifest, key)
        except KeyError:
            raise UserError(f"{path}: has no {key!r}, expected {wanted!r}. {REBUILD}") from None
        if found != wanted:
            raise UserError(f"{path}: {key} is {found!r}, expected {wanted!r} (other inputs). {REBUILD}")
    try:
        searcher = scann.scann_ops_pybind.load_searcher(str(directory / SEARCHER_DIR), assets_backcompat_shim=False)
    except Exception as e:  # ScaNN raises plain RuntimeError/ValueError with multi-line texts
        reason = " ".join(str(e).split())[:200]
        raise UserError(f"{directory / SEARCHER_DIR}: ScaNN cannot load the searcher ({reason}). {REBUILD}") from None
    if searcher.size() != count:
        raise UserError(
            f"{directory / SEARCHER_DIR}: searcher holds {searcher.size()} vectors, the manifest says {count}. "
            f"{REBUILD}"
        )
    return Index(searcher, ids, vectors, settings, manifest, str(directory))
