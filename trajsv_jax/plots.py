"""Pictures people look at: plays on a pitch, segment matrices on the cell grid."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from etils import epath
from matplotlib import patches

from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import field as field_lib

ROLE_COLOURS = {
    clips_lib.ROLE_BALL: "#111111",
    clips_lib.ROLE_TEAM_A: "#d62728",
    clips_lib.ROLE_TEAM_B: "#1f77b4",
    clips_lib.ROLE_OTHER: "#7f7f7f",
}


def draw_pitch(ax: plt.Axes, field: field_lib.Field = field_lib.SOCCER) -> None:
    """The field's markings (`field.markings`: a soccer pitch's IFAB lines, a rink, a court, a camera plane)."""
    hl, hw = field.length / 2, field.width / 2
    for line in field_lib.markings(field):
        ax.plot(line[:, 0], line[:, 1], color="#555555", lw=0.8)
    if field.kind == field_lib.METRIC and field.sport == "soccer":
        for side in (-1, 1):
            ax.plot(side * (hl - 11), 0, ".", color="#555555", ms=2)
    margin = 0.02 * field.length
    ax.set_xlim(-hl - margin, hl + margin)
    ax.set_ylim(-hw - margin, hw + margin)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def draw_cells(ax: plt.Axes, matrices: np.ndarray, grid: field_lib.Grid) -> None:
    """Shade the occupied cells of segment matrices [S, cols*rows] of `grid`; darker = occupied in more segments."""
    cols, rows = grid.cols, grid.rows
    counts = np.asarray(matrices, np.float32).sum(0).reshape(cols, rows).T
    masked = np.ma.masked_equal(counts, 0)
    x0, y0 = -grid.length / 2, -grid.width / 2
    extent = (x0, x0 + cols * grid.cell, y0, y0 + rows * grid.cell)
    ax.imshow(masked, origin="lower", extent=extent, cmap="Greens", vmin=0, vmax=max(1, counts.max()), alpha=0.8)


def draw_play(ax: plt.Axes, positions: np.ndarray, roles: np.ndarray) -> None:
    """Trajectories [T, K, 2] coloured by role, with a dot at each object's last seen position."""
    for k in range(positions.shape[1]):
        xy = positions[:, k]
        seen = np.isfinite(xy).all(-1)
        if not seen.any():
            continue
        colour = ROLE_COLOURS.get(int(roles[k]), "#7f7f7f")
        ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, lw=0.9 if roles[k] else 1.4)
        last = xy[seen][-1]
        ax.plot(last[0], last[1], "o", color=colour, ms=2.5 if roles[k] else 3.5)


def plot_clip_segments(
    path: str | os.PathLike,
    clip_positions: Sequence[np.ndarray],
    clip_matrices: Sequence[np.ndarray],
    clip_tokens: Sequence[np.ndarray],
    segment_bounds: Sequence[np.ndarray],
    roles: np.ndarray,
    titles: Sequence[str],
    field: field_lib.Field,
    grid: field_lib.Grid,
    segments_shown: int = 4,
) -> str:
    """One row per clip: the whole clip (trajectories over its cells, darker = visited in more segments), then a few
    single segments, each with its own matrix, the moves made in that second, and its token id; on the clips'
    `field`, with cells of its `grid`."""
    n = len(clip_positions)
    fig, axes = plt.subplots(n, 1 + segments_shown, figsize=(3.3 * (1 + segments_shown), 2.5 * n), squeeze=False)
    for row, (pos, mats, toks, bounds, title) in enumerate(
        zip(clip_positions, clip_matrices, clip_tokens, segment_bounds, titles, strict=True)
    ):
        ax = axes[row, 0]
        draw_pitch(ax, field)
        draw_cells(ax, mats, grid)
        draw_play(ax, pos, roles)
        ax.set_title(title, fontsize=7)
        shown = np.unique(np.linspace(0, len(mats) - 1, segments_shown).round().astype(int))
        for ax, s in zip(axes[row, 1:], shown, strict=False):
            draw_pitch(ax, field)
            draw_cells(ax, mats[s : s + 1], grid)
            draw_play(ax, pos[bounds[s] : bounds[s + 1]], roles)
            ax.set_title(f"segment {s}: token {int(toks[s])}, {int(mats[s].sum())} cells", fontsize=7)
        for ax in axes[row, 1 + len(shown) :]:
            ax.axis("off")
    handles = [
        plt.Line2D([], [], color=ROLE_COLOURS[r], label=clips_lib.ROLE_NAMES[r]) for r in sorted(ROLE_COLOURS)[:3]
    ]
    handles.append(patches.Patch(color="#74c476", label=f"occupied {grid.cell:.3g} {field.unit} cells"))
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def plot_losses(records: Sequence[dict], path: str | os.PathLike) -> str:
    """Training curves from metrics.jsonl records: triple loss (train and validation) and its three terms."""
    train = [r for r in records if r["kind"] == "train"]
    val = [r for r in records if r["kind"] == "val"]
    fig, (ax, terms) = plt.subplots(1, 2, figsize=(10, 3.6))
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="#1f77b4", lw=1, label="train")
    if val:
        ax.plot([r["step"] for r in val], [r["loss"] for r in val], "o-", color="#d62728", ms=3, label="validation")
    ax.set(xlabel="step", ylabel="triple contrastive loss", title="loss (Eq. 14)")
    ax.legend(fontsize=8)
    names = {"l12": "L(V1, V2) intra", "l13": "L(V1, V3) inter", "l23": "L(V2, V3)"}
    for (key, label), colour in zip(names.items(), ("#2ca02c", "#9467bd", "#8c564b"), strict=True):
        if val:
            terms.plot([r["step"] for r in val], [r[key] for r in val], "o-", ms=3, color=colour, label=label)
    terms.set(xlabel="step", ylabel="symmetric InfoNCE", title="validation loss terms")
    terms.legend(fontsize=8)
    return save(fig, path)


def save(fig: plt.Figure, path: str | os.PathLike) -> str:
    """Write a figure as PNG (the directory may be a bucket, gs://) under a temporary name, rename it into place,
    and close it."""
    fig.tight_layout()
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp{os.getpid()}"
    try:
        with tmp.open("wb") as f:
            fig.savefig(f, format="png", dpi=110)
        tmp.replace(path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return str(path)


MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "p", "h", "*", "d", "8")
REFERENCES = ("learning-free", "random guess")  # rows drawn dashed and grey-ish: not trained methods


def plot_retrieval(rows: Sequence[dict], path: str | os.PathLike, subtitle: str = "") -> str:
    """HR@1 and MRR against the noise rate δ, one line per method (mean ± std over seeds as error bars), each method
    its own colour and marker, references (learning-free baselines, the random guess) dashed; the legend outside.

    rows: {"method", "results": [{delta, hr1, mrr}, ...] or a list of such lists, one per seed}.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    colours = plt.get_cmap("tab20").colors
    for i, row in enumerate(rows):
        runs = row["results"] if row["results"] and isinstance(row["results"][0], list) else [row["results"]]
        deltas = [r["delta"] for r in runs[0]]
        reference = any(word in row["method"] for word in REFERENCES)
        style = {"ls": "--" if reference else "-", "lw": 1.0 if reference else 1.4, "color": colours[i % 20]}
        for ax, metric in zip(axes, ("hr1", "mrr"), strict=True):
            values = np.array([[r[metric] for r in run] for run in runs])
            ax.errorbar(deltas, values.mean(0), yerr=values.std(0), marker=MARKERS[i % len(MARKERS)], ms=4,
                        capsize=2, label=row["method"], **style)  # fmt: skip
    for ax, label in zip(axes, ("HR@1", "MRR"), strict=True):
        ax.set(xlabel="noise rate δ of the query", ylabel=label, title=f"{label} {subtitle}".strip(), ylim=(0, 1.02))
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return save(fig, path)


def plot_matches(
    path: str | os.PathLike,
    query: tuple[str, np.ndarray],
    matches: Sequence[tuple[str, np.ndarray]],
    roles: Sequence[np.ndarray],
    fields: Sequence[field_lib.Field] | None = None,
) -> str:
    """The query play and its top matches side by side on their fields; plays are (title, positions [T, K, 2])."""
    plays = [query, *matches]
    fields = fields or [field_lib.SOCCER] * len(plays)
    fig, axes = plt.subplots(1, len(plays), figsize=(3.6 * len(plays), 2.8), squeeze=False)
    for ax, (title, positions), role, field in zip(axes[0], plays, roles, fields, strict=True):
        draw_pitch(ax, field)
        draw_play(ax, positions, role)
        ax.set_title(title, fontsize=8)
    return save(fig, path)
