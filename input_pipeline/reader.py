"""Stream a written split (TFRecord or TFDS-prepared) into global, data-sharded `jax.Array` batches.

Each host reads its own shards (`files[process_index::process_count]`), shuffles them and their records with a seed
derived from (seed, epoch), parses whole batches at once (every feature is raw bytes: decoding is a reshape) and hands
them to JAX as one global array per feature, sharded over the mesh's "data" axis. Every host takes the same number of
batches per epoch (the smallest host's share), so multi-host steps stay in lockstep. The position in the stream is
(epoch, batch in epoch): `state()` saves it, `restore()` rebuilds that epoch's dataset and skips to it. A record
TensorFlow cannot read or parse (a truncated or damaged shard) is a one-line UserError naming the shard.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import tensorflow as tf
from etils import epath
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from input_pipeline import examples as examples_lib
from input_pipeline import write as write_lib
from trajsv_jax.errors import UserError


def _hide_accelerators() -> None:
    """tf.data runs on the host CPU: never let TensorFlow take the GPU that JAX uses."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError as e:  # TF initialised its devices already
        if tf.config.get_visible_devices("GPU"):
            raise UserError(
                "TensorFlow initialised the GPU before input_pipeline.reader was imported. "
                "Import input_pipeline.reader before running any TensorFlow op."
            ) from e


_hide_accelerators()
STATE_FORMAT = "trajsv-reader-v1"
_SEED_MIX = 1_000_003  # per-epoch seeds: seed * _SEED_MIX mod 2**62 + 2 * epoch (+1 for the record shuffle)


@dataclasses.dataclass(frozen=True)
class RecordSource:
    """The record files of one split and their example counts, in a fixed order."""

    files: tuple[str, ...]
    shard_lengths: tuple[int, ...]
    where: str  # for messages


def tfrecord_source(data_dir: str | os.PathLike, split: str, config: examples_lib.ExampleConfig) -> RecordSource:
    """A split written by `write.write_tfrecords`, checked against the example config."""
    info = write_lib.read_info(data_dir)
    where = str(epath.Path(data_dir) / write_lib.INFO_FILE)
    write_lib.check_spec(info["features"], config, where)
    if split not in info["splits"] or not info["splits"][split]["shards"]:
        raise UserError(
            f"{where}: no shards for split {split!r} (has {sorted(info['splits'])}). Write it with `trajsv dataset`."
        )
    shards = info["splits"][split]["shards"]
    files = tuple(str(epath.Path(data_dir) / shard["file"]) for shard in shards)
    missing = [f for f in files if not epath.Path(f).exists()]
    if missing:
        raise UserError(
            f"{missing[0]}: listed in {where} but missing ({len(missing)} missing). "
            "Re-write the dataset with `trajsv dataset`."
        )
    return RecordSource(files, tuple(shard["num_examples"] for shard in shards), f"{data_dir} split {split}")


def tfds_source(builder: Any, split: str, config: examples_lib.ExampleConfig) -> RecordSource:
    """A split of a prepared `tfds_builder.TrajsvVideos` (same record layout: one raw-bytes value per feature)."""
    features = builder.info.features
    where = f"TFDS {builder.name} at {builder.data_dir}"
    have = {}
    for name, feature in features.items():
        have[name] = {"shape": list(feature.shape), "dtype": np.dtype(feature.np_dtype).name}
        if feature.get_serialized_info().shape != ():
            raise UserError(
                f"{where}: feature {name!r} is not bytes-encoded. Prepare it with tfds_builder.TrajsvVideos."
            )
    write_lib.check_spec(have, config, where)
    if split not in builder.info.splits or not builder.info.splits[split].num_shards:
        raise UserError(f"{where}: no shards for split {split!r}. Run download_and_prepare first.")
    info = builder.info.splits[split]
    return RecordSource(tuple(map(str, info.filepaths)), tuple(info.shard_lengths), f"{where} split {split}")


def parse_batch(serialized: tf.Tensor, config: examples_lib.ExampleConfig) -> dict[str, tf.Tensor]:
    """[B] serialized examples → dict of [B, ...] tensors."""
    spec = examples_lib.feature_spec(config)
    raw = tf.io.parse_example(serialized, {name: tf.io.FixedLenFeature([], tf.string) for name in spec})
    return {
        name: tf.reshape(tf.io.decode_raw(raw[name], tf.as_dtype(dtype)), [-1, *shape])
        for name, (shape, dtype) in spec.items()
    }


def _short(error: tf.errors.OpError) -> str:
    """TensorFlow's message without its function-node prefix and op suffix."""
    return re.sub(r"\{\{.*?\}\}\s*", "", error.message).split(" [Op:")[0].strip()[:200]


def data_error(
    error: tf.errors.OpError, files: Sequence[str], config: examples_lib.ExampleConfig, where: str
) -> UserError:
    """A UserError for a record that could not be read or parsed, naming the damaged shard: the one of `files` that
    fails when each is read again (only now that one failed, so a healthy run never pays for it)."""
    fix = "Re-write the dataset with `trajsv dataset`."
    for path in files:
        try:
            tf.data.TFRecordDataset(path).batch(256).map(lambda s: parse_batch(s, config)).reduce(0, lambda n, _: n)
        except tf.errors.OpError as e:
            return UserError(f"{path}: damaged shard ({_short(e)}). {fix}")
    return UserError(f"{where}: a record could not be read ({_short(error)}). {fix}")


def as_jax_dtypes(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """int64 fields narrowed to int32 when JAX runs without x64 (it would narrow them anyway; they fit by design)."""
    if jax.config.jax_enable_x64:
        return batch
    return {k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in batch.items()}


def ordered_batches(
    source: RecordSource, config: examples_lib.ExampleConfig, batch_size: int
) -> Iterator[dict[str, np.ndarray]]:
    """Every record of a split once, in file order, as numpy batches of `batch_size` (the last one may be shorter),
    with `as_jax_dtypes`. For embedding and evaluation on one host, where no example may be left out."""
    dataset = tf.data.TFRecordDataset(list(source.files)).batch(batch_size).prefetch(2)
    try:
        for serialized in dataset:
            yield as_jax_dtypes({k: v.numpy() for k, v in parse_batch(serialized, config).items()})
    except tf.errors.OpError as e:
        raise data_error(e, source.files, config, source.where) from None


def read_split(data_dir: str | os.PathLike, split: str) -> dict[str, np.ndarray]:
    """Every video of a split as one numpy batch (in file order)."""
    example = examples_lib.ExampleConfig(**write_lib.read_info(data_dir)["config"])
    source = tfrecord_source(data_dir, split, example)
    batches = list(ordered_batches(source, example, 256))
    if not batches:
        raise UserError(f"{source.where}: no videos in split {split!r}. Write the split with `trajsv dataset`.")
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def smallest_host_share(source: RecordSource, process_count: int) -> int:
    """Examples of the host with the fewest when each takes every `process_count`-th shard."""
    return min(sum(source.shard_lengths[p::process_count]) for p in range(process_count))


def host_share(source: RecordSource, process_index: int, process_count: int, local_batch: int) -> tuple[tuple, int]:
    """This host's files and the batches per epoch every host takes (the smallest host's share decides)."""
    if len(source.files) < process_count:
        raise UserError(
            f"{source.where}: {len(source.files)} shards for {process_count} processes; process {process_index} gets "
            f"none. Re-write the dataset with `trajsv dataset --shards {process_count}` (or more)."
        )
    smallest = smallest_host_share(source, process_count)
    if smallest < local_batch:
        raise UserError(
            f"{source.where}: the smallest host share has {smallest} examples, fewer than one per-host batch of "
            f"{local_batch}. Use a smaller global batch (--config.batch_size) or more data."
        )
    return source.files[process_index::process_count], smallest // local_batch


class BatchIterator:
    """Endless (or `num_epochs`) iterator of global batches: dicts of `jax.Array`s of leading dim `global_batch`."""

    def __init__(
        self,
        source: RecordSource,
        config: examples_lib.ExampleConfig,
        global_batch: int,
        mesh: Mesh,
        seed: int,
        *,
        shuffle: bool = True,
        shuffle_buffer: int = 256,
        num_epochs: int | None = None,
        prefetch: int = 2,
    ):
        count, index = jax.process_count(), jax.process_index()
        if "data" not in mesh.axis_names:
            raise UserError(f"mesh axes {mesh.axis_names}: the input pipeline shards batches over a 'data' axis.")
        if global_batch % count or global_batch % mesh.shape["data"]:
            raise UserError(
                f"global batch {global_batch}: must divide by the {count} processes and the mesh's data axis "
                f"({mesh.shape['data']}). Pick a multiple of {np.lcm(count, mesh.shape['data'])} (--config.batch_size)."
            )
        self.source, self.config, self.global_batch, self.mesh = source, config, global_batch, mesh
        self.local_batch = global_batch // count
        self.files, self.batches_per_epoch = host_share(source, index, count, self.local_batch)
        self.shuffle, self.shuffle_buffer = shuffle, shuffle_buffer
        self.num_epochs, self.prefetch = num_epochs, prefetch
        self.sharding = NamedSharding(mesh, PartitionSpec("data"))
        self._start(seed, 0, 0)

    def _epoch_records(self, epoch: tf.Tensor) -> tf.data.Dataset:
        """This host's serialized records of one epoch, in the epoch's order, cut to batches_per_epoch batches."""
        seed = (self.seed * _SEED_MIX) % (1 << 62) + 2 * epoch
        files = tf.data.Dataset.from_tensor_slices(list(self.files))
        if self.shuffle:
            files = files.shuffle(len(self.files), seed=seed)
        records = files.interleave(
            lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20),
            cycle_length=min(len(self.files), 4),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if self.shuffle:
            records = records.shuffle(self.shuffle_buffer, seed=seed + 1)
        return records.take(self.batches_per_epoch * self.local_batch)

    def _start(self, seed: int, epoch: int, batch: int) -> None:
        """(Re)build the stream so that the next batch is batch `batch` of epoch `epoch`."""
        self.seed, self.epoch, self.batch = seed, epoch, batch
        first = self._epoch_records(tf.constant(epoch, tf.int64)).skip(batch * self.local_batch)
        last = tf.int64.max if self.num_epochs is None else self.num_epochs
        rest = tf.data.Dataset.range(epoch + 1, last).flat_map(self._epoch_records)
        dataset = (
            first.concatenate(rest)
            .batch(self.local_batch, drop_remainder=True)
            .map(lambda s: parse_batch(s, self.config), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .prefetch(self.prefetch)
        )
        self._numpy = dataset.as_numpy_iterator()

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        if self.num_epochs is not None and self.epoch >= self.num_epochs:
            raise StopIteration
        try:
            local = next(self._numpy)
        except tf.errors.OpError as e:
            raise data_error(e, self.files, self.config, self.source.where) from None
        self.batch += 1
        if self.batch == self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        local = as_jax_dtypes(local)
        return {
            name: jax.make_array_from_process_local_data(self.sharding, value, (self.global_batch, *value.shape[1:]))
            for name, value in local.items()
        }

    def state(self) -> dict[str, Any]:
        """The position of the next batch, JSON-able."""
        return {
            "format": STATE_FORMAT,
            "seed": self.seed,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch,
            "batches_per_epoch": self.batches_per_epoch,
            "global_batch": self.global_batch,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a `state()`: the following batches are exactly those that followed it."""
        if state.get("format") != STATE_FORMAT:
            raise UserError(f"input iterator state {dict(state)}: not a {STATE_FORMAT} state.")
        for key in ("batches_per_epoch", "global_batch"):
            if state[key] != getattr(self, key):
                raise UserError(
                    f"input iterator state has {key}={state[key]}, this iterator {getattr(self, key)}: the data or "
                    "batch size changed since it was saved. Restore with the same data and global batch."
                )
        self._start(int(state["seed"]), int(state["epoch"]), int(state["batch_in_epoch"]))


def make_iterator(
    data_dir: str | os.PathLike,
    split: str,
    global_batch: int,
    mesh: Mesh,
    seed: int,
    config: examples_lib.ExampleConfig | None = None,
    **options: Any,
) -> BatchIterator:
    """Global batches of a split written by `write.write_tfrecords`; options: shuffle, shuffle_buffer, num_epochs."""
    config = config or examples_lib.ExampleConfig()
    return BatchIterator(tfrecord_source(data_dir, split, config), config, global_batch, mesh, seed, **options)


def make_tfds_iterator(
    builder: Any,
    split: str,
    global_batch: int,
    mesh: Mesh,
    seed: int,
    config: examples_lib.ExampleConfig | None = None,
    **options: Any,
) -> BatchIterator:
    """Global batches of a prepared TFDS `TrajsvVideos` split, through the same reading path as `make_iterator`."""
    config = config or examples_lib.ExampleConfig()
    return BatchIterator(tfds_source(builder, split, config), config, global_batch, mesh, seed, **options)
