"""The canonical trajectory store shared by ingest, the video front end and training (docs/FORMAT.md).

A store is a directory:
    store.json                 {"format": "trajsv-store", "version": 2, "sources": [...]}
    sources/<source_id>.npz    clip arrays of one match or video (see `Source`)
    sources/<source_id>.json   metadata: provider, fps, field (sport, kind, size), teams, date, file, drop counts
    events/<source_id>.json    (optional) timestamped events aligned to the source (`data.events`)
    vocab.npz                  the Jaccard vocabulary (`tokenize.Vocabulary`), written by `trajsv tokenize`
    tokens/<source_id>.npz     token ids of every segment of a source's clips, with per-clip offsets
Writes go to a temporary name and are renamed into place, so a failed run never leaves a half-written source; a
writer holds the store's lock (`files.locked`), and every source id read from store.json must be a plain file name.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trajsv_jax import files
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import field as field_lib
from trajsv_jax.errors import UserError

FORMAT_NAME = "trajsv-store"
FORMAT_VERSION = 2  # 2: every source records its field; version 1 stores are read as soccer pitches
READABLE_VERSIONS = (1, 2)
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
    def field(self) -> field_lib.Field:
        """The source's field; a version-1 source (no `field` in its metadata) is a soccer pitch of its own size."""
        if "field" in self.metadata:
            return field_lib.Field.from_dict(self.metadata["field"], f"{self.source_id} metadata")
        length, width = self.metadata.get("pitch_length", 105.0), self.metadata.get("pitch_width", 68.0)
        return field_lib.Field("soccer", field_lib.METRIC, float(length), float(width))

    @property
    def group(self) -> str | None:
        """What the source must share a split with (its game or video), for sources too short to split by time."""
        return self.metadata.get("group")

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
        field=frames.field.as_dict(),
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
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-") or "source"


def source_path(store: str | os.PathLike, source_id: str, suffix: str = ".npz", folder: str = "sources") -> Path:
    """store/folder/<source_id><suffix>, refused unless the id is a plain file name (ids come from manifests)."""
    name = files.checked_name(
        source_id, f"{store}: source id", f"Re-create the store with `trajsv ingest --out {store}`."
    )
    return files.inside(store, folder, name + suffix)


def check_writable(store: str | os.PathLike) -> None:
    """UserError, writing nothing, if `store` cannot take a new source: a file, or a store with a broken manifest."""
    root = files.output_folder(store, "ingest", create=False)
    if (root / "store.json").exists():
        _read_index(root)


def write_source(store: str | os.PathLike, source: Source) -> Path:
    """Add or replace one source in the store (created if needed). Returns the .npz path."""
    return write_sources(store, [source])[0]


def write_sources(
    store: str | os.PathLike, sources: list[Source], extra: Callable[[Path, Source], None] | None = None
) -> list[Path]:
    """Add or replace sources in the store (created if needed), in order. Returns the .npz paths.

    Everything is checked before anything is written (the sources, the manifest they join), under the store's lock;
    the arrays and metadata go first (and whatever `extra(root, source)` writes beside them, e.g. events), the
    manifest last, so a failure never leaves a source the store lists but cannot read, nor a half-written file.
    """
    for source in sources:
        source.validate()
        _ = source.field  # a field the metadata cannot describe is refused before anything is written
    ids = [s.source_id for s in sources]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise UserError(f"{store}: source ids {twice} given twice. Give every source its own id.")
    root = Path(store)
    check_writable(root)
    paths = [source_path(root, source.source_id) for source in sources]
    with files.locked(root, "ingest"):
        index = _read_index(root) if (root / "store.json").exists() else []
        for source, npz in zip(sources, paths, strict=True):
            arrays = {name: getattr(source, name) for name in _ARRAYS}
            if source.visual is not None:
                arrays.update(visual=source.visual.astype(np.float32), visual_mask=source.visual_mask.astype(bool))
            npz.parent.mkdir(exist_ok=True)
            files.atomic_npz(npz, **arrays)
            meta = {"source_id": source.source_id, "fps": source.fps, **source.metadata}
            files.atomic_json(npz.with_suffix(".json"), meta)
            if extra is not None:
                extra(root, source)
            if source.source_id not in index:
                index.append(source.source_id)
        files.atomic_json(root / "store.json", {"format": FORMAT_NAME, "version": FORMAT_VERSION, "sources": index})
    return paths


def _read_index(root: Path) -> list[str]:
    path = root / "store.json"
    if not path.exists():
        raise UserError(
            f"{root}: not a trajectory store (no store.json). Create one with `trajsv ingest --out {root}`."
        )
    manifest = files.read_json(path, "Re-create the store with `trajsv ingest`.", "store manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise UserError(f"{path}: not a trajsv store manifest (format={found!r}). Give a store `trajsv ingest` wrote.")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise UserError(
            f"{path}: store format version {manifest.get('version')}, this trajsv reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}. Re-create the store with this version's `trajsv ingest`."
        )
    sources = manifest.get("sources")
    if not isinstance(sources, list):
        raise UserError(f"{path}: `sources` is not a list. Re-create the store with `trajsv ingest`.")
    return [
        files.checked_name(sid, f"{path}: source id", "Re-create the store with `trajsv ingest`.") for sid in sources
    ]


def list_sources(store: str | os.PathLike) -> list[str]:
    return _read_index(Path(store))


def read_metadata(store: str | os.PathLike, source_id: str) -> dict[str, Any]:
    """A source's metadata (sources/<id>.json) alone, without its arrays."""
    path = source_path(store, source_id).with_suffix(".json")
    meta = files.read_json(path, f"Re-run `trajsv ingest --out {store}` for {source_id}.", "source metadata")
    if not isinstance(meta, dict):
        raise UserError(f"{path}: not a source's metadata. Re-run `trajsv ingest --out {store}` for {source_id}.")
    return meta


def read_source(store: str | os.PathLike, source_id: str) -> Source:
    npz = source_path(store, source_id)
    fix = f"Re-run `trajsv ingest --out {store}` for {source_id}."
    meta = files.read_json(npz.with_suffix(".json"), fix, "source metadata")
    arrays = files.read_npz(npz, fix)
    if not isinstance(meta, dict) or not isinstance(meta.get("fps"), int | float):
        raise UserError(f"{npz.with_suffix('.json')}: no `fps` in the source metadata. {fix}")
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
    path = source_path(store, source_id, folder=TOKENS_DIR)
    path.parent.mkdir(parents=True, exist_ok=True)
    return files.atomic_npz(path, tokens=tokens, offsets=offsets)


def read_tokens(store: str | os.PathLike, source: Source) -> list[np.ndarray]:
    """Token ids per clip of a source, as saved by `write_tokens`."""
    path = source_path(store, source.source_id, folder=TOKENS_DIR)
    if not path.exists():
        raise UserError(f"{path}: no tokens for {source.source_id}. Run `trajsv tokenize {store}` first.")
    data = files.read_npz(path, f"Re-run `trajsv tokenize {store}`.")
    tokens, offsets = data.get("tokens"), data.get("offsets")
    if (
        tokens is None
        or offsets is None
        or tokens.ndim != 1
        or offsets.ndim != 1
        or len(offsets) != source.num_clips + 1
        or offsets[0] != 0
        or offsets[-1] != len(tokens)
        or np.any(np.diff(offsets) < 0)
    ):
        raise UserError(
            f"{path}: tokens do not match the clips of {source.source_id} (another version, or damaged). "
            f"Re-run `trajsv tokenize {store}`."
        )
    return [tokens[offsets[c] : offsets[c + 1]] for c in range(source.num_clips)]
