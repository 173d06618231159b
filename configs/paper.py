"""The paper's training setup (TrajSV section VI-A): every hyperparameter it states, nothing tuned.

  trajsv train --config configs/paper.py --config.data_dir=DATA --workdir runs/paper

SGD lr 0.01, momentum 0.7; batch 128; 100 epochs with early stopping after 10 evaluations without a better
validation loss; noise δ ~ U[0, 0.2]; α 0.5, β 0.3, τ 0.1; CRNet 2 layers x 2 heads of 128, dropout 0.3 on the
embeddings; VRNet hidden 1280, video vector 128; 3 m cells (set when the data is tokenized).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.data_dir = "runs/skillcorner_2417/tfrecords"  # written by `trajsv dataset` (or `trajsv demo`)
    config.train_split = "train"
    config.val_split = "val"  # early stopping never looks at "test"
    config.seed = 0
    config.init_from = ""  # a training run directory: start from its best parameters (fine-tuning)

    config.batch_size = 128  # global, over all devices and hosts
    config.eval_batch_size = 128  # lowered to what the validation split holds
    config.num_epochs = 100
    config.max_steps = 0  # > 0 stops earlier, at this step
    config.eval_every_steps = 0  # 0: at the end of every epoch
    config.patience = 10  # evaluations without a better validation loss before stopping; 0 = never stop early
    config.log_every_steps = 10
    config.keep_checkpoints = 2  # the latest ones; the best by validation loss is kept as well
    # a step whose loss or gradient is NaN or inf: "stop" ends the run with an error naming the step (checkpoints
    # before it are kept); "skip" drops that update, counts it (summary and metrics "skipped_steps") and goes on.
    # Either way no checkpoint holds a non-finite value.
    config.nonfinite = "stop"

    # name: sgd (the paper's: SGD with momentum), or adam / adamw (not the paper's; lr 1e-3 is their usual start)
    config.optimizer = ml_collections.ConfigDict({"name": "sgd", "learning_rate": 0.01, "momentum": 0.7})
    config.variants = ml_collections.ConfigDict({"max_delta": 0.2})
    # exclude_positive / reduction: see trajsv_jax/losses.py for the form of Eq. 12 used and why
    config.loss = ml_collections.ConfigDict(
        {"alpha": 0.5, "beta": 0.3, "tau": 0.1, "exclude_positive": False, "reduction": "mean"}
    )
    config.model = ml_collections.ConfigDict(
        {
            "vocab_size": 0,  # 0: the dataset's vocabulary size + 1 (token 0 = padding)
            "d_model": 128,
            "heads": 2,
            "layers": 2,
            "ffn": 512,
            "dropout_pos": 0.3,
            "dropout_attn": 0.1,
            "visual_dim": -1,  # -1: the data's feature dim if it has visual features, else 0 (trajectory-only)
            "vrnet_hidden": 1280,
            "vrnet_heads": 2,
            "out_dim": 128,
            "embedding": "tokens",  # or "matrices": a linear embedding of the 35 x 23 grid itself
            "clip_encoder": "transformer",  # CRNet; Table V ablations: "lstm" / "bilstm" (`layers` layers of d_model)
            "video_encoder": "vrnet",  # VRNet; Table V ablations: "mean" (v = mean of c) / "mlp" (mean, 2-layer MLP)
            "dtype": "float32",  # "bfloat16" on accelerators; parameters stay float32
        }
    )
    config.mesh = ml_collections.ConfigDict({"data": 0, "model": 1})  # data 0: all devices / model
    config.shuffle_buffer = 256
    return config
