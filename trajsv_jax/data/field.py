"""Field geometry per source: the sport's playing surface, or the camera plane of an uncalibrated video.

Every position is centred on its field: origin at the centre, x along the long side in [-L/2, L/2], y across in
[-W/2, W/2], y pointing "up". A *metric* field is in metres (soccer pitch, ice rink, basketball or volleyball court);
a *camera* field is the image plane of a broadcast camera without calibration, in pixels (L × W = image width ×
height, y up, so a foot point at pixel (u, v) is (u − L/2, W/2 − v)).

Tokenization rasterizes each field on its own grid (`Grid`): 3 m cells on metric fields, on the sport's regulation
size where it has one (so every soccer pitch shares the paper's 35 × 23 grid of 105 × 68 m); on the camera plane a
cell is a fraction of the image width (3/105 by default: 35 columns, as on a pitch). A store that mixes fields
tokenizes on a `GridLayout`: the grids side by side in one cell space, so segments of two fields share no cell,
their Jaccard similarity is 0, and every token belongs to one field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from trajsv_jax.data import pitch
from trajsv_jax.errors import UserError

METRIC, CAMERA = "metric", "camera"
KINDS = (METRIC, CAMERA)
# length x width in metres by each sport's rules: soccer as the paper's grid (IFAB's usual 105 x 68), ice hockey the
# 200 x 85 ft NHL rink of the Big Data Cup tracking, FIBA basketball, FIVB volleyball (the court without free zone).
REGULATION = {
    "soccer": (105.0, 68.0),
    "ice_hockey": (60.96, 25.908),
    "basketball": (28.0, 15.0),
    "volleyball": (18.0, 9.0),
}
SPORTS = tuple(REGULATION)
DEFAULT_CELL = 3.0  # metres, the paper's grid
DEFAULT_CAMERA_CELL = 3.0 / 105.0  # of the image width: 35 columns, as on a 105 m pitch


@dataclasses.dataclass(frozen=True)
class Field:
    """A source's field: its sport, kind (metric / camera) and size (metres or pixels)."""

    sport: str = "soccer"
    kind: str = METRIC
    length: float = REGULATION["soccer"][0]
    width: float = REGULATION["soccer"][1]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"field kind {self.kind!r}: expected one of {', '.join(KINDS)}.")
        if not (0 < self.length < math.inf and 0 < self.width < math.inf):
            raise UserError(f"field size {self.length} x {self.width}: expected two finite numbers > 0.")
        if not self.sport or not self.sport.replace("_", "").isalnum():
            raise UserError(f"sport {self.sport!r}: expected a plain name such as {', '.join(SPORTS)}.")

    @classmethod
    def regulation(cls, sport: str) -> Field:
        """The metric field of a sport at its regulation size."""
        if sport not in REGULATION:
            raise UserError(f"no regulation size known for {sport!r} ({', '.join(SPORTS)}); give the field size.")
        return cls(sport, METRIC, *REGULATION[sport])

    @classmethod
    def camera(cls, sport: str, image_width: float, image_height: float) -> Field:
        return cls(sport, CAMERA, float(image_width), float(image_height))

    @property
    def unit(self) -> str:
        return "m" if self.kind == METRIC else "px"

    def describe(self) -> str:
        plane = "camera plane" if self.kind == CAMERA else "field"
        return f"{self.sport} {plane} {self.length:g} x {self.width:g} {self.unit}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Field:
        try:
            return cls(str(data["sport"]), str(data["kind"]), float(data["length"]), float(data["width"]))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where}: field {dict(data)!r} is not a field description ({e}).") from None

    def grid(self, cell: float = DEFAULT_CELL, camera_cell: float = DEFAULT_CAMERA_CELL) -> Grid:
        """The tokenization grid of this field: `cell` metres on a metric field, `camera_cell` × the image width on
        the camera plane; metric fields of a known sport use its regulation size, so all of them share one grid."""
        if self.kind == CAMERA:
            return Grid(self.sport, CAMERA, self.length, self.width, camera_cell * self.length)
        length, width = REGULATION.get(self.sport, (self.length, self.width))
        return Grid(self.sport, METRIC, length, width, cell)


SOCCER = Field()


@dataclasses.dataclass(frozen=True)
class Grid:
    """A cell grid over a centred field: `cols` cells along x, `rows` across, flat index col * rows + row."""

    sport: str
    kind: str
    length: float
    width: float
    cell: float

    def __post_init__(self) -> None:
        if not (0 < self.cell < math.inf):
            raise UserError(f"cell {self.cell}: expected a finite number > 0.")

    @property
    def cols(self) -> int:
        return math.ceil(self.length / self.cell)  # as the reference tokenizer (play2vec)

    @property
    def rows(self) -> int:
        return math.ceil(self.width / self.cell)

    @property
    def num_cells(self) -> int:
        return self.cols * self.rows

    def describe(self) -> str:
        unit = "m" if self.kind == METRIC else "px"
        return f"{self.cols} x {self.rows} grid of {self.cell:.4g} {unit} cells on the {self.sport} {self.kind} field"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Grids side by side in one cell space: grid g owns cells offsets[g] : offsets[g] + grids[g].num_cells."""

    grids: tuple[Grid, ...]

    def __post_init__(self) -> None:
        if not self.grids:
            raise UserError("a grid layout needs at least one grid.")
        if len(set(self.grids)) != len(self.grids):
            raise UserError("a grid layout lists one grid twice.")

    @classmethod
    def of(cls, fields: Iterable[Field], cell: float = DEFAULT_CELL, camera_cell: float = DEFAULT_CAMERA_CELL):
        """The layout of these fields' grids, in order of first appearance."""
        return cls(tuple(dict.fromkeys(f.grid(cell, camera_cell) for f in fields)))

    @property
    def offsets(self) -> tuple[int, ...]:
        out, total = [], 0
        for grid in self.grids:
            out.append(total)
            total += grid.num_cells
        return tuple(out)

    @property
    def num_cells(self) -> int:
        return sum(grid.num_cells for grid in self.grids)

    def index(self, grid: Grid, where: str = "") -> int:
        """Position of `grid` in the layout; UserError when the layout (a vocabulary's) does not have it."""
        try:
            return self.grids.index(grid)
        except ValueError:
            have = "; ".join(g.describe() for g in self.grids)
            raise UserError(
                f"{where or 'grid'}: {grid.describe()} is not in this vocabulary (it has {have}). Tokenize with a "
                "vocabulary built on sources of this field (`trajsv tokenize` without --vocabulary)."
            ) from None

    def describe(self) -> str:
        return "; ".join(g.describe() for g in self.grids)

    def as_list(self) -> list[dict[str, Any]]:
        return [g.as_dict() for g in self.grids]

    @classmethod
    def from_list(cls, data: Iterable[Mapping[str, Any]], where: str) -> GridLayout:
        try:
            return cls(tuple(Grid(str(g["sport"]), str(g["kind"]), *(float(g[k]) for k in GRID_NUMBERS)) for g in data))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where}: not a grid layout ({e}). Re-create it with `trajsv tokenize`.") from None


GRID_NUMBERS = ("length", "width", "cell")
SOCCER_LAYOUT = GridLayout((SOCCER.grid(),))  # the paper's 35 x 23 grid of 3 m cells alone


def markings(field: Field, step: float = 0.5) -> list[np.ndarray]:
    """The lines to draw for a field, polylines [P, 2] in its centred units: the full IFAB markings of a soccer pitch;
    outline, centre line and the sport's main lines elsewhere (a rink's blue and goal lines, a court's centre circle
    or attack lines); the image border of a camera plane."""
    hl, hw = field.length / 2, field.width / 2
    if field.kind == METRIC and field.sport == "soccer":
        return pitch.markings(field.length, field.width, step)
    lines = [np.array([(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw), (-hl, -hw)], float)]
    if field.kind == CAMERA:
        return lines

    def across(x: float) -> np.ndarray:
        return np.array([(x, -hw), (x, hw)], float)

    def circle(radius: float) -> np.ndarray:
        angles = np.linspace(0, 2 * math.pi, 64)
        return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)

    lines.append(across(0.0))
    if field.sport == "ice_hockey":  # blue lines 25 ft from centre, goal lines 11 ft from the boards (NHL)
        lines += [across(s * 7.62) for s in (-1, 1)] + [across(s * (hl - 3.353)) for s in (-1, 1)]
        lines.append(circle(4.572))
    elif field.sport == "basketball":
        lines.append(circle(1.8))
    elif field.sport == "volleyball":  # attack lines 3 m from the net
        lines += [across(-3.0), across(3.0)]
    return lines
