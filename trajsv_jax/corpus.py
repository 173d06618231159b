"""`trajsv corpus`: every real source on this machine in one store, and a table of what each one holds.

The sources: the SkillCorner match, the Hawk-Eye minutes and the PFF excerpts in kloppy's wheel (always there), the
Big Data Cup 2022 ice hockey and SportsMOT's ground truth from the shared data folder (where it is), and a broadcast
video through the front end (when given). Each source records its sport, provider, competition and licence; the
table (`corpus.json`, `corpus.md` beside the store) gives per dataset and sport the sources, clips, videos, seconds
of main camera, objects and every drop by cause, with the split the store would get.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from input_pipeline import examples as examples_lib
from trajsv_jax import files, prepare
from trajsv_jax.data import clips as clips_lib
from trajsv_jax.data import ingest as ingest_lib
from trajsv_jax.data import store as store_lib
from trajsv_jax.errors import UserError
from trajsv_jax.video import preprocess as preprocess_lib

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside a checkout


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One real dataset of the corpus: how it is read, and what every source of it records."""

    name: str
    provider: str
    competition: str
    licence: str
    folder: str | None = None  # under the shared data folder; None: in kloppy's wheel


DATASETS = (
    Dataset("skillcorner", "skillcorner", "SkillCorner open data (kloppy's test match 2417)",
            "MIT (SkillCorner open data); via kloppy's BSD-3-Clause test files"),
    Dataset("hawkeye", "hawkeye", "Hawk-Eye sample minutes (kloppy's test files)",
            "kloppy test files (BSD-3-Clause repository); the data belongs to Hawk-Eye"),
    Dataset("pff", "pff", "PFF FC World Cup 2022 excerpts (kloppy's test files)",
            "kloppy test files (BSD-3-Clause repository); the data belongs to PFF FC"),
    Dataset("bigdatacup", "bigdatacup", "2022 Olympic women's ice hockey power plays (Big Data Cup 2022)",
            "Stathletes Big Data Cup 2022: research and educational use", "bigdatacup_hockey_2022/TrackingData"),
    Dataset("sportsmot", "sportsmot", "SportsMOT train and val ground truth (soccer, basketball, volleyball)",
            "CC BY-NC 4.0 (Cui et al., SportsMOT, ICCV 2023)", "sportsmot_gt"),
)  # fmt: skip
VIDEO = Dataset("video", "video", "broadcast video through the front end", "as the video's own licence")


@dataclasses.dataclass(frozen=True)
class CorpusResult:
    store: Path
    rows: list[dict[str, Any]]  # per dataset and sport
    skipped: dict[str, str]  # dataset → why it is not in the corpus
    left_out: dict[str, str]  # "dataset source" → why (no clip after cleaning)
    seconds: dict[str, float]  # ingest time per dataset
    table: Path

    def report(self) -> str:
        columns = list(self.rows[0]) if self.rows else ["dataset"]
        lines = [
            f"corpus -> {self.store} ({self.table})",
            prepare.text_table(columns, [list(r.values()) for r in self.rows]),
        ]
        lines += [f"not in the corpus: {name}: {why}" for name, why in self.skipped.items()]
        lines += [f"left out (no clip after cleaning): {name}: {why}" for name, why in self.left_out.items()]
        lines.append("ingest seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


def _tagged(sources: list[store_lib.Source], dataset: Dataset) -> list[store_lib.Source]:
    """The sources with the dataset's name, competition and licence in their metadata."""
    meta = {"dataset": dataset.name, "competition": dataset.competition, "licence": dataset.licence}
    return [dataclasses.replace(s, metadata={**s.metadata, **meta, "sport": s.field.sport}) for s in sources]


def _provider_sources(dataset: Dataset, clip_config: clips_lib.ClipConfig) -> list[store_lib.Source]:
    """The sources of a dataset in kloppy's wheel, read by the provider readers."""
    if dataset.name == "skillcorner":
        raw, meta = ingest_lib.bundled_skillcorner_files()
        targets = [("skillcorner", {"raw_data": str(raw), "meta_data": str(meta)})]
    else:
        targets = [t for t in ingest_lib.bundled_provider_files() if t[0] == dataset.provider]
    out = []
    for provider, paths in targets:
        frames = ingest_lib.read_frames(provider, paths)
        source_id = store_lib.safe_source_id(ingest_lib.default_source_id(frames))
        source, _ = store_lib.source_from_frames(frames, source_id, clip_config)
        out.append(source)
    return out


def build_corpus(
    out: Path,
    shared: Path | None = None,
    video: tuple[Path, dict[str, Any]] | None = None,
    clip_config: clips_lib.ClipConfig | None = None,
    split: prepare.Split | None = None,
) -> CorpusResult:
    """Ingest every real source into OUT/store (replacing sources of the same ids) and write OUT/corpus.json and
    OUT/corpus.md. `shared` is the shared data folder (default ../shared/data beside the checkout); datasets whose
    folder is missing are skipped and listed. `video` is (video file, `video.preprocess` keyword arguments)."""
    out = files.output_folder(out, "corpus")
    clip_config, split = clip_config or clips_lib.ClipConfig(), split or prepare.Split(16, 0.8, 0.1)
    shared = Path(shared) if shared is not None else SHARED_DATA
    skipped, seconds, sources, events, left_out = {}, {}, [], {}, {}
    with files.locked(out, "corpus"):
        for dataset in DATASETS:
            t0 = time.perf_counter()
            if dataset.folder is None:
                found = _provider_sources(dataset, clip_config)
            elif (shared / dataset.folder).is_dir():
                read, _ = ingest_lib.FOLDER_READERS[dataset.provider](shared / dataset.folder)
                found, _, dropped, with_events = ingest_lib.cut_sources(read, clip_config)
                events.update(with_events)
                left_out.update({f"{dataset.name} {sid}": why for sid, why in dropped.items()})
            else:
                skipped[dataset.name] = f"{shared / dataset.folder} not found"
                continue
            sources += _tagged([s for s in found if s.num_clips], dataset)
            seconds[dataset.name] = time.perf_counter() - t0
        store_lib.write_sources(out / "store", sources, ingest_lib.events_writer(events))
        if video is not None:
            t0 = time.perf_counter()
            result = preprocess_lib.run_front_end(video[0], **video[1])
            store_lib.write_sources(out / "store", _tagged([result.source], VIDEO))
            seconds["video"] = time.perf_counter() - t0
        rows = corpus_rows(store_lib.read_store(out / "store"), split)
        summary = {"store": str((out / "store").resolve()), "split": dataclasses.asdict(split), "rows": rows,
                   "skipped": skipped, "sources_without_clips": left_out, "ingest_seconds": seconds}  # fmt: skip
        files.atomic_json(out / "corpus.json", summary)
        columns = list(rows[0]) if rows else []
        table = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
        table += "".join("| " + " | ".join(str(v) for v in r.values()) + " |\n" for r in rows)
        files.atomic_text(out / "corpus.md", f"# Corpus\n\nsplit: {split.describe()}\n\n{table}")
    return CorpusResult(out / "store", rows, skipped, left_out, seconds, out / "corpus.md")


DROP_COLUMNS = {
    "off_pitch": "off-field object-frames",
    "nan_coordinates": "half-missing object-frames",
    "frames_without_detections": "frames without detections",
    "short_clips": "short clips",
}


def corpus_rows(sources: list[store_lib.Source], split: prepare.Split) -> list[dict[str, Any]]:
    """Per dataset and sport: sources, clips, videos per split, seconds of main camera, objects, drops by cause."""
    videos, _ = examples_lib.plan_videos(sources, split.clips_per_video, split.train_fraction, split.val_fraction)
    keys: dict[tuple[str, str, str], list[store_lib.Source]] = {}
    for s in sources:
        f = s.field
        keys.setdefault((s.metadata.get("dataset", s.metadata.get("provider", "?")), f.sport, f.kind), []).append(s)
    rows = []
    for (dataset, sport, kind), members in keys.items():
        ids = {s.source_id for s in members}
        split_counts = {name: sum(v.source_id in ids and v.split == name for v in videos) for name in clips_lib.SPLITS}
        row = {
            "dataset": dataset, "sport": sport, "field": kind, "sources": len(members),
            "clips": sum(s.num_clips for s in members),
            "videos (train/val/test)": "/".join(str(split_counts[n]) for n in clips_lib.SPLITS),
            "seconds": round(sum(float(s.clip_lengths().sum()) / s.fps for s in members), 1),
            "objects": sum(s.num_objects for s in members),
        }  # fmt: skip
        for key, name in DROP_COLUMNS.items():
            row[name] = sum(int(s.metadata.get("drops", {}).get(key, 0)) for s in members)
        rows.append(row)
    return rows


def check_video_arguments(video: Path | None, landmarks: Path | None) -> None:
    if (video is None) != (landmarks is None):
        raise UserError("--video and --landmarks go together: the front end needs the pitch landmarks of the video.")
