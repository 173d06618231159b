"""One function per `trajsv` command: argparse values → typed library calls → the result's report on stdout.

TensorFlow, JAX, ScaNN and cv2 are imported inside the commands that need them, so the parser stays fast.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trajsv_jax.errors import UserError

Command = Callable[[argparse.Namespace, Sequence[str]], None]


def parse_files(items: Sequence[str]) -> dict[str, str | list[str]]:
    """KEY=FILE arguments → {key: file}; a key given more than once collects a list (e.g. Signality's raw_data)."""
    files: dict[str, str | list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UserError(f"{item!r}: expected KEY=FILE (e.g. raw_data=tracking.json); see `trajsv ingest --help`")
        if key in files:
            previous = files[key]
            files[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            files[key] = value
    return files


def _clip_config(a: argparse.Namespace):
    from trajsv_jax.data.clips import ClipConfig

    return ClipConfig(
        min_seconds=a.min_clip_seconds,
        max_segments=a.max_segments,
        segment_seconds=a.segment_seconds,
        off_pitch_margin=a.off_pitch_margin,
    )


def _checkpoint(text: str) -> int | str:
    """--checkpoint: a step number, or "best" / "latest"."""
    return int(text) if text.isdigit() else text


def _echo(result: Any) -> None:
    """Print a step's report at once, so it shows before the next long step (also when stdout is a file)."""
    print(result.report(), flush=True)


def demo(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax import demo as demo_lib
    from trajsv_jax import prepare

    options = prepare.DataOptions(
        a.cell, a.threshold, a.approximate, a.clips_per_video, a.objects, a.train_fraction, a.shards, a.val_fraction
    )
    result = demo_lib.run(a.out, _clip_config(a), options, not a.kloppy, overrides, train=not a.data_only, echo=_echo)
    print(f"summary: {result.summary_file}")


FOLDER_PROVIDERS = ("sportsmot", "bigdatacup")  # data.ingest.FOLDER_READERS (not imported: it loads pandas)


def ingest(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax import prepare

    table_options = {
        k.removeprefix("table_"): v for k, v in vars(a).items() if k.startswith("table_") and v is not None
    }
    if a.provider == "table":
        from trajsv_jax.data.ingest import table

        if len(a.files) != 1:
            raise UserError(
                f"table: expected one FILE (a .csv, .tsv or .parquet table), got {len(a.files)}. "
                "Use `trajsv ingest table FILE [table import options] --out STORE`."
            )
        if a.pitch_length or a.pitch_width or a.kloppy:
            raise UserError(
                "--pitch-length, --pitch-width and --kloppy are for provider files: give a table's field size with "
                "--field-size LENGTH WIDTH (metres)."
            )
        t0 = time.perf_counter()
        source, _ = table.ingest_table(
            a.files[0], a.out, table.TableOptions(**table_options), a.source_id, _clip_config(a)
        )
        print(prepare.IngestResult(source, "the table reader", time.perf_counter() - t0, Path(a.out)).report())
        for warning in source.metadata.get("warnings", []):
            print(f"  warning: {warning}")
        return
    if table_options:
        flag = "--" + next(iter(table_options)).replace("_", "-")
        raise UserError(f"{flag} is a table import option: use it with `trajsv ingest table FILE`.")
    if a.provider in FOLDER_PROVIDERS:
        if len(a.files) != 1:
            got = len(a.files)
            raise UserError(f"{a.provider}: expected one DIR, got {got}. Use `trajsv ingest {a.provider} DIR`.")
        options = {"manifest": a.manifest, "trust_manifest": a.trust_manifest} if a.provider == "sportsmot" else {}
        print(prepare.ingest_folder(a.provider, Path(a.files[0]), a.out, _clip_config(a), **options).report())
        return
    if a.manifest or a.trust_manifest:
        raise UserError("--manifest and --trust-manifest are for `trajsv ingest sportsmot DIR`.")
    pitch_size = {"pitch_length": a.pitch_length, "pitch_width": a.pitch_width}
    files = parse_files(a.files)
    print(
        prepare.ingest_source(
            a.provider, files, a.out, a.source_id, _clip_config(a), not a.kloppy, **pitch_size
        ).report()
    )


def corpus(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax import corpus as corpus_lib

    corpus_lib.check_video_arguments(a.video, a.landmarks)
    video = (a.video, {"landmarks": a.landmarks}) if a.video else None
    print(corpus_lib.build_corpus(a.out, a.shared, video, _clip_config(a)).report())


def preprocess(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    import dataclasses

    from trajsv_jax.video import pictures, shots
    from trajsv_jax.video import preprocess as preprocess_lib

    view = shots.ViewConfig(**{f.name: getattr(a, f.name) for f in dataclasses.fields(shots.ViewConfig)})
    config = preprocess_lib.PreprocessConfig(height=a.height or None, view=view, clip=_clip_config(a))
    config = preprocess_lib.with_settings(config, a.settings)
    result = preprocess_lib.preprocess(
        a.video,
        a.out,
        landmarks=a.landmarks,
        calibration=a.calibration,
        onnx_detector=a.detector,
        distortion=a.distortion,
        drop_landmark_outliers=a.drop_landmark_outliers,
        refine_lines=a.refine_lines,
        config=config,
        source_id=a.source_id,
        max_frames=a.max_frames,
        allow_short_video=a.allow_short_video,
    )
    folder = a.plots or Path(a.out).parent / f"{result.source.source_id}_pictures"
    print(preprocess_lib.report(result, a.out, pictures.save_pictures(result, folder)))


def features(a: argparse.Namespace, overrides: Sequence[str] = ()) -> None:
    """Compute, write, and print one report line per source."""
    from trajsv_jax.video import features as features_lib

    store = Path(a.store)
    if a.onnx and a.soccernet:
        raise UserError("--onnx runs on video frames, --soccernet imports ready features: use one of them.")
    external = "--video" if a.video else "--soccernet" if a.soccernet else None
    sources = features_lib.select_sources(store, a.sources, external)
    extractor: features_lib.FrameExtractor | None = None
    if not a.soccernet:
        if a.height is not None and a.height < 16:
            raise UserError(f"--height {a.height}: too small; use e.g. {features_lib.DEFAULT_HEIGHT}.")
        if a.onnx:
            extractor = features_lib.OnnxExtractor(
                a.onnx,
                a.input_size,
                a.mean,
                a.std,
                rgb=not a.bgr,
                crop=not a.no_crop,
                l2=not a.no_l2,
                clip_frames=a.clip_frames,
                batch_size=a.batch_size,
                output=a.onnx_output,
            )
        else:
            extractor = features_lib.ColourEdgeExtractor()
    for source in sources:
        t0 = time.perf_counter()
        if a.soccernet:
            result = features_lib.import_soccernet(
                source, a.soccernet, a.soccernet_name, a.soccernet_fps, a.soccernet_offset
            )
            origin = ""
        else:
            video = a.video or features_lib.video_path(store, source)
            if video is None:
                raise UserError(f"source {source.source_id} of {store}: no video in its metadata. Pass --video PATH.")
            result = features_lib.video_features(source, video, extractor, a.height, a.sample_fps)
            origin = f" from {video}"
        path = features_lib.write_features(store, source.source_id, result.visual, result.mask, result.info())
        print(f"source {source.source_id}{origin}: {result.summary()}; {time.perf_counter() - t0:.1f} s -> {path}")


def tokenize(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax import prepare

    split = prepare.Split(a.clips_per_video, a.train_fraction, a.val_fraction)
    result = prepare.tokenize_store(
        a.store, a.cell, a.segment_seconds, a.threshold, a.approximate, a.vocabulary, split, a.camera_cell
    )
    print(result.report())


def dataset(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax import prepare

    result = prepare.write_dataset(
        a.store, a.out, a.clips_per_video, a.objects, a.train_fraction, a.shards, a.val_fraction, a.fps
    )
    print(result.report())


def info(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax import prepare

    print(prepare.store_info(a.store).report())


def train(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax import config as config_lib
    from trajsv_jax.training import sharding

    if a.distributed:
        sharding.initialize_distributed(a.coordinator, a.num_processes, a.process_id)
    from trajsv_jax.training import loop

    config = config_lib.load_config(a.config, list(overrides))
    print(loop.train_and_evaluate(config, a.workdir).report())


def embed(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax.retrieval import embed as embed_lib

    out = a.out or f"{a.workdir.rstrip('/')}/embeddings/{a.split}"
    print(embed_lib.embed_split(a.workdir, out, a.data, a.split, _checkpoint(a.checkpoint), a.batch_size).report())


def index(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax.retrieval import index as index_lib
    from trajsv_jax.retrieval import search as search_lib

    settings = index_lib.IndexSettings(
        mode=a.mode, num_leaves=a.num_leaves, leaves_to_search=a.leaves_to_search, reorder=a.reorder
    )
    print(search_lib.build(a.embeddings, a.out or f"{a.embeddings.rstrip('/')}/index", settings).report())


def search(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax.retrieval import search as search_lib

    tracking = {"provider": a.tracking[0], "files": parse_files(a.tracking[1:])} if a.tracking else None
    print(search_lib.find_similar(a.index, a.video_id, tracking, a.k, a.plot).report())


def evaluate(a: argparse.Namespace, overrides: Sequence[str]) -> None:
    from trajsv_jax import files
    from trajsv_jax.retrieval import evaluate as evaluate_lib

    protocol = evaluate_lib.Protocol(deltas=a.deltas, split=a.split, seed=a.seed)
    out = a.out or (f"{a.workdir.rstrip('/')}/retrieval" if a.study == "retrieval" else "runs/experiments")
    with files.locked(out, "evaluate"):  # the whole command: a second writer fails before minutes of work
        if a.study == "retrieval":
            result = evaluate_lib.evaluate_run(a.workdir, a.data, protocol, _checkpoint(a.checkpoint))
            print(result.report())
            print("\n".join(result.write(out)))
            return
        from trajsv_jax.retrieval import studies

        if a.study == "transfer":
            print(studies.run_transfer(out, a.seeds, list(overrides), protocol).report())
        else:
            print(studies.run_study(a.study, out, a.seeds, a.only, list(overrides), protocol).report())


COMMANDS: dict[str, Command] = {
    "demo": demo,
    "ingest": ingest,
    "corpus": corpus,
    "preprocess": preprocess,
    "features": features,
    "tokenize": tokenize,
    "dataset": dataset,
    "info": info,
    "train": train,
    "embed": embed,
    "index": index,
    "search": search,
    "evaluate": evaluate,
}
OVERRIDABLE = ("train", "demo", "evaluate")  # commands that take --config.KEY=VALUE overrides
