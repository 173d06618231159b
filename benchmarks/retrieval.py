"""Retrieval at scale (paper Table X): ScaNN (trajsv_jax.retrieval.index) vs exact search vs HNSW in one run; JSON.

Vectors: real video vectors of a trained run (default runs/skillcorner_2417/train, written by `trajsv demo`), made
denser by the run's own model and then by Gaussian copies:
1. the run's real videos (train + val + test splits of its dataset) get intra-clip variants (`variants.intra_clip`
   at δ ~ U[0, --max-delta], re-tokenized against the run's vocabulary): a pool of --pool videos;
2. --variants + --queries videos are drawn from the pool and given inter-clip variants (`variants.inter_clip`, a new
   δ ~ U[0, --max-delta] each) and embedded with the trained model (`TrajSV.encode`, 128-d, unit norm); the last
   --queries of them are the held-out queries, never in any database;
3. databases are prefixes of one sequence: the --variants embedded variants, then perturbed copies of random
   variants, normalize(v + σ·N(0, I)) with σ = --sigma, up to the largest size.
Reported per size: the mean cosine of a query to its nearest and its 10th nearest database vector (exact), and the
fraction of the exact top-10 that are perturbed copies rather than embedded variants.

Methods, on the same vectors, k = --k (10): exact search (`index_lib.exact_search`, numpy matmul, batched; it is
also the ground truth); ScaNN through `index_lib.build_index`: the size's automatic settings, and from 10k vectors a
tree_ah build and an ah build (where auto is not already that), each swept over leaves_to_search (tree) x reorder at
query time; faiss `IndexHNSWFlat` and hnswlib (inner product), M in --hnsw-m, efConstruction --ef-construction,
efSearch swept. Per setting: build seconds (all cores), single-query latency p50 / p99 (--latency-queries queries one
at a time, `time.perf_counter`, ONE thread for every library: faiss.omp_set_num_threads(1), hnswlib num_threads=1,
ScaNN's single search is single-threaded, exact single queries through faiss IndexFlatIP), batched throughput (all
queries in one call, both cores: ScaNN search_batched_parallel, faiss 2 OpenMP threads, hnswlib num_threads=2, numpy
BLAS) and recall@10 against exact. ScaNN's latency goes through `Index.search_rows` (query normalization and padding
included); `raw_searcher_p50_ms` is ScaNN's own searcher called directly. "best" per library: the fastest p50 among
its settings with recall@10 ≥ --recall-target.

Query time: embedding ONE query video with the jitted model (batch 1, after warm-up, XLA's CPU threads) + the best
ScaNN search, per size. Goals (reported, never asserted): at the largest size, ScaNN p50 ≤ 2 ms at recall@10 ≥ the
target, and ScaNN at least as fast as the best HNSW at that recall.

Run time on 2 cores: --sizes 1000,10000,100000 ~5 min (embedding 21k videos ~1-2 min); 1,000,000 adds ~30 min
(HNSW builds). Needs `pip install -e .[bench]` (faiss-cpu, hnswlib).

Usage, from the repository root: python -m benchmarks.retrieval [--sizes 1000,10000,100000,1000000] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from input_pipeline import reader  # noqa: E402
from trajsv_jax.errors import UserError  # noqa: E402
from trajsv_jax.models import TrajSV  # noqa: E402
from trajsv_jax.retrieval import index as index_lib  # noqa: E402
from trajsv_jax.training import trainers, variants  # noqa: E402
from trajsv_jax.training import trajsv as trajsv_trainer  # noqa: E402

RUN = "runs/skillcorner_2417/train"
REORDERS = (20, 50, 100, 200)  # ScaNN candidates re-scored exactly, swept at query time
LEAF_FACTORS = (0.125, 0.25, 0.5, 1, 2, 4)  # x the automatic leaves_to_search, swept at query time
POOL_FIELDS = ("segment_mask", "clip_mask", "tokens", "visual", "visual_mask", "clip_ids")
T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------------ vectors


def real_videos(setup: trajsv_trainer.Setup) -> dict[str, np.ndarray]:
    """Every video of the run's dataset (train, val and test splits) as one numpy batch."""
    parts = []
    for split in ("train", "val", "test"):
        try:
            parts.append(reader.read_split(setup.data_dir, split))
        except UserError:
            continue  # a dataset written without that split
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


class Embedder:
    """The trained model and the two-stage variant maker of the module doc, jitted at a fixed batch."""

    def __init__(self, run: str, batch: int, max_delta: float):
        self.setup, self.params, self.step = trajsv_trainer.load_params(run)
        self.batch, self.max_delta = batch, max_delta
        self.videos = {k: jnp.asarray(v) for k, v in real_videos(self.setup).items()}
        self.vocab = tuple(jnp.asarray(x) for x in self.setup.vocab.device_arrays())
        model, step = TrajSV(self.setup.model), self.setup.step
        self.encode = jax.jit(
            lambda p, b: model.apply({"params": p}, trajsv_trainer.model_inputs(b, step), method=TrajSV.encode)["video"]
        )
        self._intra = jax.jit(self._intra_fn)
        self._inter = jax.jit(self._inter_fn)

    def _delta(self, key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, (self.batch,), jnp.float32, 0.0, self.max_delta)

    def _intra_fn(self, key, videos, pick, vocab):
        batch = {k: v[pick] for k, v in videos.items()}
        delta_key, key = jax.random.split(key)
        intra = variants.intra_clip(key, batch, self._delta(delta_key))
        intra["tokens"] = variants.retokenize(intra, *vocab, self.setup.step.cell)
        return {k: intra[k] for k in POOL_FIELDS}

    def _inter_fn(self, key, params, pool, pick):
        batch = {k: v[pick] for k, v in pool.items()}
        delta_key, key = jax.random.split(key)
        return self.encode(params, variants.inter_clip(key, batch, self._delta(delta_key)))

    def pool(self, size: int, seed: int) -> dict[str, jax.Array]:
        """`size` intra-clip variants of the real videos (each real video about equally often), re-tokenized."""
        n = len(self.videos["clip_mask"])
        order = np.random.default_rng(seed).permutation(np.arange(-(-size // self.batch) * self.batch) % n)
        key = jax.random.PRNGKey(seed)
        parts = [
            self._intra(jax.random.fold_in(key, i), self.videos, order[s : s + self.batch], self.vocab)
            for i, s in enumerate(range(0, len(order), self.batch))
        ]
        return {k: jnp.concatenate([p[k] for p in parts])[:size] for k in POOL_FIELDS}

    def variants(self, pool: dict[str, jax.Array], count: int, seed: int) -> tuple[np.ndarray, int]:
        """(float32 [count, d] distinct embedded inter-clip variants of random pool videos, repeats dropped).

        A small δ replaces nothing (round(δ · 4 clips) = 0), so some variants equal their pool video: such
        repeats are dropped, or a "held-out" query could be a database vector and HNSW graphs would hold copies.
        """
        rng, key = np.random.default_rng(seed), jax.random.PRNGKey(seed + 1)
        out, seen, made, step = [], set(), 0, max(count // 10, 1)
        while len(out) < count:
            pick, before = rng.integers(len(pool["clip_mask"]), size=self.batch), len(out)
            for row in np.asarray(self._inter(jax.random.fold_in(key, made), self.params, pool, pick)):
                if row.tobytes() not in seen:
                    seen.add(row.tobytes())
                    out.append(row)
            made += 1
            if min(len(out), count) // step > before // step:
                log(f"embedded {min(len(out), count):,} of {count:,} distinct variants")
        return np.stack(out[:count]), made * self.batch - len(out)

    def encode_one_ms(self, pool: dict[str, jax.Array], repeats: int = 50) -> dict[str, float]:
        """Latency of embedding one (tokenized) video with the jitted model, after compilation and warm-up."""
        one = {k: v[:1] for k, v in pool.items()}
        for _ in range(3):
            jax.block_until_ready(self.encode(self.params, one))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(self.encode(self.params, one))
            times.append(time.perf_counter() - start)
        return {"p50": ms(np.median(times)), "p99": ms(np.percentile(times, 99)), "repeats": repeats}


def perturbed_copies(vectors: np.ndarray, count: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [count, d] normalize(v + σ·N(0, I)) of uniformly drawn rows v of `vectors`, those rows [count])."""
    rng = np.random.default_rng(seed)
    parents = rng.integers(len(vectors), size=count)
    out = np.empty((count, vectors.shape[1]), np.float32)
    for start in range(0, count, 100_000):
        x = vectors[parents[start : start + 100_000]]
        x = x + sigma * rng.standard_normal(x.shape, dtype=np.float32)
        out[start : start + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, parents


# ------------------------------------------------------------------------------------------------------------ methods


def ms(seconds: float) -> float:
    return round(float(seconds) * 1e3, 4)


@dataclasses.dataclass(frozen=True)
class Truth:
    """Exact top-k of every query over one database, and the tie-aware recall@k of a search's answer."""

    db: np.ndarray
    queries: np.ndarray
    rows: np.ndarray  # [Q, k] exact_search
    scores: np.ndarray  # [Q, k]

    def recall(self, found: np.ndarray) -> float:
        """Share of the k answers scoring at least the k-th exact score (ann-benchmarks' rule, ε = 1e-5): rows
        that tie with the k-th neighbour are as good as it, whichever the index returns."""
        found = np.asarray(found, np.int64)[:, : self.rows.shape[1]]
        valid = (found >= 0) & (found < len(self.db))
        scores = np.einsum("qd,qkd->qk", self.queries, self.db[np.where(valid, found, 0)])
        hits = valid & (scores >= self.scores[:, -1:] - 1e-5)
        return round(float(hits.sum() / self.rows.size), 4)


def latency(search_one: Callable[[np.ndarray], object], queries: np.ndarray, count: int) -> dict[str, float]:
    """p50 / p99 ms of `search_one(query [1, d])` over `count` queries one at a time, after 100 warm-up calls (the
    first setting measured after a build otherwise pays for cold caches)."""
    for q in queries[:100]:
        search_one(q[None])
    times = []
    for q in queries[:count]:
        start = time.perf_counter()
        search_one(q[None])
        times.append(time.perf_counter() - start)
    return {"p50_ms": ms(np.median(times)), "p99_ms": ms(np.percentile(times, 99))}


def measure(search_one, search_all, queries, truth: Truth, count) -> dict[str, float]:
    """Recall@k and batched queries/s of `search_all(queries)`, then single-query latency."""
    start = time.perf_counter()
    found = search_all(queries)
    seconds = time.perf_counter() - start
    row = {"recall10": truth.recall(found)}
    return row | latency(search_one, queries, count) | {"batched_qps": round(len(queries) / seconds, 1)}


def bench_exact(db: np.ndarray, queries: np.ndarray, k: int, count: int) -> tuple[dict, Truth]:
    """The exact baseline, and the ground truth from `index_lib.exact_search` (batched).

    Single queries go through faiss IndexFlatIP on one thread: numpy's matrix-vector product uses its BLAS threads,
    which cannot be limited here and stall on a busy machine.
    """
    import faiss

    start = time.perf_counter()
    truth, scores = index_lib.exact_search(db, queries, k)
    seconds = time.perf_counter() - start
    flat = faiss.IndexFlatIP(db.shape[1])
    flat.add(db)
    faiss.omp_set_num_threads(1)
    row = {"method": "exact", "build_s": 0.0, "recall10": 1.0} | latency(lambda q: flat.search(q, k), queries, count)
    row["batched_qps"] = round(len(queries) / seconds, 1)
    row["note"] = "single: faiss IndexFlatIP, 1 thread; batched: index_lib.exact_search (numpy matmul, BLAS threads)"
    return row, Truth(db, queries, truth, scores)


def timed(build: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    built = build()
    return built, round(time.perf_counter() - start, 2)


def scann_rows(index: index_lib.Index, name: str, build_s: float, queries, truth, count: int) -> list[dict]:
    """One ScaNN build measured at the query-time settings worth sweeping for its mode."""
    s, k = index.settings, truth.rows.shape[1]
    sweep: list[dict] = []
    if s.mode == "tree_ah":
        leaves = {max(1, round(s.leaves_to_search * f)) for f in LEAF_FACTORS}
        sweep = [{"leaves_to_search": n, "reorder": r} for n in sorted(leaves) if n <= s.num_leaves for r in REORDERS]
    elif s.mode == "ah":
        sweep = [{"reorder": r} for r in REORDERS]
    built = {"leaves_to_search": s.leaves_to_search, "reorder": s.reorder}
    sweep = [{}, *(over for over in sweep if any(built[key] != value for key, value in over.items()))]
    queries = index_lib.normalize(queries)
    rows = []
    for over in sweep:
        pre = -1 if s.mode == "brute_force" else max(over.get("reorder", s.reorder), k)
        leaves = over.get("leaves_to_search", s.leaves_to_search) if s.mode == "tree_ah" else -1
        row = {"method": f"scann {name}", "build_s": build_s, "settings": dataclasses.asdict(s) | over}
        row |= measure(
            lambda q, over=over: index.search_rows(q, k, **over),
            lambda q, pre=pre, leaves=leaves: index.searcher.search_batched_parallel(q, k, pre, leaves)[0],
            queries,
            truth,
            count,
        )
        raw = latency(lambda q, pre=pre, leaves=leaves: index.searcher.search(q[0], k, pre, leaves), queries, count)
        rows.append(row | {"raw_searcher_p50_ms": raw["p50_ms"]})
    return rows


def bench_scann(db, queries, truth, count: int, tag: str) -> list[dict]:
    """ScaNN's automatic build, then (10k vectors and up) a tree_ah build and an ah build where auto is neither."""
    auto = index_lib.resolve_settings(len(db))
    builds = {"auto": auto}
    if len(db) >= 10_000:
        for mode in ("tree_ah", "ah"):
            settings = index_lib.resolve_settings(len(db), index_lib.IndexSettings(mode=mode))
            if settings != auto:
                builds[mode] = settings
    rows = []
    for name, settings in builds.items():
        index, build_s = timed(lambda settings=settings: index_lib.build_index(db, np.arange(len(db)), settings))
        log(f"{tag} ScaNN {name} ({settings.mode}) built in {build_s} s")
        rows += scann_rows(index, name, build_s, queries, truth, count)
    return rows


def faiss_rows(index, m: int, efc: int, build_s: float, queries, truth, count: int, efs: list[int]) -> list[dict]:
    import faiss

    def batched(q):
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        found = index.search(q, k)[1]
        faiss.omp_set_num_threads(1)
        return found

    rows, k = [], truth.rows.shape[1]
    for ef in efs:
        index.hnsw.efSearch = ef
        faiss.omp_set_num_threads(1)
        settings = {"M": m, "efConstruction": efc, "efSearch": ef}
        row = {"method": f"faiss hnsw M={m}", "build_s": build_s, "settings": settings}
        rows.append(row | measure(lambda q: index.search(q, k), batched, queries, truth, count))
    return rows


def bench_faiss(db, queries, truth, count: int, ms_: list[int], efc: int, efs: list[int], tag: str) -> list[dict]:
    """faiss IndexHNSWFlat (inner product) for each M, built with all cores, efSearch swept."""
    import faiss

    def build(m: int):
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        index = faiss.IndexHNSWFlat(db.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = efc
        index.add(db)
        return index

    return hnsw_sweep("faiss HNSW", build, faiss_rows, ms_, efc, queries, truth, count, efs, tag)


def hnsw_sweep(library: str, build, rows_fn, ms_, efc, queries, truth, count: int, efs, tag: str) -> list[dict]:
    """Build an HNSW graph per M with `build(m)` (timed, logged) and measure it with `rows_fn` over efSearch."""
    rows = []
    for m in ms_:
        index, build_s = timed(lambda m=m: build(m))
        log(f"{tag} {library} M={m} built in {build_s} s")
        rows += rows_fn(index, m, efc, build_s, queries, truth, count, efs)
    return rows


def hnswlib_rows(index, m: int, efc: int, build_s: float, queries, truth, count: int, efs: list[int]) -> list[dict]:
    rows, k, cores = [], truth.rows.shape[1], os.cpu_count() or 1
    for ef in efs:
        index.set_ef(ef)
        row = {"method": f"hnswlib M={m}", "build_s": build_s, "settings": {"M": m, "ef_construction": efc, "ef": ef}}
        one = lambda q: index.knn_query(q, k, num_threads=1)  # noqa: E731
        batched = lambda q: index.knn_query(q, k, num_threads=cores)[0]  # noqa: E731
        rows.append(row | measure(one, batched, queries, truth, count))
    return rows


def bench_hnswlib(db, queries, truth, count: int, ms_: list[int], efc: int, efs: list[int], tag: str) -> list[dict]:
    """hnswlib (space "ip") for each M, built with all cores, ef swept; [] if hnswlib is not installed (it ships
    only as source and needs a C++ compiler: faiss's HNSW then stands alone)."""
    try:
        import hnswlib
    except ImportError:
        log(f"{tag} hnswlib is not installed (pip install hnswlib): skipped, faiss HNSW only")
        return []

    def build(m: int):
        index = hnswlib.Index(space="ip", dim=db.shape[1])
        index.init_index(max_elements=len(db), ef_construction=efc, M=m, random_seed=0)
        index.add_items(db, np.arange(len(db)), num_threads=os.cpu_count() or 1)
        return index

    return hnsw_sweep("hnswlib", build, hnswlib_rows, ms_, efc, queries, truth, count, efs, tag)


def best(rows: list[dict], target: float) -> dict | None:
    """The fastest single-query p50 among rows reaching recall@10 ≥ target."""
    ok = [r for r in rows if r["recall10"] >= target]
    return min(ok, key=lambda r: r["p50_ms"]) if ok else None


# --------------------------------------------------------------------------------------------------------------- main


def machine() -> dict:
    return describe(("jax", "numpy", "scann", "faiss-cpu", "hnswlib"))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default=RUN, help=f"trained run directory (default {RUN}, from `trajsv demo`)")
    p.add_argument("--sizes", default="1000,10000,100000,1000000", help="database sizes, comma-separated")
    p.add_argument("--variants", type=int, default=20_000, help="embedded variants at the head of every database")
    p.add_argument("--queries", type=int, default=1_000, help="held-out embedded variants used as queries")
    p.add_argument("--pool", type=int, default=1_024, help="intra-clip variants of the real videos to draw from")
    p.add_argument("--max-delta", type=float, default=0.6, help="variant noise rates δ ~ U[0, this]")
    p.add_argument("--sigma", type=float, default=0.025, help="per-dimension noise of the perturbed copies")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--recall-target", type=float, default=0.95)
    p.add_argument("--latency-queries", type=int, default=1_000, help="single queries timed per setting")
    p.add_argument("--exact-latency-queries", type=int, default=200, help="single queries timed for exact search")
    p.add_argument("--hnsw-m", default="16,32", help="HNSW M values, comma-separated")
    p.add_argument("--ef-construction", type=int, default=100)
    p.add_argument("--ef-search", default="10,16,24,32,48,64,96,128,192,256,384,512", help="efSearch sweep")
    p.add_argument("--batch", type=int, default=128, help="videos per embedding call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    a = p.parse_args(argv)
    sizes = sorted(int(s) for s in a.sizes.split(","))
    hnsw_m = [int(m) for m in a.hnsw_m.split(",")]
    efs = [int(e) for e in a.ef_search.split(",") if int(e) >= a.k]
    command = " ".join(["python -m benchmarks.retrieval", *(sys.argv[1:] if argv is None else argv)])
    if not (Path(a.run) / trainers.RUN_FILE).exists():
        raise SystemExit(f"{a.run}: no trained run there; run `trajsv demo` first (or pass --run DIR).")

    out = {"benchmark": "retrieval", "command": command, "machine": machine(), "k": a.k}
    if out["machine"]["hnswlib"] is None:
        out["note"] = "hnswlib is not installed: HNSW is faiss's IndexHNSWFlat only"
    log(f"loading {a.run}")
    embedder = Embedder(a.run, a.batch, a.max_delta)
    start = time.perf_counter()
    pool = embedder.pool(a.pool, a.seed)
    jax.block_until_ready(pool)
    pool_s = time.perf_counter() - start
    log(f"pool of {a.pool} intra-clip variants in {pool_s:.1f} s")
    start = time.perf_counter()
    embedded, repeats = embedder.variants(pool, a.variants + a.queries, a.seed)
    embed_s = time.perf_counter() - start
    variants_, queries = embedded[: a.variants], embedded[a.variants :]
    copies, parents = perturbed_copies(variants_, max(0, sizes[-1] - a.variants), a.sigma, a.seed + 2)
    parent_cos = np.sum(copies[:10_000] * variants_[parents[:10_000]], 1) if len(copies) else np.zeros(0)
    database = np.concatenate([variants_, copies])
    del copies
    out["vectors"] = {
        "run": a.run,
        "checkpoint_step": embedder.step,
        "real_videos": len(embedder.videos["clip_mask"]),
        "how": (
            f"{a.pool} intra-clip variants (δ ~ U[0, {a.max_delta}], re-tokenized) of the run's real videos, then "
            f"{a.variants + a.queries:,} inter-clip variants (new δ ~ U[0, {a.max_delta}]) of random pool videos "
            f"embedded with the trained model; the last {a.queries} are the queries; database = the {a.variants:,} "
            f"others, then normalize(v + {a.sigma}·N(0, I)) copies of random ones up to the size (prefixes)"
        ),
        "pool_seconds": round(pool_s, 1),
        "embed_seconds": round(embed_s, 1),
        "embedded_per_s": round((a.variants + a.queries + repeats) / embed_s, 1),
        "repeats_dropped": repeats,
        "sigma": a.sigma,
        "copy_to_parent_cos_mean": round(float(parent_cos.mean()), 4) if len(parent_cos) else None,
        "dim": int(database.shape[1]),
    }
    out["encode_one_video_ms"] = embedder.encode_one_ms(pool)
    log(f"embedded {a.variants + a.queries:,} variants in {embed_s:.1f} s; one video {out['encode_one_video_ms']}")
    out["sizes"] = {}
    for size in sizes:
        db, tag = database[:size], f"[{size:,}]"
        log(f"{tag} exact ground truth for {len(queries)} queries")
        exact, truth = bench_exact(db, queries, a.k, min(a.exact_latency_queries, a.latency_queries))
        scores = truth.scores
        result = {
            "query_top1_cos_mean": round(float(scores[:, 0].mean()), 4),
            "query_top10_cos_mean": round(float(scores[:, -1].mean()), 4),
            "top10_copies_fraction": round(float((truth.rows >= a.variants).mean()), 4),
            "exact": exact,
            "scann": bench_scann(db, queries, truth, a.latency_queries, tag),
            "faiss_hnsw": bench_faiss(db, queries, truth, a.latency_queries, hnsw_m, a.ef_construction, efs, tag),
            "hnswlib": bench_hnswlib(db, queries, truth, a.latency_queries, hnsw_m, a.ef_construction, efs, tag),
        }
        result["auto"] = result["scann"][0]
        result["best"] = {name: best(result[name], a.recall_target) for name in ("scann", "faiss_hnsw", "hnswlib")}
        if result["best"]["scann"]:
            search = result["best"]["scann"]["p50_ms"]
            encode = out["encode_one_video_ms"]["p50"]
            result["query_time_ms"] = {"embed_p50": encode, "search_p50": search, "total": round(encode + search, 4)}
        out["sizes"][str(size)] = result
        log(f"{tag} done: " + json.dumps(result["best"]))
    out["goals"] = goals(out["sizes"][str(sizes[-1])], sizes[-1], a.recall_target)
    out["machine"]["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    out["total_s"] = round(time.perf_counter() - T0, 1)
    if a.out:
        a.out.write_text(json.dumps(out))
    return out


def goals(result: dict, size: int, target: float) -> dict:
    """The two goals at the largest size, each met or not (with the numbers). ScaNN is judged through
    `Index.search_rows` (what trajsv runs) and, like the HNSW libraries, as its bare searcher."""
    ok = [r for r in result["scann"] if r["recall10"] >= target]
    scann = min((r["p50_ms"] for r in ok), default=None)
    raw = min((r["raw_searcher_p50_ms"] for r in ok), default=None)
    hnsw = [r for r in (result["best"]["faiss_hnsw"], result["best"]["hnswlib"]) if r]
    fastest = min(hnsw, key=lambda r: r["p50_ms"]) if hnsw else None
    out = {
        "size": size,
        "scann_p50_le_2ms_at_recall": {
            "goal": f"ScaNN single-query p50 ≤ 2 ms at recall@10 ≥ {target} at {size:,} vectors",
            "scann_index_p50_ms": scann,
            "met": scann is not None and scann <= 2.0,
        },
        "scann_as_fast_as_hnsw": {
            "goal": f"ScaNN p50 ≤ the fastest HNSW p50, both at recall@10 ≥ {target}",
            "hnsw_best": fastest
            and {"method": fastest["method"], "settings": fastest["settings"], "p50_ms": fastest["p50_ms"]},
            "scann_index_p50_ms": scann,
            "scann_raw_searcher_p50_ms": raw,
            "met": scann is not None and (fastest is None or scann <= fastest["p50_ms"]),
            "met_by_raw_searcher": raw is not None and (fastest is None or raw <= fastest["p50_ms"]),
        },
    }
    for name, goal in out.items():
        if name != "size":
            raw = {True: " (bare ScaNN searcher: met)", False: " (bare ScaNN searcher: NOT met)"}
            verdict = ("met" if goal["met"] else "NOT met") + raw.get(goal.get("met_by_raw_searcher"), "")
            log(f"goal: {goal['goal']}: {verdict}")
    return out


if __name__ == "__main__":
    result = main()
    print(json.dumps(result))
