"""`trajsv index` and `trajsv search`: a ScaNN index of a run's video vectors, and queries against it.

The index is built from `trajsv embed` output and records where its vectors came from (run, checkpoint, dataset,
split); `search` re-loads that run's checkpoint to embed the query, a video of the indexed dataset (by id) or the
videos of a new tracking file (ingested, cut and tokenized with the run's vocabulary on the fly), and draws the
query and its top matches as plays on the pitch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from input_pipeline import write as write_lib
from trajsv_jax import clips as clips_lib
from trajsv_jax import embed, evaluate, prepare, retrieval
from trajsv_jax import store as store_lib
from trajsv_jax.errors import UserError


def build(embeddings: str | os.PathLike, out: str | os.PathLike, settings: retrieval.IndexSettings) -> str:
    """Index the video vectors written by `trajsv embed` in `embeddings`; returns a report line."""
    vectors = embed.read_embeddings(embeddings)
    meta = vectors["index"]
    provenance = {
        "run": meta["run"],
        "checkpoint_step": meta["checkpoint_step"],
        "data_dir": meta["data_dir"],
        "split": meta["split"],
        "vocab_digest": embed.vocab_digest(meta["data_dir"]),
        "embeddings": str(embeddings),
    }
    index = retrieval.build_index(vectors["videos"], vectors["video_ids"], settings, provenance)
    index.save(out)
    m = index.manifest
    return (
        f"indexed {m['count']} video vectors ({m['dim']}-d) of {meta['data_dir']} split {meta['split']} "
        f"(run {meta['run']} step {meta['checkpoint_step']}) with ScaNN {m['settings']['mode']} -> {out}"
    )


def _indexed_video(data: dict, video_id: int, provenance: dict) -> dict:
    """The one-video batch of `video_id` from the indexed split's videos `data`."""
    rows = np.flatnonzero(data["video_id"] == video_id)
    if not len(rows):
        some = ", ".join(str(i) for i in data["video_id"][:5])
        raise UserError(
            f"video id {video_id}: not in {provenance['data_dir']} split {provenance['split']} "
            f"(ids there: {some}, …; see video_ids.npy of the embeddings)."
        )
    return {k: v[rows] for k, v in data.items()}


def _tracking_videos(encoder: embed.Encoder, tracking: dict, tmp: Path) -> dict:
    """The videos of a tracking file: ingested into `tmp`, tokenized, cut into the run's example shape."""
    clip_config = clips_lib.ClipConfig()
    print(prepare.ingest(tracking["provider"], tracking["files"], tmp / "store", None, clip_config), flush=True)
    print(prepare.tokenize(tmp / "store", encoder.vocab.cell, encoder.example.segment_seconds), flush=True)
    n, k = encoder.example.clips_per_video, encoder.example.max_objects
    print(prepare.dataset(tmp / "store", tmp / "data", n, k, train_fraction=1.0, shards=1), flush=True)
    return evaluate.read_split(tmp / "data", "train")


def video_positions(sources: list[store_lib.Source], batch: dict, row: int) -> tuple[np.ndarray, np.ndarray]:
    """The frames [T, K, 2] of a video's clips, from its store's sources, and the objects' roles."""
    source = sources[int(batch["source_index"][row])]
    clip_ids = [int(c) for c in batch["clip_ids"][row] if c >= 0]
    return np.concatenate([source.clip(c) for c in clip_ids]), source.object_role


def search(
    index_dir: str | os.PathLike,
    video_id: int | None = None,
    tracking: dict | None = None,
    k: int = 5,
    plot: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Top-k videos of the index for each query video (itself left out when it is indexed); a pitch plot."""
    index = retrieval.load_index(index_dir)
    provenance = index.manifest["provenance"]
    encoder = embed.load_encoder(provenance["run"], provenance["checkpoint_step"])
    # the indexed split is read once: for the query by id and for the matches' plays
    indexed = evaluate.read_split(provenance["data_dir"], provenance["split"]) if video_id is not None or plot else None
    with tempfile.TemporaryDirectory(prefix="trajsv_query_") as tmp:
        if video_id is not None:
            batch, query_store = _indexed_video(indexed, video_id, provenance), None
        else:
            batch, query_store = _tracking_videos(encoder, tracking, Path(tmp)), Path(tmp) / "store"
        vectors = evaluate.database_and_queries(encoder, batch, evaluate.Protocol(deltas=()))[0]
        if vectors.shape[1] != index.manifest["dim"]:
            raise UserError(
                f"{index_dir}: holds {index.manifest['dim']}-d vectors, but run {provenance['run']} gives "
                f"{vectors.shape[1]}-d ones. Rebuild the index with `trajsv index` from this run's embeddings."
            )
        ids, scores = index.search(vectors, k + 1)
        queries = []
        for q, query_id in enumerate(batch["video_id"]):
            keep = ids[q] != query_id
            hits = {"ids": ids[q][keep][:k].tolist(), "scores": scores[q][keep][:k].tolist()}
            queries.append({"video_id": int(query_id), **hits})
        result = {"index": str(index_dir), "database_size": index.manifest["count"], "queries": queries}
        if plot:
            indexed_sources = store_lib.read_store(write_lib.read_info(provenance["data_dir"])["store"]["path"])
            query_sources = indexed_sources if query_store is None else store_lib.read_store(query_store)
            result["plot"] = plot_first(plot, (batch, query_sources), queries[0], (indexed, indexed_sources))
    return result


def plot_first(path, query_videos: tuple, query: dict, indexed_videos: tuple) -> str:
    """Pitch plot of the first query video and its matches; each videos argument is (batch, store sources)."""
    from trajsv_jax import plots

    positions, roles = video_positions(query_videos[1], query_videos[0], 0)
    plays, role_list = [(f"query: video {query['video_id']}", positions)], [roles]
    data, sources = indexed_videos
    for rank, (vid, s) in enumerate(zip(query["ids"], query["scores"], strict=True), 1):
        row = int(np.flatnonzero(data["video_id"] == vid)[0])
        positions, roles = video_positions(sources, data, row)
        plays.append((f"#{rank}: video {vid} (score {s:.3f})", positions))
        role_list.append(roles)
    return plots.plot_matches(path, plays[0], plays[1:], role_list)


def report(result: dict[str, Any]) -> str:
    lines = [f"searched {result['index']} ({result['database_size']} videos):"]
    for q in result["queries"]:
        hits = ", ".join(f"{i} ({s:.3f})" for i, s in zip(q["ids"], q["scores"], strict=True))
        lines.append(f"  video {q['video_id']}: {hits}")
    if "plot" in result:
        lines.append(f"query and matches on the pitch: {result['plot']}")
    return "\n".join(lines)
