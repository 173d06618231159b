"""Decode video frames with OpenCV; every bad file (missing, undecodable codec, zero frames, cut short) is a one-line
UserError."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Collection, Iterator
from pathlib import Path
from queue import Full, Queue

import cv2
import numpy as np

from trajsv_jax.errors import UserError

SHORT_READ_TOLERANCE = 2  # frames a container may declare beyond those that decode (a count rounded from the duration)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video, checked by decoding its first frame."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int  # as the container reports it (may be approximate for some codecs)
    codec: str  # FOURCC, e.g. "hevc", "avc1"


def _fourcc(value: float) -> str:
    code = int(value)
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\x00 ") or "unknown"


def _capture(path: Path) -> cv2.VideoCapture:
    if not path.exists():
        raise UserError(f"{path}: no such video file. Check the path.")
    if not path.is_file():
        raise UserError(f"{path}: a folder, not a video file. Pass the video file itself.")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes), so zero frames. Re-download or re-export the video.")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise UserError(
            f"{path}: OpenCV cannot open this video (unknown container or codec). Re-encode it, e.g. "
            f"`ffmpeg -i {path.name} -c:v libx264 out.mp4`."
        )
    return capture


def probe(path: str | os.PathLike) -> VideoInfo:
    """The video's size, frame rate and codec; UserError if it is missing, cannot be decoded or has no frame."""
    path = Path(path)
    capture = _capture(path)
    try:
        info = VideoInfo(
            path=path,
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
            frame_count=int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            codec=_fourcc(capture.get(cv2.CAP_PROP_FOURCC)),
        )
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok or frame is None:
        if info.frame_count > 0:
            raise UserError(
                f"{path}: {info.frame_count} frames of codec {info.codec!r}, but none decodes with this OpenCV "
                f"build (undecodable codec or corrupt stream). Re-encode it, e.g. `ffmpeg -i {path.name} -c:v libx264 "
                "out.mp4`."
            )
        raise UserError(f"{path}: zero frames decodable (codec {info.codec!r}). Check that the file is a whole video.")
    if not info.fps > 0:
        raise UserError(f"{path}: the container gives no frame rate. Re-mux it with one, e.g. `ffmpeg -r 25 -i ...`.")
    return dataclasses.replace(info, width=frame.shape[1], height=frame.shape[0])


def missing_frames(info: VideoInfo, decoded: int, stop: int | None = None, allow_short: bool = False) -> int:
    """Frames the container declares (up to `stop`) that did not decode; a UserError beyond the tolerance unless
    `allow_short`.

    A cut download or a corrupt stream ends the decoding early without any error from OpenCV, so the count is the
    only sign. Containers that derive the count from the duration may overstate it by a frame or two: that much is
    tolerated (still counted). A count of 0 or less (a live stream) cannot be checked.
    """
    declared = info.frame_count if stop is None else min(info.frame_count, stop)
    missing = max(0, declared - decoded)
    if missing > SHORT_READ_TOLERANCE and not allow_short:
        raise UserError(
            f"{info.path}: only {decoded} of the {declared} frames the container declares decode "
            f"({missing / info.fps:.1f} s missing: a truncated file or a corrupt stream). Download or export it "
            "again, or pass --allow-short-video to use the frames that decode."
        )
    return missing


def scaled_size(info: VideoInfo, height: int | None) -> tuple[int, int]:
    """(width, height) of frames downscaled to `height` rows, keeping the aspect ratio (None: native size)."""
    if height is None or height >= info.height:
        return info.width, info.height
    return round(info.width * height / info.height), height


def frames(
    path: str | os.PathLike,
    height: int | None = None,
    start: int = 0,
    stop: int | None = None,
    keep: Collection[int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR uint8 frame) for frames start..stop, read in order, optionally downscaled to `height` rows.

    Frames are read sequentially (seeking is not frame-exact for inter-coded streams such as HEVC); frames not in
    `keep` (when given) are only grabbed, never converted to images, which is several times cheaper.
    """
    info = probe(path)
    size = scaled_size(info, height)
    capture = _capture(Path(path))
    try:
        index = 0
        while stop is None or index < stop:
            if not capture.grab():
                return
            if index >= start and (keep is None or index in keep):
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    return
                if size != (info.width, info.height):
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                yield index, frame
            index += 1
    finally:
        capture.release()


def prefetched(items: Iterator[tuple[int, np.ndarray]], depth: int = 8) -> Iterator[tuple[int, np.ndarray]]:
    """The same items, decoded ahead in a background thread (OpenCV releases the GIL while it decodes and resizes).

    On 2 cores this overlaps decoding with the analysis of earlier frames. An exception in the decoder is raised in
    the consumer; a consumer that stops early stops the thread.
    """
    done = object()
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)

    thread = threading.Thread(target=work, name="decode", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
