"""Provider tracking files → Frames → a source in the trajectory store.

kloppy reads every provider (`read_with_kloppy`); SkillCorner also has a direct reader (`read_skillcorner`) that gives
identical arrays several times faster and is used by default. Bad input never surfaces as a traceback: missing,
corrupt or wrong-provider files raise a one-line `UserError` naming the file. A match without a single located object
is an error ("no tracking frames with detections"), and so is one whose detections all fall away in cleaning: no empty
source is ever written.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trajsv_jax.data import clips, store
from trajsv_jax.data import events as events_lib
from trajsv_jax.data.ingest.bigdatacup import read_bigdatacup
from trajsv_jax.data.ingest.common import PROVIDERS, ProviderSpec, ReadSource, check_files, resolve_provider
from trajsv_jax.data.ingest.kloppy_reader import read_with_kloppy
from trajsv_jax.data.ingest.skillcorner import read_skillcorner
from trajsv_jax.data.ingest.sportsmot import read_sportsmot
from trajsv_jax.errors import UserError

__all__ = [
    "FAST_READERS",
    "FOLDER_READERS",
    "PROVIDERS",
    "FolderIngest",
    "ProviderSpec",
    "ReadSource",
    "bundled_provider_files",
    "bundled_skillcorner_files",
    "ingest",
    "ingest_folder",
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


def bundled_provider_files() -> list[tuple[str, dict[str, Any]]]:
    """(provider, files) of the other real excerpts in kloppy's wheel: Hawk-Eye minutes of two halves, two PFF
    games (the BSD-3-Clause kloppy repository's test files; the data belongs to the providers)."""
    folder = bundled_skillcorner_files()[0].parent
    minutes = ("1_1", "2_46")
    out: list[tuple[str, dict[str, Any]]] = [
        (
            "hawkeye",
            {
                "ball_feeds": [str(folder / f"hawkeye_{m}.football.samples.ball") for m in minutes],
                "centroid_feeds": [str(folder / f"hawkeye_{m}.football.samples.centroids") for m in minutes],
                "meta_data": str(folder / "hawkeye_meta.json"),
            },
        )
    ]
    for game in ("10517", "3812"):
        names = {"raw_data": f"pff_{game}.jsonl", "meta_data": f"pff_metadata_{game}.json"}
        out.append(
            (
                "pff",
                {
                    **{k: str(folder / v) for k, v in names.items()},
                    "roster_data": str(folder / f"pff_rosters_{game}.json"),
                },
            )
        )
    return out


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


def raw_file(frames: clips.Frames) -> str:
    """The main file a reader read (raw_data, else its first file)."""
    raw = frames.metadata["files"].get("raw_data") or next(iter(frames.metadata["files"].values()))
    return raw[0] if isinstance(raw, list) else raw


def default_source_id(frames: clips.Frames) -> str:
    """ "<provider>_<game id>", or the raw file's name where the files give no game id."""
    return f"{frames.metadata['provider']}_{frames.metadata.get('game_id') or Path(raw_file(frames)).stem}"


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
    raw = raw_file(frames)
    source, drops = store.source_from_frames(
        frames, store.safe_source_id(source_id or default_source_id(frames)), clip_config
    )
    if source.num_clips == 0:
        counts = ", ".join(f"{k}={v}" for k, v in drops.as_dict().items() if v)
        raise UserError(
            f"{raw}: no clip left after cleaning {len(frames.frame_id)} frames ({counts}). Check the provider and "
            "the pitch size; a short excerpt may need a shorter minimum clip length."
        )
    store.write_source(out_store, source)
    return source, drops


# datasets of many short sources, read from one folder: name → reader(folder, **options) → (sources, report)
FOLDER_READERS: dict[str, Callable[..., tuple[list[ReadSource], dict[str, Any]]]] = {
    "sportsmot": read_sportsmot,
    "bigdatacup": read_bigdatacup,
}


@dataclasses.dataclass(frozen=True)
class FolderIngest:
    """What `ingest_folder` wrote: the sources, each one's drops, the sources left out (no clip) and the reader's
    own report (counts, labels, alignment)."""

    sources: list[store.Source]
    drops: dict[str, clips.Drops]
    left_out: dict[str, str]  # source id → why (its drop counts)
    report: dict[str, Any]


def ingest_folder(
    reader: str,
    folder: str | Path,
    out_store: str | Path,
    clip_config: clips.ClipConfig | None = None,
    **options: Any,
) -> FolderIngest:
    """Read every source of a dataset folder (`FOLDER_READERS`), cut each into clips, and add them all to `out_store`
    in one locked write (with their events, where the reader gives some). A source left without clips is left out
    and counted; none left is an error, and then nothing is written."""
    if reader not in FOLDER_READERS:
        raise UserError(f"unknown dataset reader {reader!r}. Choose one of: {', '.join(sorted(FOLDER_READERS))}.")
    store.check_writable(out_store)
    read, report = FOLDER_READERS[reader](folder, **options)
    sources, drops, left_out, events = cut_sources(read, clip_config)
    if not sources:
        raise UserError(
            f"{folder}: no source has a clip left after cleaning ({len(read)} read; {left_out}). Check the files; "
            "short sequences may need a shorter --min-clip-seconds."
        )
    store.write_sources(out_store, sources, events_writer(events) if events else None)
    return FolderIngest(sources, drops, left_out, report)


def cut_sources(
    read: list[ReadSource], clip_config: clips.ClipConfig | None = None
) -> tuple[list[store.Source], dict[str, clips.Drops], dict[str, str], dict[str, ReadSource]]:
    """Clean and cut what a folder reader delivered: (sources with clips, drops per source id, sources left out
    without clips and why, the read items that carry events by source id)."""
    sources, drops, left_out, events = [], {}, {}, {}
    for item in read:
        frames = item.frames
        if item.group is not None:
            frames = dataclasses.replace(frames, metadata={**frames.metadata, "group": item.group})
        source, dropped = store.source_from_frames(frames, store.safe_source_id(item.source_id), clip_config)
        drops[source.source_id] = dropped
        if source.num_clips == 0:
            left_out[source.source_id] = ", ".join(f"{k}={v}" for k, v in dropped.as_dict().items() if v)
            continue
        sources.append(source)
        if item.events is not None:
            events[source.source_id] = item
    return sources, drops, left_out, events


def events_writer(items: dict[str, ReadSource]) -> Callable[[Path, store.Source], None]:
    """The `extra` of `store.write_sources` that writes each source's events (`data.events`) beside it."""

    def write(root: Path, source: store.Source) -> None:
        if source.source_id in items:
            item = items[source.source_id]
            events_lib.write_events(root, source.source_id, item.events, item.frames.metadata.get("alignment", {}))

    return write
