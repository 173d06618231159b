"""Examples → sharded TFRecord files plus `dataset_info.json`, the format `reader.py` streams from.

A dataset directory holds, per split, `{split}-{i:05d}-of-{n:05d}.tfrecord` files of `tf.train.Example`s whose features
are each one bytes value: the raw little-endian bytes of one array of `examples.feature_spec` (decoding is a reshape,
no per-element parsing). `dataset_info.json` records the format version, the example config, the feature shapes and
dtypes, and per split its shard files, example counts and drop stats. Files are written under temporary names and
renamed into place, so a failed run never leaves a half-written split.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from etils import epath
from tqdm import tqdm

from input_pipeline import examples as examples_lib
from trajsv_jax import files
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.data import tokenize
from trajsv_jax.errors import UserError

FORMAT_NAME = "trajsv-videos"
FORMAT_VERSION = 1
INFO_FILE = "dataset_info.json"


def spec_json(config: examples_lib.ExampleConfig) -> dict[str, dict[str, Any]]:
    """The feature spec as written to dataset_info.json."""
    return {
        name: {"shape": list(shape), "dtype": dtype.name}
        for name, (shape, dtype) in examples_lib.feature_spec(config).items()
    }


def check_spec(features: Mapping[str, Any], config: examples_lib.ExampleConfig, where: str) -> None:
    """UserError if `features` (dataset_info.json form) differ from the example config's spec."""
    want = spec_json(config)
    for name in [*want, *(name for name in features if name not in want)]:
        if features.get(name) != want.get(name):
            have = features.get(name)
            raise UserError(
                f"{where}: feature {name!r} is {have and (have['shape'], have['dtype'])}, the example config needs "
                f"{want.get(name) and (want[name]['shape'], want[name]['dtype'])}. "
                "Use the config the data was written with, or re-write the data with this one (`trajsv dataset "
                f"STORE --out DIR --fps {config.fps:g}` writes it at this config's frame rate)."
            )


def read_info(data_dir: str | os.PathLike) -> dict[str, Any]:
    """dataset_info.json of a dataset directory, checked for format and version."""
    path = epath.Path(data_dir) / INFO_FILE  # epath: the dataset may be in a bucket (gs://)
    fix = f"Write it with `trajsv dataset STORE --out {data_dir}`."
    if not epath.Path(data_dir).is_dir():
        raise UserError(f"{data_dir}: no such dataset directory. {fix}")
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {data_dir} is not a trajsv video dataset. {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e}). {fix}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT_NAME or info.get("version") != FORMAT_VERSION:
        found = (info.get("format"), info.get("version")) if isinstance(info, dict) else (type(info).__name__, None)
        raise UserError(
            f"{path}: format {found[0]!r} version {found[1]}, this reader reads {FORMAT_NAME!r} version "
            f"{FORMAT_VERSION}. {fix}"
        )
    try:
        if not isinstance(info["features"], dict):
            raise TypeError("`features` is not a mapping")
        for split in info["splits"].values():  # shard names come from the file: never a path out of the dataset
            for shard in split["shards"]:
                files.checked_name(shard["file"], str(path), fix)
                if not isinstance(shard["num_examples"], int) or shard["num_examples"] < 0:
                    raise TypeError(f"num_examples {shard['num_examples']!r}")
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: malformed dataset info ({type(e).__name__}: {e}). {fix}") from None
    return info


def has_visual(info: dict[str, Any]) -> bool:
    """Whether any split of a dataset (its dataset_info.json) holds clips with frozen visual features."""
    return any(split.get("stats", {}).get("visual_clips", 0) for split in info["splits"].values())


def serialize(example: Mapping[str, np.ndarray], spec: Mapping[str, tuple[tuple[int, ...], np.dtype]]) -> bytes:
    """One tf.train.Example: every feature a single bytes value of the array's raw bytes."""
    feature = {}
    for name, (shape, dtype) in spec.items():
        value = np.asarray(example[name])
        if value.shape != shape or value.dtype != dtype:
            raise UserError(
                f"example feature {name!r} is {value.shape} {value.dtype}, the spec says {shape} {dtype}. "
                "The examples do not match the dataset's config: re-write it with `trajsv dataset`."
            )
        raw = np.ascontiguousarray(value, dtype.newbyteorder("<")).tobytes()
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def _spec_from_json(features: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    return {name: (tuple(f["shape"]), np.dtype(f["dtype"])) for name, f in features.items()}


def write_tfrecords(
    examples: Iterable[tuple[Mapping[str, np.ndarray], Mapping[str, int]]],
    out_dir: str | os.PathLike,
    split: str,
    num_shards: int,
    config: examples_lib.ExampleConfig | None = None,
) -> dict[str, Any]:
    """Write one split, examples dealt round-robin over `num_shards` files; returns its dataset_info.json entry.

    The feature spec is `config`'s; without a config, the existing dataset's, else the first example's.
    """
    if num_shards < 1:
        raise UserError(f"num_shards={num_shards}: need at least one shard.")
    out = files.output_folder(out_dir, "dataset")
    info = read_info(out) if (out / INFO_FILE).exists() else None
    if info is not None and config is not None:
        check_spec(info["features"], config, str(out / INFO_FILE))
    examples = iter(examples)
    first = next(examples, None)
    if config is not None:
        spec = examples_lib.feature_spec(config)
    elif info is not None:
        spec = _spec_from_json(info["features"])
    elif first is not None:
        names = examples_lib.feature_spec(examples_lib.ExampleConfig())
        spec = {name: (np.shape(first[0][name]), np.asarray(first[0][name]).dtype) for name in names}
    else:
        raise UserError(f"{out}: no examples for split {split!r} and no example config to describe the features.")
    if info is None:
        features = {name: {"shape": list(shape), "dtype": dtype.name} for name, (shape, dtype) in spec.items()}
        info = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "features": features, "splits": {}}
    if config is not None:
        info["config"] = config.as_dict()
    names = [shard_name(split, i, num_shards) for i in range(num_shards)]
    tmps = [out / f".{name}.tmp{os.getpid()}" for name in names]
    writers = [tf.io.TFRecordWriter(str(tmp)) for tmp in tmps]
    counts, stats = [0] * num_shards, examples_lib.zero_stats()
    try:
        for i, (example, example_stats) in enumerate(itertools.chain([first] if first else [], examples)):
            writers[i % num_shards].write(serialize(example, spec))
            counts[i % num_shards] += 1
            stats = examples_lib.add_stats(stats, example_stats)
        for writer in writers:
            writer.close()
        for tmp, name in zip(tmps, names, strict=True):
            os.replace(tmp, out / name)
    finally:
        for writer, tmp in zip(writers, tmps, strict=True):
            writer.close()
            tmp.unlink(missing_ok=True)
    old = info["splits"].get(split, {}).get("shards", [])
    for stale in {shard["file"] for shard in old} - set(names):
        name = files.checked_name(stale, str(out / INFO_FILE), "Re-write the dataset with `trajsv dataset`.")
        files.inside(out, name).unlink(missing_ok=True)
    entry = {
        "num_examples": sum(counts),
        "shards": [{"file": name, "num_examples": n} for name, n in zip(names, counts, strict=True)],
        "stats": stats,
    }
    info["splits"][split] = entry
    files.atomic_json(out / INFO_FILE, info)
    return entry


def prepare_store(
    store: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: examples_lib.ExampleConfig,
    num_shards: int,
    tokens_by_source: Mapping[str, Sequence[np.ndarray]] | None = None,
    train_fraction: float = 0.8,
    val_fraction: float = 0.0,
    vocab: tokenize.Vocabulary | None = None,
) -> dict[str, Any]:
    """Cut a whole store into videos and write its splits (val only if asked for); returns dataset_info.json.

    `vocab` (the tokens' vocabulary) gives each example its field's grid index."""
    sources = store_lib.read_store(store)
    videos, plan_stats = examples_lib.plan_videos(sources, config.clips_per_video, train_fraction, val_fraction)
    for split in clips_lib.SPLITS if val_fraction else ("train", "test"):
        split_videos = [video for video in videos if video.split == split]
        examples = examples_lib.video_examples(sources, split_videos, tokens_by_source, config, vocab)
        write_tfrecords(
            tqdm(examples, total=len(split_videos), desc=f"write {split}", unit="video", leave=False),
            out_dir,
            split,
            num_shards,
            config,
        )
    info = read_info(out_dir)
    info["store"] = {"path": str(Path(store).resolve()), "sources": [s.source_id for s in sources], "stats": plan_stats}
    files.atomic_json(Path(out_dir) / INFO_FILE, info)
    return info
