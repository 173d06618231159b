"""Training: configs, the sharded step (8 devices = 1 device = 2 processes), exact resume after SIGKILL, the CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import FAST_COMPILE, tiny_model_overrides

from input_pipeline import reader
from trajsv_jax import cli
from trajsv_jax import config as config_lib
from trajsv_jax.errors import UserError
from trajsv_jax.training import checkpoints, sharding, steps, trainers
from trajsv_jax.training import trajsv as trajsv_trainer

REPO = Path(__file__).resolve().parents[2]


def test_config_overrides_keep_types_and_fail_loudly():
    config = config_lib.load_config("configs/demo.py", ["--config.batch_size=8", "--config.optimizer.learning_rate=1"])
    assert config.batch_size == 8 and config.optimizer.learning_rate == 1.0
    assert isinstance(config.optimizer.learning_rate, float)
    assert config_lib.load_config("configs/scaling.py:1024").optimizer.learning_rate == pytest.approx(0.08)
    with pytest.raises(UserError, match="has no field 'batchsize'"):
        config_lib.load_config("configs/demo.py", ["--config.batchsize=8"])
    with pytest.raises(UserError, match="is a int"):
        config_lib.load_config("configs/demo.py", ["--config.batch_size=eight"])
    with pytest.raises(UserError, match="no such config file"):
        config_lib.load_config("configs/nope.py")


def first_batch(data_dir: Path, example, size: int) -> dict[str, np.ndarray]:
    return next(reader.ordered_batches(reader.tfrecord_source(data_dir, "train", example), example, size))


def two_steps(config, setup, batch: dict, devices: int):
    mesh = sharding.make_mesh(devices)
    state, train_fn, eval_fn, vocab = trajsv_trainer.start(config, setup, mesh)
    batch = jax.device_put(batch, sharding.batch_sharding(mesh))
    assert batch["positions"].sharding.shard_shape(batch["positions"].shape)[0] == len(batch["clip_mask"]) // devices
    out = []
    for _ in range(2):
        state, metrics = train_fn(state, batch, vocab)
        out.append(jax.device_get(metrics))
    val = jax.device_get(eval_fn(state.params, batch, steps.replicate(jax.random.PRNGKey(1), mesh), vocab))
    return out, jax.device_get(state.params), val


@pytest.mark.parametrize("embedding", ["tokens", "matrices"])
def test_train_step_on_8_devices_equals_1_device(demo_dataset, embedding):
    """Same global batch, same seed: variants drawn from the global batch, loss over all of it, same update."""
    assert jax.device_count() == 8
    overrides = [*tiny_model_overrides(demo_dataset), f"--config.model.embedding={embedding}"]
    config = config_lib.load_config("configs/demo.py", overrides)
    setup = trajsv_trainer.make_setup(config)
    batch = first_batch(demo_dataset, setup.example, 16)
    one, eight = two_steps(config, setup, batch, 1), two_steps(config, setup, batch, 8)
    for m1, m8 in zip(one[0], eight[0], strict=True):
        for key in ("loss", "l12", "l13", "l23", "grad_norm"):
            np.testing.assert_allclose(m8[key], m1[key], rtol=1e-5, err_msg=key)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6), one[1], eight[1])
    np.testing.assert_allclose(eight[2]["loss"], one[2]["loss"], rtol=1e-5)
    assert one[0][1]["loss"] != one[0][0]["loss"]  # the step changed the parameters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def worker_env(devices: int) -> dict[str, str]:
    """A subprocess's environment: `devices` CPU devices and no persistent compilation cache (an executable of the
    shared cache, compiled by another process, once made the 2-device collectives of this test wait forever)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", JAX_ENABLE_COMPILATION_CACHE="false")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests")])
    return env


def test_two_processes_reach_the_same_loss_as_one(demo_dataset):
    """2 CPU processes (1 device each, gloo collectives) vs 1 process with 2 devices, on the same global batch."""
    worker = [sys.executable, str(REPO / "tests" / "training" / "multihost_worker.py"), str(demo_dataset), "3"]
    single = subprocess.run(worker, env=worker_env(2), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert single.returncode == 0, single.stderr[-2000:]
    port = free_port()
    procs = [
        subprocess.Popen(
            [*worker, f"localhost:{port}", "2", str(i)],
            env=worker_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][1][-2000:] + outs[1][1][-2000:]
    one, two = json.loads(single.stdout.splitlines()[-1]), json.loads(outs[0][0].splitlines()[-1])
    assert (one["processes"], two["processes"], two["devices"]) == (1, 2, 2)
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    np.testing.assert_allclose(two["param_abs_sum"], one["param_abs_sum"], rtol=1e-6)
    assert one["losses"][0] != one["losses"][-1]


def train_command(workdir: Path, data_dir: Path, steps: int) -> list[str]:
    overrides = [*tiny_model_overrides(data_dir), f"--config.max_steps={steps}", "--config.eval_every_steps=3"]
    return ["train", "--config", "configs/demo.py", "--workdir", str(workdir), *overrides]


def final_params(workdir: Path):
    mgr = checkpoints.manager(workdir / trainers.CHECKPOINT_DIR, read_only=True)
    restored = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return mgr.latest_step(), restored.state["params"]


def test_train_cli_writes_checkpoints_metrics_tensorboard_and_plot(demo_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative workdir (orbax itself needs absolute paths), configs/ from the package
    workdir = Path("run")
    assert cli.main(train_command(workdir, demo_dataset, 6)) == 0
    out = capsys.readouterr().out
    assert "trained 6 steps" in out and "validation loss" in out
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [0, 3, 6]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert any(r["kind"] == "train" and r["videos_per_s"] > 0 for r in records)
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert (workdir / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["best_step"] in (0, 3, 6)
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())[-1] == 6
    # the same command again resumes at the end and does nothing more
    assert cli.main(train_command(workdir, demo_dataset, 6)) == 0
    assert "resumed from step 6" in capsys.readouterr().out
    # a changed config is refused
    assert cli.main([*train_command(workdir, demo_dataset, 6), "--config.loss.tau=0.2"]) == 2
    assert "different config (loss.tau changed)" in capsys.readouterr().err


def committed_steps(workdir: Path, marker: str = "commit_success.txt") -> list[int]:
    """Steps of the finished checkpoints (orbax renames a checkpoint's temporary folder to STEP when it is done;
    the training loop then writes its checksums.json)."""
    done = workdir.glob(f"checkpoints/*/{marker}")
    return sorted(int(p.parent.name) for p in done if p.parent.name.isdigit())


def test_sigkill_and_resume_ends_with_identical_parameters(demo_dataset, tmp_path):
    steps = 9  # checkpoints at 3, 6, 9: the kill lands after the first, the resume has steps left
    command = [sys.executable, "-m", "trajsv_jax.cli"]
    env = worker_env(2)  # fewer virtual devices compile faster; the 8-device step is tested above
    whole = subprocess.run(
        [*command, *train_command(tmp_path / "whole", demo_dataset, steps)], env=env, cwd=REPO, capture_output=True
    )
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed_dir = tmp_path / "killed"
    run = subprocess.Popen([*command, *train_command(killed_dir, demo_dataset, steps)], env=env, cwd=REPO)
    deadline = time.monotonic() + 600
    while not committed_steps(killed_dir) and run.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    saved = committed_steps(killed_dir)  # a kill mid-save leaves a STEP.orbax-checkpoint-tmp* folder: ignored
    assert saved and saved[-1] < steps
    # a kill between orbax's commit and the checksums leaves that checkpoint unverified: the resume skips it, unless
    # no checkpoint has checksums yet (then the run's checkpoints are verified without them)
    saved = committed_steps(killed_dir, "checksums.json") or saved
    resumed = subprocess.run(
        [*command, *train_command(killed_dir, demo_dataset, steps)], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step {saved[-1]}" in resumed.stdout
    (step_a, params_a), (step_b, params_b) = final_params(tmp_path / "whole"), final_params(killed_dir)
    assert step_a == step_b == steps
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
    val = [json.loads(x) for x in (killed_dir / "metrics.jsonl").read_text().splitlines()]
    assert len([r["step"] for r in val]) == len({(r["step"], r["kind"]) for r in val})  # no step logged twice


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--config.data_dir=/no/such/data"], "/no/such/data: no such dataset directory"),
        (["--config.batch_size=4096"], "fewer than one per-host batch"),
        (["--config.model.visual_dim=7"], "model.visual_dim=7"),
    ],
)
def test_bad_training_input_is_one_line(demo_dataset, tmp_path, capsys, overrides, message):
    argv = [*train_command(tmp_path / "w", demo_dataset, 2), *overrides]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
