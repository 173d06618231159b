"""The play2vec baseline (Wang et al., KDD 2019) as TrajSV's Table II "play2vec(Mean)" uses it.

  from trajsv_jax import config, play2vec
  play2vec.train(config.load_config("configs/play2vec.py", ["--config.data_dir=DATA"]), "runs/play2vec")

A denoising token seq2seq autoencoder per clip (trajsv_jax/play2vec.py); the video vector is the mean of its clip
vectors. Field names shared with configs/paper.py mean the same thing there. Sized for the bundled match on 2 CPU
cores (~90 videos of 4 clips: batch 16, early stopping after 10 evaluations without a better validation loss).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.kind = "play2vec"  # trajsv_jax.embed.load_encoder dispatches on it
    config.data_dir = "runs/skillcorner_2417/tfrecords"  # written by `trajsv dataset` (or `trajsv demo`)
    config.train_split = "train"
    config.val_split = "val"  # early stopping never looks at "test"
    config.seed = 0

    config.batch_size = 16  # global, over all devices and hosts
    config.eval_batch_size = 16  # lowered to what the validation split holds
    config.num_epochs = 40
    config.max_steps = 0  # > 0 stops earlier, at this step
    config.eval_every_steps = 0  # 0: at the end of every epoch
    config.patience = 10  # evaluations without a better validation loss before stopping; 0 = never stop early
    config.log_every_steps = 2
    config.keep_checkpoints = 2  # the latest ones; the best by validation loss is kept as well

    config.optimizer = ml_collections.ConfigDict({"learning_rate": 1e-3, "clip_norm": 5.0})  # Adam
    # the noisy play the encoder reads: every position shifted by N(0, shift²) metres, then every sample (frame)
    # dropped with probability `drop`; the segments are re-tokenized with the dataset's vocabulary. A segment takes
    # its nearest vocabulary entry, so small shifts change no token: on the bundled match σ = 1 m changes none,
    # 2 m ~5%, 3 m ~40% of the valid segments' tokens (the "noise_tokens_changed" metric)
    config.noise = ml_collections.ConfigDict({"shift": 3.0, "drop": 0.2})
    config.model = ml_collections.ConfigDict(
        {
            "vocab_size": 0,  # 0: the dataset's vocabulary size + 1 (token 0 = padding / empty segment)
            "embed_dim": 128,  # token embedding
            "hidden": 128,  # LSTM state of encoder and decoder: the clip vector
        }
    )
    config.mesh = ml_collections.ConfigDict({"data": 0, "model": 1})  # data 0: all devices / model
    config.shuffle_buffer = 256
    return config
