"""Provider tracking files → Frames → a source in the trajectory store.

kloppy reads every provider (`read_with_kloppy`); SkillCorner also has a direct reader (`read_skillcorner`) that gives
identical arrays several times faster and is used by default. Bad input never surfaces as a traceback: missing,
corrupt or wrong-provider files raise a one-line `UserError` naming the file. A match without a single located object
is an error ("no tracking frames with detections"), and so is one whose detections all fall away in cleaning: no empty
source is ever written.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

from trajsv_jax.data import clips, store
from trajsv_jax.data.ingest.common import PROVIDERS, ProviderSpec, check_files, resolve_provider
from trajsv_jax.data.ingest.kloppy_reader import read_with_kloppy
from trajsv_jax.data.ingest.skillcorner import read_skillcorner
from trajsv_jax.errors import UserError

__all__ = [
    "FAST_READERS",
    "PROVIDERS",
    "ProviderSpec",
    "bundled_skillcorner_files",
    "ingest",
    "read_frames",
    "read_skillcorner",
    "read_with_kloppy",
]

FAST_READERS = frozenset(name for name, spec in PROVIDERS.items() if spec.fast)  # providers with a direct reader
_BUNDLED = ("skillcorner_structured_data.json", "skillcorner_match_data.json")


def bundled_skillcorner_files() -> tuple[Path, Path]:
    """(raw_data, meta_data) of the real SkillCorner match inside kloppy's wheel (never copied into the repo)."""
    try:
        folder = importlib.resources.files("kloppy") / "tests" / "files"
    except ModuleNotFoundError:
        raise UserError("kloppy is not installed: `pip install 'kloppy>=3.19'` (it ships the bundled match).") from None
    raw, meta = (Path(str(folder / name)) for name in _BUNDLED)
    for path in (raw, meta):
        if not path.is_file():
            raise UserError(
                f"{path}: not in the installed kloppy package (this kloppy wheel lacks its test files). "
                "Install kloppy 3.19 from PyPI, or pass your own SkillCorner files."
            )
    return raw, meta


def read_frames(
    provider: str,
    files: dict[str, Any],
    fast: bool = True,
    pitch_length: float | None = None,
    pitch_width: float | None = None,
) -> clips.Frames:
    """Frames of one match: `files` maps the provider's arguments (see PROVIDERS) to paths.

    fast=True uses the direct reader where one exists (SkillCorner), else kloppy.
    """
    name = resolve_provider(provider, files)
    if fast and PROVIDERS[name].fast:
        paths = check_files(name, files)
        return read_skillcorner(paths["raw_data"], paths["meta_data"])
    return read_with_kloppy(name, pitch_length=pitch_length, pitch_width=pitch_width, **files)


def ingest(
    provider: str,
    files: dict[str, Any],
    out_store: str | Path,
    source_id: str | None = None,
    clip_config: clips.ClipConfig | None = None,
    fast: bool = True,
    pitch_length: float | None = None,
    pitch_width: float | None = None,
) -> tuple[store.Source, clips.Drops]:
    """Read one match, cut it into clips and add it to `out_store` as a source; returns the source and its drops.

    The source id defaults to "<provider>_<game id>" (or the raw file's name). Raises UserError, writing nothing,
    when the store cannot take the source (a file, a corrupt store.json) or cleaning leaves no clip; the message
    carries the drop counts that explain why.
    """
    store.check_writable(out_store)  # before the long read: a bad --out or a corrupt store fails at once
    frames = read_frames(provider, files, fast, pitch_length, pitch_width)
    raw = frames.metadata["files"].get("raw_data") or next(iter(frames.metadata["files"].values()))
    raw = raw[0] if isinstance(raw, list) else raw
    if source_id is None:
        source_id = f"{frames.metadata['provider']}_{frames.metadata.get('game_id') or Path(raw).stem}"
    source, drops = store.source_from_frames(frames, store.safe_source_id(source_id), clip_config)
    if source.num_clips == 0:
        counts = ", ".join(f"{k}={v}" for k, v in drops.as_dict().items() if v)
        raise UserError(
            f"{raw}: no clip left after cleaning {len(frames.frame_id)} frames ({counts}). Check the provider and "
            "the pitch size; a short excerpt may need a shorter minimum clip length."
        )
    store.write_source(out_store, source)
    return source, drops
