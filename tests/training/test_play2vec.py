"""The play2vec baseline: noise, padding invariance, a real training run (checkpoints, metrics, resume) and `embed`."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from input_pipeline import reader
from trajsv_jax import config as config_lib
from trajsv_jax.errors import UserError
from trajsv_jax.models.play2vec import Play2Vec
from trajsv_jax.retrieval import embed
from trajsv_jax.training import loop, play2vec, sharding

TINY = {"embed_dim": 16, "hidden": 16}


def tiny_config(data_dir: Path, *overrides: str):
    """Tiny dims and a high learning rate; the same step config in every test, so `compile_steps` compiles once."""
    model = [f"--config.model.{k}={v}" for k, v in TINY.items()]
    fast = [f"--config.data_dir={data_dir}", "--config.optimizer.learning_rate=0.01", *model]
    return config_lib.load_config("configs/play2vec.py", [*fast, *overrides])


def first_batch(data_dir: Path, setup: play2vec.Setup, size: int = 16) -> dict[str, np.ndarray]:
    return next(reader.ordered_batches(reader.tfrecord_source(data_dir, "train", setup.example), setup.example, size))


def test_steps_on_a_fixed_batch_reduce_the_loss_and_the_noise_changes_tokens(demo_dataset):
    config = tiny_config(demo_dataset)
    setup = play2vec.make_setup(config)
    mesh = sharding.make_mesh()
    state, train_fn, _, tables = play2vec.start(config, setup, mesh)
    batch = jax.device_put(first_batch(demo_dataset, setup), sharding.batch_sharding(mesh))
    history = []
    for _ in range(10):
        state, metrics = train_fn(state, batch, tables)
        history.append(jax.device_get(metrics))
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    changed = [float(m["noise_tokens_changed"]) for m in history]
    assert all(0.05 < c < 1 for c in changed) and len(set(changed)) > 1  # fresh noise every step


def test_video_vector_ignores_padding_and_is_unit_norm(demo_dataset):
    config = tiny_config(demo_dataset)
    setup = play2vec.make_setup(config)
    params = play2vec.start(config, setup, sharding.make_mesh())[0].params
    model = Play2Vec(setup.model)
    batch = {k: jnp.asarray(v) for k, v in first_batch(demo_dataset, setup, 4).items()}
    encode = jax.jit(lambda b: model.apply({"params": params}, b, method=Play2Vec.encode))
    out = encode(batch)
    valid = batch["segment_mask"] & batch["clip_mask"][..., None]
    assert not valid.all(), "the batch needs padding segments to test"
    garbage = jax.random.randint(jax.random.PRNGKey(1), valid.shape, 1, setup.model.vocab_size)
    padded = batch | {"tokens": jnp.where(valid, batch["tokens"], garbage)}
    np.testing.assert_allclose(encode(padded)["video"], out["video"], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out["video"], axis=-1), 1.0, rtol=1e-5)
    assert out["clips"].shape == (4, setup.example.clips_per_video, TINY["hidden"])
    # a video's padding clip does not count; a video without any valid clip gets a finite (zero) vector
    one = batch | {"clip_mask": batch["clip_mask"].at[:, 1:].set(False)}
    single = encode(one | {"tokens": one["tokens"].at[:, 1:].set(garbage[:, 1:])})["video"]
    np.testing.assert_allclose(single, encode(one)["video"], atol=1e-6)
    empty = encode(batch | {"clip_mask": jnp.zeros_like(batch["clip_mask"])})["video"]
    assert np.isfinite(empty).all()


def test_train_resume_and_embed(demo_dataset, tmp_path):
    workdir = tmp_path / "p2v"
    overrides = ("--config.eval_every_steps=3", "--config.log_every_steps=1")
    summary = loop.train_and_evaluate(tiny_config(demo_dataset, "--config.max_steps=6", *overrides), workdir)
    assert summary.steps == 6 and summary.resumed_from is None
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [0, 3, 6] and summary.best_step in (0, 3, 6)
    assert all(np.isfinite(r["loss"]) and r["noise_tokens_changed"] > 0 for r in records)
    # every training token is known; validation counts the segments whose token the training split has: with the
    # vocabulary fitted on the train split, all of them but those given the unknown token
    assert all(r["known"] == 1 if r["kind"] == "train" else 0.9 < r["known"] <= 1 for r in records)
    assert json.loads((workdir / "run.json").read_text())["config"]["kind"] == "play2vec"
    assert json.loads((workdir / "summary.json").read_text())["steps"] == 6
    assert (workdir / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))

    # the same run with more steps resumes from its last checkpoint; a changed config is refused
    summary = loop.train_and_evaluate(tiny_config(demo_dataset, "--config.max_steps=8", *overrides), workdir)
    assert summary.resumed_from == 6 and summary.steps == 8
    steps = [r["step"] for r in (json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines())]
    assert steps.count(6) == 2 and steps.count(7) == 1  # train + val at 6, nothing logged twice
    with pytest.raises(UserError, match=r"different config \(noise.shift changed\)"):
        loop.train_and_evaluate(
            tiny_config(demo_dataset, "--config.max_steps=8", "--config.noise.shift=1.0", *overrides), workdir
        )

    index = embed.embed_split(workdir, tmp_path / "vectors", split="test", which="latest").index
    vectors = embed.read_embeddings(tmp_path / "vectors")
    assert index["checkpoint_step"] == 8 and vectors["videos"].shape == (index["videos"], TINY["hidden"])
    np.testing.assert_allclose(np.linalg.norm(vectors["videos"], axis=1), 1.0, rtol=1e-5)
    assert vectors["clips"].shape == (index["clips"], TINY["hidden"]) and index["clips"] >= index["videos"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--config.data_dir=/no/such/data"], "/no/such/data: no such dataset directory"),
        (["--config.model.vocab_size=5"], "model.vocab_size=5"),
    ],
)
def test_bad_input_is_one_line(demo_dataset, tmp_path, overrides, message):
    with pytest.raises(UserError) as error:
        loop.train_and_evaluate(tiny_config(demo_dataset, *overrides), tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)
