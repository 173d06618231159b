"""Video vectors v and clip vectors c of a dataset split, from a trained run (`trajsv embed`).

Streams every example of the split once, in file order (the last batch padded and the padding dropped), through
`TrajSV.encode` on all local devices, and writes:

  videos.npy       float32 [N, out_dim]   unit-norm video vectors, row i is video_ids[i]
  video_ids.npy    int64 [N]              source_index << 16 | first clip (input_pipeline.examples)
  clips.npy        float32 [C, d]         clip vectors c = [t, y] of every valid clip
  clip_index.npy   int64 [C, 4]           columns: video_id, slot in the video, source_index, clip index in the source
  index.json       what was embedded: run, checkpoint step, data, split, counts, dims, source ids
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import Mesh
from tqdm import tqdm

from input_pipeline import examples as examples_lib
from input_pipeline import reader
from input_pipeline import write as write_lib
from trajsv_jax import checkpoints, prepare, sharding, tokenize, train
from trajsv_jax.errors import UserError
from trajsv_jax.models import TrajSV

CLIP_COLUMNS = ("video_id", "slot", "source_index", "clip_id")
Batch = dict[str, jax.Array]


def vocab_digest(data_dir: str | os.PathLike) -> str:
    """sha256 of a dataset's vocabulary file: token ids mean something only with the vocabulary they came from."""
    return hashlib.sha256((epath.Path(data_dir) / prepare.VOCAB_FILE).read_bytes()).hexdigest()


def load_trained(workdir: str | os.PathLike, which: str | int = "best") -> tuple[train.Setup, Any, int]:
    """(setup, params, step) of checkpoint `which` ("best", "latest" or a step) of a TrajSV training run."""
    workdir = epath.Path(workdir)
    config = run_config(workdir)
    setup = train.make_setup(config)
    mgr = checkpoints.manager(workdir / train.CHECKPOINT_DIR, read_only=True)
    step = checkpoints.choose_step(mgr, which, str(workdir))
    model = TrajSV(setup.model)
    tx = train.make_optimizer(config)
    shapes = jax.eval_shape(lambda: train.init_state(model, tx, setup.example, setup.step, config.seed))
    replicated = sharding.replicated(sharding.make_mesh())
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), shapes)
    restored = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
    return setup, restored.state.params, step


def run_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config a training run was started with (its run.json)."""
    run_file = epath.Path(workdir) / train.RUN_FILE
    if not run_file.exists():
        raise UserError(f"{workdir}: not a training run (no {train.RUN_FILE}). Train with `trajsv train --workdir`.")
    return ml_collections.ConfigDict(json.loads(run_file.read_text())["config"])


@dataclasses.dataclass(frozen=True)
class Encoder:
    """A trained run as retrieval and evaluation see it: what it was trained on, and batch → vectors.

    `encode` takes a global batch with the dataset's fields (tokens consistent with `vocab`), sharded over
    `mesh`'s data axis, and returns {"video": float32 [B, d] unit-norm, "clips": [B, n, d_clip]}, replicated.
    """

    kind: str  # "trajsv" | "play2vec"
    workdir: str
    step: int  # checkpoint step
    data_dir: str  # the dataset it was trained on
    example: examples_lib.ExampleConfig
    vocab: tokenize.Vocabulary
    mesh: Mesh
    encode: Callable[[Batch], dict[str, jax.Array]]

    def batch_size(self, requested: int) -> int:
        """`requested` rounded up to a multiple of the data devices, so every device gets the same rows."""
        return math.ceil(requested / self.mesh.shape["data"]) * self.mesh.shape["data"]

    def vectors(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`encode` of a host batch of `batch_size(...)` rows, back on the host."""
        return jax.device_get(self.encode(jax.device_put(batch, sharding.batch_sharding(self.mesh))))


def pad_rows(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """The batch with all-padding rows (zeros, so clip_mask False) appended up to `size` rows."""
    return {k: np.concatenate([v, np.zeros((size - len(v), *v.shape[1:]), v.dtype)]) for k, v in batch.items()}


def trajsv_encoder(workdir: str | os.PathLike, which: str | int = "best") -> Encoder:
    """The Encoder of a TrajSV training run's checkpoint `which`."""
    setup, params, step = load_trained(workdir, which)
    mesh = sharding.make_mesh()
    model = TrajSV(setup.model)
    encode = jax.jit(
        lambda b: model.apply({"params": params}, train.model_inputs(b, setup.step), method=TrajSV.encode),
        in_shardings=sharding.batch_sharding(mesh),
        out_shardings=sharding.replicated(mesh),
    )
    return Encoder("trajsv", str(workdir), step, setup.data_dir, setup.example, setup.vocab, mesh, encode)


def load_encoder(workdir: str | os.PathLike, which: str | int = "best") -> Encoder:
    """The Encoder of any training run (TrajSV, or a baseline named by its config's `kind`)."""
    kind = run_config(workdir).get("kind", "trajsv")
    if kind == "play2vec":
        from trajsv_jax import play2vec

        return play2vec.load_encoder(workdir, which)
    return trajsv_encoder(workdir, which)


def local_batches(data_dir: str | os.PathLike, split: str, example: examples_lib.ExampleConfig, batch_size: int):
    """(numpy batch of `batch_size`, number of real rows) over the whole split in file order; padding rows are
    all-padding examples (clip_mask False)."""
    source = reader.tfrecord_source(data_dir, split, example)
    for batch in reader.ordered_batches(source, example, batch_size):
        yield pad_rows(batch, batch_size), len(batch["clip_mask"])


def embed(
    workdir: str | os.PathLike,
    out: str | os.PathLike,
    data_dir: str | None = None,
    split: str = "test",
    which: str | int = "best",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Embed a split (of the run's own dataset unless `data_dir` is given) with a run's checkpoint; see module doc."""
    encoder = load_encoder(workdir, which)
    trained_on = encoder.data_dir
    data_dir = data_dir or trained_on
    info = write_lib.read_info(data_dir)
    if data_dir != trained_on and vocab_digest(data_dir) != vocab_digest(trained_on):
        raise UserError(
            f"{data_dir}: its vocabulary differs from the one {workdir} was trained with ({trained_on}); token ids "
            "would not match. Tokenize the new data with the training vocabulary."
        )
    batch_size = encoder.batch_size(batch_size)
    total = info["splits"].get(split, {}).get("num_examples", 0)
    videos, video_ids, clips, clip_index = [], [], [], []
    with tqdm(total=total, desc=f"embed {split}", unit="video") as bar:
        for batch, rows in local_batches(data_dir, split, encoder.example, batch_size):
            vectors = encoder.vectors(batch)
            valid = batch["clip_mask"][:rows]
            ids = batch["video_id"][:rows].astype(np.int64)
            videos.append(vectors["video"][:rows])
            video_ids.append(ids)
            clips.append(vectors["clips"][:rows][valid].astype(np.float32))
            video, slot = np.nonzero(valid)
            clip_index.append(
                np.stack([ids[video], slot, batch["source_index"][:rows][video], batch["clip_ids"][:rows][valid]], 1)
            )
            bar.update(rows)
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
    return index | {"out": str(out)}


def report(index: dict[str, Any]) -> str:
    return (
        f"embedded {index['videos']} videos ({index['video_dim']}-d) and {index['clips']} clips "
        f"({index['clip_dim']}-d) of {index['data_dir']} split {index['split']} with checkpoint step "
        f"{index['checkpoint_step']} of {index['run']} -> {index['out']}"
    )


def read_embeddings(out: str | os.PathLike) -> dict[str, Any]:
    """The arrays and index written by `embed`."""
    out = Path(out)
    if not (out / "index.json").exists():
        raise UserError(f"{out}: no embeddings (no index.json). Write them with `trajsv embed --out {out}`.")
    index = json.loads((out / "index.json").read_text())
    return {"index": index, **{name: np.load(out / file) for name, file in index["files"].items()}}
