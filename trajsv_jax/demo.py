"""The main job on the bundled real match: ingest → tokenize → dataset → train (configs/demo.py) → embed.

Everything lands in one run directory: store/, tfrecords/, train/ (checkpoints, metrics, TensorBoard, loss curve),
train/embeddings/test/, plots/ and summary.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from trajsv_jax import clips as clips_lib
from trajsv_jax import config as config_lib
from trajsv_jax import embed, prepare
from trajsv_jax import train as train_lib

DEMO_CONFIG = "configs/demo.py"


def run(
    out: Path,
    clip_config: clips_lib.ClipConfig,
    options: prepare.DataOptions,
    fast: bool = True,
    overrides: Sequence[str] = (),
    train: bool = True,
) -> str:
    """Run the demo (only its data half unless `train`); `overrides` (--config.KEY=VALUE) change the training
    config. Returns the report."""
    out = Path(out)
    lines, summary = prepare.demo_data(out, clip_config, options, fast)
    if not train:
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        return "\n".join([*lines, f"summary: {out / 'summary.json'}"])
    config = config_lib.load_config(DEMO_CONFIG, [f"--config.data_dir={out / 'tfrecords'}", *overrides])
    trained = train_lib.train(config, out / "train")
    embedded = embed.embed(out / "train", out / "train" / "embeddings" / "test", split="test")
    summary |= {"training": trained, "embeddings": embedded}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return "\n".join([*lines, train_lib.report(trained), embed.report(embedded), f"summary: {out / 'summary.json'}"])
