"""The per-video examples as a TFDS dataset, prepared offline from a trajsv store.

The store directory is TFDS's `manual_dir` (nothing is downloaded); shapes come from the builder config. Every
feature is a `tfds.features.Tensor` with bytes encoding, so the prepared records have the same layout as
`write.write_tfrecords`' and `reader.make_tfds_iterator` streams them through the same parser.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import examples as examples_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.errors import UserError


@dataclasses.dataclass(eq=False)
class TrajsvVideosConfig(tfds.core.BuilderConfig):
    """Example shapes and the train/test cut; `make_config` names it after them."""

    example: examples_lib.ExampleConfig = dataclasses.field(default_factory=examples_lib.ExampleConfig)
    train_fraction: float = 0.8


def make_config(example: examples_lib.ExampleConfig, train_fraction: float = 0.8) -> TrajsvVideosConfig:
    """A builder config named after its shapes, so differently shaped datasets live in different folders."""
    name = (
        f"n{example.clips_per_video}_m{example.segments_per_clip}_s{example.samples_per_segment}"
        f"_k{example.max_objects}_d{example.visual_dim}_fps{example.fps:g}_sec{example.segment_seconds:g}"
        f"_train{train_fraction:g}"
    ).replace(".", "p")
    return TrajsvVideosConfig(name=name, example=example, train_fraction=train_fraction)


class TrajsvVideos(tfds.core.GeneratorBasedBuilder):
    """Padded per-video trajectory examples of a trajsv store (see `input_pipeline.examples`)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}
    BUILDER_CONFIGS: ClassVar[list[TrajsvVideosConfig]] = [make_config(examples_lib.ExampleConfig())]
    MANUAL_DOWNLOAD_INSTRUCTIONS = "manual_dir is the trajsv store directory (store.json and sources/)."

    def __init__(self, *, tokens_by_source: Mapping[str, Sequence[np.ndarray]] | None = None, **kwargs: Any):
        """`tokens_by_source[source_id][c]`: clip c's tokens, one per segment (None: all tokens 0)."""
        if importlib.util.find_spec("importlib_resources") is None:  # TFDS 4.9.10 needs it for builders in packages
            raise UserError("TFDS needs the importlib_resources package here: `pip install importlib_resources`.")
        self._tokens_by_source = tokens_by_source
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        spec = examples_lib.feature_spec(self.builder_config.example)
        features = {
            name: tfds.features.Tensor(shape=shape, dtype=dtype, encoding=tfds.features.Encoding.BYTES)
            for name, (shape, dtype) in spec.items()
        }
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(features),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator]:
        sources = store_lib.read_store(dl_manager.manual_dir)
        config = self.builder_config
        videos, plan_stats = examples_lib.plan_videos(sources, config.example.clips_per_video, config.train_fraction)
        self.info.metadata["store_stats"] = plan_stats
        return {
            split: self._generate_examples(sources, [v for v in videos if v.split == split], split)
            for split in ("train", "test")
        }

    def _generate_examples(
        self, sources: Sequence[store_lib.Source], videos: Sequence[Any], split: str
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        stats = examples_lib.zero_stats()
        for example, example_stats in examples_lib.video_examples(
            sources, videos, self._tokens_by_source, self.builder_config.example
        ):
            stats = examples_lib.add_stats(stats, example_stats)
            yield int(example["video_id"]), example
        self.info.metadata[f"{split}_stats"] = stats


def prepare(
    store: str | os.PathLike,
    data_dir: str | os.PathLike,
    example: examples_lib.ExampleConfig,
    tokens_by_source: Mapping[str, Sequence[np.ndarray]] | None = None,
    train_fraction: float = 0.8,
    num_shards: int | None = None,
) -> TrajsvVideos:
    """Prepare the TFDS dataset of a store under data_dir, offline; returns the builder (ready for as_dataset).

    `num_shards` per split (TFDS picks by size if None) should be at least the number of reading hosts.
    """
    builder = TrajsvVideos(
        data_dir=os.fspath(data_dir), config=make_config(example, train_fraction), tokens_by_source=tokens_by_source
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(store),
            compute_stats=tfds.download.ComputeStatsMode.SKIP,
            try_download_gcs=False,
            num_shards=num_shards,
        )
    )
    return builder
