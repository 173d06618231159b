"""One process of the multi-process test (tests/test_train.py): train steps on one fixed global batch.

  python tests/multihost_worker.py DATA_DIR STEPS [COORDINATOR NUM_PROCESSES PROCESS_ID]

Every process reads the same first GLOBAL_BATCH training examples in file order and feeds only its own rows, so the
global batch is the same whatever the process count. Process 0 prints the losses and a parameter checksum as JSON.
"""

from __future__ import annotations

import json
import sys

GLOBAL_BATCH = 8


def main() -> None:
    data_dir, steps, *distributed = sys.argv[1:]
    from trajsv_jax import sharding

    if distributed:
        coordinator, count, index = distributed
        sharding.initialize_distributed(coordinator, int(count), int(index))
    import jax
    import numpy as np
    from conftest import tiny_model_overrides

    from input_pipeline import reader
    from trajsv_jax import config as config_lib
    from trajsv_jax import train

    config = config_lib.load_config("configs/demo.py", tiny_model_overrides(data_dir))
    setup = train.make_setup(config)
    mesh = sharding.make_mesh()
    state, train_fn, _, vocab = train.start(config, setup, mesh)

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
