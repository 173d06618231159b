"""Training under failure (docs/RELIABILITY.md): one writer per workdir, diverging runs, damaged checkpoints, datasets
and run files, bad config values, models too large for memory, runs moved elsewhere.

One tiny run is trained once for the module (`diverged_run`): a learning rate so high that step 1 blows the
parameters up and every later step has a non-finite loss, in "skip" mode, so it also checks that skipped updates
leave finite checkpoints. The other tests copy it and damage the copy. Only two more runs compile (the diverging
"stop" run and the resumed one, from the persistent compilation cache: same model, same learning rate); every other
failure comes before anything is compiled.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import one_line_error, tiny_model_overrides

from input_pipeline import reader
from trajsv_jax import cli
from trajsv_jax import config as config_lib
from trajsv_jax.data import tokenize
from trajsv_jax.errors import UserError
from trajsv_jax.training import checkpoints, loop, metrics, sharding, trainers
from trajsv_jax.training import trajsv as trajsv_trainer

REPO = Path(__file__).resolve().parents[2]
# another process holding a workdir, as a running `trajsv train` does, until it reads a line
HOLD_LOCK = (
    "import sys\nfrom trajsv_jax import files\nwith files.locked(sys.argv[1], 'train'):\n print(1, flush=True); input()"
)
# checks and checkpoints every 2 steps; no validation (it would compile and run another step, and test nothing here)
DIVERGING = [
    "--config.optimizer.learning_rate=1e30", "--config.eval_every_steps=2", "--config.log_every_steps=2",
    "--config.val_split=",
]  # fmt: skip


def diverging_config(data_dir: Path, *overrides: str):
    return config_lib.load_config("configs/demo.py", [*tiny_model_overrides(data_dir), *DIVERGING, *overrides])


@pytest.fixture(scope="module")
def diverged_run(demo_dataset, tmp_path_factory) -> tuple[Path, loop.TrainSummary]:
    """4 steps in "skip" mode, checkpoints at steps 2 and 4; step 1 is finite, steps 2-4 are not."""
    workdir = tmp_path_factory.mktemp("diverged") / "run"
    config = diverging_config(demo_dataset, "--config.max_steps=4", "--config.nonfinite=skip")
    return workdir, loop.train_and_evaluate(config, workdir)


@pytest.fixture(scope="module")
def state_like(demo_dataset):
    """What a restore of the diverged run's train state should give (its shapes, dtypes and sharding)."""
    config = diverging_config(demo_dataset)
    shapes = trajsv_trainer.state_shapes(config, trajsv_trainer.make_setup(config))
    return checkpoints.abstract(shapes, sharding.replicated(sharding.make_mesh(1)))


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns(".trajsv.lock")))


def test_skip_mode_counts_skipped_steps_and_saves_only_finite_states(diverged_run):
    workdir, summary = diverged_run
    assert summary.skipped_steps == 3 and "3 steps skipped" in summary.report()
    assert checkpoints.manager(workdir / "checkpoints", read_only=True).all_steps() == [2, 4]
    assert all((workdir / "checkpoints" / step / "checksums.json").is_file() for step in ("2", "4"))
    _, params, step = trajsv_trainer.load_params(workdir, "latest")  # verified: finite, shapes, checksums
    assert step == 4 and all(np.isfinite(x).all() for x in jax.tree.leaves(params))
    train = [r for r in metrics.read_metrics(workdir) if r["kind"] == "train"]
    assert [(r["step"], r["skipped_steps"]) for r in train] == [(2, 1), (4, 3)]
    run = json.loads((workdir / "run.json").read_text())
    assert Path(run["config"]["data_dir"]).is_absolute() and len(run["dataset"]["vocabulary"]) == 64


def test_stop_mode_names_the_step_and_saves_nothing(demo_dataset, tmp_path):
    config = diverging_config(demo_dataset, "--config.max_steps=4")
    with pytest.raises(UserError) as error:
        loop.train_and_evaluate(config, tmp_path / "run")
    one_line_error(error, "step 2 has a non-finite loss", "--config.optimizer.learning_rate (now 1e+30)", "skip")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_second_writer_is_refused_naming_the_holder(demo_dataset, tmp_path):
    command = [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "run")]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == b"1"
        with pytest.raises(UserError) as error:
            loop.train_and_evaluate(diverging_config(demo_dataset), tmp_path / "run")
        one_line_error(error, f"pid {proc.pid}", "in use")
    finally:
        proc.communicate(b"\n", timeout=30)
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("--config.model.embedding=foo", ["model.embedding='foo'", "tokens, matrices"]),
        ("--config.model.dtype=float7", ["model.dtype='float7'", "float32, bfloat16"]),
        ("--config.batch_size=-8", ["batch_size=-8", "an integer >= 1"]),
        ("--config.batch_size=0", ["batch_size=0", "an integer >= 1"]),
        ("--config.log_every_steps=0", ["log_every_steps=0", "an integer >= 1"]),
        ("--config.optimizer.learning_rate=nan", ["optimizer.learning_rate=nan", "a finite number > 0"]),
        ("--config.optimizer.learning_rate=1e999", ["optimizer.learning_rate=inf", "a finite number > 0"]),
        ("--config.optimizer.learning_rate=0", ["optimizer.learning_rate=0.0", "a finite number > 0"]),
        ("--config.nonfinite=ignore", ["nonfinite='ignore'", "stop, skip"]),
        ("--config.optimizer.name=rmsprop", ["optimizer.name='rmsprop'", "sgd, adam, adamw"]),
        ("--config.loss.tau=0", ["loss.tau=0.0", "> 0"]),
        ("--config.model.heads=3", ["model.d_model=16", "multiple of model.heads=3"]),
    ],
)
def test_bad_config_values_are_one_line_before_anything_is_written(demo_dataset, tmp_path, capsys, override, words):
    argv = ["train", "--config", "configs/demo.py", "--workdir", str(tmp_path / "run")]
    assert cli.main([*argv, *tiny_model_overrides(demo_dataset), override]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(word in err for word in words), err
    assert not (tmp_path / "run").exists()


def test_a_model_too_large_for_memory_is_refused_before_compiling(demo_dataset, tmp_path):
    config = diverging_config(demo_dataset, "--config.model.vrnet_hidden=20000000")
    with pytest.raises(UserError) as error:
        loop.train_and_evaluate(config, tmp_path / "run")
    one_line_error(error, "GiB, more than the", "--config.model")
    assert not (tmp_path / "run").exists()


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))


def largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


DAMAGES = {
    "64 flipped bytes": lambda step: flip_bytes(largest_file(step / "state")),
    "truncated": lambda step: truncate(largest_file(step / "state")),
    "no state/": lambda step: shutil.rmtree(step / "state"),
    "garbage progress": lambda step: (step / "progress" / "metadata").write_text("garbage{"),
    "no checksums (still being written)": lambda step: (step / "checksums.json").unlink(),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(diverged_run, state_like, tmp_path, caplog, damage):
    workdir = copy_run(diverged_run[0], tmp_path)
    DAMAGES[damage](workdir / "checkpoints" / "4")
    mgr = checkpoints.manager(workdir / "checkpoints", read_only=True)
    with caplog.at_level(logging.WARNING, logger="trajsv_jax"):
        step, _, skipped = checkpoints.restore_newest(mgr, state_like)
    assert (step, skipped) == (2, [4]) and "checkpoint 4" in caplog.text and "skipped" in caplog.text


def test_no_checkpoint_that_verifies_is_one_line(diverged_run, tmp_path):
    workdir = copy_run(diverged_run[0], tmp_path)
    for step in ("2", "4"):
        flip_bytes(largest_file(workdir / "checkpoints" / step / "state"))
    with pytest.raises(UserError) as error:
        trajsv_trainer.load_params(workdir, "best")
    one_line_error(error, "no checkpoint can be restored", "step 4: ", "step 2: ", "changed", "`trajsv train`")
    with pytest.raises(UserError) as error:  # a step asked for by number does not fall back
        trajsv_trainer.load_params(workdir, 4)
    one_line_error(error, "checkpoint 4 cannot be used", "--checkpoint latest")


def test_resume_past_a_damaged_checkpoint_and_retention_of_the_old_ones(diverged_run, demo_dataset, tmp_path):
    """The resumed run starts from step 2, moves the damaged 4 aside, and keeps only the latest 2 checkpoints: step
    2, saved by the run before it, is deleted as well."""
    workdir = copy_run(diverged_run[0], tmp_path)
    flip_bytes(largest_file(workdir / "checkpoints" / "4" / "state"))
    config = diverging_config(demo_dataset, "--config.max_steps=6", "--config.nonfinite=skip")
    summary = loop.train_and_evaluate(config, workdir)
    assert summary.resumed_from == 2 and summary.steps == 6 and summary.skipped_steps == 5
    assert checkpoints.manager(workdir / "checkpoints", read_only=True).all_steps() == [4, 6]
    assert (workdir / "checkpoints" / "4.unverified").is_dir()
    records = [(r["step"], r["kind"]) for r in metrics.read_metrics(workdir)]
    assert len(records) == len(set(records)) and (4, "train") in records  # step 4 logged once, by the resumed run


def other_vocabulary(data_dir: Path, tmp_path: Path) -> Path:
    """A copy of the dataset whose vocabulary was rebuilt (another tokenizer threshold)."""
    copy = Path(shutil.copytree(data_dir, tmp_path / "data"))
    vocab = tokenize.Vocabulary.load(copy / "vocab.npz")
    vocab.threshold = 0.5
    vocab.save(copy / "vocab.npz")
    return copy


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("run.json deleted", ["run.json: missing", "new --workdir"]),
        ("run.json garbage", ["run.json: unreadable", "new --workdir"]),
        ("another vocabulary", ["another dataset", "vocabulary", "the dataset it was trained on"]),
    ],
)
def test_a_resume_that_cannot_go_on_is_one_line(diverged_run, demo_dataset, tmp_path, damage, words):
    workdir = copy_run(diverged_run[0], tmp_path)
    data_dir = demo_dataset
    if damage == "run.json deleted":
        (workdir / "run.json").unlink()
    elif damage == "run.json garbage":
        (workdir / "run.json").write_text('{"config": ')
    else:
        data_dir = other_vocabulary(demo_dataset, tmp_path)
        run = json.loads((workdir / "run.json").read_text())
        run["config"]["data_dir"] = str(data_dir)  # the run was trained on this folder, before it was rebuilt
        (workdir / "run.json").write_text(json.dumps(run))
    with pytest.raises(UserError) as error:
        loop.train_and_evaluate(diverging_config(data_dir, "--config.max_steps=8"), workdir)
    one_line_error(error, *words)


@pytest.mark.parametrize("damage", ["truncated", "64 flipped bytes"])
def test_a_damaged_shard_is_one_line_naming_it(demo_dataset, tmp_path, damage):
    data_dir = Path(shutil.copytree(demo_dataset, tmp_path / "data"))
    shard = data_dir / "train-00001-of-00002.tfrecord"
    truncate(shard) if damage == "truncated" else flip_bytes(shard)
    with pytest.raises(UserError) as error:
        reader.read_split(data_dir, "train")  # what embed and evaluate read
    one_line_error(error, str(shard), "damaged shard", "`trajsv dataset`")
    with pytest.raises(UserError) as error:
        loop.train_and_evaluate(diverging_config(data_dir), tmp_path / "run")
    one_line_error(error, str(shard), "damaged shard")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".trajsv.lock"]  # nothing a retry trips on


def test_a_run_recorded_with_a_relative_dataset_opens_from_anywhere(diverged_run, demo_dataset, tmp_path, monkeypatch):
    """Older runs recorded data_dir as given (relative to where training started): it is looked up from the current
    directory, then from the run directory's parents; a dataset that is gone is one line naming `trajsv dataset`."""
    project = tmp_path / "project"
    (project / "runs").mkdir(parents=True)
    os.symlink(demo_dataset, project / "runs" / "tfrecords")
    workdir = copy_run(diverged_run[0], project / "runs")
    run = json.loads((workdir / "run.json").read_text())
    run["config"]["data_dir"] = "runs/tfrecords"
    (workdir / "run.json").write_text(json.dumps(run))
    monkeypatch.chdir(tmp_path)
    assert trainers.run_config(workdir).data_dir == str(project / "runs" / "tfrecords")
    (project / "runs" / "tfrecords").unlink()
    with pytest.raises(UserError) as error:
        trainers.run_config(workdir)
    one_line_error(error, "run.json: the dataset it was trained on", "`trajsv dataset STORE --out")


def test_metrics_file_drops_a_torn_last_line_and_names_a_damaged_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "kind": "train", "loss": 1.0}\n{"step": 2, "ki')
    assert [r["step"] for r in metrics.read_metrics(tmp_path)] == [1]
    path.write_text('{"step": 1, "kind": "train"}\nnot json\n{"step": 2, "kind": "train"}\n')
    with pytest.raises(UserError) as error:
        metrics.read_metrics(tmp_path)
    one_line_error(error, "line 2 is not a metrics record", "`trajsv train`")
