"""One process of the multi-process test (tests/training/test_train.py): train steps on one fixed global batch.

  python tests/training/multihost_worker.py DATA_DIR STEPS [COORDINATOR NUM_PROCESSES PROCESS_ID]

Every process reads the same first GLOBAL_BATCH training examples in file order and feeds only its own rows, so the
global batch is the same whatever the process count. Process 0 prints the losses and a parameter checksum as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GLOBAL_BATCH = 8
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest's helpers


def main() -> None:
    data_dir, steps, *distributed = sys.argv[1:]
    from trajsv_jax.training import sharding

    if distributed:
        coordinator, count, index = distributed
        sharding.initialize_distributed(coordinator, int(count), int(index))
    import jax
    import numpy as np
    from conftest import tiny_model_overrides

    from input_pipeline import reader
    from trajsv_jax import config as config_lib
    from trajsv_jax.training import trajsv as trajsv_trainer

    config = config_lib.load_config("configs/demo.py", tiny_model_overrides(data_dir))
    setup = trajsv_trainer.make_setup(config)
    mesh = sharding.make_mesh()
    state, train_fn, _, vocab = trajsv_trainer.start(config, setup, mesh)

    source = reader.tfrecord_source(data_dir, "train", setup.example)
    full = next(reader.ordered_batches(source, setup.example, GLOBAL_BATCH))
    rows = GLOBAL_BATCH // jax.process_count()
    lo = jax.process_index() * rows
    batch = {
        k: jax.make_array_from_process_local_data(
            sharding.batch_sharding(mesh), v[lo : lo + rows], v.shape
        )
        for k, v in full.items()
    }  # fmt: skip
    losses = []
    for _ in range(int(steps)):
        state, metrics = train_fn(state, batch, vocab)
        losses.append(float(metrics["loss"]))
    checksum = float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(state.params)))
    if jax.process_index() == 0:
        print(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(), "losses": losses,
                          "param_abs_sum": checksum}))  # fmt: skip


if __name__ == "__main__":
    main()
