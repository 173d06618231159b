"""`trajsv corpus` on every real source here: one store, several sports and fields, events, and the table."""

from __future__ import annotations

import json

import pytest
from conftest import shared_path

from trajsv_jax import cli
from trajsv_jax.data import events, store


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    shared = shared_path("data")
    for folder in ("bigdatacup_hockey_2022", "sportsmot_gt"):
        shared_path(f"data/{folder}")
    out = tmp_path_factory.mktemp("corpus") / "corpus"
    assert cli.main(["corpus", "--out", str(out), "--shared", str(shared)]) == 0
    return out


def test_every_real_source_is_in_one_store_with_its_field_and_licence(corpus):
    sources = store.read_store(corpus / "store")
    by_dataset = {}
    for s in sources:
        by_dataset.setdefault(s.metadata["dataset"], []).append(s)
        assert s.metadata["licence"] and s.metadata["competition"] and s.metadata["sport"] == s.field.sport
    assert {k: len(v) for k, v in by_dataset.items()} == {
        "skillcorner": 1, "hawkeye": 1, "pff": 2, "bigdatacup": 33, "sportsmot": 90,
    }  # fmt: skip
    assert {s.field.sport for s in by_dataset["sportsmot"]} == {"soccer", "basketball", "volleyball"}
    assert all(s.field.kind == "camera" for s in by_dataset["sportsmot"])
    assert all(s.field.sport == "ice_hockey" and s.group for s in by_dataset["bigdatacup"])
    hockey = by_dataset["bigdatacup"][0]
    records, alignment = events.read_events(corpus / "store", hockey.source_id)
    assert records and alignment


def test_the_table_counts_every_dataset_and_sport(corpus, capsys):
    summary = json.loads((corpus / "corpus.json").read_text())
    rows = {(r["dataset"], r["sport"]): r for r in summary["rows"]}
    assert set(rows) == {
        ("skillcorner", "soccer"), ("hawkeye", "soccer"), ("pff", "soccer"), ("bigdatacup", "ice_hockey"),
        ("sportsmot", "soccer"), ("sportsmot", "basketball"), ("sportsmot", "volleyball"),
    }  # fmt: skip
    assert rows[("bigdatacup", "ice_hockey")]["off-field object-frames"] > 0  # counted, not dropped silently
    for row in rows.values():
        train, val, test = (int(x) for x in row["videos (train/val/test)"].split("/"))
        assert row["clips"] > 0 and row["seconds"] > 0 and train > 0 and train + val + test > 0
    assert summary["skipped"] == {} and "| dataset |" in (corpus / "corpus.md").read_text()


def test_a_missing_shared_folder_is_said_not_hidden(tmp_path, capsys):
    assert cli.main(["corpus", "--out", str(tmp_path / "c"), "--shared", str(tmp_path / "nowhere")]) == 0
    out = capsys.readouterr().out
    assert "not in the corpus: bigdatacup" in out and "not in the corpus: sportsmot" in out
    assert {s.metadata["dataset"] for s in store.read_store(tmp_path / "c" / "store")} == {
        "skillcorner", "hawkeye", "pff",
    }  # fmt: skip
