"""Fields per source (docs/FORMAT.md, data/field.py): grids per field, mixed-field vocabularies with disjoint tokens,
version-1 stores read as soccer, and the vocabulary fitted on the train split only."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from input_pipeline import examples as examples_lib
from trajsv_jax import prepare
from trajsv_jax.data import field as field_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.data import tokenize as tk
from trajsv_jax.errors import UserError

HOCKEY = field_lib.Field.regulation("ice_hockey")


def reference_cells(points: np.ndarray, grid: field_lib.Grid) -> set[int]:
    """play2vec's cell rule, written out for any centred field: floor((x + L/2) / cell), clipped to the grid."""
    half_x, half_y, cell = (np.float32(v) for v in (grid.length / 2, grid.width / 2, grid.cell))
    out = set()
    for x, y in points:
        ix = min(max(math.floor((np.float32(x) + half_x) / cell), 0), grid.cols - 1)
        iy = min(max(math.floor((np.float32(y) + half_y) / cell), 0), grid.rows - 1)
        out.add(ix * grid.rows + iy)
    return out


def test_grids_follow_the_field():
    assert (field_lib.SOCCER.grid().cols, field_lib.SOCCER.grid().rows) == (35, 23)  # the paper's grid
    assert field_lib.Field(length=104, width=68).grid() == field_lib.SOCCER.grid()  # every pitch shares it
    assert (HOCKEY.grid().cols, HOCKEY.grid().rows) == (21, 9)
    camera = field_lib.Field.camera("basketball", 1280, 720).grid()
    assert (camera.cols, camera.rows, camera.kind) == (35, 20, "camera")
    layout = field_lib.GridLayout.of([field_lib.SOCCER, HOCKEY, field_lib.Field(length=104, width=68)])
    assert layout.offsets == (0, 805) and layout.num_cells == 805 + 189
    with pytest.raises(UserError, match=r"volleyball .* is not in this vocabulary"):
        layout.index(field_lib.Field.regulation("volleyball").grid())
    with pytest.raises(UserError, match="field kind"):
        field_lib.Field("soccer", "pixels", 10, 10)


def test_rasterize_puts_each_field_in_its_own_cells():
    rng = np.random.default_rng(0)
    grid = HOCKEY.grid()
    layout = field_lib.GridLayout((field_lib.SOCCER.grid(), grid))
    rink = rng.uniform([-31, -13.5], [31, 13.5], (2, 6, 5, 2)).astype(np.float32)  # [B, s, K, 2], some off the rink
    pitch = rng.uniform([-52.5, -34], [52.5, 34], (2, 6, 5, 2)).astype(np.float32)
    both = np.stack([pitch, rink])[:, :, None]  # [2 videos, 2 segments, 1, s, K, 2]: video 0 soccer, video 1 hockey
    cells = np.asarray(jax.jit(tk.rasterize, static_argnames="grid")(both, layout, np.array([0, 1])))
    assert cells.shape == (2, 2, 1, layout.num_cells)
    for seg in range(2):
        hockey = set(np.flatnonzero(cells[1, seg, 0]))
        assert hockey == {805 + c for c in reference_cells(rink[seg].reshape(-1, 2), grid)}
        assert set(np.flatnonzero(cells[0, seg, 0])) == reference_cells(pitch[seg].reshape(-1, 2), layout.grids[0])
    with pytest.raises(ValueError, match="grid_index"):
        tk.rasterize(both, layout)


def rink_source(source: store_lib.Source) -> store_lib.Source:
    """The bundled match squeezed onto a hockey rink: a second field with real motion."""
    scale = np.array([HOCKEY.length / 105, HOCKEY.width / 68], np.float32)
    meta = {**source.metadata, "field": HOCKEY.as_dict(), "group": "rink game"}
    return dataclasses.replace(source, source_id="rink", positions=source.positions * scale, metadata=meta)


@pytest.fixture(scope="module")
def mixed_store(bundled_source, tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed") / "store"
    store_lib.write_source(root, bundled_source)
    store_lib.write_source(root, rink_source(bundled_source))
    result = prepare.tokenize_store(root, split=prepare.Split(4, 0.8, 0.1))
    return root, result


def test_a_mixed_store_tokenizes_each_field_with_its_own_tokens(mixed_store):
    root, result = mixed_store
    vocab = result.vocab
    assert [g.sport for g in vocab.layout.grids] == ["soccer", "ice_hockey"]
    sources = store_lib.read_store(root)
    tokens = {s.source_id: np.concatenate(store_lib.read_tokens(root, s)) for s in sources}
    soccer, rink = (set(tokens[sid].tolist()) - {0, vocab.unknown_token} for sid in ("skillcorner_2417", "rink"))
    assert soccer and rink and not soccer & rink  # disjoint token ids
    entry_grid = vocab.matrices()[:, 805:].any(1)  # entries with a cell in the rink's range
    assert not (vocab.matrices()[entry_grid, :805]).any()  # no entry spans two fields
    by_grid = {int(t): bool(g) for t, g in zip(vocab.tokens, entry_grid, strict=True)}
    assert all(not by_grid[t] for t in soccer) and all(by_grid[t] for t in rink)
    # the dataset records each clip's grid; the rink source is grouped, so its whole game is in one split
    videos, stats = examples_lib.plan_videos(sources, 4, 0.8, 0.1)
    assert stats["groups"] == 1 and len({v.split for v in videos if v.source_id == "rink"}) == 1


def test_vocabulary_is_fitted_on_the_train_split_only(mixed_store):
    """No val or test segment is a vocabulary entry unless the same matrix occurs in train."""
    root, result = mixed_store
    vocab = result.vocab
    sources = store_lib.read_store(root)
    videos, _ = examples_lib.plan_videos(sources, 4, 0.8, 0.1)
    train, other = set(), set()
    for source in sources:
        matrices, offsets = tk.source_segment_matrices(source, 3.0, 1.0, vocab.layout)
        keys = [m.tobytes() for m in np.packbits(matrices, axis=1)]
        in_train = np.zeros(source.num_clips, bool)
        for v in videos:
            if v.source_id == source.source_id and v.split == "train":
                in_train[v.first_clip : v.first_clip + v.num_clips] = True
        for c in range(source.num_clips):
            (train if in_train[c] else other).update(keys[offsets[c] : offsets[c + 1]])
    entries = {m.tobytes() for m in np.packbits(vocab.matrices(), axis=1)}
    assert entries <= train and len(entries) == len(train - {np.packbits(np.zeros(vocab.num_cells, bool)).tobytes()})
    assert other - train and not (other - train) & entries  # test segments exist and none became an entry
    assert vocab.fitted_on["split"] == "train" and vocab.fitted_on["segments"] < result.segments
    assert result.assigned["segments"] > 0 and 0 < result.assigned["median_similarity"] < 1
    saved = tk.Vocabulary.load(root / store_lib.VOCAB_FILE)
    assert saved.fitted_on == vocab.fitted_on and saved.layout == vocab.layout
    # `trajsv dataset` takes the same split, and refuses another one
    assert prepare.read_split(root) == prepare.Split(4, 0.8, 0.1)
    with pytest.raises(UserError, match=r"clips_per_video=16 \(tokenized with 4\)"):
        prepare.checked_split(root, 16, None, None)


def test_a_segment_sharing_no_cell_with_any_entry_gets_the_unknown_token():
    vocab = tk.Vocabulary()
    rows = np.zeros((3, 805), bool)
    rows[0, :10] = rows[1, 5:12] = True
    vocab.tokenize(rows[:2])
    probe = np.zeros((3, 805), bool)
    probe[0, 700:] = True  # shares no cell
    probe[1, 8:20] = True  # overlaps entry 0 and 1
    tokens, sims = vocab.assign_with_similarity(probe)
    assert tokens.tolist() == [vocab.unknown_token, vocab.tokens[1], 0] and sims[0] == 0 and sims[2] == 1
    assert vocab.vocab_size == vocab.num_tokens + 2


def test_a_version_1_store_reads_as_soccer(bundled_source, tmp_path):
    root = tmp_path / "store"
    store_lib.write_source(root, bundled_source)
    manifest = json.loads((root / "store.json").read_text())
    assert manifest["version"] == 2
    meta_path = root / "sources" / f"{bundled_source.source_id}.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("field")
    meta_path.write_text(json.dumps(meta))
    (root / "store.json").write_text(json.dumps({**manifest, "version": 1}))
    [source] = store_lib.read_store(root)
    assert source.field == field_lib.Field("soccer", "metric", meta["pitch_length"], meta["pitch_width"])
    assert source.field.grid() == field_lib.SOCCER.grid()


def test_a_version_1_vocabulary_reads_as_the_soccer_grid(tmp_path):
    vocab = tk.Vocabulary()
    rows = np.zeros((2, 805), bool)
    rows[0, :4] = rows[1, 400:404] = True
    vocab.tokenize(rows)
    vocab.save(tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz") as z:
        old = {k: z[k] for k in z.files if k not in ("layout", "camera_cell", "fitted_on")}
    np.savez(tmp_path / "v1.npz", **{**old, "version": 1})
    back = tk.Vocabulary.load(tmp_path / "v1.npz")
    assert back.layout == field_lib.SOCCER_LAYOUT and back.num_tokens == 2 and back.fitted_on == {}
