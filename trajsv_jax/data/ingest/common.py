"""What every reader shares: the provider table, file checks, error diagnosis and Frames assembly.

Readers turn provider files into per-detection records (frame index, object, x, y in provider coordinates); `place`
and `build_frames` turn records into `clips.Frames` the same way for every reader, so that two readers of one file give
identical arrays: objects in canonical (role, id) order, the last detection of an object in a frame wins, and provider
coordinates are mapped linearly onto centred metres.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from trajsv_jax.data import clips, pitch
from trajsv_jax.errors import UserError

PathLike = str | os.PathLike


@dataclasses.dataclass(frozen=True)
class ProviderSpec:
    """The file arguments of one provider: required, optional, which take several files (or a folder), and help."""

    required: tuple[str, ...]
    help: str
    optional: tuple[str, ...] = ()
    patterns: dict[str, str] = dataclasses.field(default_factory=dict)  # multi-file argument → file pattern in a folder
    multi: tuple[str, ...] = ()  # multi-file arguments without a folder pattern
    fast: bool = False  # a direct reader exists besides kloppy


PROVIDERS: dict[str, ProviderSpec] = {
    "skillcorner": ProviderSpec(
        ("raw_data", "meta_data"),
        "SkillCorner broadcast tracking: raw_data = structured_data.json (v1/v2) or *_tracking_extrapolated.jsonl (v3),"
        " meta_data = match_data.json (v1/v2) or *_match.json (v3)",
        fast=True,
    ),
    "hawkeye": ProviderSpec(
        ("ball_feeds", "centroid_feeds"),
        "Hawk-Eye: ball_feeds = *.samples.ball files or their folder, centroid_feeds = *.samples.centroids files or"
        " their folder (the same minutes), meta_data = optional meta .json/.xml with the pitch size",
        optional=("meta_data",),
        patterns={"ball_feeds": "*.samples.ball", "centroid_feeds": "*.samples.centroids"},
    ),
    "pff": ProviderSpec(
        ("raw_data", "meta_data", "roster_data"),
        "PFF FC: raw_data = tracking .jsonl, meta_data = metadata .json, roster_data = rosters .json",
    ),
    "sportec": ProviderSpec(
        ("raw_data", "meta_data"),
        "Sportec/DFL: raw_data = positions .xml, meta_data = match information .xml",
    ),
    "metrica_csv": ProviderSpec(
        ("home_data", "away_data"), "Metrica CSV: home_data and away_data = the two RawTrackingData .csv files"
    ),
    "metrica_epts": ProviderSpec(
        ("raw_data", "meta_data"), "Metrica EPTS: raw_data = tracking .txt, meta_data = metadata .xml"
    ),
    "secondspectrum": ProviderSpec(
        ("raw_data", "meta_data"),
        "Second Spectrum: raw_data = tracking .jsonl, meta_data = metadata .xml or .json,"
        " additional_meta_data = optional metadata .json",
        optional=("additional_meta_data",),
    ),
    "tracab": ProviderSpec(
        ("raw_data", "meta_data"), "TRACAB: raw_data = .dat or .json tracking, meta_data = metadata .xml or .json"
    ),
    "statsperform": ProviderSpec(
        ("raw_data", "meta_data"),
        "Stats Perform (SportVU): raw_data = MA25 tracking .txt, meta_data = MA1 .xml or .json; the files carry no"
        " pitch size (105 x 68 m unless given)",
    ),
    "signality": ProviderSpec(
        ("raw_data", "meta_data", "venue_information"),
        "Signality: raw_data = one or more tracking .json files (periods in order), meta_data = metadata .json,"
        " venue_information = venue .json",
        multi=("raw_data",),
    ),
}
ALIASES = {"dfl": "sportec", "second_spectrum": "secondspectrum", "sportvu": "statsperform", "hawk-eye": "hawkeye"}


def resolve_provider(provider: str, files: dict[str, Any]) -> str:
    """The PROVIDERS key of a provider name or alias ("metrica" picks CSV or EPTS by the files given)."""
    name = provider.lower().replace(" ", "")
    if name == "metrica":
        name = "metrica_csv" if "home_data" in files else "metrica_epts"
    name = ALIASES.get(name, name)
    if name not in PROVIDERS:
        raise UserError(f"unknown provider {provider!r}. Choose one of: {', '.join(sorted(PROVIDERS))}.")
    return name


def check_files(provider: str, files: dict[str, Any]) -> dict[str, Path | list[Path]]:
    """Files of a provider as Paths (multi-file arguments as lists); UserError for a missing or unknown argument."""
    spec = PROVIDERS[provider]
    given = {k: v for k, v in files.items() if v is not None}
    missing = [a for a in spec.required if a not in given]
    unknown = [a for a in given if a not in spec.required + spec.optional]
    if missing or unknown:
        problem = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(unknown)}"
        raise UserError(f"{provider}: {problem}. It needs {spec.help}.")
    checked: dict[str, Path | list[Path]] = {}
    for arg, value in given.items():
        many = arg in spec.patterns or arg in spec.multi
        paths = [Path(v) for v in value] if isinstance(value, (list, tuple)) else [Path(value)]
        if len(paths) > 1 and not many:
            raise UserError(f"{provider}: {arg} takes one file, got {len(paths)}. It needs {spec.help}.")
        expanded: list[Path] = []
        for path in paths:
            if path.is_dir() and arg in spec.patterns:
                found = sorted(path.glob(spec.patterns[arg]))
                if not found:
                    raise UserError(f"{path}: no {spec.patterns[arg]} files in this folder ({provider} {arg}).")
                expanded.extend(found)
            elif not path.is_file():
                what = "a folder, not a file" if path.is_dir() else "no such file"
                raise UserError(f"{path}: {what} ({provider} {arg}). Check the path; {provider} needs {spec.help}.")
            else:
                expanded.append(path)
        checked[arg] = expanded if many else expanded[0]
    return checked


def read_bytes(path: Path, what: str) -> bytes:
    """The bytes of a file, with a UserError naming it when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e}; {what}). Check the path.") from None


def read_json(path: Path, what: str) -> Any:
    """json.load of a file, with a UserError naming the file for unreadable or invalid JSON."""
    data = read_bytes(path, what)
    if data.lstrip()[:1] == b"<":
        raise UserError(f"{path}: an XML file where JSON is expected ({what}). Check which file goes where.")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: {json_problem(e)} ({what}). Re-download or re-export the file.") from None


def json_lines(data: bytes) -> list[Any]:
    """The objects of a JSON-lines file; a JSONDecodeError gives the line and column in the whole file."""
    objects, offset = [], 0
    for line in data.splitlines(keepends=True):
        if line.strip():
            try:
                objects.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise json.JSONDecodeError(e.msg, data.decode("utf-8", "replace"), offset + e.pos) from None
        offset += len(line)
    return objects


def json_problem(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}; truncated or corrupt?)"
    return "not a text file (binary or wrong encoding)"


def file_problem(path: Path) -> str | None:
    """A syntax problem of a JSON, JSONL or XML file (None if it parses or is another format). Used after a failure."""
    data = path.read_bytes()
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        return "empty file"
    try:
        if head[:1] == b"<":
            ElementTree.fromstring(data)
        elif head[:1] in b"[{":
            try:
                json.loads(data)
            except json.JSONDecodeError as e:
                if e.lineno == 1:
                    raise
                json_lines(data)  # not one JSON document beyond line 1: JSON lines?
    except ElementTree.ParseError as e:
        return f"not well-formed XML ({e}; truncated or corrupt?)"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return json_problem(e)
    return None


def one_line(text: object, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclasses.dataclass
class ReadSource:
    """One source a multi-source reader (a folder of games or sequences) delivers: its frames, events and group.

    `group` names what must stay in one split (a game, a video): short sources of one group are never split apart.
    """

    source_id: str
    frames: clips.Frames
    events: list[dict[str, Any]] | None = None  # `data.events` records, time-aligned to the frames
    group: str | None = None


@dataclasses.dataclass(frozen=True)
class Coordinates:
    """A provider's pitch in its own coordinates: the edges along x and y, and whether y grows downwards."""

    name: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    y_down: bool

    def as_metadata(self) -> dict[str, Any]:
        return {
            "coordinate_system": self.name,
            "provider_x_range": list(self.x_range),
            "provider_y_range": list(self.y_range),
            "provider_y_down": self.y_down,
        }


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where records go in the [F, K] grid: objects in canonical (role, id) order, one record per object and frame."""

    n_frames: int
    records: np.ndarray  # [R'] indices of the records kept (the last one of each object in each frame)
    cell: np.ndarray  # [R'] flat index frame * K + object of each kept record
    roles: np.ndarray  # [K] int8
    ids: np.ndarray  # [K] str


def place(n_frames: int, rec_frame: np.ndarray, rec_object: np.ndarray, objects: list[tuple[int, str]]) -> Placement:
    """Place records (frame index, local object) on the grid of objects in canonical (role, id) order.

    `objects[j]` is (role, id) of local object j; object 0 is the ball and is always kept, other objects only if they
    have a record. Where an object has several records in one frame, the last one wins (as in kloppy's dicts).
    """
    rec_object = np.asarray(rec_object, np.int64)
    seen = np.zeros(len(objects), bool)
    seen[0] = True
    seen[rec_object] = True
    kept = np.flatnonzero(seen)
    order = kept[sorted(range(len(kept)), key=lambda j: objects[kept[j]])]
    column = np.full(len(objects), -1, np.int64)
    column[order] = np.arange(len(order))
    cell = np.asarray(rec_frame, np.int64) * len(order) + column[rec_object]
    _, first_from_end = np.unique(cell[::-1], return_index=True)
    records = len(cell) - 1 - first_from_end
    roles = np.array([objects[j][0] for j in order], np.int8)
    ids = np.array([objects[j][1] for j in order], dtype=str)
    return Placement(n_frames, records, cell[records], roles, ids)


def build_frames(
    placement: Placement,
    rec_x: np.ndarray,
    rec_y: np.ndarray,
    *,
    frame_id: np.ndarray,
    period: np.ndarray,
    timestamp: np.ndarray,
    coordinates: Coordinates,
    fps: float,
    pitch_length: float,
    pitch_width: float,
    metadata: dict[str, Any],
    where: str,
) -> clips.Frames:
    """Frames in centred metres from placed records (x, y in provider coordinates); UserError if nothing is located."""
    located = pitch.to_centred_metres(
        np.asarray(rec_x, np.float64)[placement.records],
        np.asarray(rec_y, np.float64)[placement.records],
        x_range=coordinates.x_range,
        y_range=coordinates.y_range,
        length=pitch_length,
        width=pitch_width,
        y_down=coordinates.y_down,
    )
    if not np.isfinite(located).all(-1).any():
        raise UserError(
            f"{where}: no tracking frames with detections ({len(frame_id)} frames read, none with a located object). "
            "Check that this is the match's full tracking file."
        )
    k = len(placement.ids)
    positions = np.full((placement.n_frames * k, 2), np.nan, np.float32)
    positions[placement.cell] = located
    return clips.Frames(
        positions=positions.reshape(placement.n_frames, k, 2),
        frame_id=np.asarray(frame_id, np.int64),
        period=np.asarray(period, np.int16),
        timestamp=np.asarray(timestamp, np.float64),
        object_role=placement.roles,
        object_id=placement.ids,
        fps=float(fps),
        pitch_length=float(pitch_length),
        pitch_width=float(pitch_width),
        metadata={**metadata, **coordinates.as_metadata()},
    )
