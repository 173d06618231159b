"""A few minutes on 2 CPU cores on the bundled real match (`trajsv demo`), and still a measurable result.

The paper model and loss at full size; what changes is only what one match allows: it makes ~90 videos of n = 4
clips (`trajsv demo` writes them so), so the batch is 16 and training is 40 epochs with early stopping after 10.
"""

import ml_collections

from configs import paper


def get_config() -> ml_collections.ConfigDict:
    config = paper.get_config()
    config.batch_size = 16
    config.eval_batch_size = 16
    config.num_epochs = 40
    config.log_every_steps = 2
    return config
