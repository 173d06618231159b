"""The main job on the bundled real match: ingest → tokenize → dataset → train (configs/demo.py) → embed.

Everything lands in one run directory: store/, tfrecords/, train/ (checkpoints, metrics, TensorBoard, loss curve),
train/embeddings/test/, plots/ and summary.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trajsv_jax import config as config_lib
from trajsv_jax import files, prepare
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.retrieval import embed
from trajsv_jax.training import loop

DEMO_CONFIG = "configs/demo.py"


@dataclasses.dataclass(frozen=True)
class DemoResult:
    data: prepare.BundledData
    training: loop.TrainSummary | None
    embeddings: embed.Embeddings | None
    summary_file: Path

    def report(self) -> str:
        parts = [self.data.report()]
        parts += [r.report() for r in (self.training, self.embeddings) if r is not None]
        return "\n".join([*parts, f"summary: {self.summary_file}"])


def run(
    out: Path,
    clip_config: clips_lib.ClipConfig,
    options: prepare.DataOptions,
    fast: bool = True,
    overrides: Sequence[str] = (),
    train: bool = True,
    echo: Callable[[Any], None] | None = None,
) -> DemoResult:
    """Run the demo (only its data half unless `train`); `overrides` (--config.KEY=VALUE) change the training
    config. `echo(result)` is called with each step's result as soon as it is done (the CLI prints it)."""
    out = Path(out)
    echo = echo or (lambda result: None)
    data = prepare.prepare_bundled_match(out, clip_config, options, fast, echo)
    summary: dict[str, Any] = dict(data.summary)
    trained = embedded = None
    if train:
        config = config_lib.load_config(DEMO_CONFIG, [f"--config.data_dir={data.data_dir}", *overrides])
        trained = loop.train_and_evaluate(config, out / "train")
        echo(trained)
        embedded = embed.embed_split(out / "train", out / "train" / "embeddings" / "test", split="test")
        echo(embedded)
        summary |= {"training": trained.as_dict(), "embeddings": embedded.index | {"out": embedded.out}}
    files.atomic_json(out / "summary.json", summary)
    return DemoResult(data, trained, embedded, out / "summary.json")
