"""Video vectors v and clip vectors c of a dataset split, from a trained run (`trajsv embed`), and the one loop that
encodes host batches with a run (`encode`), used by embedding, evaluation and search alike.

`embed_split` streams every example of the split once, in file order (the last batch padded and the padding
dropped), through the run's encoder on all local devices, and writes:

  videos.npy       float32 [N, out_dim]   unit-norm video vectors, row i is video_ids[i]
  video_ids.npy    int64 [N]              source_index << 16 | first clip (input_pipeline.examples)
  clips.npy        float32 [C, d]         clip vectors c = [t, y] of every valid clip
  clip_index.npy   int64 [C, 4]           columns: video_id, slot in the video, source_index, clip index in the source
  index.json       what was embedded: run, checkpoint step, data, split, counts, dims, source ids, and the sha256
                   of each array file and of itself (written last; `read_embeddings` checks them all)

under the folder's lock (one writer at a time). Non-finite vectors (a run whose weights are NaN) are refused, not
written.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
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
from trajsv_jax import files
from trajsv_jax.data import store as store_lib
from trajsv_jax.data import tokenize
from trajsv_jax.errors import UserError
from trajsv_jax.retrieval import index as index_lib
from trajsv_jax.training import trainers, variants

CLIP_COLUMNS = ("video_id", "slot", "source_index", "clip_id")
INDEX_FILE = "index.json"
FORMAT_VERSION = 2  # 2: sha256 of the arrays and of index.json (1: none)
ARRAYS = {"videos": np.float32, "video_ids": np.int64, "clips": np.float32, "clip_index": np.int64}
Batch = dict[str, np.ndarray]


def vocab_digest(data_dir: str | os.PathLike) -> str:
    """sha256 of a dataset's vocabulary file: token ids mean something only with the vocabulary they came from."""
    return hashlib.sha256((epath.Path(data_dir) / store_lib.VOCAB_FILE).read_bytes()).hexdigest()


def non_finite_rows(array: np.ndarray) -> int:
    """How many rows of `array` hold a NaN or an inf."""
    return int((~np.isfinite(array.reshape(len(array), -1)).all(1)).sum())


def refuse_non_finite(encoder: trainers.Encoder, vectors: dict[str, np.ndarray], command: str) -> None:
    """UserError unless every vector a run gave is finite: a run whose weights went NaN gives NaN vectors, which no
    index can rank. `vectors`: {what: [N, ...]}; `command`: the `trajsv` command to pick another checkpoint with."""
    bad = {what: non_finite_rows(array) for what, array in vectors.items()}
    if any(bad.values()):
        counts = " and ".join(f"{n} of {len(vectors[what])} {what}" for what, n in bad.items())
        raise UserError(
            f"{encoder.workdir} checkpoint step {encoder.step}: {counts} are NaN or inf, nothing written. Its weights "
            f"are not finite: pick another checkpoint (`trajsv {command} --checkpoint STEP`) or retrain "
            "(`trajsv train`)."
        )


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


@functools.partial(jax.jit, static_argnames=("grids", "unknown"))
def retokenized(
    batch: Batch, vocab: tuple[jax.Array, jax.Array], grids: tokenize.GridLike, unknown: int | None = None
) -> Batch:
    """The batch with its tokens redone from its positions with a vocabulary (its `layout` as `grids`, its
    `unknown_token`), so any data reads as a run's."""
    return {**batch, "tokens": variants.retokenize(batch, *vocab, grids, unknown)}


def with_run_tokens(encoder: trainers.Encoder, batch: Batch) -> Batch:
    """`retokenized` with the encoder's own vocabulary, back on the host."""
    vocab = tuple(jax.numpy.asarray(x) for x in encoder.vocab.device_arrays())
    return jax.device_get(retokenized(batch, vocab, encoder.vocab.layout, encoder.vocab.unknown_token))


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
    out = Path(out)
    with files.locked(out, "embed"):
        return _embed_split(workdir, out, data_dir, split, which, batch_size)


def _embed_split(
    workdir: str | os.PathLike, out: Path, data_dir: str | None, split: str, which: str | int, batch_size: int
) -> Embeddings:
    """`embed_split` inside the lock of `out`."""
    encoder = trainers.load_encoder(workdir, which)
    trained_on = encoder.data_dir
    data_dir = data_dir or trained_on
    info = write_lib.read_info(data_dir)
    if data_dir != trained_on and vocab_digest(data_dir) != vocab_digest(trained_on):
        raise UserError(
            f"{data_dir}: its vocabulary differs from the one {workdir} was trained with ({trained_on}); token ids "
            f"would not match. Tokenize the new data with the training vocabulary (`trajsv tokenize STORE "
            f"--vocabulary {epath.Path(trained_on) / store_lib.VOCAB_FILE}`), then `trajsv dataset`."
        )
    total = info["splits"].get(split, {}).get("num_examples", 0)
    source = reader.tfrecord_source(data_dir, split, encoder.example)
    batches = reader.ordered_batches(source, encoder.example, encoder.batch_size(batch_size))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    with tqdm(total=total, desc=f"embed {split}", unit="video") as bar:
        for batch, vectors in encode(encoder, batches, batch_size):
            valid = batch["clip_mask"]
            ids = batch["video_id"].astype(np.int64)
            video, slot = np.nonzero(valid)
            parts["videos"].append(vectors["video"])
            parts["video_ids"].append(ids)
            parts["clips"].append(vectors["clips"][valid])
            parts["clip_index"].append(
                np.stack([ids[video], slot, batch["source_index"][video], batch["clip_ids"][valid]], 1)
            )
            bar.update(len(ids))
    if not parts["videos"]:
        raise UserError(f"{data_dir}: split {split!r} has no videos. Write it with `trajsv dataset`.")
    arrays = {name: np.concatenate(parts[name]).astype(dtype) for name, dtype in ARRAYS.items()}
    refuse_non_finite(encoder, {"video vectors": arrays["videos"], "clip vectors": arrays["clips"]}, "embed")
    (out / INDEX_FILE).unlink(missing_ok=True)  # until the new one is written last, the folder does not load
    for name, value in arrays.items():
        files.atomic_npy(out / f"{name}.npy", value)
    index = {
        "version": FORMAT_VERSION,
        "run": str(workdir) if trainers.is_remote(workdir) else os.path.abspath(workdir),  # search opens it anywhere
        "checkpoint_step": encoder.step,
        "data_dir": str(data_dir),
        "split": split,
        "videos": len(arrays["videos"]),
        "clips": len(arrays["clips"]),
        "video_dim": arrays["videos"].shape[1],
        "clip_dim": arrays["clips"].shape[1],
        "clip_columns": list(CLIP_COLUMNS),
        "sources": info.get("store", {}).get("sources", []),
        "files": files.checksums(out, [f"{name}.npy" for name in arrays]),
    }
    index = index_lib.sealed(index)
    files.atomic_json(out / INDEX_FILE, index)
    return Embeddings(index, str(out))


def read_embeddings(out: str | os.PathLike) -> dict[str, Any]:
    """The arrays and index written by `embed_split`, checked: every checksum, dtypes, finite vectors."""
    out = Path(out)
    path = out / INDEX_FILE
    if not path.exists():
        raise UserError(f"{out}: no embeddings (no {INDEX_FILE}). Write them with `trajsv embed --out {out}`.")
    fix = f"Re-embed with `trajsv embed --out {out}`."
    index = files.read_json(path, fix, "embeddings index")
    if not isinstance(index, dict) or index.get("version") != FORMAT_VERSION:
        found = index.get("version", 1) if isinstance(index, dict) else None
        raise UserError(f"{path}: embeddings format version {found!r}, this trajsv reads {FORMAT_VERSION}. {fix}")
    index_lib.verify_folder(path, index, tuple(f"{name}.npy" for name in ARRAYS), fix)
    arrays = {name: index_lib.load_array(out / f"{name}.npy", dtype, fix) for name, dtype in ARRAYS.items()}
    for name in ("videos", "clips"):
        bad = non_finite_rows(arrays[name])
        if bad:
            raise UserError(
                f"{out / name}.npy: {bad} of {len(arrays[name])} rows are NaN or inf (non-finite weights). {fix}"
            )
    return {"index": index, **arrays}
