"""Reliability of embed / index / search / evaluate (docs/RELIABILITY.md): checksummed folders, non-finite vectors,
k, paths read from manifests, one writer per output folder, and crashes that leave nothing loadable.

Cheap by design: no training. `fake_encoder` is an `Encoder` over the session's demo dataset whose vectors are a
fixed function of the video id, so embed, index and search run for real in a second or two.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil

import ml_collections
import numpy as np
import pytest
from conftest import one_line_error

from input_pipeline import reader
from trajsv_jax import cli, files
from trajsv_jax.errors import UserError
from trajsv_jax.retrieval import embed, evaluate, search, studies
from trajsv_jax.retrieval import index as index_lib
from trajsv_jax.training import sharding, trainers

DIM = 8


def id_vectors(ids: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """float32 [N, DIM] unit vectors, a fixed function of each id (times `scale`: NaN for a broken run)."""
    rows = [np.random.default_rng(int(i) % (1 << 32)).standard_normal(DIM) for i in ids]
    vectors = np.array(rows, np.float32).reshape(len(ids), DIM)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True) * np.float32(scale)


@pytest.fixture(scope="module")
def fake_encoder(demo_dataset) -> trainers.Encoder:
    """An encoder of the demo dataset giving `id_vectors` of the video ids (clip vectors: the same, per clip)."""
    config = ml_collections.ConfigDict({"data_dir": str(demo_dataset), "model": {"vocab_size": 0}})
    _, example, vocab, _ = trainers.read_dataset(config)

    def encode(batch):
        ids = np.asarray(batch["video_id"])
        video = id_vectors(ids)
        return {"video": video, "clips": np.repeat(video[:, None], batch["clip_mask"].shape[1], 1)}

    mesh = sharding.make_mesh(data=1)
    return trainers.Encoder("trajsv", "fake_run", 7, str(demo_dataset), example, vocab, mesh, encode)


@pytest.fixture
def run(fake_encoder, monkeypatch) -> trainers.Encoder:
    """`trainers.load_encoder` of any workdir gives `fake_encoder` (patched for this test)."""
    monkeypatch.setattr(trainers, "load_encoder", lambda workdir, which="best": fake_encoder)
    return fake_encoder


@pytest.fixture(scope="module")
def built(fake_encoder, tmp_path_factory):
    """Embeddings of the demo test split by the fake run, and a ScaNN index of them (once per module)."""
    root = tmp_path_factory.mktemp("built")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainers, "load_encoder", lambda workdir, which="best": fake_encoder)
        embed.embed_split("fake_run", root / "embeddings")
        search.build(root / "embeddings", root / "index", index_lib.IndexSettings())
    return root


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of `built` (embeddings/ and index/) that a test may damage."""
    shutil.copytree(built, tmp_path / "c")
    return tmp_path / "c"


def flip(path, count: int = 8) -> None:
    """Flip `count` bytes near the end of a file (inside the data, past any header)."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) - count - 1, len(data) - 1):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def error(call, *words: str) -> str:
    with pytest.raises(UserError) as excinfo:
        call()
    return one_line_error(excinfo, *words)


def rewrite_manifest(folder, name: str, edit) -> None:
    """Apply edit(dict) to a folder's json manifest and write it back, sealed again: an edit its own checksum
    cannot see (an unsealed edit is refused as such, see test_index.py)."""
    path = folder / name
    path.write_text(json.dumps(index_lib.sealed(edit(json.loads(path.read_text())))))


# 1. integrity ---------------------------------------------------------------------------------------------------


def test_index_manifest_checksums_every_file(built):
    manifest = json.loads((built / "index" / "manifest.json").read_text())
    on_disk = {
        p.relative_to(built / "index").as_posix()
        for p in (built / "index").rglob("*")
        if p.is_file() and p.name not in {"manifest.json", files.LOCK_FILE}
    }
    assert set(manifest["files"]) == on_disk >= {"ids.npy", "vectors.npy", "scann/dataset.npy"}
    embeddings = json.loads((built / "embeddings" / "index.json").read_text())["files"]
    assert manifest["provenance"]["embeddings_files"] == {name: embeddings[name] for name in search.INDEXED_FILES}


@pytest.mark.parametrize("name", ["scann/dataset.npy", "scann/scann_config.pb", "vectors.npy", "ids.npy"])
def test_flipped_bytes_in_any_index_file_are_named(copy, name):
    flip(copy / "index" / name)
    error(lambda: index_lib.load_index(copy / "index"), f"{name} changed", "trajsv index")


def test_search_refuses_scores_outside_the_unit_range(built):
    """A searcher whose data is not the unit vectors it should hold (in memory: the checksums cannot see it)."""
    loaded = index_lib.load_index(built / "index")
    broken = index_lib._make_searcher(loaded.vectors * 1e3, loaded.settings)
    index = index_lib.Index(broken, loaded.ids, loaded.vectors, loaded.settings, loaded.manifest, "the index")
    for queries in (loaded.vectors[:1], loaded.vectors[:3]):  # the single-query and the batched path
        error(lambda q=queries: index.search(q, 3), "outside [-1, 1]", "trajsv index")


@pytest.mark.parametrize("name", ["videos.npy", "video_ids.npy"])
def test_reordered_embedding_rows_are_caught_before_and_after_indexing(copy, run, name):
    search.build(copy / "embeddings", copy / "index", index_lib.IndexSettings())  # built from this copy
    array = np.load(copy / "embeddings" / name)
    np.save(copy / "embeddings" / name, array[::-1])  # same shape, other order
    error(lambda: embed.read_embeddings(copy / "embeddings"), f"{name} changed", "trajsv embed")
    error(lambda: search.build(copy / "embeddings", copy / "new", index_lib.IndexSettings()), "trajsv embed")
    # the index built before the change: its own files are intact, but it no longer matches its embeddings
    error(lambda: search.find_similar(copy / "index", video_id=1), f"{name} changed", "trajsv index")


# 2. non-finite vectors ------------------------------------------------------------------------------------------


def test_embed_refuses_non_finite_vectors_and_writes_nothing(fake_encoder, monkeypatch, tmp_path):
    def nan_encode(batch):
        return {k: v * np.nan for k, v in fake_encoder.encode(batch).items()}

    broken = dataclasses.replace(fake_encoder, encode=nan_encode)
    monkeypatch.setattr(trainers, "load_encoder", lambda workdir, which="best": broken)
    message = error(lambda: embed.embed_split("fake_run", tmp_path / "e"), "NaN or inf", "trajsv train", "--checkpoint")
    assert re.search(r"\b(\d+) of \1 video vectors", message), message
    assert not list((tmp_path / "e").glob("*.npy")) and not (tmp_path / "e" / "index.json").exists()


def test_embed_of_an_empty_split_is_one_line(run, monkeypatch, tmp_path):
    monkeypatch.setattr(reader, "ordered_batches", lambda *args: iter(()))
    error(lambda: embed.embed_split("fake_run", tmp_path / "e"), "split 'test' has no videos", "trajsv dataset")


def test_index_refuses_non_finite_embeddings_read_from_disk(copy):
    """Consistent checksums (e.g. embeddings of an older trajsv): the values themselves are checked."""
    videos = np.load(copy / "embeddings" / "videos.npy")
    videos[[0, 2]] = np.inf
    np.save(copy / "embeddings" / "videos.npy", videos)
    digest = files.sha256(copy / "embeddings" / "videos.npy")
    rewrite_manifest(copy / "embeddings", "index.json", lambda m: m | {"files": m["files"] | {"videos.npy": digest}})
    build = lambda: search.build(copy / "embeddings", copy / "new", index_lib.IndexSettings())  # noqa: E731
    error(build, "videos.npy", "2 of", "NaN or inf", "trajsv embed")


# 3. k -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one_is_refused_up_front(built, k, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["search", "--index", str(built / "index"), "--video-id", "1", "-k", str(k)])
    assert exit_info.value.code == 2 and f"'{k}': expected a whole number >= 1" in capsys.readouterr().err
    error(lambda: search.find_similar(built / "index", video_id=1, k=k), f"k={k}:")


def test_k_is_the_number_of_matches(built, run):
    ids = np.load(built / "embeddings" / "video_ids.npy")
    (query,) = search.find_similar(built / "index", video_id=int(ids[2]), k=3).queries
    expected = np.argsort(-(id_vectors(ids) @ id_vectors(ids[2:3])[0]))[1:4]  # itself left out
    assert query["ids"] == ids[expected].tolist()


# 4. paths read from manifests -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "manifest", "edit"),
    [
        ("index", "manifest.json", lambda m: m | {"files": m["files"] | {"../../x": "0" * 64}}),
        ("index", "manifest.json", lambda m: m | {"files": m["files"] | {"/etc/passwd": "0" * 64}}),
        ("embeddings", "index.json", lambda m: m | {"files": m["files"] | {"../x.npy": "0" * 64}}),
    ],
)
def test_manifest_paths_leaving_the_folder_are_refused(copy, folder, manifest, edit):
    rewrite_manifest(copy / folder, manifest, edit)
    load = index_lib.load_index if folder == "index" else embed.read_embeddings
    error(lambda: load(copy / folder), "is not a valid file name")


def test_scann_asset_paths_leaving_the_folder_are_refused(copy):
    """ScaNN's own list of files (scann_assets.pbtxt), edited with its checksum: refused before ScaNN reads it."""
    assets = copy / "index" / "scann" / "scann_assets.pbtxt"
    assets.write_text(assets.read_text().replace('"dataset.npy"', '"../../../x.npy"'))
    digest = files.sha256(assets)
    rewrite_manifest(
        copy / "index", "manifest.json", lambda m: m | {"files": m["files"] | {"scann/scann_assets.pbtxt": digest}}
    )
    error(lambda: index_lib.load_index(copy / "index"), "'../../../x.npy' is not a valid file name")


def test_ids_read_from_the_dataset_are_checked(bundled_source):
    batch = {"source_index": np.array([0, 3]), "clip_ids": np.array([[0, 1], [0, 1]]), "video_id": np.array([5, 9])}
    assert len(search.video_positions([bundled_source], batch, 0)[0])
    error(lambda: search.video_positions([bundled_source], batch, 1), "source_index 3", "trajsv dataset")
    query = {"video_id": 5, "ids": [77], "scores": [0.4]}
    plot = lambda: search.plot_first("x.png", (batch, [bundled_source]), query, (batch, [bundled_source]))  # noqa: E731
    error(plot, "video 77", "trajsv index")


# 5. one writer per folder, crashes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["embed", "--workdir", "fake_run", "--out", "{dir}"],
        ["index", "--embeddings", "{built}/embeddings", "--out", "{dir}"],
        ["evaluate", "retrieval", "--workdir", "fake_run", "--out", "{dir}"],
        ["evaluate", "ablations", "--out", "{dir}"],
    ],
)
def test_a_second_writer_fails_in_one_line(built, run, tmp_path, argv, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    fd = os.open(folder / files.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another writer, as another process holds it
        os.write(fd, b"`trajsv other` (pid 12345)")
        assert cli.main([a.format(dir=folder, built=built) for a in argv]) == 2
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip()
    assert "in use by `trajsv other` (pid 12345)" in err and "\n" not in err
    assert sorted(p.name for p in folder.iterdir()) == [files.LOCK_FILE]


class Crash(Exception):
    """The process dying in the middle of a write."""


@pytest.mark.parametrize("writer", ["index", "embed"])
def test_a_crash_while_writing_leaves_nothing_that_loads(built, run, tmp_path, monkeypatch, writer):
    """A rewrite of a complete folder dies half-way (after its first array): the folder no longer loads."""
    out = tmp_path / writer
    write = (
        (lambda: search.build(built / "embeddings", out, index_lib.IndexSettings()))
        if writer == "index"
        else (lambda: embed.embed_split("fake_run", out))
    )
    write()
    real, calls = files.atomic_npy, []

    def dies_second_time(path, array):
        calls.append(path)
        if len(calls) == 2:
            raise Crash
        return real(path, array)

    monkeypatch.setattr(files, "atomic_npy", dies_second_time)
    with pytest.raises(Crash):
        write()
    load = index_lib.load_index if writer == "index" else embed.read_embeddings
    error(lambda: load(out), "trajsv " + writer)


def test_evaluate_writes_are_atomic_and_cached_results_are_checked(tmp_path, monkeypatch):
    scores = {"delta": 0.5, "hr1": 1.0, "mrr": 1.0, "exact_hr1": 1.0, "exact_mrr": 1.0, "same_rank": 1.0}
    result = evaluate.RetrievalResult("r", "trajsv", 3, "d", "test", 5, 5, 0, {"mode": "brute_force"}, [scores])
    written = result.write(tmp_path / "out")
    assert [os.path.basename(p) for p in written] == ["retrieval.json", "retrieval.md", "retrieval.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [files.LOCK_FILE, *map(os.path.basename, written)]
    )
    # a damaged cache of a study's evaluation is recomputed, a damaged summary of a run is a one-line error
    workdir = tmp_path / "run"
    workdir.mkdir()
    cache = workdir / "retrieval_test_seed0.json"
    cache.write_text('{"run": ')
    monkeypatch.setattr(evaluate, "evaluate_run", lambda *args: result)
    protocol = evaluate.Protocol(deltas=(0.5,))
    assert studies.evaluated(workdir, protocol) == result
    assert json.loads(cache.read_text())["results"] == result.results
    (workdir / "summary.json").write_text("{")
    error(lambda: studies.train_run(studies.FULL, 0, "d", workdir, ()), "summary.json", "trajsv evaluate")


def test_evaluate_refuses_non_finite_vectors(run, monkeypatch):
    vectors = (id_vectors(np.arange(5), np.nan), {})
    monkeypatch.setattr(evaluate, "database_and_queries", lambda *a: dict.fromkeys(a[3], vectors))
    error(lambda: evaluate.evaluate_run("fake_run"), "5 of 5 video vectors", "NaN or inf", "trajsv train")
