"""Clips, videos, time splits and the canonical store: cutting rules, drop counts, round trips, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trajsv_jax.data import clips, store
from trajsv_jax.errors import UserError


def make_frames(n_frames: int = 100, k: int = 3, fps: float = 10.0, seed: int = 0) -> clips.Frames:
    rng = np.random.default_rng(seed)
    positions = rng.uniform([-50, -30], [50, 30], size=(n_frames, k, 2)).astype(np.float32)
    return clips.Frames(
        positions=positions,
        frame_id=np.arange(n_frames, dtype=np.int64),
        period=np.ones(n_frames, np.int16),
        timestamp=np.arange(n_frames) / fps,
        object_role=np.array([clips.ROLE_BALL] + [clips.ROLE_TEAM_A] * (k - 1), np.int8),
        object_id=np.array(["ball"] + [f"p{i}" for i in range(1, k)]),
        fps=fps,
        pitch_length=105.0,
        pitch_width=68.0,
        metadata={"provider": "test"},
    )


def test_runs_break_at_period_gap_and_missing_frames():
    frames = make_frames(40)
    frames.positions[10:12] = np.nan  # two frames without detections
    frames.period[25:] = 2  # a new period starts at frame 25
    frames.timestamp[25:] = np.arange(15) / 10.0
    frames.timestamp[32:] += 5.0  # a 5 s gap inside period 2
    source, drops = store.source_from_frames(frames, "s")
    assert drops.frames_without_detections == 2
    np.testing.assert_array_equal(source.clip_first_frame, [0, 12, 25, 32])
    np.testing.assert_array_equal(source.clip_lengths(), [10, 13, 7, 8])
    np.testing.assert_array_equal(source.clip_period, [1, 1, 2, 2])
    np.testing.assert_allclose(source.clip_start, [0.0, 1.2, 0.0, 5.7])


def test_short_runs_dropped_and_counted_long_runs_split_not_truncated():
    frames = make_frames(400)
    frames.positions[3] = np.nan  # frames 0-2 form a 0.3 s run: dropped
    frames.positions[7] = np.nan  # frames 4-6 form a 0.3 s run: dropped; 8..399 is 39.2 s: split in 3
    source, drops = store.source_from_frames(frames, "s")
    assert drops.short_clips == 2 and drops.short_clip_frames == 6
    assert drops.clips_split == 1
    lengths = source.clip_lengths()
    assert lengths.sum() == 392 and len(lengths) == 3 and lengths.max() <= 160
    np.testing.assert_array_equal(source.positions, frames.positions[8:])


def test_exactly_min_length_kept():
    frames = make_frames(10)
    frames.positions[4] = np.nan  # 0-3: exactly 0.4 s, kept; 5-9: 0.5 s kept
    source, drops = store.source_from_frames(frames, "s")
    np.testing.assert_array_equal(source.clip_lengths(), [4, 5])
    assert drops.short_clips == 0


def test_off_pitch_and_half_missing_coordinates_counted():
    frames = make_frames(20)
    frames.positions[0, 1] = [60.0, 0.0]  # beyond the goal line
    frames.positions[1, 2] = [0.0, -40.0]  # beyond the touchline
    frames.positions[2, 1, 0] = np.nan  # x missing, y present
    frames.positions[3, 2, 1] = np.inf  # somewhere, not on the pitch: off-pitch, not half-missing
    frames.positions = frames.positions.astype(np.float64)
    frames.positions[4, 1] = [1e300, 0.0]  # overflows float32 to inf: off-pitch too
    frames.positions[5, 2] = [np.inf, np.nan]  # one coordinate missing: half-missing
    source, drops = store.source_from_frames(frames, "s")
    assert drops.off_pitch == 4 and drops.nan_coordinates == 2
    assert np.isnan(source.positions[[0, 1, 2, 3, 4, 5], [1, 2, 1, 2, 1, 2]]).all()
    assert source.metadata["drops"]["off_pitch"] == 4
    finite = source.positions[np.isfinite(source.positions).all(-1)]
    assert np.abs(finite[:, 0]).max() <= 52.5 and np.abs(finite[:, 1]).max() <= 34


def test_objects_never_seen_are_left_out():
    frames = make_frames(20, k=4)
    frames.positions[:, 3] = np.nan
    source, _ = store.source_from_frames(frames, "s")
    assert source.num_objects == 3 and list(source.object_id) == ["ball", "p1", "p2"]


def test_videos_group_consecutive_clips_per_period_and_split_by_time():
    period = np.array([1] * 40 + [2] * 9, np.int16)
    start = np.concatenate([np.arange(40) * 20.0, np.arange(9) * 20.0])
    usable = np.ones(49, bool)
    usable[5] = False
    videos = clips.make_videos("s", period, start, usable, clips_per_video=16)
    assert [(v.first_clip, v.num_clips) for v in videos] == [(0, 5), (6, 16), (22, 16), (38, 2), (40, 9)]
    assert [v.split for v in videos] == ["train"] * 4 + ["test"]
    train_clips = {c for v in videos if v.split == "train" for c in range(v.first_clip, v.first_clip + v.num_clips)}
    test_clips = {c for v in videos if v.split == "test" for c in range(v.first_clip, v.first_clip + v.num_clips)}
    assert not train_clips & test_clips
    assert max(start[c] + 1000 * period[c] for c in train_clips) < min(start[c] + 1000 * period[c] for c in test_clips)


def test_store_round_trip(tmp_path):
    source, _ = store.source_from_frames(make_frames(120), "match-1")
    source.visual = np.random.default_rng(1).normal(size=(source.num_clips, 8)).astype(np.float32)
    source.visual_mask = np.ones(source.num_clips, bool)
    store.write_source(tmp_path, source)
    store.write_source(tmp_path, source)  # replacing keeps one entry
    assert store.list_sources(tmp_path) == ["match-1"]
    back = store.read_source(tmp_path, "match-1")
    for name in ("positions", "clip_offsets", "clip_period", "clip_start", "object_role", "object_id", "visual"):
        np.testing.assert_array_equal(getattr(back, name), getattr(source, name))
    assert back.fps == 10.0 and back.metadata["provider"] == "test"
    assert not list(tmp_path.rglob("*.tmp*"))


def test_store_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="not a trajectory store"):
        store.list_sources(tmp_path)
    source, _ = store.source_from_frames(make_frames(50), "m")
    npz = store.write_source(tmp_path, source)
    npz.write_bytes(npz.read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match=r"m\.npz: unreadable") as err:
        store.read_source(tmp_path, "m")
    assert "\n" not in str(err.value)
    npz.unlink()
    with pytest.raises(UserError, match=r"m\.npz: missing\. Re-run `trajsv ingest"):
        store.read_source(tmp_path, "m")
    manifest = json.loads((tmp_path / "store.json").read_text())
    (tmp_path / "store.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(UserError, match="format version 99"):
        store.list_sources(tmp_path)


def test_bundled_match_clips(bundled_source):
    """The real match: 10 Hz, clips between 0.4 s and 16 s, nothing off the pitch, drops recorded."""
    s = bundled_source
    lengths = s.clip_lengths()
    assert s.fps == 10.0 and s.num_clips > 300
    assert lengths.min() >= 4 and lengths.max() <= 160
    finite = s.positions[np.isfinite(s.positions).all(-1)]
    assert np.abs(finite[:, 0]).max() <= 52.5 and np.abs(finite[:, 1]).max() <= 34
    drops = s.metadata["drops"]
    # Replays and close-ups have no detections: about half of the 68,101 frames; the reader skips them and counts.
    skipped = s.metadata["empty_frames_skipped"] + s.metadata["frames_without_period_skipped"]
    assert drops["frames_without_detections"] + skipped > 30000
    assert set(np.unique(s.object_role)) == {clips.ROLE_BALL, clips.ROLE_TEAM_A, clips.ROLE_TEAM_B}
