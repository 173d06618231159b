"""The retrieval protocol and the experiment tables on the real bundled match (tiny model, a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import tiny_model_overrides

from input_pipeline import reader
from input_pipeline import write as write_lib
from trajsv_jax import config as config_lib
from trajsv_jax.retrieval import embed, evaluate, studies
from trajsv_jax.training import loop, trainers


@pytest.fixture(scope="module")
def tiny_run(demo_dataset, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny_run")
    config = config_lib.load_config("configs/demo.py", [*tiny_model_overrides(demo_dataset), "--config.max_steps=4"])
    loop.train_and_evaluate(config, workdir)
    return workdir


def test_queries_replace_trajectories_and_clips_and_are_retokenized(tiny_run, demo_dataset):
    encoder = trainers.load_encoder(tiny_run)
    data = reader.read_split(demo_dataset, "test")
    vocab = tuple(jax.numpy.asarray(x) for x in encoder.vocab.device_arrays())
    grids, unknown = encoder.vocab.layout, encoder.vocab.unknown_token
    key = jax.random.key(0)
    noisy = jax.device_get(evaluate._noisy(key, data, 0.6, vocab, grids, unknown))
    again = jax.device_get(evaluate._noisy(key, data, 0.6, vocab, grids, unknown))
    np.testing.assert_array_equal(noisy["positions"], again["positions"])  # fixed seed, same queries
    valid = data["clip_mask"]
    moved = noisy["clip_ids"] != data["clip_ids"]  # one source: a clip id names one clip
    expected = np.round(0.6 * valid.sum(1))
    np.testing.assert_array_equal((moved & valid).sum(1), expected)  # inter-clip: round(δ · clips) replaced
    kept = valid & ~moved
    changed = ~np.all(np.isclose(noisy["positions"], data["positions"], equal_nan=True), axis=(2, 3, 4, 5))
    assert changed[kept].mean() > 0.9  # intra-clip: trajectories replaced in the clips that stayed
    retokenized = jax.device_get(embed.retokenized(noisy, vocab, grids, unknown))["tokens"]
    np.testing.assert_array_equal(noisy["tokens"], retokenized)
    assert (noisy["tokens"] != data["tokens"])[data["segment_mask"]].mean() > 0.3


def test_protocol_finds_unchanged_videos_and_scann_agrees_with_exact(tiny_run, demo_dataset):
    protocol = evaluate.Protocol(deltas=(0.0, 0.6))
    result = evaluate.evaluate_run(tiny_run, protocol=protocol)
    test_videos = write_lib.read_info(demo_dataset)["splits"]["test"]["num_examples"]
    assert result.database_size == test_videos > 10 and result.k == test_videos
    exact, noisy = result.results
    assert exact["delta"] == 0.0 and exact["hr1"] == exact["exact_hr1"] == 1.0 and exact["mrr"] == 1.0
    assert noisy["same_rank"] == 1.0 and noisy["hr1"] == noisy["exact_hr1"]
    assert 0.0 <= noisy["hr1"] <= noisy["mrr"] <= 1.0
    assert f"database {test_videos} videos" in result.report()


def test_queries_are_keyed_by_delta_and_baselines_and_chance_are_stated(tiny_run, monkeypatch, tmp_path):
    """The queries at δ 0.6 do not depend on the other δs asked for; the learning-free baselines run on the same
    queries; the random guess is 1/N and H_N/N; per group the protocol runs within the group."""
    both = evaluate.evaluate_run(tiny_run, protocol=evaluate.Protocol(deltas=(0.5, 0.6)))
    alone = evaluate.evaluate_run(tiny_run, protocol=evaluate.Protocol(deltas=(0.6,)))
    assert both.results[1] == alone.results[0] and both.baselines["grid"][1] == alone.baselines["grid"][0]
    n = both.database_size
    assert both.chance == pytest.approx({"hr1": 1 / n, "mrr": sum(1 / r for r in range(1, n + 1)) / n})
    assert set(both.baselines) == {"grid", "random"} and both.vocabulary["split"] == "train"
    assert 0 <= both.baselines["random"][0]["hr1"] <= 1 and both.groups == []  # one source: no group rows
    exact = evaluate.evaluate_run(tiny_run, protocol=evaluate.Protocol(deltas=(0.0,)))
    assert exact.baselines["grid"][0]["hr1"] == 1.0  # an unchanged video is its own nearest grid
    assert "learning-free grid" in both.report() and f"random guess at {n} videos" in both.report()

    # two groups (alternate test videos stand in for two datasets): each row is the protocol within its group
    def halves(data, _):
        return np.where(np.arange(len(data["video_id"])) % 2 == 0, "a|soccer|metric", "b|soccer|metric")

    monkeypatch.setattr(evaluate, "video_groups", halves)
    grouped = evaluate.evaluate_run(tiny_run, protocol=evaluate.Protocol(deltas=(0.6,)))
    sizes = {g["dataset"]: g["database_size"] for g in grouped.groups}
    assert sizes == {"a": (n + 1) // 2, "b": n // 2}
    for g in grouped.groups:
        assert set(g["methods"]) == {"trajsv", "grid", "random"} and g["chance"]["hr1"] == 1 / g["database_size"]
    written = grouped.write(tmp_path / "out")
    assert {Path(w).name for w in written} >= {"retrieval_a_soccer_metric.png", "retrieval_b_soccer_metric.png"}
    text = (tmp_path / "out" / "retrieval.md").read_text()
    assert "### a soccer (metric)" in text and "| random guess |" in text and "| grid (learning-free) |" in text


def test_study_trains_evaluates_tabulates_and_reuses_runs(tiny_run, demo_dataset, tmp_path):
    overrides = [*tiny_model_overrides(demo_dataset)[1:], "--config.max_steps=2"]
    protocol = evaluate.Protocol(deltas=(0.5, 0.6))
    args = ("ablations", tmp_path, (0, 1), "VRNet (Mean)", overrides, protocol, str(demo_dataset))
    result = studies.run_study(*args)
    row, *references = result.table["rows"]
    assert row["method"] == "w/o VRNet (Mean)" and len(row["results"]) == 2 and len(row["train_seconds"]) == 2
    assert [r["method"] for r in references] == ["grid (learning-free)", "random (learning-free)", "random guess"]
    table = (tmp_path / "ablations" / "table.md").read_text()
    assert "| w/o VRNet (Mean) |" in table and " ± " in table and "Database: " in table and "| random guess |" in table
    assert (tmp_path / "ablations" / "retrieval.png").read_bytes()[:4] == b"\x89PNG"
    summary = tmp_path / "runs" / row["key"] / "seed1" / "summary.json"
    before = summary.stat().st_mtime_ns
    again = studies.run_study(*args)
    assert summary.stat().st_mtime_ns == before and again.table["rows"][0]["results"] == row["results"]
    skipped = studies.run_study("ablations", tmp_path, (0,), "Visual", overrides, protocol, str(demo_dataset))
    assert "no visual features" in skipped.table["rows"][0]["skipped"]
    assert json.loads((tmp_path / "ablations" / "table.json").read_text())["study"] == "ablations"
