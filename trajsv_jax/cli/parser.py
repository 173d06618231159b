"""Every `trajsv` argparse definition. Imports only the standard library and light trajsv_jax modules (no
TensorFlow, JAX, cv2, ScaNN or kloppy), so that `trajsv --help` and argument errors come back at once."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trajsv_jax.data.ingest.common import PROVIDERS
from trajsv_jax.retrieval.study_names import STUDY_HELP
from trajsv_jax.video.feature_defaults import (
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_HEIGHT,
    SAMPLE_FPS,
    SOCCERNET_FPS,
    SOCCERNET_NAME,
    ViewConfig,
    flag,
)

DEFAULT_RUN = Path("runs/skillcorner_2417")
DEMO_CLIPS_PER_VIDEO = 4  # = prepare.DataOptions.clips_per_video (prepare imports TensorFlow)

EPILOG = """\
examples:
  trajsv demo                                     # the bundled real match: ingest, tokenize, tf.data shards, picture
  trajsv ingest                                   # bundled SkillCorner match -> runs/skillcorner_2417/store
  trajsv ingest tracab meta_data=meta.xml raw_data=tracking.dat --out my_store
  trajsv ingest table my_tracking.csv --units cm --origin corner --fps 25 --out my_store   # your own table
  trajsv preprocess clip.mp4 --landmarks pitch.xml --out runs/video/store   # broadcast video -> store
  trajsv features runs/video/store                # a 512-d frozen visual vector per clip (--onnx, --soccernet)
  trajsv tokenize runs/skillcorner_2417/store     # vocabulary + token ids per clip, saved in the store
  trajsv dataset runs/skillcorner_2417/store --out runs/skillcorner_2417/tfrecords
  trajsv info runs/skillcorner_2417/store
  trajsv train --config configs/demo.py --workdir runs/skillcorner_2417/train
  trajsv embed --workdir runs/skillcorner_2417/train --split test
  trajsv index                                    # ScaNN index of those test videos
  trajsv search --video-id 302 -k 5 --plot matches.png
  trajsv evaluate retrieval                       # HR@1 / MRR of the demo run at noise 0.5-0.6
  trajsv evaluate ablations                       # Table V, 3 seeds (about 40 minutes on 2 cores)
Every subcommand has --help."""

TRAIN_EPILOG = """examples:
  trajsv train --config configs/demo.py --config.data_dir=runs/skillcorner_2417/tfrecords --workdir runs/demo
  trajsv train --config configs/paper.py --config.data_dir=DATA --config.model.visual_dim=0
  trajsv train --config configs/scaling.py:1024 --config.data_dir=gs://bucket/data --workdir gs://bucket/b1024 \
      --distributed                    # on every host of a TPU slice (tpu_scripts/train.sh does this)
Without --coordinator etc., --distributed lets JAX detect the cluster (Cloud TPU, SLURM, Open MPI); the flags
default to $TRAJSV_COORDINATOR, $TRAJSV_NUM_PROCESSES and $TRAJSV_PROCESS_ID."""

FEATURES_DESCRIPTION = """\
Give every clip of store sources a frozen 512-d visual vector y (the paper's c = [t, y]) and write it into the
store, for `trajsv dataset` and training (which switches the model's visual branch on when the data has them).

Where the vectors come from:
  default           the source's video (metadata "video", or --video), sampled at 2 fps inside each clip, decoded
                    once at --height rows; per frame a weight-free 512-d descriptor (8x8 Lab colour layout 192 +
                    HSV histogram 128 + 4x4 grid of 12 edge orientations 192, each part L2-normalised), averaged
                    over the clip's frames
  --onnx MODEL      the same frames through an ONNX image encoder (e.g. a CLIP / X-CLIP vision tower with its
                    512-d projection) run by OpenCV's dnn module; CLIP preprocessing by default; --clip-frames T
                    for a video encoder taking [1, T, 3, H, W]
  --soccernet DIR   import SoccerNet features: DIR/1_ResNET_TF2_PCA512.npy and 2_... ([N, 512] at 2 fps per half);
                    each clip averages the rows of its half inside its time

Clips without a vector (past the end of the video or of the arrays) keep visual_mask False and are counted."""

FEATURES_EPILOG = """\
examples:
  trajsv features my_store                                    # every source with a video, default extractor
  trajsv features my_store --source game1 --video game1.mp4 --onnx clip_vitb32_visual.onnx
  trajsv features my_store --source england_epl_2016_chelsea_arsenal --soccernet SoccerNet/england_epl/2016-2017/X
  trajsv features my_store --source g --soccernet g/1_I3D_PCA512.npy g/2_I3D_PCA512.npy --soccernet-offset 2.5 0"""


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _numbers(kind: type):
    """argparse type: a comma-separated list of `kind` as a tuple; a bad item is argparse's one-line error."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated {kind.__name__}s") from None

    return parse


def _floats3(text: str) -> tuple[float, float, float]:
    """argparse type: three comma-separated numbers, one per colour channel."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three comma-separated numbers") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three comma-separated numbers, one per channel")
    return values  # type: ignore[return-value]


def _number(text: str, cast: Callable[[str], float], ok: Callable[[float], bool], expected: str) -> Any:
    """`cast(text)` if it parses and passes `ok`, else an argparse error saying what was `expected`."""
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (argparse type): `nan`, `inf`, 0 and negatives are refused in one line."""
    return _number(text, float, lambda v: 0 < v < math.inf, "a finite number > 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (argparse type)."""
    return _number(text, float, lambda v: 0 <= v < math.inf, "a finite number >= 0")


def fraction(text: str) -> float:
    """A number in [0, 1] (argparse type)."""
    return _number(text, float, lambda v: 0 <= v <= 1, "a fraction in [0, 1]")


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    return _number(text, int, lambda v: v >= 1, "a whole number >= 1")


FOLDER_EPILOG = """datasets read from a folder (one source per sequence):
  sportsmot DIR    SportsMOT ground truth (sportsmot_gt, a split folder or one sequence): camera-plane sources,
                   sport labels by team size (--trust-manifest: the manifest's where given)
  bigdatacup DIR   Big Data Cup 2022 hockey TrackingData folder (beside pxp_womens_oly_2022_v2.csv): one source
                   per power play, clips from the shot files, play-by-play events aligned to the frames"""


def _clip_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("clips")
    g.add_argument(
        "--min-clip-seconds", type=positive_float, default=0.4, help="drop runs shorter than this (paper: 0.4 s)"
    )
    g.add_argument(
        "--max-segments", type=positive_int, default=16, help="m: split clips longer than m segments (paper: 16)"
    )
    g.add_argument("--segment-seconds", type=positive_float, default=1.0, help="segment length in seconds (paper: 1)")
    g.add_argument(
        "--off-pitch-margin", type=non_negative_float, default=0.0, help="metres beyond the lines still kept"
    )


def _token_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tokens")
    g.add_argument(
        "--cell", type=positive_float, default=3.0, help="grid cell size in metres (paper: 3 -> 35 x 23 cells)"
    )
    g.add_argument("--threshold", type=fraction, default=0.3, help="Jaccard threshold for a new token (paper: 0.3)")
    g.add_argument("--approximate", action="store_true", help="MinHash-LSH vocabulary for millions of segments")
    g.add_argument(
        "--camera-cell",
        type=fraction,
        default=3 / 105,
        help="cell of camera-plane sources (uncalibrated video) as a fraction of the image width (default 3/105: "
        "35 columns, as on a pitch)",
    )


def _split_args(p: argparse.ArgumentParser, clips_per_video: int | None = 16, note: str = "") -> None:
    """Videos and splits; with clips_per_video=None (`trajsv dataset`) every default is the one tokenize used."""
    recorded = clips_per_video is None
    g = p.add_argument_group("videos and splits" + (" (default: as `trajsv tokenize` made them)" if recorded else ""))
    g.add_argument(
        "--clips-per-video", type=positive_int, default=clips_per_video, help=f"n: clips per video (paper: 16{note})"
    )
    g.add_argument(
        "--train-fraction",
        type=fraction,
        default=None if recorded else 0.8,
        help="first fraction of each source's time (of the videos of grouped sources: whole games) is train",
    )
    g.add_argument(
        "--val-fraction",
        type=fraction,
        default=None if recorded else 0.1,
        help="end of the train time held out for early stopping (val)",
    )


def _dataset_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("dataset")
    g.add_argument("--objects", type=positive_int, default=32, help="K: objects kept per clip in the padded examples")
    g.add_argument("--shards", type=positive_int, default=4, help="TFRecord shards per split")


def build_parser() -> argparse.ArgumentParser:
    """The whole `trajsv` parser: one subparser per command (commands.COMMANDS runs them)."""
    parser = argparse.ArgumentParser(
        prog="trajsv",
        description="TrajSV in JAX: sports-video representations learned from player and ball trajectories.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _data_parsers(sub)
    _video_parsers(sub)
    _training_parsers(sub)
    _retrieval_parsers(sub)
    return parser


TABLE_EPILOG = """\
  table            your own tracking table: trajsv ingest table FILE (CSV or Parquet), long (a row per object and
                   frame: frame and/or time, id, team, x, y, optional period) or wide (a row per frame, columns
                   such as Home_1_x, Home_1_y, Ball_x, Ball_y); see the table import options
examples:
  trajsv ingest tracab meta_data=meta.xml raw_data=tracking.dat --out my_store
  trajsv ingest table tracking.csv --fps 25 --out my_store                 # metres from the centre spot, y up
  trajsv ingest table tracking.parquet --units cm --origin corner --y-down --out my_store
  trajsv ingest table metrica_tidy.csv --layout wide --units normalized1 --y-down --out my_store
  trajsv ingest table rink.csv --sport ice_hockey --units ft --origin corner --fps 30 --out my_store"""
# --units choices, as trajsv_jax.data.ingest.table.UNITS (not imported here: it loads pandas and pyarrow)
TABLE_UNITS = ("m", "cm", "ft", "yards", "normalized100", "normalized1")


def _table_args(p: argparse.ArgumentParser) -> None:
    """`trajsv ingest table FILE` options: each is dest table_<TableOptions field>, None when not given."""
    g = p.add_argument_group("table import (trajsv ingest table FILE)")

    def add(flag: str, **kwargs: Any) -> None:
        g.add_argument(flag, dest="table_" + flag[2:].replace("-", "_"), default=None, **kwargs)

    add(
        "--layout",
        choices=("auto", "long", "wide"),
        help="long: a row per object and frame; wide: a row per frame "
        "with columns per object (default auto: long where x, y and id columns are found)",
    )
    add(
        "--units",
        choices=TABLE_UNITS,
        help="coordinate units: metres (default), cm, ft, yards, or normalised to the field size (0-100, 0-1)",
    )
    add(
        "--origin",
        choices=("centre", "center", "corner"),
        help="where (0, 0) is: the centre spot, or a corner (default: corner for normalised units, else centre)",
    )
    add("--y-down", action="store_true", help="y grows downwards (image, Metrica style); default: upwards")
    add("--flip-x", action="store_true", help="x grows towards the left goal (mirror the field)")
    add(
        "--field-size",
        type=positive_float,
        nargs=2,
        metavar=("LENGTH", "WIDTH"),
        help="field size in metres (default: the sport's regulation size, soccer 105 x 68)",
    )
    add(
        "--sport",
        metavar="NAME",
        help="soccer (default), ice_hockey, basketball, volleyball, or any plain name (with --field-size)",
    )
    add(
        "--fps",
        type=positive_float,
        metavar="FPS",
        help="frames per second of the frame numbers: required without a time column, checked against one",
    )
    for column, found in (
        ("frame", "frame, frame_id, ..."),
        ("time", "time, timestamp, Time [s], ... (seconds)"),
        ("period", "period, half, ..."),
        ("id", "id, player_id, track_id, ..."),
        ("team", "team, team_id, role, side, ..."),
        ("x", "x, pos_x, ..."),
        ("y", "y, pos_y, ..."),
    ):
        add(f"--{column}-column", metavar="NAME", help=f"default: found by name ({found}); none: do not use one")
    add(
        "--wide-pattern",
        metavar="REGEX",
        help="wide object columns: a regex with groups id, axis (x or y) and "
        "optionally team (default: [TEAM_]ID_x / _y, e.g. Home_11_x, Ball_y, player7_x)",
    )
    add("--home", action="append", metavar="LABEL", help="a team label of team A, besides home, team_a, A (repeatable)")
    add("--away", action="append", metavar="LABEL", help="a team label of team B, besides away, team_b, B (repeatable)")
    add("--ball", metavar="LABEL", help="the team label or id of ball rows (default ball)")


def _data_parsers(sub) -> None:
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
    _split_args(p, DEMO_CLIPS_PER_VIDEO, "; one match makes 24 such videos, so the demo uses 4")
    _dataset_args(p)

    providers = "\n".join(f"  {name:<16} {spec.help}" for name, spec in PROVIDERS.items())
    p = sub.add_parser(
        "ingest",
        help="provider tracking files or your own tracking table -> trajectory store",
        description="Read tracking data (any provider kloppy loads) into the canonical store (docs/FORMAT.md). "
        "With no provider, ingests the real SkillCorner match bundled in kloppy's wheel. `trajsv ingest table FILE` "
        'imports your own CSV or Parquet table (see the table import options; docs/FORMAT.md, "Importing your own '
        'tracking table"). Datasets of many short sequences are read from their folder, one source per sequence: '
        "`trajsv ingest sportsmot DIR` (SportsMOT ground truth, camera plane) and `trajsv ingest bigdatacup DIR` "
        "(Big Data Cup 2022 ice hockey, with its play-by-play events).",
        epilog=f"providers and their files (KEY=FILE):\n{providers}\n{FOLDER_EPILOG}\n{TABLE_EPILOG}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("provider", nargs="?", default=None, metavar="PROVIDER", help="one of the providers below, or table")
    p.add_argument(
        "files",
        nargs="*",
        metavar="KEY=FILE",
        help="the provider's files, e.g. raw_data=tracking.json; for table: the one FILE (.csv, .tsv, .parquet)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_RUN / "store", help="store directory (created if needed)")
    p.add_argument("--source-id", default=None, help="name of the source in the store (default: provider_gameid)")
    p.add_argument("--kloppy", action="store_true", help="always read through kloppy, even where a fast reader exists")
    p.add_argument("--pitch-length", type=positive_float, default=None, help="metres, for files without a pitch size")
    p.add_argument("--pitch-width", type=positive_float, default=None, help="metres, for files without a pitch size")
    _clip_args(p)
    g = p.add_argument_group("sportsmot")
    g.add_argument("--manifest", type=Path, default=None, help="the sport-label manifest (default: in DIR, if there)")
    g.add_argument(
        "--trust-manifest",
        action="store_true",
        help="take the manifest's sport labels where it has them (default: every sequence by its team size; the "
        "manifest's labels are only compared with, since it calls every volleyball sequence basketball)",
    )
    _table_args(p)

    p = sub.add_parser(
        "corpus",
        help="every real source on this machine in one store, with a per-source table",
        description="Ingest every real source there is into one store: the SkillCorner match, the Hawk-Eye minutes "
        "and the PFF excerpts in kloppy's wheel, the Big Data Cup 2022 ice hockey and SportsMOT's ground truth from "
        "the shared data folder (skipped, and said, where it is missing), and a broadcast video through the front "
        "end when given. Every source records its sport, field, provider, competition and licence. Prints and saves "
        "(OUT/corpus.json, OUT/corpus.md) per dataset and sport: sources, clips, videos per split, seconds, objects "
        "and the drops by cause. Then: `trajsv tokenize OUT/store`, `trajsv dataset`, `trajsv train`.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/corpus"), help="output folder (default runs/corpus)")
    p.add_argument("--shared", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    p.add_argument("--video", type=Path, default=None, help="a broadcast video to add through the front end")
    p.add_argument("--landmarks", type=Path, default=None, help="the video's pitch landmarks (CVAT XML or JSON)")
    _clip_args(p)

    p = sub.add_parser(
        "tokenize",
        help="split into videos, fit the Jaccard vocabulary on the train split, tokenize every clip of a store",
        description="Cut the store's clips into videos and split them (train / val / test: by time within a source, "
        "by whole game or video for grouped sources), rasterize every 1 s segment on its field's grid, build the "
        "vocabulary from the train split's segments only, and give every val / test segment its nearest entry (a "
        "segment sharing no cell with any entry gets the unknown token). `trajsv dataset` then uses the same split.",
    )
    p.add_argument("store", type=Path)
    _token_args(p)
    _split_args(p)
    p.add_argument(
        "--segment-seconds", type=positive_float, default=None, help="default: as the store's clips were cut"
    )
    p.add_argument(
        "--vocabulary",
        type=Path,
        default=None,
        help="freeze another dataset's vocab.npz: each segment gets its nearest entry (to fine-tune or transfer)",
    )

    p = sub.add_parser("dataset", help="store + tokens -> sharded TFRecord files of padded per-video examples")
    p.add_argument("store", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output directory for the shards and dataset_info.json")
    _split_args(p, None)
    _dataset_args(p)
    p.add_argument(
        "--fps",
        type=positive_float,
        default=None,
        help="resample every source to this rate (frames per second; default: the highest source rate). Segments "
        "are cut by time at each source's own rate first, so a 25 fps source written at --fps 10 embeds with a "
        "10 fps run",
    )

    p = sub.add_parser("info", help="summary of a store: sources, clips, objects, drops, tokens")
    p.add_argument("store", type=Path)


def _video_parsers(sub) -> None:
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
        "--drop-landmark-outliers",
        action="store_true",
        help="leave out landmarks off the fit of the others (mislabelled clicks, duplicates) and report them",
    )
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
    p.add_argument("--max-frames", type=int, default=None, help="only the first N frames (a quick look)")
    p.add_argument(
        "--allow-short-video",
        action="store_true",
        help="use a video that ends before its declared frame count (truncated), counting the missing frames",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="STAGE.NAME=VALUE",
        help="any threshold of the detector, tracker or cleaning stage, e.g. detector.person_height=1.9, "
        "tracker.max_age=50, cleaning.max_person_speed=10 (repeatable; a wrong name lists them all)",
    )
    _view_args(p)
    _clip_args(p)
    add_features_parser(sub)


def _view_args(p: argparse.ArgumentParser) -> None:
    """One flag per main-camera view threshold (feature_defaults.ViewConfig: its defaults and help)."""
    g = p.add_argument_group("camera view (which frames are the main camera)")
    for field in dataclasses.fields(ViewConfig):
        default = field.default
        kind = _numbers(int) if isinstance(default, tuple) else type(default)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        g.add_argument(flag(field.name), type=kind, default=default, help=f"{field.metadata['help']} (default {shown})")


def add_features_parser(sub) -> argparse.ArgumentParser:
    """Define `trajsv features` on `sub` (argparse subparsers); commands.features runs it."""
    p = sub.add_parser(
        "features",
        help="a frozen 512-d visual vector per clip: from the video (default or ONNX model) or SoccerNet features",
        description=FEATURES_DESCRIPTION,
        epilog=FEATURES_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", type=Path, help="the trajectory store (written by `trajsv ingest` or the video front end)")
    p.add_argument(
        "--source",
        dest="sources",
        action="append",
        metavar="ID",
        help="a source of the store (repeatable); default: every source with a video (with --video or --soccernet: "
        "the store's only source)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--video", type=Path, help="video of the (one) source, instead of its metadata's")
    where.add_argument(
        "--soccernet",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="SoccerNet game directory, or two feature files (half 1, half 2)",
    )
    g = p.add_argument_group("video frames")
    g.add_argument(
        "--height", type=int, default=DEFAULT_HEIGHT, help=f"decode height in rows (default {DEFAULT_HEIGHT})"
    )
    g.add_argument(
        "--sample-fps", type=float, default=SAMPLE_FPS, help="frames per second sampled in each clip (default 2)"
    )
    g = p.add_argument_group("ONNX backbone (instead of the default extractor)")
    g.add_argument("--onnx", type=Path, metavar="MODEL", help="ONNX image encoder giving [N, 512] for [N, 3, S, S]")
    g.add_argument("--input-size", type=int, default=224, help="S: the model's input size (default 224)")
    g.add_argument(
        "--mean", type=_floats3, default=CLIP_MEAN, help="per-channel mean on [0, 1] pixels (default CLIP's)"
    )
    g.add_argument("--std", type=_floats3, default=CLIP_STD, help="per-channel std (default CLIP's)")
    g.add_argument("--bgr", action="store_true", help="the model takes BGR channels (default RGB)")
    g.add_argument("--no-crop", action="store_true", help="squash to S x S instead of resize + centre crop")
    g.add_argument("--no-l2", action="store_true", help="do not L2-normalise the model's output vectors")
    g.add_argument(
        "--clip-frames", type=int, default=0, help="T: a video encoder taking [1, T, 3, S, S] per clip (default 0)"
    )
    g.add_argument("--batch-size", type=int, default=16, help="frames per forward pass (default 16)")
    g.add_argument("--onnx-output", default=None, help="name of the output to read (default: the model's output)")
    g = p.add_argument_group("SoccerNet import")
    g.add_argument(
        "--soccernet-name",
        default=SOCCERNET_NAME,
        help=f"file name pattern in the directory (default {SOCCERNET_NAME})",
    )
    g.add_argument("--soccernet-fps", type=float, default=SOCCERNET_FPS, help="rows per second (default 2)")
    g.add_argument(
        "--soccernet-offset",
        type=float,
        nargs=2,
        default=(0.0, 0.0),
        metavar=("H1", "H2"),
        help="seconds of each half's video before the tracking's period start (default 0 0)",
    )
    return p


def _training_parsers(sub) -> None:
    p = sub.add_parser(
        "train",
        help="triple-contrastive training from a config (resumes from the workdir's last checkpoint)",
        description="Train TrajSV on a dataset written by `trajsv dataset`. The config is an ml_collections file; "
        "override any field with --config.KEY=VALUE (e.g. --config.batch_size=32 --config.model.embedding=matrices). "
        "Re-running the same command resumes exactly from the newest checkpoint in --workdir that verifies "
        "(checksums, shapes, finite values). One run at a time holds a workdir. A NaN or inf loss stops the run "
        "(--config.nonfinite=skip skips such steps instead). The workdir gets "
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
    p.add_argument(
        "--batch-size", type=positive_int, default=64, help="videos per batch (rounded up to the device count)"
    )


def _retrieval_parsers(sub) -> None:
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
    p.add_argument("-k", type=positive_int, default=5, help="matches per query (default 5)")
    p.add_argument("--plot", default=None, help="PNG of the query and its matches on the pitch")

    p = sub.add_parser(
        "evaluate",
        help="the paper's retrieval evaluation (HR@1, MRR) and its tables (V–VIII)",
        description="retrieval: the paper's protocol for one trained run: queries are variants of every video of "
        "the held-out split with trajectories AND clips replaced at noise rate δ (0.5, 0.55, 0.6); the database is "
        "that split; HR@1 and MRR from a ScaNN index, checked against exact search. The other studies train every "
        "method for 3 seeds on the bundled match (configs/demo.py + the method's changes; finished runs are "
        "reused) and write OUT/STUDY/table.md, table.json and retrieval.png.",
        epilog="studies:\n" + "\n".join(f"  {k:<14} {v}" for k, v in STUDY_HELP.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("study", choices=("retrieval", *STUDY_HELP), help="what to evaluate")
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
