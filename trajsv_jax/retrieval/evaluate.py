"""The paper's retrieval protocol (section VI, "Sports Video Retrieval"): find a video from a noisy copy of it.

Database: the held-out videos of a split (default "test"), embedded by a trained run. Queries: one variant of every
database video per noise rate δ ∈ {0.5, 0.55, 0.6}, with BOTH trajectories (intra-clip) and clips (inter-clip)
replaced at rate δ (`variants.intra_clip`, then `variants.inter_clip`, then re-tokenization). The ground truth of a
query is its original. Metrics: HR@1 (the original is the top hit) and MRR (mean of 1 / rank of the original).

- Replacements come from the other videos of the same pool (the whole split, in blocks of `pool` videos), drawn
  with `seed` folded with the value of δ and the block's start, so every method sees the same queries at a δ,
  whatever other δs are asked for.
- Beside the run, the learning-free baselines (`baselines`: the mean segment-matrix grid, random vectors) are scored
  on the same queries, and the random-guess figures for the database size are stated. Per group of the split (the
  dataset and sport of its sources: soccer pitch, rink, each sport's camera plane) the protocol runs again within the
  group, its own videos as database and donors.
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
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from input_pipeline import reader
from input_pipeline import write as write_lib
from trajsv_jax import files, plots
from trajsv_jax.data import store as store_lib
from trajsv_jax.data.field import GridLayout
from trajsv_jax.errors import UserError
from trajsv_jax.retrieval import baselines, embed
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


def delta_stream(delta: float) -> int:
    """The random stream of the queries at δ: its value in thousandths (not its position in the list asked for)."""
    return round(delta * 1000)


def database_and_queries(
    encoder: trainers.Encoder, data: Batch, protocol: Protocol, methods: Sequence[str] = ("trajsv",)
) -> dict[str, tuple[np.ndarray, dict[float, np.ndarray]]]:
    """Per method ("trajsv": the run; `baselines.NAMES`): database vectors [N, d] and {δ: query vectors [N, d]}
    (query i is a variant of video i), every method on the same queries."""
    vocab = tuple(jax.numpy.asarray(x) for x in encoder.vocab.device_arrays())
    grids, unknown = encoder.vocab.layout, encoder.vocab.unknown_token
    out = {name: ([], {delta: [] for delta in protocol.deltas}) for name in methods}

    def add(batch: Batch, delta: float | None) -> None:
        for name, (database, queries) in out.items():
            if name == "trajsv":
                vectors = embed.encode_videos(encoder, batch, protocol.batch_size)
            elif name == "grid":
                vectors = np.asarray(baselines.grid_vectors(batch, grids))
            else:
                stream = 0 if delta is None else delta_stream(delta)
                vectors = baselines.random_vectors(batch["video_id"], protocol.seed, stream)
            (database if delta is None else queries[delta]).append(vectors)

    for start in range(0, len(data["clip_mask"]), protocol.pool):
        block = {k: v[start : start + protocol.pool] for k, v in data.items()}
        add(jax.device_get(embed.retokenized(block, vocab, grids, unknown)), None)
        for delta in protocol.deltas:
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(protocol.seed), delta_stream(delta)), start)
            add(jax.device_get(_noisy(key, block, delta, vocab, grids, unknown)), delta)
    return {
        name: (np.concatenate(database), {d: np.concatenate(q) for d, q in queries.items()})
        for name, (database, queries) in out.items()
    }


def exact_score(database: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """HR@1 and MRR of queries whose ground truth is database row i, by exact cosine search."""
    ranks = index_lib.exact_ranks(index_lib.normalize(database), index_lib.normalize(queries), np.arange(len(queries)))
    return {"hr1": float(np.mean(ranks == 1)), "mrr": float(np.mean(1.0 / ranks))}


def random_guess(size: int) -> dict[str, float]:
    """HR@1 and MRR of a uniformly random ranking of `size` videos: 1 / N and H_N / N."""
    return {"hr1": 1.0 / size, "mrr": float(np.sum(1.0 / np.arange(1, size + 1)) / size)}


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
    baselines: dict[str, list[dict[str, float]]] = dataclasses.field(default_factory=dict)  # name → per δ (exact)
    chance: dict[str, float] = dataclasses.field(default_factory=dict)  # random guess at the database size
    groups: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # per dataset and sport, as `group_rows`
    vocabulary: dict[str, Any] = dataclasses.field(default_factory=dict)  # what the run's vocabulary was fitted on

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def report(self) -> str:
        """Database size, then HR@1 / MRR per δ and the ScaNN-vs-exact check."""
        fitted = self.vocabulary.get("split", "every clip (fitted before the train-only rule)")
        lines = [
            f"retrieval on {self.data_dir} split {self.split}: database {self.database_size} videos, "
            f"{self.database_size} queries per noise rate, run {self.run} step {self.checkpoint_step} "
            f"(ScaNN {self.index['mode']}, k {self.k}); queries' seed {self.seed}; vocabulary fitted on: {fitted}",
            "  δ      HR@1    MRR     (exact HR@1, MRR; same rank as exact)",
        ]
        for r in self.results:
            lines.append(
                f"  {r['delta']:<5g}  {r['hr1']:.3f}   {r['mrr']:.3f}   ({r['exact_hr1']:.3f}, {r['exact_mrr']:.3f}; "
                f"{r['same_rank']:.0%})"
            )
        for name, results in self.baselines.items():
            values = ", ".join(f"δ {r['delta']:g}: {r['hr1']:.3f} / {r['mrr']:.3f}" for r in results)
            lines.append(f"  learning-free {name} (HR@1 / MRR): {values}")
        if self.chance:
            lines.append(
                f"  random guess at {self.database_size} videos: {self.chance['hr1']:.3f} / {self.chance['mrr']:.3f}"
            )
        for g in self.groups:
            lines.append(
                f"  {g['dataset']} {g['sport']} ({g['field']}): database {g['database_size']} videos, random guess "
                f"{g['chance']['hr1']:.3f} / {g['chance']['mrr']:.3f}"
            )
            for name, results in g["methods"].items():
                values = ", ".join(f"δ {r['delta']:g}: {r['hr1']:.3f} / {r['mrr']:.3f}" for r in results)
                lines.append(f"    {name:<8} {values}")
        return "\n".join(lines)

    def write(self, out: str | os.PathLike) -> list[str]:
        """retrieval.json, retrieval.md and retrieval.png (HR@1 and MRR against δ) in `out`, and one
        retrieval_<dataset>_<sport>_<field>.png per group, each written atomically under the folder's lock."""
        out = Path(out)
        rows = [{"method": self.kind, "results": self.results}]
        rows += [{"method": f"{name} (learning-free)", "results": r} for name, r in self.baselines.items()]
        if self.chance:
            rows.append({"method": "random guess", "results": [{"delta": d, **self.chance} for d in self.deltas]})
        chance = f"Random guess at {self.database_size} videos: HR@1 {self.chance.get('hr1', 0):.3f}, MRR "
        chance += f"{self.chance.get('mrr', 0):.3f}. Queries' seed {self.seed}; vocabulary fitted on: "
        chance += f"{self.vocabulary.get('split', 'every clip')}."
        text = [markdown_table(rows, self.database_size), "", chance]
        pictures = {"retrieval.png": (rows, f"database {self.database_size} videos")}
        for g in self.groups:
            group_rows = [{"method": m, "results": r} for m, r in g["methods"].items()]
            group_rows.append({"method": "random guess", "results": [{"delta": d, **g["chance"]} for d in self.deltas]})
            name = f"{g['dataset']} {g['sport']} ({g['field']})"
            text += ["", f"### {name}", "", markdown_table(group_rows, g["database_size"])]
            picture = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"retrieval_{g['dataset']}_{g['sport']}_{g['field']}") + ".png"
            pictures[picture] = (group_rows, f"{name}, {g['database_size']} videos")
        with files.locked(out, "evaluate"):
            files.atomic_json(out / "retrieval.json", self.as_dict())
            files.atomic_text(out / "retrieval.md", "\n".join(text) + "\n")
            for picture, (picture_rows, subtitle) in pictures.items():
                files.atomic_write(
                    out / picture, functools.partial(plots.plot_retrieval, picture_rows, subtitle=subtitle)
                )
        return [str(out / name) for name in ("retrieval.json", "retrieval.md", *pictures)]

    @property
    def deltas(self) -> list[float]:
        return [r["delta"] for r in self.results]


def evaluate_run(
    workdir: str | os.PathLike,
    data_dir: str | None = None,
    protocol: Protocol = Protocol(),
    which: str | int = "best",
) -> RetrievalResult:
    """Run the protocol for one trained run on a split of its own dataset (or of `data_dir`): the run and the
    learning-free baselines on the whole split, then per group (dataset and sport)."""
    encoder = trainers.load_encoder(workdir, which)
    data_dir = str(data_dir or encoder.data_dir)
    data = reader.read_split(data_dir, protocol.split)
    methods = ("trajsv", *baselines.NAMES)
    vectors = database_and_queries(encoder, data, protocol, methods)
    database, queries = vectors["trajsv"]
    embed.refuse_non_finite(encoder, {"video vectors": np.concatenate([database, *queries.values()])}, "evaluate")
    size = len(database)
    if size < 2:
        raise UserError(f"{data_dir}: split {protocol.split!r} has {size} video; retrieval needs at least 2.")
    index = index_lib.build_index(database, data["video_id"].astype(np.int64), protocol.index)
    k = min(size, protocol.max_k)
    results = [{"delta": delta, **score(index, database, queries[delta], k)} for delta in protocol.deltas]
    learning_free = {name: _exact_results(vectors[name], protocol) for name in baselines.NAMES}
    return RetrievalResult(
        str(workdir), encoder.kind, encoder.step, data_dir, protocol.split, size, k, protocol.seed,
        index.manifest["settings"], results, learning_free, random_guess(size),
        group_rows(encoder, data, protocol, methods, data_dir), encoder.vocab.fitted_on,
    )  # fmt: skip


def _exact_results(vectors: tuple[np.ndarray, dict[float, np.ndarray]], protocol: Protocol) -> list[dict]:
    database, queries = vectors
    return [{"delta": delta, **exact_score(database, queries[delta])} for delta in protocol.deltas]


def video_groups(data: Batch, data_dir: str) -> np.ndarray:
    """[N] "dataset|sport|kind" of each video's source (its store's metadata), for per-group figures."""
    store = write_lib.read_info(data_dir).get("store", {})
    names = {}
    for i, source_id in enumerate(store.get("sources", [])):
        meta = store_lib.read_metadata(store["path"], source_id)
        field = meta.get("field", {"sport": "soccer", "kind": "metric"})
        names[i] = f"{meta.get('dataset', meta.get('provider', '?'))}|{field['sport']}|{field['kind']}"
    return np.array([names.get(int(i), "?|?|?") for i in data["source_index"]])


def group_rows(encoder, data: Batch, protocol: Protocol, methods: Sequence[str], data_dir: str) -> list[dict]:
    """Per group of the split with at least 2 videos (and more than one group in all): the protocol within the
    group (its videos the database and the donors), every method by exact search, and the random guess."""
    groups = video_groups(data, data_dir)
    rows = []
    if len(set(groups)) < 2:
        return rows
    for name in sorted(set(groups)):
        members = np.flatnonzero(groups == name)
        if len(members) < 2:
            continue
        subset = {k: v[members] for k, v in data.items()}
        vectors = database_and_queries(encoder, subset, protocol, methods)
        dataset, sport, kind = name.split("|")
        rows.append({
            "dataset": dataset, "sport": sport, "field": kind, "database_size": len(members),
            "chance": random_guess(len(members)),
            "methods": {method: _exact_results(vectors[method], protocol) for method in methods},
        })  # fmt: skip
    return rows


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
