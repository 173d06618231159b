"""The paper's retrieval tables on the bundled match, one command each (`trajsv evaluate STUDY`).

  ablations      Table V: CRNet → LSTM / BiLSTM, VRNet → mean / MLP, trajectory-only / visual-only, the loss
                 without each view, the grid (matrices) embedding, and a play2vec-style baseline
  batch-size     Table VI, with training time
  cell-size      Table VII: 1–9 m cells (each its own tokenization and dataset)
  embedding-dim  Table VIII: trajectory representation d = 32 … 256

Every method is trained for every seed (configs/demo.py plus the method's overrides, `--config.seed=S`), then
evaluated with the retrieval protocol (`evaluate.py`, the same queries for all). Runs live in OUT/runs/<method
key>/seed<S>, keyed by what is trained, so a finished run is reused: by a re-run after an interruption and by
another study with the same setting (the full model is a row of every study). Each study writes OUT/<study>/
table.md, table.json and retrieval.png (HR@1 and MRR against δ, mean ± std over seeds), each written atomically;
`trajsv evaluate` holds the lock of OUT while a study runs.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from input_pipeline import write as write_lib
from trajsv_jax import config as config_lib
from trajsv_jax import files, plots, prepare
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import ingest
from trajsv_jax.data import store as store_lib
from trajsv_jax.errors import UserError
from trajsv_jax.retrieval import evaluate as evaluate_lib
from trajsv_jax.retrieval.study_names import STUDY_HELP
from trajsv_jax.training import loop

log = logging.getLogger(__name__)

BASE_CONFIG = "configs/demo.py"


@dataclasses.dataclass(frozen=True)
class Method:
    """One row of a table: what to train (config file, overrides, the data's cell size)."""

    name: str
    overrides: tuple[str, ...] = ()
    config: str = BASE_CONFIG
    cell: float = 3.0
    skip: str = ""  # why this row cannot be run on this data

    @property
    def key(self) -> str:
        """Directory name of the runs: the config, the cell and the overrides, readable."""
        parts = [Path(self.config).stem, f"cell{self.cell:g}", *(o.removeprefix("--config.") for o in self.overrides)]
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", "-".join(parts))


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """A study's table (as table.json holds it), its markdown and the files written."""

    table: dict[str, Any]
    markdown: str
    files: list[str]

    def report(self) -> str:
        return "\n".join([self.markdown, *self.files])


def ablations(has_visual: bool) -> list[Method]:
    """Table V's rows (plus the grid embedding, which sees the replaced trajectories that tokens hide)."""
    no_visual = "the data has no visual features"
    loss = ["--config.loss.alpha={}", "--config.loss.beta={}"]
    return [
        Method("CRNet + VRNet"),
        Method("w/o CRNet (BiLSTM)", ("--config.model.clip_encoder=bilstm",)),
        Method("w/o CRNet (LSTM)", ("--config.model.clip_encoder=lstm",)),
        Method("w/o VRNet (Mean)", ("--config.model.video_encoder=mean",)),
        Method("w/o VRNet (MLP)", ("--config.model.video_encoder=mlp",)),
        # without visual features the full model IS trajectory-only: same runs
        Method("Trajectory + VRNet", ("--config.model.visual_dim=0",) if has_visual else ()),
        Method("Visual + VRNet", ("--config.model.clip_encoder=none",), skip="" if has_visual else no_visual),
        Method("w/o V1 in loss", (loss[0].format(0.0), loss[1].format(0.0))),
        Method("w/o V2 in loss", (loss[0].format(0.0), loss[1].format(1.0))),
        Method("w/o V3 in loss", (loss[0].format(1.0), loss[1].format(0.0))),
        Method("CRNet (grid embedding) + VRNet", ("--config.model.embedding=matrices",)),
        Method("play2vec (Mean)", config="configs/play2vec.py"),
    ]


def _sweep(name: str, field: str, values: Sequence[int], default: int) -> list[Method]:
    """Methods that change one config field; the default value is the full model itself (its runs are shared)."""
    return [Method(f"{name} {v}", () if v == default else (f"--config.{field}={v}",)) for v in values]


STUDIES = {
    "ablations": ablations,
    "batch-size": lambda _: _sweep("batch", "batch_size", (8, 16, 32, 48), 16),
    "cell-size": lambda _: [Method(f"cell {c} m", cell=float(c)) for c in (1, 3, 5, 7, 9)],
    "embedding-dim": lambda _: _sweep("d", "model.d_model", (32, 64, 128, 256), 128),
}
FULL = Method("CRNet + VRNet")


def dataset(out: Path, cell: float, fast: bool = True) -> str:
    """The bundled match's dataset tokenized with `cell` m cells (written once, in OUT/data/cell<c>)."""
    root = out / "data" / f"cell{cell:g}"
    data_dir = root / "tfrecords"
    if not (data_dir / "dataset_info.json").exists():
        log.info("writing the bundled match's dataset with %g m cells to %s", cell, root)
        options = prepare.DataOptions(cell=cell)
        log.info(prepare.prepare_bundled_match(root, clips_lib.ClipConfig(), options, fast).report())
    return str(data_dir)


def transfer_dataset(out: Path, source_data: str) -> str:
    """The target of the transfer study: kloppy's real Hawk-Eye minutes and PFF excerpts in one dataset, tokenized
    with the source's (frozen) vocabulary, split half/half by time into train and test."""
    root = out / "data" / "transfer"
    data_dir = root / "tfrecords"
    if (data_dir / "dataset_info.json").exists():
        return str(data_dir)
    targets = ingest.bundled_provider_files()
    for provider, paths in targets:
        log.info(prepare.ingest_source(provider, paths, root / "store", None, clips_lib.ClipConfig()).report())
    vocabulary = Path(source_data) / store_lib.VOCAB_FILE
    log.info(prepare.tokenize_store(root / "store", vocabulary=vocabulary, split=prepare.Split(4, 0.5)).report())
    log.info(prepare.write_dataset(root / "store", data_dir, shards=1).report())
    return str(data_dir)


def run_transfer(
    out: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    overrides: Sequence[str] = (),
    protocol: evaluate_lib.Protocol | None = None,
    base_data: str | None = None,
) -> StudyResult:
    """Table IX: the full model trained on SkillCorner, tested there, zero-shot on the target, fine-tuned on the
    target's train half; and trained on the target's train half alone. Tested on the target's test half."""
    out, protocol = Path(out), protocol or evaluate_lib.Protocol()
    base_data = base_data or dataset(out, 3.0)
    target = transfer_dataset(out, base_data)
    videos = write_lib.read_info(target)["splits"]["train"]["num_examples"]
    small = [f"--config.batch_size={min(16, videos)}", "--config.val_split=", "--config.patience=0"]
    rows = {
        name: [] for name in ("SC → SC (training)", "SC → T (zero-shot)", "SC → T (fine-tuning)", "T → T (training)")
    }
    sizes, seconds = set(), {name: [] for name in rows}
    for seed in seeds:
        source_run = out / "runs" / FULL.key / f"seed{seed}"
        seconds["SC → SC (training)"].append(train_run(FULL, seed, base_data, source_run, overrides)["seconds"])
        tuned, scratch = (out / "runs" / f"transfer-{kind}" / f"seed{seed}" for kind in ("finetune", "target"))
        tune = Method("fine-tuning", (*small, f"--config.init_from={source_run}"))
        seconds["SC → T (fine-tuning)"].append(train_run(tune, seed, target, tuned, overrides)["seconds"])
        seconds["T → T (training)"].append(
            train_run(Method("target", tuple(small)), seed, target, scratch, overrides)["seconds"]
        )
        for name, (run, data) in {
            "SC → SC (training)": (source_run, None),
            "SC → T (zero-shot)": (source_run, target),
            "SC → T (fine-tuning)": (tuned, target),
            "T → T (training)": (scratch, target),
        }.items():
            log.info(name)
            result = evaluated(run, protocol, data)
            sizes.add(result.database_size)
            rows[name].append(result.results)
    table_rows = [
        {"method": f"TrajSV {name}", "results": results, "seeds": list(seeds), "train_seconds": seconds[name]}
        for name, results in rows.items()
    ]
    return write_table("transfer", out / "transfer", table_rows, sizes, protocol)


def train_run(method: Method, seed: int, data_dir: str, workdir: Path, overrides: Sequence[str]) -> dict[str, Any]:
    """Train one method for one seed unless the run has finished before; its summary."""
    summary_file = workdir / "summary.json"
    if summary_file.exists():
        return files.read_json(summary_file, f"Delete {workdir} and re-run `trajsv evaluate` to train it again.")
    extra = [f"--config.data_dir={data_dir}", f"--config.seed={seed}", *method.overrides, *overrides]
    config = config_lib.load_config(method.config, extra)
    log.info("== %s, seed %d: training in %s", method.name, seed, workdir)
    return loop.train_and_evaluate(config, workdir).as_dict()


def evaluated(
    workdir: Path, protocol: evaluate_lib.Protocol, data_dir: str | None = None
) -> evaluate_lib.RetrievalResult:
    """The retrieval protocol for a run (on its own dataset, or `data_dir`'s), printed; kept in the run directory
    and reused while split, seed and noise rates are the same."""
    other = f"_{Path(data_dir).parent.name}" if data_dir else ""
    result_file = workdir / f"retrieval_{protocol.split}_seed{protocol.seed}{other}.json"
    result = _cached(result_file, protocol)
    if result is None:
        result = evaluate_lib.evaluate_run(workdir, data_dir, protocol)
        files.atomic_json(result_file, result.as_dict())
    log.info(result.report())
    return result


def _cached(result_file: Path, protocol: evaluate_lib.Protocol) -> evaluate_lib.RetrievalResult | None:
    """The result kept in `result_file` if it is readable and has the protocol's noise rates; else None."""
    if not result_file.exists():
        return None
    try:
        result = evaluate_lib.RetrievalResult(**files.read_json(result_file, ""))
        deltas = [r["delta"] for r in result.results]
    except (UserError, TypeError, KeyError):
        log.info("%s: unreadable, evaluating again", result_file)
        return None
    return result if deltas == list(protocol.deltas) else None


def run_study(
    study: str,
    out: str | Path,
    seeds: Sequence[int] = (0, 1, 2),
    only: str = "",
    overrides: Sequence[str] = (),
    protocol: evaluate_lib.Protocol | None = None,
    base_data: str | None = None,
) -> StudyResult:
    """Train and evaluate every method of a study for every seed; write its table, JSON and plot.

    `base_data`: the 3 m dataset to use (default: the bundled match's, written to OUT/data/cell3 once).
    """
    out, protocol = Path(out), protocol or evaluate_lib.Protocol()
    base_data = base_data or dataset(out, 3.0)
    has_visual = write_lib.has_visual(write_lib.read_info(base_data))
    methods = [m for m in STUDIES[study](has_visual) if only.lower() in m.name.lower()]
    rows, sizes = [], set()
    for method in methods:
        row: dict[str, Any] = {"method": method.name, "key": method.key, "overrides": list(method.overrides)}
        if method.skip:
            rows.append(row | {"skipped": method.skip, "results": []})
            continue
        data_dir = base_data if method.cell == 3.0 else dataset(out, method.cell)
        per_seed, seconds = [], []
        for seed in seeds:
            workdir = out / "runs" / method.key / f"seed{seed}"
            summary = train_run(method, seed, data_dir, workdir, overrides)
            seconds.append(summary["seconds"])
            result = evaluated(workdir, protocol)
            sizes.add(result.database_size)
            per_seed.append(result.results)
        rows.append(row | {"results": per_seed, "train_seconds": seconds, "seeds": list(seeds)})
        last = result
    if any(r["results"] for r in rows):
        rows += reference_rows(last, protocol)
    return write_table(study, out / study, rows, sizes, protocol)


def reference_rows(result: evaluate_lib.RetrievalResult, protocol: evaluate_lib.Protocol) -> list[dict[str, Any]]:
    """The learning-free baselines (the same queries for every method) and the random guess, as table rows."""
    rows = [
        {"method": f"{name} (learning-free)", "results": [results], "seeds": [], "train_seconds": []}
        for name, results in result.baselines.items()
    ]
    if result.chance:
        chance = [{"delta": d, **result.chance} for d in protocol.deltas]
        rows.append({"method": "random guess", "results": [chance], "seeds": [], "train_seconds": []})
    return rows


def write_table(study: str, out: Path, rows: list[dict], sizes: set, protocol: evaluate_lib.Protocol) -> StudyResult:
    """table.md (markdown as the paper's, plus training time for the batch study), table.json, retrieval.png."""

    files.output_folder(out, "trajsv evaluate")
    size = ", ".join(str(s) for s in sorted(sizes)) or "?"
    ran = [r for r in rows if r["results"]]
    table = evaluate_lib.markdown_table(ran, size)
    if study == "batch-size":
        table += "\n\n| Method | training time (s) |\n|---|---|\n" + "\n".join(
            f"| {r['method']} | {evaluate_lib.mean_std(r['train_seconds'], '.0f')} |" for r in ran if r["train_seconds"]
        )
    skipped = [f"- {r['method']}: not run ({r['skipped']})" for r in rows if r.get("skipped")]
    seeds = sorted({s for r in ran for s in r["seeds"]})
    note = (
        f"{STUDY_HELP[study]}. Mean ± std over seeds {seeds} (model seeds; the queries' noise uses seed "
        f"{protocol.seed}); queries: every {protocol.split} video at each δ with trajectories and clips replaced."
    )
    if study == "transfer":
        note += (
            " SC → SC is tested on SkillCorner's test videos, the other rows on the target's test half; the target "
            "is a few minutes of tracking, so its database is tiny and its figures are coarse."
        )
    text = "\n".join([f"# {study}", "", note, "", table, *(["", *skipped] if skipped else [])]) + "\n"
    files.atomic_text(out / "table.md", text)
    result = {"study": study, "database_size": sorted(sizes), "protocol": dataclasses.asdict(protocol), "rows": rows}
    files.atomic_json(out / "table.json", result)
    written = [str(out / "table.md"), str(out / "table.json")]
    if ran:
        subtitle = f"({study}, database {size})"
        written.append(
            str(files.atomic_write(out / "retrieval.png", lambda tmp: plots.plot_retrieval(ran, tmp, subtitle)))
        )
    return StudyResult(result, text, written)
