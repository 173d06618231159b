"""`trajsv`: the command line. Thin: parse, call the library, report. Bad input ends in one line, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from trajsv_jax.errors import UserError

DEFAULT_RUN = Path("runs/skillcorner_2417")

EPILOG = """\
examples:
  trajsv demo                                     # the bundled real match: ingest, tokenize, tf.data shards, picture
  trajsv ingest                                   # bundled SkillCorner match -> runs/skillcorner_2417/store
  trajsv ingest tracab meta_data=meta.xml raw_data=tracking.dat --out my_store
  trajsv preprocess clip.mp4 --landmarks pitch.xml --out runs/video/store   # broadcast video -> store
  trajsv features runs/video/store                # a 512-d frozen visual vector per clip (--onnx, --soccernet)
  trajsv tokenize runs/skillcorner_2417/store     # vocabulary + token ids per clip, saved in the store
  trajsv dataset runs/skillcorner_2417/store --out runs/skillcorner_2417/tfrecords
  trajsv info runs/skillcorner_2417/store
  trajsv train --config configs/demo.py --workdir runs/skillcorner_2417/train
  trajsv embed --workdir runs/skillcorner_2417/train --split test
  trajsv index                                    # ScaNN index of those test videos
  trajsv search --video-id 23 -k 5 --plot matches.png
  trajsv evaluate retrieval                       # HR@1 / MRR of the demo run at noise 0.5-0.6
  trajsv evaluate ablations                       # Table V, 3 seeds (about 40 minutes on 2 cores)
Every subcommand has --help."""


def _clip_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("clips")
    g.add_argument("--min-clip-seconds", type=float, default=0.4, help="drop runs shorter than this (paper: 0.4 s)")
    g.add_argument("--max-segments", type=int, default=16, help="m: split clips longer than m segments (paper: 16)")
    g.add_argument("--segment-seconds", type=float, default=1.0, help="segment length in seconds (paper: 1)")
    g.add_argument("--off-pitch-margin", type=float, default=0.0, help="metres beyond the lines still kept")


def _token_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tokens")
    g.add_argument("--cell", type=float, default=3.0, help="grid cell size in metres (paper: 3 -> 35 x 23 cells)")
    g.add_argument("--threshold", type=float, default=0.3, help="Jaccard threshold for a new token (paper: 0.3)")
    g.add_argument("--approximate", action="store_true", help="MinHash-LSH vocabulary for millions of segments")


def _dataset_args(p: argparse.ArgumentParser, clips_per_video: int = 16, note: str = "") -> None:
    g = p.add_argument_group("dataset")
    g.add_argument("--clips-per-video", type=int, default=clips_per_video, help=f"n: clips per video (paper: 16{note})")
    g.add_argument("--objects", type=int, default=32, help="K: objects kept per clip in the padded examples")
    g.add_argument("--train-fraction", type=float, default=0.8, help="first fraction of each source's time: train")
    g.add_argument(
        "--val-fraction", type=float, default=0.1, help="end of the train time held out for early stopping (val)"
    )
    g.add_argument("--shards", type=int, default=4, help="TFRecord shards per split")


def build_parser() -> argparse.ArgumentParser:
    from trajsv_jax import prepare
    from trajsv_jax.data import ingest

    parser = argparse.ArgumentParser(
        prog="trajsv",
        description="TrajSV in JAX: sports-video representations learned from player and ball trajectories.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="run the main job on the bundled real match: ingest, tokenize, dataset, train, embed",
        description="Ingest the real SkillCorner match shipped in kloppy's wheel, tokenize it, write the tf.data "
        "shards, train TrajSV with configs/demo.py (a few minutes on 2 CPU cores), embed the test videos, and save "
        "pictures: a few clips' segment matrices on the pitch and the loss curve. Training-config overrides "
        "(--config.KEY=VALUE) pass through, e.g. --config.num_epochs=10.",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_RUN, help=f"run directory (default {DEFAULT_RUN})")
    p.add_argument(
        "--kloppy", action="store_true", help="read through kloppy instead of the fast reader (~14 s vs ~2 s)"
    )
    p.add_argument("--data-only", action="store_true", help="stop after the dataset: no training, no embedding")
    _clip_args(p)
    _token_args(p)
    _dataset_args(p, prepare.DataOptions.clips_per_video, "; one match makes 24 such videos, so the demo uses 4")

    providers = "\n".join(f"  {name:<16} {spec.help}" for name, spec in ingest.PROVIDERS.items())
    p = sub.add_parser(
        "ingest",
        help="provider tracking files -> trajectory store",
        description="Read tracking data (any provider kloppy loads) into the canonical store (docs/FORMAT.md). "
        "With no provider, ingests the real SkillCorner match bundled in kloppy's wheel.",
        epilog=f"providers and their files (KEY=FILE):\n{providers}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("provider", nargs="?", default=None, metavar="PROVIDER", help="one of the providers below")
    p.add_argument("files", nargs="*", metavar="KEY=FILE", help="the provider's files, e.g. raw_data=tracking.json")
    p.add_argument("--out", type=Path, default=DEFAULT_RUN / "store", help="store directory (created if needed)")
    p.add_argument("--source-id", default=None, help="name of the source in the store (default: provider_gameid)")
    p.add_argument("--kloppy", action="store_true", help="always read through kloppy, even where a fast reader exists")
    p.add_argument("--pitch-length", type=float, default=None, help="metres, for files without a pitch size")
    p.add_argument("--pitch-width", type=float, default=None, help="metres, for files without a pitch size")
    _clip_args(p)

    p = sub.add_parser(
        "preprocess",
        help="broadcast video -> main-camera clips -> calibration -> tracking -> trajectory store",
        description="The video front end (paper IV-A) with OpenCV, in one pass over the frames:\n"
        "  clips        classify each frame's camera view; main-camera runs of at least --min-clip-seconds, cut at\n"
        "               shot boundaries\n"
        "  calibration  image -> pitch from pitch landmarks (with a lens model) or an imported calibration,\n"
        "               optionally fitted to the painted lines (--refine-lines); a moving camera is followed frame\n"
        "               by frame\n"
        "  detection    players and ball: weight-free pitch-colour detector, or your ONNX detector (--detector)\n"
        "  tracking     Kalman + Hungarian in ByteTrack's two stages; teams from the kit colours\n"
        "  pitch        foot points on the 105 x 68 m pitch, implausible jumps removed, gaps filled, smoothed\n"
        "The result is added to the store as `trajsv ingest` adds a match (tokenize, dataset, train and embed take\n"
        "it), with every drop counted; tracks_frame.png and trajectories.png are drawn for a visual check. Nothing\n"
        "is written on failure.",
        epilog="example:\n  trajsv preprocess left_camera.mp4 --landmarks left_keypoints.xml --out runs/video/store",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", type=Path, help="video file OpenCV can decode (mp4/mkv/avi; H.264, HEVC, ...)")
    p.add_argument(
        "--landmarks", type=Path, default=None, help="pitch landmarks: CVAT XML (labels '(x,y)' in metres) or JSON"
    )
    p.add_argument(
        "--calibration", type=Path, default=None, help="instead of landmarks: a homography or SoccerNet camera JSON"
    )
    p.add_argument("--distortion", choices=("auto", "none", "radial"), default="auto", help="lens model (landmarks)")
    p.add_argument(
        "--refine-lines",
        action="store_true",
        help="fit the landmark / imported view to the painted lines of the first frame (refused where they disagree)",
    )
    p.add_argument("--detector", type=Path, default=None, help="ONNX detector (YOLOv8-style); default: weight-free")
    p.add_argument("--height", type=int, default=720, help="analyse frames downscaled to this many rows (0: native)")
    p.add_argument("--out", type=Path, default=Path("runs/video/store"), help="store directory (created if needed)")
    p.add_argument("--source-id", default=None, help="name of the source in the store (default: video_<file name>)")
    p.add_argument("--plots", type=Path, default=None, help="folder for the pictures (default: next to the store)")
    p.add_argument("--min-pitch-share", type=float, default=None, help="main camera: least share of grass pixels")
    p.add_argument("--max-frames", type=int, default=None, help="only the first N frames (a quick look)")
    _clip_args(p)

    from trajsv_jax.video import features as features_lib

    features_lib.add_parser(sub)

    p = sub.add_parser("tokenize", help="segment matrices + Jaccard vocabulary for every clip of a store")
    p.add_argument("store", type=Path)
    _token_args(p)
    p.add_argument("--segment-seconds", type=float, default=None, help="default: as the store's clips were cut")
    p.add_argument(
        "--vocabulary",
        type=Path,
        default=None,
        help="freeze another dataset's vocab.npz: each segment gets its nearest entry (to fine-tune or transfer)",
    )

    p = sub.add_parser("dataset", help="store + tokens -> sharded TFRecord files of padded per-video examples")
    p.add_argument("store", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output directory for the shards and dataset_info.json")
    _dataset_args(p)

    p = sub.add_parser("info", help="summary of a store: sources, clips, objects, drops, tokens")
    p.add_argument("store", type=Path)

    p = sub.add_parser(
        "train",
        help="triple-contrastive training from a config (resumes from the workdir's last checkpoint)",
        description="Train TrajSV on a dataset written by `trajsv dataset`. The config is an ml_collections file; "
        "override any field with --config.KEY=VALUE (e.g. --config.batch_size=32 --config.model.embedding=matrices). "
        "Re-running the same command resumes exactly from the last checkpoint in --workdir. The workdir gets "
        "checkpoints/ (orbax), metrics.jsonl, tensorboard/, summary.json and plots/loss.png.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default="configs/paper.py", help="config file[:arg] (default configs/paper.py)")
    p.add_argument("--workdir", default=str(DEFAULT_RUN / "train"), help="run directory (local or gs://)")
    g = p.add_argument_group("multi-process (one process per host; see tpu_scripts/)")
    g.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize before training")
    g.add_argument("--coordinator", default=os.environ.get("TRAJSV_COORDINATOR"), help="HOST:PORT of process 0")
    g.add_argument("--num-processes", type=int, default=_env_int("TRAJSV_NUM_PROCESSES"), help="processes in all")
    g.add_argument("--process-id", type=int, default=_env_int("TRAJSV_PROCESS_ID"), help="this process, 0..N-1")

    p = sub.add_parser(
        "embed",
        help="video and clip vectors of a dataset split from a trained run",
        description="Embed every video of a split with a run's checkpoint: videos.npy (unit-norm v), video_ids.npy, "
        "clips.npy (clip vectors c = [t, y]), clip_index.npy (video_id, slot, source_index, clip_id) and index.json.",
    )
    p.add_argument("--workdir", default=str(DEFAULT_RUN / "train"), help="the training run directory")
    p.add_argument("--data", default=None, help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--split", default="test", help="train, val or test (default test)")
    p.add_argument("--checkpoint", default="best", help="best (lowest validation loss), latest, or a step number")
    p.add_argument("--out", default=None, help="output directory (default WORKDIR/embeddings/SPLIT)")
    p.add_argument("--batch-size", type=int, default=64, help="videos per batch (rounded up to the device count)")
    _retrieval_parsers(sub)
    return parser


def _numbers(kind: type):
    """argparse type: a comma-separated list of `kind` as a tuple; a bad item is argparse's one-line error."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated {kind.__name__}s") from None

    return parse


def _retrieval_parsers(sub) -> None:
    from trajsv_jax.retrieval import studies

    p = sub.add_parser(
        "index",
        help="ScaNN index of the video vectors written by `trajsv embed`",
        description="Build a ScaNN searcher (dot product on unit vectors) over the video vectors of an embeddings "
        "directory. The mode follows the database size (brute force when small, asymmetric hashing + exact "
        "re-ranking when medium, tree + AH + re-ranking when large) unless --mode says otherwise. Saved with a "
        "manifest (run, checkpoint, dataset, split, count, dims, ids, settings) that `trajsv search` checks.",
    )
    p.add_argument("--embeddings", default=str(DEFAULT_RUN / "train/embeddings/test"), help="`trajsv embed` output")
    p.add_argument("--out", default=None, help="index directory (default EMBEDDINGS/index)")
    p.add_argument("--mode", default="auto", choices=("auto", "brute_force", "ah", "tree_ah"))
    p.add_argument("--num-leaves", type=int, default=0, help="tree partitions (0: about sqrt(count))")
    p.add_argument("--leaves-to-search", type=int, default=0, help="partitions searched per query (0: auto)")
    p.add_argument("--reorder", type=int, default=0, help="candidates re-scored exactly (0: auto)")

    p = sub.add_parser(
        "search",
        help="top-K similar videos for a video id or a tracking file, drawn on the pitch",
        description="Embed the query with the indexed run's checkpoint and return the K most similar indexed "
        "videos with their scores (cosine). The query is a video of the indexed split (--video-id; itself is left "
        "out of its results) or every video of a tracking file (--tracking PROVIDER KEY=FILE ...; ingested and "
        "tokenized with the run's vocabulary). --plot draws the (first) query and its matches on the pitch.",
    )
    p.add_argument("--index", default=str(DEFAULT_RUN / "train/embeddings/test/index"), help="`trajsv index` output")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--video-id", type=int, help="a video id of the indexed split (see its video_ids.npy)")
    q.add_argument("--tracking", nargs="+", metavar="ARG", help="PROVIDER KEY=FILE ... as for `trajsv ingest`")
    p.add_argument("-k", type=int, default=5, help="matches per query (default 5)")
    p.add_argument("--plot", default=None, help="PNG of the query and its matches on the pitch")

    p = sub.add_parser(
        "evaluate",
        help="the paper's retrieval evaluation (HR@1, MRR) and its tables (V–VIII)",
        description="retrieval: the paper's protocol for one trained run: queries are variants of every video of "
        "the held-out split with trajectories AND clips replaced at noise rate δ (0.5, 0.55, 0.6); the database is "
        "that split; HR@1 and MRR from a ScaNN index, checked against exact search. The other studies train every "
        "method for 3 seeds on the bundled match (configs/demo.py + the method's changes; finished runs are "
        "reused) and write OUT/STUDY/table.md, table.json and retrieval.png.",
        epilog="studies:\n" + "\n".join(f"  {k:<14} {v}" for k, v in studies.STUDY_HELP.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", choices=("retrieval", *studies.STUDY_HELP), help="what to evaluate")
    p.add_argument("--workdir", default=str(DEFAULT_RUN / "train"), help="retrieval: the training run")
    p.add_argument("--data", default=None, help="retrieval: dataset directory (default: the run's own)")
    p.add_argument("--checkpoint", default="best", help="retrieval: best, latest or a step")
    p.add_argument("--split", default="test", help="the held-out split that is database and queries")
    p.add_argument("--seed", type=int, default=0, help="seed of the queries' noise (the same for every method)")
    p.add_argument(
        "--deltas", type=_numbers(float), default="0.5,0.55,0.6", help="noise rates of the queries, comma-separated"
    )
    p.add_argument(
        "--out", default=None, help="output directory (retrieval: WORKDIR/retrieval; studies: runs/experiments)"
    )
    p.add_argument("--seeds", type=_numbers(int), default="0,1,2", help="studies: model seeds, comma-separated")
    p.add_argument("--only", default="", help="studies: only methods whose name contains this")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


TRAIN_EPILOG = """examples:
  trajsv train --config configs/demo.py --config.data_dir=runs/skillcorner_2417/tfrecords --workdir runs/demo
  trajsv train --config configs/paper.py --config.data_dir=DATA --config.model.visual_dim=0
  trajsv train --config configs/scaling.py:1024 --config.data_dir=gs://bucket/data --workdir gs://bucket/b1024 \
      --distributed                    # on every host of a TPU slice (tpu_scripts/train.sh does this)
Without --coordinator etc., --distributed lets JAX detect the cluster (Cloud TPU, SLURM, Open MPI); the flags
default to $TRAJSV_COORDINATOR, $TRAJSV_NUM_PROCESSES and $TRAJSV_PROCESS_ID."""


def _parse_files(items: list[str]) -> dict[str, str | list[str]]:
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


def train(a: argparse.Namespace, overrides: list[str]) -> None:
    from trajsv_jax import config as config_lib
    from trajsv_jax.training import sharding

    if a.distributed:
        sharding.initialize_distributed(a.coordinator, a.num_processes, a.process_id)
    from trajsv_jax.training import loop

    config = config_lib.load_config(a.config, overrides)
    print(loop.train_and_evaluate(config, a.workdir).report())


def retrieval_command(a: argparse.Namespace, overrides: list[str]) -> None:
    from trajsv_jax.retrieval import evaluate, search, studies
    from trajsv_jax.retrieval import index as index_lib

    if a.command == "index":
        settings = index_lib.IndexSettings(
            mode=a.mode, num_leaves=a.num_leaves, leaves_to_search=a.leaves_to_search, reorder=a.reorder
        )
        print(search.build(a.embeddings, a.out or f"{a.embeddings.rstrip('/')}/index", settings).report())
    elif a.command == "search":
        tracking = None
        if a.tracking:
            tracking = {"provider": a.tracking[0], "files": _parse_files(a.tracking[1:])}
        print(search.find_similar(a.index, a.video_id, tracking, a.k, a.plot).report())
    else:
        protocol = evaluate.Protocol(deltas=a.deltas, split=a.split, seed=a.seed)
        if a.study == "retrieval":
            checkpoint = int(a.checkpoint) if a.checkpoint.isdigit() else a.checkpoint
            result = evaluate.evaluate_run(a.workdir, a.data, protocol, checkpoint)
            print(result.report())
            print("\n".join(result.write(a.out or f"{a.workdir.rstrip('/')}/retrieval")))
        else:
            out = a.out or "runs/experiments"
            if a.study == "transfer":
                result = studies.run_transfer(out, a.seeds, overrides, protocol)
            else:
                result = studies.run_study(a.study, out, a.seeds, a.only, overrides, protocol)
            print(result.report())


def run(a: argparse.Namespace, overrides: list[str]) -> None:
    from trajsv_jax import prepare

    if a.command == "train":
        train(a, overrides)
    elif a.command == "embed":
        from trajsv_jax.retrieval import embed

        out = a.out or f"{a.workdir.rstrip('/')}/embeddings/{a.split}"
        checkpoint = int(a.checkpoint) if a.checkpoint.isdigit() else a.checkpoint
        print(embed.embed_split(a.workdir, out, a.data, a.split, checkpoint, a.batch_size).report())
    elif a.command in ("index", "search", "evaluate"):
        retrieval_command(a, overrides)
    elif a.command == "ingest":
        pitch_size = {"pitch_length": a.pitch_length, "pitch_width": a.pitch_width}
        files = _parse_files(a.files)
        result = prepare.ingest_source(
            a.provider, files, a.out, a.source_id, _clip_config(a), not a.kloppy, **pitch_size
        )
        print(result.report())
    elif a.command == "preprocess":
        from trajsv_jax.video import preprocess

        print(preprocess.command(a, _clip_config(a)))
    elif a.command == "features":
        from trajsv_jax.video import features

        features.run(a)
    elif a.command == "tokenize":
        print(
            prepare.tokenize_store(
                a.store, a.cell, a.segment_seconds, a.threshold, a.approximate, a.vocabulary
            ).report()
        )
    elif a.command == "dataset":
        print(
            prepare.write_dataset(
                a.store, a.out, a.clips_per_video, a.objects, a.train_fraction, a.shards, a.val_fraction
            ).report()
        )
    elif a.command == "info":
        print(prepare.store_info(a.store).report())
    elif a.command == "demo":
        from trajsv_jax import demo

        options = prepare.DataOptions(
            a.cell, a.threshold, a.approximate, a.clips_per_video, a.objects, a.train_fraction, a.shards, a.val_fraction
        )
        print(demo.run(a.out, _clip_config(a), options, not a.kloppy, overrides, train=not a.data_only).report())


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [x for x in extra if x.startswith("--config.")] if args.command in ("train", "demo", "evaluate") else []
    if len(overrides) != len(extra):
        parser.error(f"unrecognized arguments: {' '.join(x for x in extra if x not in overrides)}")
    t0 = time.perf_counter()
    try:
        run(args, overrides)
    except UserError as e:
        print(f"trajsv {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trajsv {args.command}: interrupted", file=sys.stderr)
        return 130
    print(f"[{args.command} done in {time.perf_counter() - t0:.1f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
