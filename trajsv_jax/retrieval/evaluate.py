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
- Search: a ScaNN index over the database (`index_lib.build_index`, settings by database size). The ranking is
  checked against exact search on the same vectors: the share of queries where both give the original the same rank
  is reported (`same_rank`), and MRR is computed from ScaNN's top `k` (k = database size up to 100; beyond it a miss
  counts 0) and from exact search over the whole database.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from input_pipeline import reader
from trajsv_jax import files, plots
from trajsv_jax.data.field import GridLayout
from trajsv_jax.errors import UserError
from trajsv_jax.retrieval import embed
from trajsv_jax.retrieval import index as index_lib
from trajsv_jax.training import trainers, variants

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
    index: index_lib.IndexSettings = dataclasses.field(default_factory=index_lib.IndexSettings)


@functools.partial(jax.jit, static_argnames=("grids", "unknown"))
def _noisy(
    key: jax.Array, batch: Batch, delta: float, vocab: tuple[jax.Array, jax.Array], grids: GridLayout, unknown: int
) -> Batch:
    """The query of every video of `batch`: trajectories, then clips, replaced at rate δ; tokens redone."""
    intra_key, inter_key = jax.random.split(key)
    noisy = variants.inter_clip(inter_key, variants.intra_clip(intra_key, batch, delta), delta)
    return embed.retokenized(noisy, vocab, grids, unknown)


def database_and_queries(encoder: trainers.Encoder, data: Batch, protocol: Protocol) -> tuple[np.ndarray, dict]:
    """Database vectors [N, d] and {δ: query vectors [N, d]} (query i is a variant of video i)."""
    vocab = tuple(jax.numpy.asarray(x) for x in encoder.vocab.device_arrays())
    grids, unknown = encoder.vocab.layout, encoder.vocab.unknown_token
    total = len(data["clip_mask"])
    database, queries = [], {delta: [] for delta in protocol.deltas}
    for start in range(0, total, protocol.pool):
        block = {k: v[start : start + protocol.pool] for k, v in data.items()}
        original = jax.device_get(embed.retokenized(block, vocab, grids, unknown))
        database.append(embed.encode_videos(encoder, original, protocol.batch_size))
        for i, delta in enumerate(protocol.deltas):
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(protocol.seed), i), start)
            noisy = jax.device_get(_noisy(key, block, delta, vocab, grids, unknown))
            queries[delta].append(embed.encode_videos(encoder, noisy, protocol.batch_size))
    return np.concatenate(database), {d: np.concatenate(q) for d, q in queries.items()}


def score(index: index_lib.Index, database: np.ndarray, queries: np.ndarray, k: int) -> dict[str, float]:
    """HR@1 and MRR of queries whose ground truth is database row i, by ScaNN and by exact search."""
    truth = np.arange(len(queries))
    rows, _ = index.search_rows(queries, k)
    hit = rows == truth[:, None]
    scann_rank = np.where(hit.any(1), hit.argmax(1) + 1, np.inf)
    exact_rank = index_lib.exact_ranks(index_lib.normalize(database), index_lib.normalize(queries), truth)
    return {
        "hr1": float(np.mean(scann_rank == 1)),
        "mrr": float(np.mean(1.0 / scann_rank)),
        "exact_hr1": float(np.mean(exact_rank == 1)),
        "exact_mrr": float(np.mean(1.0 / exact_rank)),
        "same_rank": float(np.mean(np.minimum(exact_rank, k + 1) == np.minimum(scann_rank, k + 1))),
    }


@dataclasses.dataclass(frozen=True)
class RetrievalResult:
    """The protocol's figures for one run (retrieval.json holds `as_dict()`)."""

    run: str
    kind: str
    checkpoint_step: int
    data_dir: str
    split: str
    database_size: int
    k: int
    seed: int
    index: dict[str, Any]  # the resolved ScaNN settings
    results: list[dict[str, float]]  # per δ: delta, hr1, mrr, exact_hr1, exact_mrr, same_rank

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def report(self) -> str:
        """Database size, then HR@1 / MRR per δ and the ScaNN-vs-exact check."""
        lines = [
            f"retrieval on {self.data_dir} split {self.split}: database {self.database_size} videos, "
            f"{self.database_size} queries per noise rate, run {self.run} step {self.checkpoint_step} "
            f"(ScaNN {self.index['mode']}, k {self.k})",
            "  δ      HR@1    MRR     (exact HR@1, MRR; same rank as exact)",
        ]
        for r in self.results:
            lines.append(
                f"  {r['delta']:<5g}  {r['hr1']:.3f}   {r['mrr']:.3f}   ({r['exact_hr1']:.3f}, {r['exact_mrr']:.3f}; "
                f"{r['same_rank']:.0%})"
            )
        return "\n".join(lines)

    def write(self, out: str | os.PathLike) -> list[str]:
        """retrieval.json, retrieval.md and retrieval.png (HR@1 and MRR against δ) in `out`, each written
        atomically under the folder's lock."""
        out = Path(out)
        rows = [{"method": self.kind, "results": self.results}]
        subtitle = f"database {self.database_size} videos"
        with files.locked(out, "evaluate"):
            files.atomic_json(out / "retrieval.json", self.as_dict())
            files.atomic_text(out / "retrieval.md", markdown_table(rows, self.database_size) + "\n")
            files.atomic_write(out / "retrieval.png", lambda tmp: plots.plot_retrieval(rows, tmp, subtitle))
        return [str(out / name) for name in ("retrieval.json", "retrieval.md", "retrieval.png")]


def evaluate_run(
    workdir: str | os.PathLike,
    data_dir: str | None = None,
    protocol: Protocol = Protocol(),
    which: str | int = "best",
) -> RetrievalResult:
    """Run the protocol for one trained run on a split of its own dataset (or of `data_dir`)."""
    encoder = trainers.load_encoder(workdir, which)
    data_dir = str(data_dir or encoder.data_dir)
    data = reader.read_split(data_dir, protocol.split)
    database, queries = database_and_queries(encoder, data, protocol)
    embed.refuse_non_finite(encoder, {"video vectors": np.concatenate([database, *queries.values()])}, "evaluate")
    size = len(database)
    if size < 2:
        raise UserError(f"{data_dir}: split {protocol.split!r} has {size} video; retrieval needs at least 2.")
    index = index_lib.build_index(database, data["video_id"].astype(np.int64), protocol.index)
    k = min(size, protocol.max_k)
    results = [{"delta": delta, **score(index, database, queries[delta], k)} for delta in protocol.deltas]
    return RetrievalResult(
        str(workdir), encoder.kind, encoder.step, data_dir, protocol.split, size, k, protocol.seed,
        index.manifest["settings"], results,
    )  # fmt: skip


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
