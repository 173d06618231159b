"""Any tracking provider kloppy loads → Frames, in the provider's own coordinates mapped linearly onto centred metres.

Each provider is loaded with `coordinates=<provider>`, so kloppy leaves the values as the file has them (its transform
to the normalised system is piecewise, not linear); the dataset's own coordinate system (pitch edges, vertical
orientation, pitch size) then gives the linear map. The attacking orientation stays as the provider has it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trajsv_jax.data import clips
from trajsv_jax.data.ingest import common, skillcorner
from trajsv_jax.errors import UserError

DEFAULT_PITCH = (105.0, 68.0)
# kloppy's Metrica CSV reader stores 1 - y but declares Metrica's y-down system; the raw CSV is y-down like Metrica's
# events (the ball at frame 1 of Sample Game 1 is at the kick-off pass's start point), so kloppy's y grows upwards.
_Y_FLIPPED_BY_KLOPPY = ("metrica_csv",)


def _loader(provider: str, f: dict[str, Any], size: dict[str, float]) -> Callable[[], Any]:
    """A call of kloppy's loader of `provider` with our file arguments and its native coordinate system."""
    from kloppy import hawkeye, metrica, pff, secondspectrum, signality, sportec, statsperform, tracab
    from kloppy import skillcorner as kloppy_skillcorner

    loaders: dict[str, Callable[[], Any]] = {
        "skillcorner": lambda: kloppy_skillcorner.load(
            meta_data=f["meta_data"], raw_data=f["raw_data"], coordinates="skillcorner"
        ),
        "hawkeye": lambda: hawkeye.load(
            ball_feeds=f["ball_feeds"],
            player_centroid_feeds=f["centroid_feeds"],
            meta_data=f.get("meta_data"),
            coordinates="hawkeye",
            **size,
        ),
        "pff": lambda: pff.load_tracking(
            meta_data=f["meta_data"], roster_meta_data=f["roster_data"], raw_data=f["raw_data"], coordinates="pff"
        ),
        "sportec": lambda: sportec.load_tracking(
            meta_data=f["meta_data"], raw_data=f["raw_data"], coordinates="sportec"
        ),
        "metrica_csv": lambda: metrica.load_tracking_csv(
            home_data=f["home_data"], away_data=f["away_data"], coordinates="metrica"
        ),
        "metrica_epts": lambda: metrica.load_tracking_epts(
            meta_data=f["meta_data"], raw_data=f["raw_data"], coordinates="metrica"
        ),
        "secondspectrum": lambda: secondspectrum.load(
            meta_data=f["meta_data"],
            raw_data=f["raw_data"],
            additional_meta_data=f.get("additional_meta_data"),
            coordinates="secondspectrum",
        ),
        "tracab": lambda: tracab.load(meta_data=f["meta_data"], raw_data=f["raw_data"], coordinates="tracab"),
        "statsperform": lambda: statsperform.load_tracking(
            ma1_data=f["meta_data"],
            ma25_data=f["raw_data"],
            tracking_system="sportvu",
            coordinates="sportvu",
            pitch_length=size.get("pitch_length", DEFAULT_PITCH[0]),
            pitch_width=size.get("pitch_width", DEFAULT_PITCH[1]),
        ),
        "signality": lambda: signality.load(
            meta_data=f["meta_data"],
            raw_data_feeds=f["raw_data"],
            venue_information=f["venue_information"],
            coordinates="signality",
        ),
    }
    return loaders[provider]


def read_with_kloppy(
    provider: str, *, pitch_length: float | None = None, pitch_width: float | None = None, **files: Any
) -> clips.Frames:
    """Load `files` (the provider's arguments in `common.PROVIDERS`) with kloppy and convert them to Frames.

    pitch_length/pitch_width are used only by providers whose files may lack the pitch size (Stats Perform, Hawk-Eye
    without meta_data); elsewhere the file's own size wins. Every kloppy failure becomes a one-line UserError naming
    the file (or files) and the likely fix.
    """
    provider = common.resolve_provider(provider, files)
    paths = common.check_files(provider, files)
    size = {k: float(v) for k, v in (("pitch_length", pitch_length), ("pitch_width", pitch_width)) if v is not None}
    extra: dict[str, Any] = {}
    if provider == "skillcorner":  # validates with clear messages, and counts what kloppy skips without a word
        fast = skillcorner.read_skillcorner(paths["raw_data"], paths["meta_data"])
        extra = {k: v for k, v in fast.metadata.items() if k.endswith("_skipped") or k == "frames_in_file"}
    if provider == "statsperform":
        extra["pitch_size_assumed"] = not size
    with _kloppy_warnings() as caught:
        try:
            dataset = _loader(provider, paths, size)()
        except Exception as e:  # kloppy raises anything from KeyError to lxml errors: all mean "bad input" here
            raise _kloppy_error(provider, paths, e) from None
    if caught:
        extra["kloppy_warnings"] = sorted(set(caught))
    return frames_from_dataset(dataset, provider, paths, extra)


@contextlib.contextmanager
def _kloppy_warnings() -> Iterator[list[str]]:
    """Collect kloppy's warnings and logged warnings into a list (kept in the metadata) instead of stderr."""
    caught: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(common.one_line(record.getMessage(), 200))

    logger, handler = logging.getLogger("kloppy"), Collect(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", ResourceWarning)  # kloppy leaves file handles to the garbage collector
            yield caught
        caught.extend(common.one_line(w.message, 200) for w in recorded)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _kloppy_error(provider: str, paths: dict[str, Path | list[Path]], error: Exception) -> UserError:
    """The clearest message for a failed load: a file that does not parse, else all files and kloppy's complaint."""
    for arg, value in paths.items():
        for path in value if isinstance(value, list) else [value]:
            problem = common.file_problem(path)
            if problem:
                return UserError(f"{path}: {problem} ({provider} {arg}). Re-download or re-export the file.")
    given = ", ".join(f"{arg}={_display(value)}" for arg, value in paths.items())
    return UserError(
        f"{provider}: kloppy could not read {given} ({type(error).__name__}: {common.one_line(error, 160)}). "
        f"Check that these are the files it needs, each for its own argument: {common.PROVIDERS[provider].help}."
    )


def _display(value: Path | list[Path]) -> str:
    if isinstance(value, list):
        return str(value[0]) if len(value) == 1 else f"[{value[0]}, ... {len(value)} files]"
    return str(value)


def _role(player: Any) -> int:
    ground = getattr(getattr(player, "team", None), "ground", None)
    value = getattr(ground, "value", None)
    return {"home": clips.ROLE_TEAM_A, "away": clips.ROLE_TEAM_B}.get(value, clips.ROLE_OTHER)


def frames_from_dataset(
    dataset: Any, provider: str, paths: dict[str, Path | list[Path]], extra: dict[str, Any] | None = None
) -> clips.Frames:
    """A kloppy TrackingDataset in its provider's coordinates → Frames, in one pass over kloppy's frames."""
    records = dataset.records
    where = _display(paths.get("raw_data", next(iter(paths.values()))))
    if not records:
        raise UserError(f"{where}: no tracking frames with detections (kloppy read 0 frames). Pass the full file.")
    local: dict[Any, int] = {}
    objects: list[tuple[int, str]] = [(clips.ROLE_BALL, "ball")]
    for player in dict.fromkeys(p for frame in records for p in frame.players_data):
        local[player] = len(objects)
        objects.append((_role(player), str(player.player_id)))
    players = [(i, local[p], d.coordinates) for i, frame in enumerate(records) for p, d in frame.players_data.items()]
    balls = [(i, frame.ball_coordinates) for i, frame in enumerate(records) if frame.ball_coordinates is not None]
    rows = [(i, j, c) for i, j, c in players] + [(i, 0, c) for i, c in balls]
    rec_frame = np.array([r[0] for r in rows], np.int64)
    rec_object = np.array([r[1] for r in rows], np.int64)
    rec_x = np.array([None if r[2] is None else r[2].x for r in rows], np.float64)
    rec_y = np.array([None if r[2] is None else r[2].y for r in rows], np.float64)
    coordinates, length, width = _coordinates(dataset.metadata, where)
    if provider in _Y_FLIPPED_BY_KLOPPY:
        coordinates = dataclasses.replace(coordinates, y_down=not coordinates.y_down)
        extra = {**(extra or {}), "kloppy_y_flip_undone": True}
    return common.build_frames(
        common.place(len(records), rec_frame, rec_object, objects),
        rec_x,
        rec_y,
        frame_id=np.array([f.frame_id for f in records], np.int64),
        period=np.array([f.period.id for f in records], np.int16),
        timestamp=np.array([math.nan if f.timestamp is None else f.timestamp.total_seconds() for f in records]),
        coordinates=coordinates,
        fps=float(dataset.metadata.frame_rate),
        pitch_length=length,
        pitch_width=width,
        metadata={**_metadata(dataset.metadata, provider, paths), **(extra or {})},
        where=where,
    )


def _coordinates(metadata: Any, where: str) -> tuple[common.Coordinates, float, float]:
    """The provider's coordinate system as pitch edges + y direction, and the pitch size in metres."""
    system = metadata.coordinate_system
    dims = system.pitch_dimensions
    values = (dims.x_dim.min, dims.x_dim.max, dims.y_dim.min, dims.y_dim.max, dims.pitch_length, dims.pitch_width)
    if any(v is None for v in values):
        raise UserError(f"{where}: the files give no pitch size. Pass pitch_length and pitch_width (metres).")
    x0, x1, y0, y1, length, width = (float(v) for v in values)
    y_down = getattr(system.vertical_orientation, "value", "") == "top-to-bottom"
    return common.Coordinates(type(system).__name__, (x0, x1), (y0, y1), y_down), length, width


def _metadata(metadata: Any, provider: str, paths: dict[str, Path | list[Path]]) -> dict[str, Any]:
    teams = {getattr(t.ground, "value", None): t.name for t in metadata.teams or []}
    score = metadata.score
    date = metadata.date
    return {
        "provider": provider,
        "reader": "kloppy",
        "game_id": None if metadata.game_id is None else str(metadata.game_id),
        "date": date.isoformat() if hasattr(date, "isoformat") else date,
        "home_team": teams.get("home"),
        "away_team": teams.get("away"),
        "score": None if score is None else {"home": score.home, "away": score.away},
        "files": {a: [str(p) for p in v] if isinstance(v, list) else str(v) for a, v in paths.items()},
        "orientation": getattr(metadata.orientation, "value", None),
        "periods": [p.id for p in metadata.periods],
    }
