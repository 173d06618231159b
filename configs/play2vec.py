"""The play2vec baseline (Wang et al., KDD 2019) as TrajSV's Table II "play2vec(Mean)" uses it.

  trajsv train --config configs/play2vec.py --config.data_dir=DATA --workdir runs/play2vec

A denoising token seq2seq autoencoder per clip (trajsv_jax/play2vec.py); the video vector is the mean of its clip
vectors. The data, length, validation, checkpoint and mesh fields are configs/demo.py's (the same training loop runs
both: ~90 videos of 4 clips, batch 16, early stopping after 10 evaluations without a better validation loss); the
triple-loss fields (variants, loss, init_from) do not apply and are left out.
"""

import ml_collections

from configs import demo


def get_config() -> ml_collections.ConfigDict:
    config = demo.get_config()
    for field in ("variants", "loss", "init_from", "model", "optimizer"):
        del config[field]
    config.kind = "play2vec"  # training.trainers.get picks the trainer by it (training, embedding, retrieval)

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
    return config
