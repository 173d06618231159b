"""`trajsv index` and `trajsv search`: a ScaNN index of a run's video vectors, and queries against it.

The index is built from `trajsv embed` output and records where its vectors came from (run, checkpoint, dataset,
split); `search` re-loads that run's checkpoint to embed the query, a video of the indexed dataset (by id) or the
videos of a new tracking file (ingested, cut and tokenized with the run's vocabulary on the fly), and draws the
query and its top matches as plays on the pitch. The index also records the checksums of the embeddings it was
built from: `search` refuses an index whose embeddings have changed since (re-embedded, or damaged).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from input_pipeline import reader
from input_pipeline import write as write_lib
from trajsv_jax import files, plots, prepare
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.data.field import Field
from trajsv_jax.errors import UserError
from trajsv_jax.retrieval import embed
from trajsv_jax.retrieval import index as index_lib
from trajsv_jax.training import trainers

log = logging.getLogger(__name__)
PROVENANCE = ("run", "checkpoint_step", "data_dir", "split", "embeddings", "embeddings_files")  # `build` records
INDEXED_FILES = ("videos.npy", "video_ids.npy")  # the embeddings an index is built from (search re-hashes only them)


@dataclasses.dataclass(frozen=True)
class Indexed:
    """An index written by `build`."""

    manifest: dict[str, Any]
    out: str

    def report(self) -> str:
        m, p = self.manifest, self.manifest["provenance"]
        return (
            f"indexed {m['count']} video vectors ({m['dim']}-d) of {p['data_dir']} split {p['split']} "
            f"(run {p['run']} step {p['checkpoint_step']}) with ScaNN {m['settings']['mode']} -> {self.out}"
        )


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Top-k matches of each query video; `plot`: the first query and its matches on the pitch."""

    index: str
    database_size: int
    queries: list[dict[str, Any]]  # {"video_id", "ids", "scores"}
    plot: str | None = None

    def report(self) -> str:
        lines = [f"searched {self.index} ({self.database_size} videos):"]
        for q in self.queries:
            hits = ", ".join(f"{i} ({s:.3f})" for i, s in zip(q["ids"], q["scores"], strict=True))
            lines.append(f"  video {q['video_id']}: {hits}")
        if self.plot:
            lines.append(f"query and matches on the pitch: {self.plot}")
        return "\n".join(lines)


def build(embeddings: str | os.PathLike, out: str | os.PathLike, settings: index_lib.IndexSettings) -> Indexed:
    """Index the video vectors written by `trajsv embed` in `embeddings` (checked), under the lock of `out`."""
    with files.locked(out, "index"):
        vectors = embed.read_embeddings(embeddings)
        meta = vectors["index"]
        provenance = {
            "run": meta["run"],
            "checkpoint_step": meta["checkpoint_step"],
            "data_dir": meta["data_dir"],
            "split": meta["split"],
            "vocab_digest": embed.vocab_digest(meta["data_dir"]),
            "embeddings": os.path.abspath(embeddings),  # absolute: `search` checks them from any directory
            "embeddings_files": {name: meta["files"][name] for name in INDEXED_FILES},
        }
        index = index_lib.build_index(vectors["videos"], vectors["video_ids"], settings, provenance)
        index.save(out)
    return Indexed(index.manifest, str(out))


def _provenance(index: index_lib.Index) -> dict[str, Any]:
    """What the index was built from; its embeddings, where still present, unchanged since."""
    provenance = index.manifest.get("provenance")
    missing = [key for key in PROVENANCE if not isinstance(provenance, dict) or key not in provenance]
    if missing:
        raise UserError(f"{index.where}: its manifest has no {', '.join(missing)}. {index_lib.REBUILD}")
    embeddings = Path(provenance["embeddings"])
    if (embeddings / embed.INDEX_FILE).exists():
        rebuild = f"`trajsv index --embeddings {embeddings} --out {index.where}`"
        fix = f"{index.where} was built from other embeddings: rebuild it with {rebuild}."
        files.verify_checksums(embeddings, provenance["embeddings_files"], str(embeddings), fix)
    return provenance


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


def _tracking_videos(encoder: trainers.Encoder, tracking: dict, tmp: Path) -> dict:
    """The videos of a tracking file: ingested into `tmp`, tokenized, cut into the run's example shape."""
    clip_config = clips_lib.ClipConfig()
    log.info(prepare.ingest_source(tracking["provider"], tracking["files"], tmp / "store", None, clip_config).report())
    encoder.vocab.save(tmp / "vocab.npz")  # frozen: the file's segments get the run's tokens and field grids
    n, k = encoder.example.clips_per_video, encoder.example.max_objects
    split = prepare.Split(n, train_fraction=1.0)
    seconds = encoder.example.segment_seconds
    log.info(prepare.tokenize_store(tmp / "store", seconds=seconds, vocabulary=tmp / "vocab.npz", split=split).report())
    data = prepare.write_dataset(tmp / "store", tmp / "data", objects=k, shards=1, fps=encoder.example.fps)
    log.info(data.report())
    return reader.read_split(tmp / "data", "train")


def video_positions(sources: list[store_lib.Source], batch: dict, row: int) -> tuple[np.ndarray, np.ndarray, Field]:
    """The frames [T, K, 2] of a video's clips, from its store's sources, the objects' roles and the field. Its
    source and clip ids come from the dataset's records: checked against the store."""
    where = int(batch["source_index"][row])
    clip_ids = [int(c) for c in batch["clip_ids"][row] if c >= 0]
    if not 0 <= where < len(sources) or any(c >= sources[where].num_clips for c in clip_ids):
        raise UserError(
            f"video {int(batch['video_id'][row])}: source_index {where}, clips {clip_ids} are not in its store "
            f"({len(sources)} sources): the dataset no longer matches its store. Re-write it with `trajsv dataset`."
        )
    source = sources[where]
    return np.concatenate([source.clip(c) for c in clip_ids]), source.object_role, source.field


def find_similar(
    index_dir: str | os.PathLike,
    video_id: int | None = None,
    tracking: dict | None = None,
    k: int = 5,
    plot: str | os.PathLike | None = None,
) -> SearchResult:
    """Top-k videos of the index for each query video (itself left out when it is indexed); a pitch plot."""
    if k < 1:
        raise UserError(f"k={k}: ask for at least one match (`trajsv search -k 1` or more).")
    index = index_lib.load_index(index_dir)
    provenance = _provenance(index)
    encoder = trainers.load_encoder(provenance["run"], provenance["checkpoint_step"])
    # the indexed split is read once: for the query by id and for the matches' plays
    indexed = reader.read_split(provenance["data_dir"], provenance["split"]) if video_id is not None or plot else None
    with tempfile.TemporaryDirectory(prefix="trajsv_query_") as tmp:
        if video_id is not None:
            batch, query_store = _indexed_video(indexed, video_id, provenance), None
        else:
            batch, query_store = _tracking_videos(encoder, tracking, Path(tmp)), Path(tmp) / "store"
        vectors = embed.encode_videos(encoder, embed.with_run_tokens(encoder, batch))
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
        result = SearchResult(str(index_dir), index.manifest["count"], queries)
        if plot:
            indexed_sources = store_lib.read_store(write_lib.read_info(provenance["data_dir"])["store"]["path"])
            query_sources = indexed_sources if query_store is None else store_lib.read_store(query_store)
            png = plot_first(plot, (batch, query_sources), queries[0], (indexed, indexed_sources))
            result = dataclasses.replace(result, plot=png)
    return result


def plot_first(path, query_videos: tuple, query: dict, indexed_videos: tuple) -> str:
    """Pitch plot of the first query video and its matches; each videos argument is (batch, store sources)."""

    positions, roles, field = video_positions(query_videos[1], query_videos[0], 0)
    plays, role_list, fields = [(f"query: video {query['video_id']}", positions)], [roles], [field]
    data, sources = indexed_videos
    for rank, (vid, s) in enumerate(zip(query["ids"], query["scores"], strict=True), 1):
        rows = np.flatnonzero(data["video_id"] == vid)
        if not len(rows):
            raise UserError(
                f"video {vid}: in the index but not in the indexed split (the dataset was re-written since). "
                "Re-embed it with `trajsv embed`, then rebuild the index with `trajsv index`."
            )
        positions, roles, field = video_positions(sources, data, int(rows[0]))
        plays.append((f"#{rank}: video {vid} (score {s:.3f})", positions))
        role_list.append(roles)
        fields.append(field)
    files.atomic_write(path, lambda tmp: plots.plot_matches(tmp, plays[0], plays[1:], role_list, fields))
    return str(path)
