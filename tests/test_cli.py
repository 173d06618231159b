"""The `trajsv` command line end to end on the real bundled match, and its one-line errors."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, assert_written_only_inside, file_states, tiny_model_overrides

from trajsv_jax import cli
from trajsv_jax.cli import commands
from trajsv_jax.data import store
from trajsv_jax.data.tokenize import Vocabulary
from trajsv_jax.retrieval import embed


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The README's main job with a small model and 6 steps (configs/demo.py overridden), to keep the suite fast.

    Started with a relative --out from a working directory of its own: the run must work from anywhere later, and
    every file it writes must land inside its output folder (the repository and the temporary folders are walked).
    """
    workspace = tmp_path_factory.mktemp("workspace")
    roots = (REPO, tmp_path_factory.getbasetemp())
    overrides = [x for x in tiny_model_overrides(Path("demo/tfrecords")) if "data_dir" not in x]
    before, cwd = file_states(*roots), os.getcwd()
    os.chdir(workspace)
    try:
        assert cli.main(["demo", "--out", "demo", "--shards", "2", *overrides, "--config.max_steps=6"]) == 0
    finally:
        os.chdir(cwd)
    assert_written_only_inside(before, file_states(*roots), workspace / "demo")
    return workspace / "demo"


def test_demo_writes_store_tokens_dataset_training_embeddings_and_pictures(demo_run, bundled_source):
    summary = json.loads((demo_run / "summary.json").read_text())
    assert summary["clips"] == bundled_source.num_clips
    assert summary["segments"] > 3000  # ~58 min of main camera in 1 s segments
    split = summary["videos_per_split"]
    assert summary["clips_per_video"] == 4 and summary["videos"] == sum(split.values()) > 85
    assert split["train"] > 55 and split["val"] >= 8 and split["test"] >= 18
    assert summary["drops"]["off_pitch"] > 0  # SkillCorner tracks players beyond the lines: counted
    assert summary["training"]["steps"] == 6 and np.isfinite(summary["training"]["best_val_loss"])
    assert (demo_run / "train" / "plots" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    embedded = embed.read_embeddings(demo_run / "train" / "embeddings" / "test")
    assert embedded["videos"].shape == (split["test"], 16) == (embedded["index"]["videos"], 16)
    np.testing.assert_allclose(np.linalg.norm(embedded["videos"], axis=1), 1.0, rtol=1e-5)
    vocab = Vocabulary.load(demo_run / "store" / "vocab.npz")
    assert summary["vocabulary_tokens"] == vocab.num_tokens > 100
    png = demo_run / "plots" / "segment_matrices.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
    info = json.loads((demo_run / "tfrecords" / "dataset_info.json").read_text())
    assert info["splits"]["train"]["num_examples"] == split["train"]
    source = store.read_store(demo_run / "store")[0]
    np.testing.assert_array_equal(source.positions, bundled_source.positions)


def test_info_reports_the_store(demo_run, capsys):
    assert cli.main(["info", str(demo_run / "store")]) == 0
    out = capsys.readouterr().out
    split = json.loads((demo_run / "summary.json").read_text())["videos_per_split"]  # tokenize's split, read back
    counts = f"videos of n=4 clips: {split['train']} train, {split['val']} val, {split['test']} test"
    assert "skillcorner_2417" in out and counts in out and "vocabulary:" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ingest", "tracab", "raw_data=/no/such.dat", "meta_data=/no/such.xml"], "/no/such.dat: no such file"),
        (["ingest", "nosuchprovider"], "unknown provider 'nosuchprovider'"),
        (["ingest", "skillcorner", "raw_data"], "expected KEY=FILE"),
        (["tokenize", "/no/such/store"], "not a trajectory store"),
        (["dataset", "/no/such/store", "--out", "/tmp/x"], "not a trajectory store"),
        (["index", "--embeddings", "/no/such/embeddings"], "/no/such/embeddings: no embeddings (no index.json)"),
        (["evaluate", "retrieval", "--workdir", "/no/such/run"], "/no/such/run: not a training run"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "retrieval", "--deltas", "0.5,abc"], "'0.5,abc': expected comma-separated floats"),
        (["evaluate", "ablations", "--seeds", "x"], "'x': expected comma-separated ints"),
    ],
)
def test_bad_number_lists_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err


def test_dataset_before_tokenize_says_what_to_run(tmp_path, bundled_source, capsys):
    store.write_source(tmp_path / "s", bundled_source)
    assert cli.main(["dataset", str(tmp_path / "s"), "--out", str(tmp_path / "d")]) == 2
    assert "Run `trajsv tokenize" in capsys.readouterr().err


def test_index_search_and_evaluate_from_the_command_line(demo_run, capsys, tmp_path, monkeypatch):
    """From another working directory than the run's (it recorded relative paths): each writes only its output."""
    from trajsv_jax.data import ingest

    monkeypatch.chdir(tmp_path)
    roots = (REPO, demo_run.parent, tmp_path)
    before = file_states(*roots)

    embeddings = demo_run / "train" / "embeddings" / "test"
    assert cli.main(["index", "--embeddings", str(embeddings)]) == 0
    assert "indexed 19 video vectors (16-d)" in capsys.readouterr().out
    vectors = embed.read_embeddings(embeddings)
    ids, videos = vectors["video_ids"], vectors["videos"]
    png = tmp_path / "matches.png"
    argv = ["search", "--index", str(embeddings / "index"), "--video-id", str(ids[3]), "-k", "3", "--plot", str(png)]
    assert cli.main(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(f"  video {ids[3]}:"))
    hits = [(int(i), float(s)) for i, s in re.findall(r"(\d+) \(([-0-9.]+)\)", line)]
    assert len(hits) == 3 and ids[3] not in [i for i, _ in hits]
    expected = videos @ videos[3]
    expected[3] = -np.inf  # the query itself is left out
    assert [i for i, _ in hits] == ids[np.argsort(-expected)[:3]].tolist()  # re-embedded query = stored vector
    np.testing.assert_allclose([s for _, s in hits], np.sort(expected)[::-1][:3], atol=1e-3)
    assert png.read_bytes()[:4] == b"\x89PNG"

    pff = ingest.bundled_skillcorner_files()[0].parent
    files = [f"raw_data={pff / 'pff_10517.jsonl'}", f"meta_data={pff / 'pff_metadata_10517.json'}"]
    files.append(f"roster_data={pff / 'pff_rosters_10517.json'}")
    assert cli.main(["search", "--index", str(embeddings / "index"), "--tracking", "pff", *files, "-k", "2"]) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"^  video \d+: .*$", out, re.M)
    assert "source pff_10517" in out and len(lines) >= 2 and all(x.count("(") == 2 for x in lines)

    out_dir = tmp_path / "retrieval"
    argv = ["evaluate", "retrieval", "--workdir", str(demo_run / "train"), "--deltas", "0.5,0.6", "--out", str(out_dir)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "database 19 videos" in out and re.search(r"^  0\.6 +[01]\.\d{3} +[01]\.\d{3}", out, re.M)
    result = json.loads((out_dir / "retrieval.json").read_text())
    assert [r["delta"] for r in result["results"]] == [0.5, 0.6] and result["database_size"] == 19
    assert (out_dir / "retrieval.png").read_bytes()[:4] == b"\x89PNG" and "| trajsv |" in (
        out_dir / "retrieval.md"
    ).read_text()

    assert cli.main(["search", "--index", str(embeddings / "index"), "--video-id", "999999"]) == 2
    err = capsys.readouterr().err.strip()
    assert "video id 999999: not in" in err and "\n" not in err
    assert_written_only_inside(before, file_states(*roots), embeddings / "index", png, out_dir)


def test_a_25_fps_source_embeds_with_the_10_fps_demo_run(demo_run, capsys, tmp_path):
    """Metrica's EPTS excerpt in kloppy's wheel (real, 25 fps), tokenized with the run's vocabulary: written at the
    run's rate with `dataset --fps 10` it embeds; written at its own rate the error names that flag."""
    from trajsv_jax.data import ingest

    files = ingest.bundled_skillcorner_files()[0].parent
    paths = [f"raw_data={files / 'epts_metrica_tracking.txt'}", f"meta_data={files / 'epts_metrica_metadata.xml'}"]
    assert cli.main(["ingest", "metrica_epts", *paths, "--out", str(tmp_path / "store")]) == 0
    [source] = store.read_store(tmp_path / "store")
    assert source.fps == 25
    vocab = demo_run / "tfrecords" / "vocab.npz"
    argv = ["tokenize", str(tmp_path / "store"), "--vocabulary", str(vocab), "--clips-per-video", "4"]
    assert cli.main([*argv, "--train-fraction", "0"]) == 0
    run = ["embed", "--workdir", str(demo_run / "train"), "--split", "test"]
    for fps, rc in ((None, 2), ("10", 0)):
        out = tmp_path / f"data{fps}"
        assert cli.main(["dataset", str(tmp_path / "store"), "--out", str(out), *(["--fps", fps] if fps else [])]) == 0
        capsys.readouterr()
        assert cli.main([*run, "--data", str(out), "--out", str(tmp_path / f"emb{fps}")]) == rc
        if rc:
            assert "--fps 10" in capsys.readouterr().err
    embedded = embed.read_embeddings(tmp_path / "emb10")
    assert len(embedded["videos"]) >= 1 and np.isfinite(embedded["videos"]).all()


HEAVY = ("tensorflow", "jax", "jaxlib", "scann", "cv2", "flax", "orbax", "matplotlib", "optax", "kloppy")


def test_building_the_parser_imports_nothing_heavy():
    """`trajsv --help` must come back at once: the parser's imports leave TF, JAX, cv2 & co. unloaded."""
    code = f"import sys, trajsv_jax.cli as c; c.build_parser(); print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def subcommands() -> list[str]:
    action = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def test_every_parser_command_has_a_function():
    assert sorted(subcommands()) == sorted(commands.COMMANDS)


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0 and f"usage: trajsv {command}" in capsys.readouterr().out
