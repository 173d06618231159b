"""The data path under hostile or careless input (docs/RELIABILITY.md): manifests that point outside the store,
concurrent writers, corrupt files, bad numbers. Each failure is one line, and nothing is written outside the folder."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trajsv_jax import cli, files, prepare
from trajsv_jax.data import store, tokenize
from trajsv_jax.errors import UserError


def small_source(source: store.Source, clips: int = 12) -> store.Source:
    """The first `clips` clips of the real bundled match: a store that tokenizes in well under a second."""
    end = source.clip_offsets[clips]
    return dataclasses.replace(
        source,
        source_id="small",
        positions=source.positions[:end],
        clip_offsets=source.clip_offsets[: clips + 1],
        clip_period=source.clip_period[:clips],
        clip_start=source.clip_start[:clips],
        clip_first_frame=source.clip_first_frame[:clips],
    )


@pytest.fixture
def small_store(bundled_source, tmp_path) -> Path:
    root = tmp_path / "store"
    store.write_source(root, small_source(bundled_source))
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def error_line(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_manifest_ids_that_leave_the_store_are_refused(small_store, tmp_path, capsys):
    victim = tmp_path / "evil" / "victim.npz"
    victim.parent.mkdir()
    np.savez(victim, secret=np.arange(3))
    before = victim.read_bytes()
    manifest = json.loads((small_store / "store.json").read_text())
    manifest["sources"].append("../../evil/victim")
    (small_store / "store.json").write_text(json.dumps(manifest))
    err = error_line(capsys, ["tokenize", str(small_store)])
    assert "'../../evil/victim' is not a valid file name" in err and "store.json" in err
    assert victim.read_bytes() == before and not (small_store / "tokens").exists()


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", ".hidden", "a/b", "", 7])
def test_checked_name_refuses_paths(bad):
    with pytest.raises(UserError, match="not a valid file name"):
        files.checked_name(bad, "manifest", "Re-create it with `trajsv ingest`.")


def test_a_second_writer_fails_naming_the_holder(small_store, tmp_path, capsys):
    prepare.tokenize_store(small_store, split=prepare.Split(2))
    dataset = tmp_path / "dataset"
    lock_both = f"files.locked({str(small_store)!r}, 'x'), files.locked({str(dataset)!r}, 'x')"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from trajsv_jax import files\nwith {lock_both}:\n    print('locked', flush=True)\n"
         "    input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(tmp_path)
        assert f"in use by pid {holder.pid}" in error_line(capsys, ["tokenize", str(small_store)])
        with pytest.raises(UserError, match=f"in use by pid {holder.pid} "):
            store.write_source(small_store, dataclasses.replace(store.read_source(small_store, "small"), source_id="b"))
        argv = ["dataset", str(small_store), "--out", str(dataset), "--clips-per-video", "2"]
        assert f"{dataset}: in use by pid {holder.pid}" in error_line(capsys, argv)
        assert snapshot(tmp_path) == before
    finally:
        holder.communicate("\n")
    assert cli.main(argv) == 0  # the holder is gone: the kernel released its locks


def test_ingest_into_a_corrupt_store_writes_nothing(small_store, capsys):
    (small_store / "store.json").write_text('{"format": "trajsv-store", "vers')
    before = snapshot(small_store)
    err = error_line(capsys, ["ingest", "--out", str(small_store)])
    assert "store.json: unreadable store manifest" in err and "trajsv ingest" in err
    assert snapshot(small_store) == before


def test_ingest_out_a_regular_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "store"):
        err = error_line(capsys, ["ingest", "--out", str(out)])
        assert "is a file, not a folder" in err


def test_damaged_files_are_named(small_store, tmp_path, capsys):
    prepare.tokenize_store(small_store)
    meta = small_store / "sources" / "small.json"
    meta.write_text(meta.read_text()[:50])
    assert "small.json: unreadable source metadata" in error_line(capsys, ["info", str(small_store)])
    meta.write_text(json.dumps({"fps": 10.0}))
    tokens = small_store / "tokens" / "small.npz"
    raw = bytearray(tokens.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = bytes(64)
    tokens.write_bytes(bytes(raw))
    err = error_line(capsys, ["dataset", str(small_store), "--out", str(tmp_path / "d")])
    assert "tokens/small.npz: unreadable" in err and "trajsv tokenize" in err
    assert not (tmp_path / "d").exists()


def test_a_corrupt_vocabulary_is_named_and_never_copied(small_store, tmp_path, capsys):
    prepare.tokenize_store(small_store)
    vocab = small_store / store.VOCAB_FILE
    vocab.write_bytes(vocab.read_bytes()[:200])
    with pytest.raises(UserError, match=re.escape(f"{vocab}: not a readable trajsv vocabulary")):
        tokenize.Vocabulary.load(vocab)
    err = error_line(capsys, ["dataset", str(small_store), "--out", str(tmp_path / "d")])
    assert "vocab.npz: not a readable trajsv vocabulary" in err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("cell", ["0", "-3", "nan", "inf"])
def test_tokenize_refuses_bad_cells(small_store, cell, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tokenize", str(small_store), "--cell", cell])
    assert exit_info.value.code == 2
    assert f"argument --cell: '{cell}': expected a finite number > 0" in capsys.readouterr().err
    with pytest.raises(UserError, match="must be finite numbers > 0"):
        tokenize.Vocabulary(cell=float(cell))


def test_dataset_info_naming_files_outside_is_refused(demo_dataset, tmp_path):
    from input_pipeline import write

    (tmp_path / "d").mkdir()
    info = json.loads((demo_dataset / write.INFO_FILE).read_text())
    info["splits"]["train"]["shards"][0]["file"] = "../../victim.tfrecord"
    (tmp_path / "d" / write.INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(UserError, match=re.escape("'../../victim.tfrecord' is not a valid file name")):
        write.read_info(tmp_path / "d")
