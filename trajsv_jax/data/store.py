"""The canonical trajectory store shared by ingest, the video front end and training (docs/FORMAT.md).

A store is a directory:
    store.json                 {"format": "trajsv-store", "version": 1, "sources": [...]}
    sources/<source_id>.npz    clip arrays of one match or video (see `Source`)
    sources/<source_id>.json   metadata: provider, fps, pitch size, teams, date, file, drop counts
    vocab.npz                  the Jaccard vocabulary (`tokenize.Vocabulary`), written by `trajsv tokenize`
    tokens/<source_id>.npz     token ids of every segment of a source's clips, with per-clip offsets
Writes go to a temporary name and are renamed into place, so a failed run never leaves a half-written source.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from trajsv_jax.data import clips as clips_lib
from trajsv_jax.errors import UserError

FORMAT_NAME = "trajsv-store"
FORMAT_VERSION = 1
VOCAB_FILE = "vocab.npz"
TOKENS_DIR = "tokens"
_ARRAYS = ("positions", "clip_offsets", "clip_period", "clip_start", "clip_first_frame", "object_role", "object_id")


@dataclasses.dataclass
class Source:
    """One match or video: its clips, concatenated on the frame axis. Clip c is frames clip_offsets[c]:[c + 1]."""

    source_id: str
    fps: float
    positions: np.ndarray  # [F, K, 2] float32 centred metres, NaN = not seen
    clip_offsets: np.ndarray  # [C + 1] int64
    clip_period: np.ndarray  # [C] int16
    clip_start: np.ndarray  # [C] float64 seconds since the start of the period
    clip_first_frame: np.ndarray  # [C] int64 provider frame number
    object_role: np.ndarray  # [K] int8 clips.ROLE_*
    object_id: np.ndarray  # [K] str
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    visual: np.ndarray | None = None  # [C, D] float32 frozen visual features
    visual_mask: np.ndarray | None = None  # [C] bool

    @property
    def num_clips(self) -> int:
        return len(self.clip_offsets) - 1

    @property
    def num_objects(self) -> int:
        return self.positions.shape[1]

    def clip(self, c: int) -> np.ndarray:
        """Positions [T, K, 2] of clip c."""
        return self.positions[self.clip_offsets[c] : self.clip_offsets[c + 1]]

    def clip_lengths(self) -> np.ndarray:
        return np.diff(self.clip_offsets)

    def validate(self, where: str = "") -> None:
        """Raise UserError naming `where` if the arrays break the format's invariants."""
        where = where or self.source_id
        c, k = self.num_clips, self.num_objects
        problems = []
        if self.positions.ndim != 3 or self.positions.shape[2] != 2:
            problems.append(f"positions has shape {self.positions.shape}, expected [F, K, 2]")
        elif self.clip_offsets[0] != 0 or self.clip_offsets[-1] != len(self.positions):
            problems.append("clip_offsets do not span positions")
        elif np.any(np.diff(self.clip_offsets) <= 0):
            problems.append("clip_offsets are not strictly increasing")
        for name, n in (("clip_period", c), ("clip_start", c), ("clip_first_frame", c)):
            if len(getattr(self, name)) != n:
                problems.append(f"{name} has {len(getattr(self, name))} entries for {c} clips")
        for name in ("object_role", "object_id"):
            if len(getattr(self, name)) != k:
                problems.append(f"{name} has {len(getattr(self, name))} entries for {k} objects")
        if self.visual is not None and (self.visual.shape[0] != c or self.visual_mask is None):
            problems.append("visual features need one row per clip and a visual_mask")
        if not self.fps > 0:
            problems.append(f"fps is {self.fps}")
        if problems:
            raise UserError(f"{where}: invalid source: {'; '.join(problems)}. Re-create it with `trajsv ingest`.")


def source_from_frames(
    frames: clips_lib.Frames, source_id: str, config: clips_lib.ClipConfig | None = None
) -> tuple[Source, clips_lib.Drops]:
    """Clean, clip and pack frame-level tracking into a Source; objects never seen in a clip are left out."""
    config = config or clips_lib.ClipConfig()
    positions, drops = clips_lib.clean_positions(frames, config.off_pitch_margin)
    ranges, clip_drops = clips_lib.clip_ranges(frames, positions, config)
    drops = drops.add(clip_drops)
    index = np.concatenate([np.arange(a, b) for a, b in ranges]) if ranges else np.zeros(0, np.int64)
    clip_positions = positions[index]
    seen = np.isfinite(clip_positions).all(-1).any(0)
    starts = np.array([a for a, _ in ranges], np.int64)
    metadata = dict(frames.metadata)
    metadata.update(
        pitch_length=float(frames.pitch_length),
        pitch_width=float(frames.pitch_width),
        frames_total=len(frames.frame_id),
        drops=drops.as_dict(),
        clip_config=dataclasses.asdict(config),
    )
    source = Source(
        source_id=source_id,
        fps=float(frames.fps),
        positions=np.ascontiguousarray(clip_positions[:, seen]),
        clip_offsets=np.concatenate([[0], np.cumsum([b - a for a, b in ranges])]).astype(np.int64),
        clip_period=frames.period[starts].astype(np.int16),
        clip_start=frames.timestamp[starts].astype(np.float64),
        clip_first_frame=frames.frame_id[starts].astype(np.int64),
        object_role=frames.object_role[seen].astype(np.int8),
        object_id=frames.object_id[seen].astype(str),
        metadata=metadata,
    )
    return source, drops


def safe_source_id(text: str) -> str:
    """A file-name-safe source id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "source"


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_source(store: str | os.PathLike, source: Source) -> Path:
    """Add or replace one source in the store (created if needed). Returns the .npz path."""
    source.validate()
    root = Path(store)
    (root / "sources").mkdir(parents=True, exist_ok=True)
    arrays = {name: getattr(source, name) for name in _ARRAYS}
    if source.visual is not None:
        arrays.update(visual=source.visual.astype(np.float32), visual_mask=source.visual_mask.astype(bool))
    npz = root / "sources" / f"{source.source_id}.npz"

    def save_npz(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic(npz, save_npz)
    meta = {"source_id": source.source_id, "fps": source.fps, **source.metadata}
    _atomic(npz.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(meta, indent=1, default=str)))
    index = _read_index(root) if (root / "store.json").exists() else []
    if source.source_id not in index:
        index.append(source.source_id)
    manifest = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "sources": index}
    _atomic(root / "store.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    return npz


def _read_index(root: Path) -> list[str]:
    path = root / "store.json"
    if not path.exists():
        raise UserError(
            f"{root}: not a trajectory store (no store.json). Create one with `trajsv ingest --out {root}`."
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: unreadable store manifest ({e}). Re-create the store with `trajsv ingest`.") from None
    if manifest.get("format") != FORMAT_NAME:
        raise UserError(f"{path}: not a trajsv store manifest (format={manifest.get('format')!r}).")
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: store format version {manifest.get('version')}, this trajsv reads version {FORMAT_VERSION}. "
            "Re-create the store with this version's `trajsv ingest`."
        )
    return list(manifest["sources"])


def list_sources(store: str | os.PathLike) -> list[str]:
    return _read_index(Path(store))


def read_source(store: str | os.PathLike, source_id: str) -> Source:
    root = Path(store)
    npz = root / "sources" / f"{source_id}.npz"
    try:
        meta = json.loads(npz.with_suffix(".json").read_text())
        with np.load(npz) as data:
            arrays = {name: data[name] for name in data.files}
    except FileNotFoundError as e:
        raise UserError(f"{e.filename}: missing from the store. Re-run `trajsv ingest` for {source_id}.") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{npz}: unreadable ({e}). Re-run `trajsv ingest` for {source_id}.") from None
    missing = [name for name in _ARRAYS if name not in arrays]
    if missing:
        raise UserError(f"{npz}: missing arrays {missing}. Re-run `trajsv ingest` for {source_id}.")
    fps = float(meta.pop("fps"))
    meta.pop("source_id", None)
    source = Source(
        source_id=source_id,
        fps=fps,
        metadata=meta,
        visual=arrays.get("visual"),
        visual_mask=arrays.get("visual_mask"),
        **{name: arrays[name] for name in _ARRAYS},
    )
    source.validate(str(npz))
    return source


def read_store(store: str | os.PathLike) -> list[Source]:
    """Every source of the store, in the order they were added."""
    return [read_source(store, sid) for sid in list_sources(store)]


def write_tokens(store: str | os.PathLike, source_id: str, tokens: np.ndarray, offsets: np.ndarray) -> Path:
    """Save a source's token ids (all its segments, in clip order) and clip offsets into the store."""
    path = Path(store) / TOKENS_DIR / f"{source_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, tokens=tokens, offsets=offsets)
    return path


def read_tokens(store: str | os.PathLike, source: Source) -> list[np.ndarray]:
    """Token ids per clip of a source, as saved by `write_tokens`."""
    path = Path(store) / TOKENS_DIR / f"{source.source_id}.npz"
    if not path.exists():
        raise UserError(f"{path}: no tokens for {source.source_id}. Run `trajsv tokenize {store}` first.")
    with np.load(path) as data:
        tokens, offsets = data["tokens"], data["offsets"]
    if len(offsets) != source.num_clips + 1:
        raise UserError(f"{path}: tokens are for another version of {source.source_id}. Re-run `trajsv tokenize`.")
    return [tokens[offsets[c] : offsets[c + 1]] for c in range(source.num_clips)]
