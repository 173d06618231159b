"""The paper's retrieval protocol (section VI, "Sports Video Retrieval"): find a video from a noisy copy of it.

Database: the held-out videos of a split (default "test"), embedded by a trained run. Queries: one variant of every
database video per noise rate δ ∈ {0.5, 0.55, 0.6}, with BOTH trajectories (intra-clip) and clips (inter-clip)
replaced at rate δ (`variants.intra_clip`, then `variants.inter_clip`, then re-tokenization). The ground truth of a
query is its original. Metrics: HR@1 (the original is the top hit) and MRR (mean of 1 / rank of the original).

- Replacements come from the other videos of the same pool (the whole split, in blocks of `pool` videos), drawn
  with `seed` folded with the δ's position in `deltas` and the block's start, so every method evaluated with the
  same `deltas` sees the same queries (a different list, e.g. (0.5, 0.6), draws other queries for 0.6).
- Database and queries are re-tokenized with the run's own vocabulary, so a run can be evaluated on data tokenized
  with another vocabulary (transfer) and the original and its variant are tokenized the same way.
- Search: a ScaNN index over the database (`retrieval.build_index`, settings by database size). The ranking is
  checked against exact search on the same vectors: the share of queries where both give the original the same rank
  is reported (`same_rank`), and MRR is computed from ScaNN's top `k` (k = database size up to 100; beyond it a miss
  counts 0) and from exact search over the whole database.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from etils import epath

from input_pipeline import examples as examples_lib
from input_pipeline import reader
from input_pipeline import write as write_lib
from trajsv_jax import embed, retrieval, variants
from trajsv_jax.errors import UserError

Batch = dict[str, np.ndarray]
DELTAS = (0.5, 0.55, 0.6)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Settings of one evaluation (paper defaults)."""

    deltas: tuple[float, ...] = DELTAS
    split: str = "test"
    seed: int = 0  # the queries' noise; the same for every method
    pool: int = 512  # videos per block from which replacements are drawn
    batch_size: int = 64  # embedding batch
    max_k: int = 100  # ScaNN returns this many neighbours at most
    index: retrieval.IndexSettings = dataclasses.field(default_factory=retrieval.IndexSettings)


def read_split(data_dir: str | os.PathLike, split: str) -> Batch:
    """Every video of a split as one numpy batch (in file order)."""
    example = examples_lib.ExampleConfig(**write_lib.read_info(data_dir)["config"])
    source = reader.tfrecord_source(data_dir, split, example)
    batches = list(reader.ordered_batches(source, example, 256))
    if not batches:
        raise UserError(f"{source.where}: no videos to evaluate. Write the split with `trajsv dataset`.")
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


@functools.partial(jax.jit, static_argnames="cell")
def _retokenized(batch: Batch, vocab: tuple[jax.Array, jax.Array], cell: float) -> Batch:
    return {**batch, "tokens": variants.retokenize(batch, *vocab, cell)}


@functools.partial(jax.jit, static_argnames="cell")
def _noisy(key: jax.Array, batch: Batch, delta: float, vocab: tuple[jax.Array, jax.Array], cell: float) -> Batch:
    """The query of every video of `batch`: trajectories, then clips, replaced at rate δ; tokens redone."""
    intra_key, inter_key = jax.random.split(key)
    noisy = variants.inter_clip(inter_key, variants.intra_clip(intra_key, batch, delta), delta)
    return _retokenized(noisy, vocab, cell)


def encode_all(encoder: embed.Encoder, batch: Batch, batch_size: int) -> np.ndarray:
    """float32 [N, d] video vectors of a numpy batch, embedded in padded batches over the encoder's mesh."""
    size = encoder.batch_size(batch_size)
    out = []
    for start in range(0, len(batch["clip_mask"]), size):
        part = {k: v[start : start + size] for k, v in batch.items()}
        rows = len(part["clip_mask"])
        out.append(np.asarray(encoder.vectors(embed.pad_rows(part, size))["video"])[:rows])
    return np.concatenate(out).astype(np.float32)


def database_and_queries(encoder: embed.Encoder, data: Batch, protocol: Protocol) -> tuple[np.ndarray, dict]:
    """Database vectors [N, d] and {δ: query vectors [N, d]} (query i is a variant of video i)."""
    vocab = tuple(jax.numpy.asarray(x) for x in encoder.vocab.device_arrays())
    cell = encoder.vocab.cell
    total = len(data["clip_mask"])
    database, queries = [], {delta: [] for delta in protocol.deltas}
    for start in range(0, total, protocol.pool):
        block = {k: v[start : start + protocol.pool] for k, v in data.items()}
        database.append(encode_all(encoder, jax.device_get(_retokenized(block, vocab, cell)), protocol.batch_size))
        for i, delta in enumerate(protocol.deltas):
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(protocol.seed), i), start)
            noisy = jax.device_get(_noisy(key, block, delta, vocab, cell))
            queries[delta].append(encode_all(encoder, noisy, protocol.batch_size))
    return np.concatenate(database), {d: np.concatenate(q) for d, q in queries.items()}


def score(index: retrieval.Index, database: np.ndarray, queries: np.ndarray, k: int) -> dict[str, float]:
    """HR@1 and MRR of queries whose ground truth is database row i, by ScaNN and by exact search."""
    truth = np.arange(len(queries))
    rows, _ = index.search_rows(queries, k)
    hit = rows == truth[:, None]
    scann_rank = np.where(hit.any(1), hit.argmax(1) + 1, np.inf)
    exact_rank = retrieval.exact_ranks(retrieval.normalize(database), retrieval.normalize(queries), truth)
    return {
        "hr1": float(np.mean(scann_rank == 1)),
        "mrr": float(np.mean(1.0 / scann_rank)),
        "exact_hr1": float(np.mean(exact_rank == 1)),
        "exact_mrr": float(np.mean(1.0 / exact_rank)),
        "same_rank": float(np.mean(np.minimum(exact_rank, k + 1) == np.minimum(scann_rank, k + 1))),
    }


def evaluate(
    workdir: str | os.PathLike,
    data_dir: str | None = None,
    protocol: Protocol = Protocol(),
    which: str | int = "best",
) -> dict[str, Any]:
    """Run the protocol for one trained run on a split of its own dataset (or of `data_dir`)."""
    encoder = embed.load_encoder(workdir, which)
    data_dir = str(data_dir or encoder.data_dir)
    data = read_split(data_dir, protocol.split)
    database, queries = database_and_queries(encoder, data, protocol)
    size = len(database)
    if size < 2:
        raise UserError(f"{data_dir}: split {protocol.split!r} has {size} video; retrieval needs at least 2.")
    index = retrieval.build_index(database, data["video_id"].astype(np.int64), protocol.index)
    k = min(size, protocol.max_k)
    results = [{"delta": delta, **score(index, database, queries[delta], k)} for delta in protocol.deltas]
    return {
        "run": str(workdir),
        "kind": encoder.kind,
        "checkpoint_step": encoder.step,
        "data_dir": data_dir,
        "split": protocol.split,
        "database_size": size,
        "k": k,
        "seed": protocol.seed,
        "index": index.manifest["settings"],
        "results": results,
    }


def report(result: dict[str, Any]) -> str:
    """The result as a few lines: database size, then HR@1 / MRR per δ and the ScaNN-vs-exact check."""
    lines = [
        f"retrieval on {result['data_dir']} split {result['split']}: database {result['database_size']} videos, "
        f"{result['database_size']} queries per noise rate, run {result['run']} step {result['checkpoint_step']} "
        f"(ScaNN {result['index']['mode']}, k {result['k']})",
        "  δ      HR@1    MRR     (exact HR@1, MRR; same rank as exact)",
    ]
    for r in result["results"]:
        lines.append(
            f"  {r['delta']:<5g}  {r['hr1']:.3f}   {r['mrr']:.3f}   ({r['exact_hr1']:.3f}, {r['exact_mrr']:.3f}; "
            f"{r['same_rank']:.0%})"
        )
    return "\n".join(lines)


def write(result: dict[str, Any], out: str | os.PathLike) -> list[str]:
    """retrieval.json, retrieval.md and retrieval.png (HR@1 and MRR against δ) in `out`."""
    from trajsv_jax import plots

    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval.json").write_text(json.dumps(result, indent=1))
    rows = [{"method": result["kind"], "results": result["results"]}]
    (out / "retrieval.md").write_text(markdown_table(rows, result["database_size"]) + "\n")
    png = plots.plot_retrieval(rows, out / "retrieval.png", f"database {result['database_size']} videos")
    return [str(out / "retrieval.json"), str(out / "retrieval.md"), png]


def mean_std(values: Sequence[float], fmt: str = ".3f") -> str:
    """ "m ± s" over seeds (population std), or the single value."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(np.mean(values), fmt)} ± {format(np.std(values), fmt)}"


def markdown_table(rows: Sequence[dict], database_size: int | str) -> str:
    """Rows {"method", "results": [{delta, hr1, mrr}, ...] or per-seed lists of those} as the paper's Table II."""
    per_method = [(row["method"], _by_delta(row["results"])) for row in rows]
    deltas = sorted({d for _, by in per_method for d in by})
    head = "| Method | " + " | ".join(f"HR@1 δ={d:g}" for d in deltas) + " | "
    head += " | ".join(f"MRR δ={d:g}" for d in deltas) + " |"
    lines = [f"Database: {database_size} videos.", "", head, "|---" * (1 + 2 * len(deltas)) + "|"]
    for method, by in per_method:
        hr = [mean_std(by[d]["hr1"]) if d in by else "—" for d in deltas]
        mrr = [mean_std(by[d]["mrr"]) if d in by else "—" for d in deltas]
        lines.append(f"| {method} | " + " | ".join(hr + mrr) + " |")
    return "\n".join(lines)


def _by_delta(results: Sequence) -> dict[float, dict[str, list[float]]]:
    """{δ: {"hr1": [per seed], "mrr": [...]}} from one result list or a list of per-seed result lists."""
    runs = results if results and isinstance(results[0], list) else [results]
    by: dict[float, dict[str, list[float]]] = {}
    for run in runs:
        for r in run:
            entry = by.setdefault(r["delta"], {"hr1": [], "mrr": []})
            entry["hr1"].append(r["hr1"])
            entry["mrr"].append(r["mrr"])
    return by
