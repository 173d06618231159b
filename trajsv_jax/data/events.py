"""The store's events part, format version 1: time-aligned play-by-play events of a source.

    events/<source_id>.json   {"format": "trajsv-events", "version": 1, "source_id": ..., "alignment": {...},
                               "events": [record, ...]}

A record is one provider event placed on its source's time axis: `time` in seconds on the source's `timestamp` axis,
`frame` the provider frame id it was aligned to, `x`/`y` (and `x_2`/`y_2`, the second location of a pass) in the
source's centred metres, `residual_m` how far (metres) the alignment left it from the nearest tracked player of its
team (null: not aligned), `frame_linear` the frame a first, coarse clock map gave. `alignment` summarises how the
events were aligned (method, windows, residual distribution). Nothing here is sport-specific: any provider's events
that fill these fields can be stored. Writers hold the store's lock (`files.locked`); `write_events` does not lock.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trajsv_jax import files
from trajsv_jax.errors import UserError

FORMAT_NAME = "trajsv-events"
FORMAT_VERSION = 1
EVENTS_DIR = "events"
TEAMS = ("team_a", "team_b")
_NUMBER, _INT, _TEXT, _BOOL, _DICT = "a finite number", "a whole number", "a text", "true or false", "an object"
# field → (expected kind, may it be null)
FIELDS: dict[str, tuple[str, bool]] = {
    "time": (_NUMBER, False),
    "frame": (_INT, True),
    "period": (_INT, False),
    "type": (_TEXT, False),
    "team": (_TEXT, True),
    "team_name": (_TEXT, True),
    "player": (_TEXT, True),
    "player_2": (_TEXT, True),
    "x": (_NUMBER, True),
    "y": (_NUMBER, True),
    "x_2": (_NUMBER, True),
    "y_2": (_NUMBER, True),
    "success": (_BOOL, True),
    "clock_seconds": (_NUMBER, True),
    "detail": (_DICT, False),
    "residual_m": (_NUMBER, True),
    "frame_linear": (_INT, True),
}


def _fix(store: str | os.PathLike) -> str:
    return f"Re-create it with `trajsv ingest bigdatacup DIR --out {store}` (or the ingest that wrote this store)."


def events_path(store: str | os.PathLike, source_id: str) -> Path:
    """store/events/<source_id>.json, refused unless the id is a plain file name."""
    name = files.checked_name(source_id, f"{store}: events source id", _fix(store))
    return files.inside(store, EVENTS_DIR, f"{name}.json", fix=_fix(store))


def _kind_ok(value: Any, kind: str) -> bool:
    if kind == _NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _TEXT:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    return isinstance(value, dict)


def validate(events: Any, where: str) -> None:
    """UserError (one line, naming `where` and the first bad record and field) unless `events` is a valid record list.

    Pure: checks every field of FIELDS is present with its type (plain Python values, NaN and infinities refused: JSON
    has none), `team` is one of TEAMS or null, and `residual_m` is not negative. Extra keys are allowed."""
    if not isinstance(events, list):
        raise UserError(f"{where}: `events` is {type(events).__name__}, expected a list of event records.")
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            raise UserError(f"{where}: events[{i}] is {type(event).__name__}, expected an event record (an object).")
        missing = [name for name in FIELDS if name not in event]
        if missing:
            raise UserError(f"{where}: events[{i}] lacks {', '.join(missing)}.")
        for name, (kind, nullable) in FIELDS.items():
            value = event[name]
            if value is None and nullable:
                continue
            if not _kind_ok(value, kind):
                null = " or null" if nullable else ""
                raise UserError(f"{where}: events[{i}].{name} is {value!r}, expected {kind}{null}.")
        if event["team"] is not None and event["team"] not in TEAMS:
            raise UserError(f"{where}: events[{i}].team is {event['team']!r}, expected one of {', '.join(TEAMS)}.")
        if event["residual_m"] is not None and event["residual_m"] < 0:
            raise UserError(f"{where}: events[{i}].residual_m is {event['residual_m']!r}, expected >= 0.")


def write_events(
    store: str | os.PathLike, source_id: str, events: list[dict[str, Any]], alignment: dict[str, Any]
) -> Path:
    """Write a source's events atomically into store/events/; checked first, so nothing invalid is ever written.

    The caller holds the store's lock (the ingest writing the source does)."""
    path = events_path(store, source_id)
    validate(events, f"events of {source_id}")
    if not isinstance(alignment, dict):
        raise UserError(f"events of {source_id}: alignment is {type(alignment).__name__}, expected an object.")
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "source_id": source_id,
        "alignment": alignment,
        "events": events,
    }
    return files.atomic_json(path, document)


def read_events(store: str | os.PathLike, source_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(events, alignment) of a source, checked: format, version, source id and every record's fields."""
    path = events_path(store, source_id)
    fix = _fix(store)
    document = files.read_json(path, fix, "events file")
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise UserError(f"{path}: not a trajsv events file (format={found!r}). {fix}")
    if document.get("version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: events format version {document.get('version')!r}, this trajsv reads version "
            f"{FORMAT_VERSION}. {fix}"
        )
    if document.get("source_id") != source_id:
        raise UserError(f"{path}: holds the events of {document.get('source_id')!r}, not of {source_id!r}. {fix}")
    alignment = document.get("alignment")
    if not isinstance(alignment, dict):
        raise UserError(f"{path}: `alignment` is {type(alignment).__name__}, expected an object. {fix}")
    try:
        validate(document.get("events"), str(path))
    except UserError as e:
        raise UserError(f"{e} {fix}") from None
    return document["events"], alignment


def residual_distribution(values: np.ndarray) -> dict[str, Any]:
    """Alignment residuals (metres, NaN = none) summarised for an `alignment` block: count, median, p75, p90, max
    and how many are under 2 m and 5 m."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"count": 0}
    p50, p75, p90 = np.percentile(v, [50, 75, 90])
    return {
        "count": len(v),
        "median": round(float(p50), 3),
        "p75": round(float(p75), 3),
        "p90": round(float(p90), 3),
        "max": round(float(v.max()), 3),
        "under_2m": int((v < 2).sum()),
        "under_5m": int((v < 5).sum()),
    }
