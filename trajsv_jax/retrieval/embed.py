"""Video vectors v and clip vectors c of a dataset split, from a trained run (`trajsv embed`), and the one loop that
encodes host batches with a run (`encode`), used by embedding, evaluation and search alike.

`embed_split` streams every example of the split once, in file order (the last batch padded and the padding
dropped), through the run's encoder on all local devices, and writes:

  videos.npy       float32 [N, out_dim]   unit-norm video vectors, row i is video_ids[i]
  video_ids.npy    int64 [N]              source_index << 16 | first clip (input_pipeline.examples)
  clips.npy        float32 [C, d]         clip vectors c = [t, y] of every valid clip
  clip_index.npy   int64 [C, 4]           columns: video_id, slot in the video, source_index, clip index in the source
  index.json       what was embedded: run, checkpoint step, data, split, counts, dims, source ids
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
from etils import epath
from tqdm import tqdm

from input_pipeline import reader
from input_pipeline import write as write_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.errors import UserError
from trajsv_jax.training import trainers, variants

CLIP_COLUMNS = ("video_id", "slot", "source_index", "clip_id")
Batch = dict[str, np.ndarray]


def vocab_digest(data_dir: str | os.PathLike) -> str:
    """sha256 of a dataset's vocabulary file: token ids mean something only with the vocabulary they came from."""
    return hashlib.sha256((epath.Path(data_dir) / store_lib.VOCAB_FILE).read_bytes()).hexdigest()


def pad_rows(batch: Batch, size: int) -> Batch:
    """The batch with all-padding rows (zeros, so clip_mask False) appended up to `size` rows."""
    return {k: np.concatenate([v, np.zeros((size - len(v), *v.shape[1:]), v.dtype)]) for k, v in batch.items()}


def encode(encoder: trainers.Encoder, batches: Iterable[Batch], batch_size: int = 64) -> Iterator[tuple[Batch, dict]]:
    """(rows, their vectors {"video", "clips"}) for every host batch, encoded in padded batches of
    `encoder.batch_size(batch_size)` rows over the encoder's mesh (a longer batch is cut into such pieces)."""
    size = encoder.batch_size(batch_size)
    for batch in batches:
        for start in range(0, len(batch["clip_mask"]), size):
            part = {k: v[start : start + size] for k, v in batch.items()}
            rows = len(part["clip_mask"])
            vectors = encoder.vectors(pad_rows(part, size))
            yield part, {k: np.asarray(v)[:rows] for k, v in vectors.items()}


def encode_videos(encoder: trainers.Encoder, batch: Batch, batch_size: int = 64) -> np.ndarray:
    """float32 [N, d] video vectors of one numpy batch of N videos."""
    return np.concatenate([v["video"] for _, v in encode(encoder, [batch], batch_size)]).astype(np.float32)


@functools.partial(jax.jit, static_argnames="cell")
def retokenized(batch: Batch, vocab: tuple[jax.Array, jax.Array], cell: float) -> Batch:
    """The batch with its tokens redone from its positions with a vocabulary (so any data reads as a run's)."""
    return {**batch, "tokens": variants.retokenize(batch, *vocab, cell)}


def with_run_tokens(encoder: trainers.Encoder, batch: Batch) -> Batch:
    """`retokenized` with the encoder's own vocabulary, back on the host."""
    vocab = tuple(jax.numpy.asarray(x) for x in encoder.vocab.device_arrays())
    return jax.device_get(retokenized(batch, vocab, encoder.vocab.cell))


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """What `embed_split` wrote (index.json) and where."""

    index: dict[str, Any]
    out: str

    def report(self) -> str:
        i = self.index
        return (
            f"embedded {i['videos']} videos ({i['video_dim']}-d) and {i['clips']} clips ({i['clip_dim']}-d) of "
            f"{i['data_dir']} split {i['split']} with checkpoint step {i['checkpoint_step']} of {i['run']} "
            f"-> {self.out}"
        )


def embed_split(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    data_dir: str | None = None,
    split: str = "test",
    which: str | int = "best",
    batch_size: int = 64,
) -> Embeddings:
    """Embed a split (of the run's own dataset unless `data_dir` is given) with a run's checkpoint; see module doc."""
    encoder = trainers.load_encoder(workdir, which)
    trained_on = encoder.data_dir
    data_dir = data_dir or trained_on
    info = write_lib.read_info(data_dir)
    if data_dir != trained_on and vocab_digest(data_dir) != vocab_digest(trained_on):
        raise UserError(
            f"{data_dir}: its vocabulary differs from the one {workdir} was trained with ({trained_on}); token ids "
            "would not match. Tokenize the new data with the training vocabulary."
        )
    total = info["splits"].get(split, {}).get("num_examples", 0)
    source = reader.tfrecord_source(data_dir, split, encoder.example)
    batches = reader.ordered_batches(source, encoder.example, encoder.batch_size(batch_size))
    videos, video_ids, clips, clip_index = [], [], [], []
    with tqdm(total=total, desc=f"embed {split}", unit="video") as bar:
        for batch, vectors in encode(encoder, batches, batch_size):
            valid = batch["clip_mask"]
            ids = batch["video_id"].astype(np.int64)
            videos.append(vectors["video"])
            video_ids.append(ids)
            clips.append(vectors["clips"][valid].astype(np.float32))
            video, slot = np.nonzero(valid)
            clip_index.append(np.stack([ids[video], slot, batch["source_index"][video], batch["clip_ids"][valid]], 1))
            bar.update(len(ids))
    arrays = {
        "videos": np.concatenate(videos),
        "video_ids": np.concatenate(video_ids),
        "clips": np.concatenate(clips),
        "clip_index": np.concatenate(clip_index).astype(np.int64),
    }
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, value in arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, value)
        (out / f"{name}.npy").write_bytes(buffer.getvalue())
    index = {
        "run": str(workdir),
        "checkpoint_step": encoder.step,
        "data_dir": str(data_dir),
        "split": split,
        "videos": len(arrays["videos"]),
        "clips": len(arrays["clips"]),
        "video_dim": arrays["videos"].shape[1],
        "clip_dim": arrays["clips"].shape[1],
        "clip_columns": list(CLIP_COLUMNS),
        "sources": info.get("store", {}).get("sources", []),
        "files": {name: f"{name}.npy" for name in arrays},
    }
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return Embeddings(index, str(out))


def read_embeddings(out: str | os.PathLike) -> dict[str, Any]:
    """The arrays and index written by `embed_split`."""
    out = Path(out)
    if not (out / "index.json").exists():
        raise UserError(f"{out}: no embeddings (no index.json). Write them with `trajsv embed --out {out}`.")
    index = json.loads((out / "index.json").read_text())
    return {"index": index, **{name: np.load(out / file) for name, file in index["files"].items()}}
