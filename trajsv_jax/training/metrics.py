"""Training metrics: one JSON object per line (`metrics.jsonl`) and TensorBoard event files, written by process 0.

Every record has "step" and "kind" ("train" or "val"). On resume the lines after the restored step are dropped (the
file is replaced atomically), so a killed run's curve does not hold the steps it is about to redo twice; a last line
cut short by the kill is dropped as well.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import jax
from etils import epath

from trajsv_jax import files
from trajsv_jax.errors import UserError

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricWriter:
    """Appends metrics of a run directory; a no-op on processes other than 0."""

    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0):
        self.active = jax.process_index() == 0
        self.path = epath.Path(workdir) / METRICS_FILE
        self._tensorboard = None
        if not self.active:
            return
        kept = [r for r in read_metrics(workdir) if r["step"] <= resume_step] if resume_step else []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        from flax.metrics import tensorboard  # imports TensorFlow's summary writer: only where it writes

        self._tensorboard = tensorboard.SummaryWriter(os.fspath(epath.Path(workdir) / TENSORBOARD_DIR))

    def write(self, step: int, kind: str, values: Mapping[str, float]) -> None:
        if not self.active:
            return
        record = {"step": int(step), "kind": kind, **{k: float(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for name, value in values.items():
            if math.isfinite(float(value)):
                self._tensorboard.scalar(f"{kind}/{name}", float(value), int(step))
        self._tensorboard.flush()

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()


def replace_text(path: epath.Path, text: str) -> None:
    """Write a whole file atomically: on a local disk through a temporary file (`files.atomic_text`); an object
    store's single write is atomic already."""
    if "://" in str(path):
        path.write_text(text)
    else:
        files.atomic_text(path, text)


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """All records of a run directory's metrics.jsonl (empty if there is none), less a last line cut short."""
    path = epath.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    fix = "Delete that line (or the file) and run the same `trajsv train` again."
    try:
        lines = path.read_text().splitlines(keepends=True)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: unreadable ({e}). {fix}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not line.endswith("\n"):  # the run was killed while it wrote this line
                break
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise UserError(f"{path}: line {number} is not a metrics record. {fix}")
        records.append(record)
    return records
