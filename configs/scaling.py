"""Contrastive scaling: the paper setup at one global batch size of the sweep 32, 64, ..., 8192.

  for b in 32 64 128 256 512 1024 2048 4096 8192; do
    trajsv train --config configs/scaling.py:$b --config.data_dir=DATA --workdir runs/scaling/b$b
  done

The learning rate follows the linear scaling rule from the paper's 0.01 at batch 128 (lr = 0.01 * b / 128), which
keeps the step per example constant; the loss is a mean over the batch, so negatives grow with b while the gradient
scale does not. Pass --config.optimizer.learning_rate=0.01 to hold it fixed instead. The step count is fixed in
videos seen (max_steps = 1,000,000 // b), so every point of the sweep trains on the same number of videos.
"""

import ml_collections

from configs import paper

SWEEP = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


def get_config(batch: str = "128") -> ml_collections.ConfigDict:
    batch_size = int(batch)
    config = paper.get_config()
    config.batch_size = batch_size
    config.eval_batch_size = batch_size
    config.optimizer.learning_rate = 0.01 * batch_size / 128
    config.max_steps = max(1, 1_000_000 // batch_size)  # the same 1M videos seen at every batch size
    config.num_epochs = 1_000_000  # max_steps decides
    config.patience = 0  # the sweep compares fixed budgets
    return config
