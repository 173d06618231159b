"""Frozen visual vectors y (paper IV-B, d4 = 512) for every clip of a store source: `trajsv features`.

Three ways to get them, all ending in `write_features`, which puts `visual [C, 512]` and `visual_mask [C]` into the
source (store.py; written atomically, as every store write). `trajsv dataset` then copies them into the examples
(`input_pipeline.examples.video_examples`), and training turns the model's visual branch on by itself
(`train.make_setup`: model.visual_dim = -1 becomes 512 when the dataset has visual clips).

1. `ColourEdgeExtractor` (the default; no weights, a few OpenCV passes over a small copy): per frame, computed on
   the frame resized to 256 x 144,
     - colour layout, 192 dims: the frame averaged down to an 8 x 8 grid in CIELAB, centred on neutral grey
       (where the pitch, the stands, the sky and the scoreboard are);
     - colour histogram, 128 dims: joint HSV histogram (8 hue x 4 saturation x 4 value bins), square-rooted
       (Hellinger), so team kits, grass and crowd compare by their share of the picture;
     - edge orientations, 192 dims: Sobel gradient magnitude binned into 12 unsigned orientations (15 degrees each)
       per cell of a 4 x 4 grid, square-rooted (a HOG-like layout of the pitch lines, goal frame and players);
   each part L2-normalised (an all-zero part, e.g. the edges of a blank frame, stays zero), and the 512-d
   concatenation divided by sqrt(3), so a frame vector has unit norm. These are the cues that tell broadcast
   shots apart (wide view vs close-up vs replay graphics, which end of the pitch, line geometry, kit colours),
   which is what a frozen backbone's vector mostly carries for retrieval of similar plays; it is deterministic and
   needs nothing to download. A clip's vector is the mean of its sampled frames' vectors.
2. `OnnxExtractor`: any image encoder exported to ONNX (CLIP / X-CLIP vision towers with their 512-d projection),
   run with OpenCV's dnn module; or a video encoder taking [1, T, 3, H, W] (`clip_frames=T`).
3. `import_soccernet`: the SoccerNet per-half feature files (`1_ResNET_TF2_PCA512.npy`, ...), [N, 512] at 2 fps.

Frames of a video source are sampled at `sample_fps` (2 fps, the SoccerNet convention) evenly inside each clip:
n = max(1, round(seconds * 2)) frames at the centres of n equal parts of the clip, so even a 0.4 s clip has one.
The video is read once, in order, for all clips; frames no clip needs are only grabbed, never converted or resized.
Nothing is dropped silently: clips without a feature keep mask False and are counted by reason.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm import tqdm

from trajsv_jax.data import store as store_lib
from trajsv_jax.errors import UserError
from trajsv_jax.video import decode
from trajsv_jax.video.feature_defaults import (
    CLIP_MEAN,
    CLIP_STD,
    DEFAULT_HEIGHT,
    SAMPLE_FPS,
    SOCCERNET_FPS,
    SOCCERNET_NAME,
)

DIM = 512  # d4 of the paper: X-CLIP's and SoccerNet's ResNet-PCA vectors

# Default extractor geometry: 8*8*3 (layout) + 8*4*4 (histogram) + 4*4*12 (edges) = 512.
WORK_SIZE = (256, 144)  # (width, height) every frame is resized to before the descriptor
LAYOUT_GRID = 8
HIST_BINS = (8, 4, 4)  # hue, saturation, value
EDGE_GRID, EDGE_BINS = 4, 12


class FrameExtractor(Protocol):
    """What `video_features` runs: BGR uint8 frames → [N, dim] float32 (or one clip of T frames → [dim])."""

    name: str  # what made the vectors, for reports and the source's metadata
    dim: int
    batch_size: int  # frames per call
    clip_frames: int  # 0: per-frame model (sampled at sample_fps, vectors averaged); T: video model, T frames a clip

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...


def _unit(x: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(x))
    return x / norm if norm > 1e-12 else x


class ColourEdgeExtractor:
    """The default, weight-free frame descriptor (module docstring): colour layout + HSV histogram + edge layout."""

    name = "colour-edge-v1 (8x8 Lab layout 192 + HSV histogram 128 + 4x4x12 edge orientations 192)"
    dim = DIM
    batch_size = 1
    clip_frames = 0

    def __init__(self) -> None:
        w, h = WORK_SIZE
        rows = np.minimum(np.arange(h) * EDGE_GRID // h, EDGE_GRID - 1)
        cols = np.minimum(np.arange(w) * EDGE_GRID // w, EDGE_GRID - 1)
        self._cell = ((rows[:, None] * EDGE_GRID + cols[None, :]) * EDGE_BINS).astype(np.int64)

    def frame(self, frame: np.ndarray) -> np.ndarray:
        """[512] float32 unit-norm descriptor of one BGR uint8 frame (any size)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise UserError(f"frame of shape {frame.shape} {frame.dtype}: expected an H x W x 3 BGR uint8 image.")
        work = frame
        if frame.shape[:2] != WORK_SIZE[::-1]:
            work = cv2.resize(frame, WORK_SIZE, interpolation=cv2.INTER_AREA)
        tiny = cv2.resize(work, (LAYOUT_GRID, LAYOUT_GRID), interpolation=cv2.INTER_AREA)
        layout = cv2.cvtColor(tiny, cv2.COLOR_BGR2LAB).astype(np.float32).reshape(-1) - 128.0
        hsv = cv2.cvtColor(work, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).reshape(-1)
        hist = np.sqrt(hist / max(float(hist.sum()), 1.0))
        gray = cv2.cvtColor(work, cv2.COLOR_BGR2GRAY).astype(np.float32)
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        magnitude, angle = cv2.cartToPolar(gx, gy, angleInDegrees=True)
        orientation = (np.mod(angle, 180.0) * (EDGE_BINS / 180.0)).astype(np.int64) % EDGE_BINS
        edges = np.bincount(
            (self._cell + orientation).reshape(-1), weights=magnitude.reshape(-1), minlength=EDGE_GRID**2 * EDGE_BINS
        )
        edges = np.sqrt(edges)
        parts = [_unit(layout.astype(np.float64)), _unit(hist.astype(np.float64)), _unit(edges)]
        return (np.concatenate(parts) / math.sqrt(3.0)).astype(np.float32)

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self.frame(f) for f in frames]) if len(frames) else np.zeros((0, DIM), np.float32)


def _cv_message(e: cv2.error) -> str:
    """OpenCV's error text on one line, without the source-file prefix."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return text.split(" error: ", 1)[-1]


class OnnxExtractor:
    """An ONNX image (or video) encoder run with OpenCV's dnn module; its output must be 512 values per frame (clip).

    Preprocessing (CLIP's by default): BGR frame → RGB (unless `rgb=False`), resized so that the shorter side is
    `input_size` and centre-cropped to input_size x input_size (`crop=False`: squashed to that square instead),
    pixels / 255, then (x - mean) / std per channel, in the model's channel order; blob [N, 3, S, S] float32.
    Image encoders get batches of up to `batch_size` frames ([N, 3, S, S] → [N, 512]); a video encoder
    (`clip_frames=T`) gets one clip of T frames as [1, T, 3, S, S] → [1, 512]. With `l2` (default) each output
    vector is L2-normalised (CLIP embeddings are compared by cosine) before a clip's frames are averaged.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        input_size: int = 224,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        rgb: bool = True,
        crop: bool = True,
        l2: bool = True,
        clip_frames: int = 0,
        batch_size: int = 16,
        output: str | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such ONNX model file. Check the --onnx path.")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise UserError(f"ONNX preprocessing mean={list(mean)} std={list(std)}: need 3 values each, std > 0.")
        if input_size < 8 or clip_frames < 0 or batch_size < 1:
            raise UserError(
                f"{self.path}: input size {input_size}, clip frames {clip_frames}, batch {batch_size}: need an input "
                "size >= 8, clip frames >= 0 and a batch >= 1."
            )
        try:
            self.net = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as e:
            raise UserError(
                f"{self.path}: OpenCV cannot read this ONNX model ({_cv_message(e)}). Re-export it with "
                "torch.onnx.export (opset 13-17) or check that the file is complete."
            ) from None
        self.input_size, self.rgb, self.crop, self.l2 = input_size, rgb, crop, l2
        self.mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(1, 3, 1, 1)
        self.clip_frames, self.output = clip_frames, output
        self.dim = DIM
        kind = f"video encoder, {clip_frames} frames a clip" if clip_frames else "image encoder"
        self.name = (
            f"ONNX {self.path.name} ({kind}; {input_size}x{input_size} {'RGB' if rgb else 'BGR'}"
            f"{', centre crop' if crop else ''}, mean {list(mean)} std {list(std)}{', L2' if l2 else ''})"
        )
        self.batch_size = 1 if clip_frames else batch_size
        self._check(batch_size)

    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """[N, 3, S, S] float32 model input of BGR uint8 frames."""
        size = (self.input_size, self.input_size)
        blob = cv2.dnn.blobFromImages(list(frames), 1.0 / 255.0, size, (0, 0, 0), swapRB=self.rgb, crop=self.crop)
        return ((blob - self.mean) / self.std).astype(np.float32)

    def forward(self, blob: np.ndarray) -> np.ndarray:
        """Model output for one input blob, as [B, 512] (B = blob's first dim); UserError if not 512 per item."""
        try:
            self.net.setInput(blob)
            out = self.net.forward(self.output) if self.output else self.net.forward()
        except cv2.error as e:
            raise UserError(
                f"{self.path}: the model fails on input {list(blob.shape)} ({_cv_message(e)}). Check --input-size "
                "(the size it was exported with), --clip-frames (video encoders only) and --onnx-output."
            ) from None
        out = np.asarray(out, np.float32)
        b = blob.shape[0]
        if out.ndim < 2 or out.shape[0] != b or out[0].size != DIM or max(out.shape[2:], default=1) != 1:
            per = "clip" if self.clip_frames else "frame"
            raise UserError(
                f"{self.path}: the model gives output of shape {list(out.shape)} for input {list(blob.shape)}; "
                f"trajsv needs {DIM} values per {per} ([{b}, {DIM}]), e.g. CLIP ViT-B/32's projected image_embeds. "
                "Export the 512-d projection (or pick that output with --onnx-output)."
            )
        out = out.reshape(b, DIM)
        if self.l2:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _check(self, batch_size: int) -> None:
        """Run the model once on black frames: a wrong output fails now, not after decoding the whole video.

        A model exported with a fixed batch of 1 fails on larger batches: then frames go one at a time.
        """
        black = np.zeros((self.input_size, self.input_size, 3), np.uint8)
        if self.clip_frames:
            self.clip([black] * self.clip_frames)
            return
        if batch_size > 1:
            try:
                self.net.setInput(self.preprocess([black, black]))
                self.net.forward(self.output) if self.output else self.net.forward()
            except cv2.error:
                self.batch_size = 1
        self([black])

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """[N, 512] of N frames (image encoder)."""
        if self.clip_frames:
            raise UserError(f"{self.path}: a video encoder ({self.clip_frames} frames a clip) has no per-frame output.")
        if not len(frames):
            return np.zeros((0, DIM), np.float32)
        step = self.batch_size
        return np.concatenate(
            [self.forward(self.preprocess(frames[i : i + step])) for i in range(0, len(frames), step)]
        )

    def clip(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """[512] of one clip's T frames (video encoder)."""
        blob = self.preprocess(frames)
        return self.forward(blob[None])[0]


@dataclasses.dataclass
class ClipFeatures:
    """One visual vector per clip of a source, with what is missing and why."""

    visual: np.ndarray  # [C, D] float32, zeros where mask is False
    mask: np.ndarray  # [C] bool: clips that have a vector
    missing: dict[str, int]  # clips without a vector, by reason
    partial: int  # clips whose vector averages only part of their time (the rest is past the end of the data)
    extractor: str  # what made the vectors

    def info(self) -> dict[str, Any]:
        """What `write_features` records in the source's metadata ("visual_features")."""
        return {
            "extractor": self.extractor,
            "dims": int(self.visual.shape[1]),
            "clips": len(self.mask),
            "clips_with_features": int(self.mask.sum()),
            "clips_without": dict(self.missing),
            "clips_partial": self.partial,
        }

    def summary(self) -> str:
        without = sum(self.missing.values())
        why = "; ".join(f"{n}: {reason}" for reason, n in self.missing.items())
        return (
            f"{len(self.mask)} clips, {int(self.mask.sum())} with features, {without} without"
            + (f" ({why})" if why else "")
            + (f", {self.partial} from part of their time (the rest past the end of the data)" if self.partial else "")
            + f"; {self.visual.shape[1]} dims; extractor {self.extractor}"
        )


def sample_frames(first: int, length: int, count: int) -> np.ndarray:
    """`count` frame numbers at the centres of `count` equal parts of frames first .. first + length - 1."""
    return first + ((np.arange(count) + 0.5) * length / count).astype(np.int64)


def frames_per_clip(length: int, fps: float, sample_fps: float = SAMPLE_FPS) -> int:
    """Frames sampled from a clip of `length` frames at `fps`: one per 1 / sample_fps seconds, at least one."""
    return max(1, round(length / fps * sample_fps))


def video_features(
    source: store_lib.Source,
    video: str | os.PathLike,
    extractor: FrameExtractor | None = None,
    height: int | None = DEFAULT_HEIGHT,
    sample_fps: float = SAMPLE_FPS,
    progress: bool = True,
) -> ClipFeatures:
    """A vector per clip from the source's video: clip c is video frames clip_first_frame[c] + 0 .. length - 1.

    Per-frame extractors see `frames_per_clip` frames of each clip (2 fps) and the clip gets their mean; a video
    extractor (`clip_frames=T`) sees T frames spread evenly over the clip. Frames are decoded once, in order, and
    downscaled to `height` rows. Clips whose frames lie past the end of the video are counted, not dropped silently.
    """
    extractor = extractor or ColourEdgeExtractor()
    video = Path(video)
    if not sample_fps > 0:
        raise UserError(f"sample fps {sample_fps}: must be > 0 (SoccerNet convention: 2).")
    info = decode.probe(video)
    if abs(info.fps - source.fps) > 0.01 * source.fps:
        raise UserError(
            f"{video}: {info.fps:g} fps, but source {source.source_id} was tracked at {source.fps:g} fps, so its "
            "frame numbers are not this video's. Pass the video the source was made from (--video)."
        )
    lengths, firsts = source.clip_lengths(), source.clip_first_frame.astype(np.int64)
    c_total = source.num_clips
    samples = [
        sample_frames(
            int(firsts[c]),
            int(lengths[c]),
            extractor.clip_frames or frames_per_clip(lengths[c], source.fps, sample_fps),
        )
        for c in range(c_total)
    ]
    users: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)  # frame → (clip, slot)
    for c, frames in enumerate(samples):
        for slot, f in enumerate(frames.tolist()):
            users[f].append((c, slot))
    wanted = np.array(sorted(f for f in users if f >= 0), np.int64)
    sums = np.zeros((c_total, extractor.dim), np.float64)
    seen = np.zeros(c_total, np.int64)  # samples that reached the clip
    buffers: dict[int, list] = {}  # video extractor: clip → its T frames so far
    batch: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        vectors = extractor([frame for _, frame in batch])
        for (index, _), vector in zip(batch, vectors, strict=True):
            for c, _slot in users[index]:
                sums[c] += vector
                seen[c] += 1
        batch.clear()

    stop = int(wanted[-1]) + 1 if len(wanted) else 0
    bar = tqdm(total=stop, desc=f"features {source.source_id}", unit="frame", leave=False, disable=not progress)
    decoded = 0
    for index, frame in decode.frames(video, height, stop=stop, keep=set(wanted.tolist())):
        bar.update(index + 1 - decoded)
        decoded = index + 1
        if extractor.clip_frames:
            for c, slot in users[index]:
                buffer = buffers.setdefault(c, [None] * extractor.clip_frames)
                buffer[slot] = frame
                seen[c] += 1
                if seen[c] == extractor.clip_frames:
                    sums[c] = extractor.clip(buffers.pop(c))
        else:
            batch.append((index, frame))
            if len(batch) >= extractor.batch_size:
                flush()
    bar.close()
    if batch:
        flush()
    wanted_count = np.array([len(s) for s in samples])
    mask = seen > 0 if not extractor.clip_frames else seen == wanted_count
    visual = np.where(mask[:, None], sums / np.maximum(seen, 1)[:, None], 0.0).astype(np.float32)
    missing: dict[str, int] = {}
    past_end = int((~mask).sum())
    if past_end:
        missing[f"frames past the end of the video (the video has {info.frame_count} frames)"] = past_end
    bad = mask & ~np.isfinite(visual).all(1)
    if bad.any():
        missing["non-finite extractor output"] = int(bad.sum())
        mask &= ~bad
        visual[bad] = 0
    partial = int((mask & (seen < wanted_count)).sum())
    scale = f" over {height}p frames" if height else ""
    rate = "" if extractor.clip_frames else f" at {sample_fps:g} fps"
    return ClipFeatures(visual, mask, missing, partial, f"{extractor.name}{rate}{scale}")


def read_soccernet(path: str | os.PathLike) -> np.ndarray:
    """[N, 512] float32 of one SoccerNet half's feature file; one-line UserError if unreadable or not [N, 512]."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such SoccerNet feature file. Check --soccernet (and --soccernet-name).")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{path}: not a readable .npy array ({e}). Re-download it from SoccerNet.") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or array.shape[1] != DIM:
        raise UserError(
            f"{path}: array of shape {list(np.shape(array))}, SoccerNet features must be [N, {DIM}] (e.g. "
            f"*_ResNET_TF2_PCA512.npy). Use the PCA-512 files or reduce the features to {DIM} dims first."
        )
    if not np.isfinite(array).all():
        raise UserError(f"{path}: {int((~np.isfinite(array)).any(1).sum())} rows are not finite. Re-download it.")
    return array.astype(np.float32)


def soccernet_files(paths: Sequence[str | os.PathLike], name: str = SOCCERNET_NAME) -> dict[int, Path]:
    """{half: file} from a game directory (files named by `name`, "{half}" = 1, 2) or two files (half 1, half 2)."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].is_dir():
        if "{half}" not in name:
            raise UserError(f"--soccernet-name {name!r}: must contain {{half}}, e.g. {SOCCERNET_NAME!r}.")
        return {half: paths[0] / name.format(half=half) for half in (1, 2)}
    if len(paths) == 2:
        return {1: paths[0], 2: paths[1]}
    raise UserError(
        f"--soccernet {' '.join(map(str, paths))}: give one game directory (holding {name.format(half=1)} and "
        f"{name.format(half=2)}) or two files, half 1 then half 2."
    )


def soccernet_features(
    source: store_lib.Source,
    halves: Mapping[int, np.ndarray],
    feature_fps: float = SOCCERNET_FPS,
    offsets: Mapping[int, float] | None = None,
    name: str = "SoccerNet",
) -> ClipFeatures:
    """A vector per clip: the mean of the rows of its half inside its time [start, start + length / fps).

    Row i of a half's array is time i / feature_fps seconds of that half's video; `offsets[p]` (default 0) is the
    video time of the period's start (the tracking's t = 0), added to clip_start. A clip too short to hold a row
    takes the row nearest its centre. Clips of a period without an array, or entirely past the end of (or before)
    their half's array, get mask False and are counted by reason; clips partly past the end use the rows there are.
    """
    if not feature_fps > 0:
        raise UserError(f"feature fps {feature_fps}: must be > 0 (SoccerNet: 2).")
    offsets = offsets or {}
    dims = {a.shape[1] for a in halves.values()}
    dim = dims.pop() if len(dims) == 1 else DIM
    c_total = source.num_clips
    visual = np.zeros((c_total, dim), np.float32)
    mask = np.zeros(c_total, bool)
    missing: collections.Counter[str] = collections.Counter()
    partial = 0
    seconds = source.clip_lengths() / source.fps
    for c in range(c_total):
        period = int(source.clip_period[c])
        if period not in halves:
            missing[f"period {period} has no feature array (halves {sorted(halves)})"] += 1
            continue
        rows = halves[period]
        start = float(source.clip_start[c]) + float(offsets.get(period, 0.0))
        a = math.ceil(start * feature_fps - 1e-6)
        b = math.ceil((start + seconds[c]) * feature_fps - 1e-6)  # rows a .. b - 1
        if b <= a:
            a = math.floor((start + seconds[c] / 2) * feature_fps + 0.5)
            b = a + 1
        lo, hi = max(a, 0), min(b, len(rows))
        if hi <= lo:
            where = "past the end of" if a >= len(rows) else "before the start of"
            missing[f"{where} the half's features ({name})"] += 1
            continue
        partial += int(lo > a or hi < b)
        visual[c] = rows[lo:hi].mean(0)
        mask[c] = True
    return ClipFeatures(visual, mask, dict(missing), partial, f"{name} ({dim} dims at {feature_fps:g} fps, averaged)")


def import_soccernet(
    source: store_lib.Source,
    paths: Sequence[str | os.PathLike],
    name: str = SOCCERNET_NAME,
    feature_fps: float = SOCCERNET_FPS,
    offsets: Sequence[float] = (0.0, 0.0),
) -> ClipFeatures:
    """`soccernet_features` from files (`soccernet_files`); a half that has clips must have its file."""
    files = soccernet_files(paths, name)
    periods = set(np.unique(source.clip_period).tolist())
    halves = {half: read_soccernet(path) for half, path in files.items() if half in periods}
    offset_by_half = {half: float(offsets[half - 1]) for half in (1, 2)}
    names = ", ".join(files[h].name for h in sorted(halves)) or files[1].name
    return soccernet_features(source, halves, feature_fps, offset_by_half, name=f"SoccerNet {names}")


def write_features(
    store: str | os.PathLike,
    source_id: str,
    visual: np.ndarray,
    mask: np.ndarray,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Put visual [C, D] + mask [C] into a store source (rows where mask is False are stored as zeros).

    Re-reads the source and writes it back with `store.write_source` (each file renamed into place): on any error
    the store is left as it was. `info` (e.g. `ClipFeatures.info()`) goes to the source's metadata
    "visual_features". Returns the source's .npz path.
    """
    source = store_lib.read_source(store, source_id)
    visual = np.asarray(visual, np.float32)
    mask = np.asarray(mask)
    where = f"{store}: source {source_id}"
    if visual.ndim != 2 or visual.shape[0] != source.num_clips or visual.shape[1] < 1:
        raise UserError(
            f"{where}: visual features of shape {list(visual.shape)} for {source.num_clips} clips; need "
            f"[{source.num_clips}, D]. Extract them from this version of the source."
        )
    if mask.shape != (source.num_clips,) or mask.dtype != bool:
        raise UserError(
            f"{where}: visual_mask of shape {list(mask.shape)} {mask.dtype}; need [{source.num_clips}] bool."
        )
    if not np.isfinite(visual[mask]).all():
        raise UserError(f"{where}: some visual features marked present are not finite. Set their mask to False.")
    source.visual = np.where(mask[:, None], visual, 0.0).astype(np.float32)
    source.visual_mask = mask.copy()
    source.metadata["visual_features"] = dict(info) if info else {"dims": int(visual.shape[1])}
    return store_lib.write_source(store, source)


def video_path(store: str | os.PathLike, source: store_lib.Source) -> Path | None:
    """The video a source was made from (metadata "video"; a relative path is tried from here, then the store)."""
    value = source.metadata.get("video")
    if isinstance(value, Mapping):
        value = value.get("path")
    if not value:
        return None
    path = Path(str(value))
    if not path.is_absolute() and not path.exists() and (Path(store) / path).exists():
        return Path(store) / path
    return path


def select_sources(store: Path, wanted: Sequence[str] | None, external: str | None) -> list[store_lib.Source]:
    """Sources `trajsv features` works on: `wanted` ids, else the only source when features come from an `external`
    video or SoccerNet (the flag's name, for messages), else every source whose metadata names a video."""
    ids = store_lib.list_sources(store)
    if wanted:
        unknown = [sid for sid in wanted if sid not in ids]
        if unknown:
            raise UserError(f"{store}: no source {unknown[0]!r}; the store has {', '.join(ids) or 'no sources'}.")
        if external and len(wanted) > 1:
            raise UserError(f"{external} belongs to one source; name one --source (got {len(wanted)}).")
        return [store_lib.read_source(store, sid) for sid in wanted]
    if external:
        if len(ids) != 1:
            raise UserError(
                f"{external} belongs to one source; name it with --source ID (the store has "
                f"{', '.join(ids) or 'no sources'})."
            )
        return [store_lib.read_source(store, ids[0])]
    sources = [s for s in store_lib.read_store(store) if video_path(store, s) is not None]
    if not sources:
        raise UserError(
            f"{store}: no source has a video (metadata 'video'). Pass --source ID with --video PATH or --soccernet DIR."
        )
    return sources
