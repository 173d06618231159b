"""Video segmentation (paper IV-A): which frames show the main camera, cut into clips of at least 0.4 s.

Each frame gets four cues computed with OpenCV on a small copy of it: the share of pitch-coloured pixels (a wide
main-camera view is mostly grass; close-ups, replays' graphics and crowd shots are not), the density of painted-line
pixels on the grass (the main camera sees lines; a close-up of grass does not), the largest non-grass blob enclosed
by grass (a player seen close; compared with the video's own wide views, since what a wide view encloses depends on
the camera: `close_up_limit`), and the colour-histogram distance to the previous frame (a large jump is a shot
boundary, where a clip must end even if both sides are main camera). `explain` says which cue rejected frames and by
how much; every threshold is a `trajsv preprocess` flag (feature_defaults.ViewConfig). The per-frame decision is
smoothed with a morphological opening then closing (kernel 3, as in the paper) so that a single misjudged frame
neither splits a clip nor makes one; runs of main-camera frames become clips when they last at least `min_seconds`.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from trajsv_jax.video.feature_defaults import ViewConfig, flag

ANALYSIS_WIDTH = 320  # the cues need little resolution; a fixed width keeps them comparable across videos


@dataclasses.dataclass
class ViewCues:
    """The per-frame cues, kept for the report and the plots."""

    pitch_share: np.ndarray  # [F] float32
    line_density: np.ndarray  # [F] float32
    object_share: np.ndarray  # [F] float32
    histogram_distance: np.ndarray  # [F] float32, 0 for the first frame


def pitch_mask(hsv: np.ndarray, config: ViewConfig) -> np.ndarray:
    """uint8 mask (255 = grass) of an HSV image."""
    low = (config.pitch_hue[0], config.min_saturation, config.min_value)
    return cv2.inRange(hsv, low, (config.pitch_hue[1], 255, 255))


class ViewClassifier:
    """Computes the cues of frames in order (call once per frame)."""

    def __init__(self, config: ViewConfig | None = None):
        self.config = config or ViewConfig()
        self.config.validate()
        self._previous: np.ndarray | None = None
        self._rows: list[tuple[float, float, float, float]] = []
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def add(self, frame: np.ndarray) -> None:
        height = round(frame.shape[0] * ANALYSIS_WIDTH / frame.shape[1])
        small = cv2.resize(frame, (ANALYSIS_WIDTH, height), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        grass = pitch_mask(hsv, self.config)
        grass_pixels = max(1, cv2.countNonZero(grass))
        # The grass area with its holes (players, lines) filled: where lines and objects are looked for.
        field = cv2.morphologyEx(grass, cv2.MORPH_CLOSE, self._kernel, iterations=2)
        holes = cv2.bitwise_and(field, cv2.bitwise_not(grass))
        white = cv2.inRange(hsv, (0, 0, 150), (180, 70, 255))
        lines = cv2.countNonZero(cv2.bitwise_and(holes, white)) / grass_pixels
        count, _, stats, _ = cv2.connectedComponentsWithStats(holes)
        largest = stats[1:, cv2.CC_STAT_AREA].max() if count > 1 else 0
        histogram = cv2.calcHist([hsv], [0, 1], None, [30, 16], [0, 180, 0, 256])
        cv2.normalize(histogram, histogram)
        distance = 0.0
        if self._previous is not None:
            distance = cv2.compareHist(self._previous, histogram, cv2.HISTCMP_BHATTACHARYYA)
        self._previous = histogram
        self._rows.append((grass_pixels / grass.size, lines, largest / grass.size, distance))

    def at_shot_boundary(self) -> bool:
        """Whether the frame added last starts a new shot (its histogram jumped from the previous frame's)."""
        return bool(self._rows) and self._rows[-1][3] > self.config.shot_boundary

    def cues(self) -> ViewCues:
        rows = np.asarray(self._rows, np.float32).reshape(-1, 4)
        return ViewCues(*(rows[:, i] for i in range(4)))


def close_up_limit(cues: ViewCues, config: ViewConfig) -> tuple[float, float]:
    """(limit, median): a frame whose largest blob exceeds `limit` is a close-up; `median` is the largest blob's
    median over the frames that pass the pitch and line cues (the video's own wide views; 0 when there are none)."""
    wide = (cues.pitch_share >= config.min_pitch_share) & (cues.line_density >= config.min_line_density)
    median = float(np.median(cues.object_share[wide])) if wide.any() else 0.0
    return max(config.min_close_up_share, config.close_up_factor * median), median


def failed_cues(cues: ViewCues, config: ViewConfig) -> dict[str, np.ndarray]:
    """[F] bool per cue: the frames it rejects (a frame is main camera when none does)."""
    return {
        "pitch": cues.pitch_share < config.min_pitch_share,
        "lines": cues.line_density < config.min_line_density,
        "close-up": cues.object_share > close_up_limit(cues, config)[0],
    }


def is_main_camera(cues: ViewCues, config: ViewConfig) -> np.ndarray:
    """[F] bool: the raw per-frame decision, before smoothing."""
    return ~np.logical_or.reduce(list(failed_cues(cues, config).values()))


def explain(cues: ViewCues, config: ViewConfig) -> str:
    """Which cues reject frames and by how much (the rejected frames' median beside the threshold and its flag);
    empty when none does."""
    limit, median = close_up_limit(cues, config)
    values = {"pitch": cues.pitch_share, "lines": cues.line_density, "close-up": cues.object_share}
    words = {
        "pitch": f"grass share under {flag('min_pitch_share')} {config.min_pitch_share:g}",
        "lines": f"painted lines per grass pixel under {flag('min_line_density')} {config.min_line_density:g}",
        "close-up": f"close-up: largest non-grass blob over {limit:.3g} ({flag('close_up_factor')} "
        f"{config.close_up_factor:g} x the wide views' median {median:.3g}, at least {flag('min_close_up_share')} "
        f"{config.min_close_up_share:g})",
    }
    parts = [
        f"{words[cue]} on {n} frame{'s' * (n > 1)} (median {np.median(values[cue][rejected]):.3g})"
        for cue, rejected in failed_cues(cues, config).items()
        if (n := int(rejected.sum()))
    ]
    return "; ".join(parts)


def smooth(decision: np.ndarray, kernel: int = 3) -> np.ndarray:
    """Morphological opening then closing of a boolean sequence (removes isolated frames, fills one-frame gaps)."""
    row = decision.astype(np.uint8)[None, :] * 255
    element = np.ones((1, kernel), np.uint8)
    opened = cv2.morphologyEx(row, cv2.MORPH_OPEN, element, borderType=cv2.BORDER_REPLICATE)
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, element, borderType=cv2.BORDER_REPLICATE)
    return closed[0] > 0


@dataclasses.dataclass
class Segmentation:
    """Which frames are main camera, the shot of each frame, and the clips (frame ranges) kept."""

    main_camera: np.ndarray  # [F] bool, smoothed
    shot: np.ndarray  # [F] int32: increments at every shot boundary
    clips: list[tuple[int, int]]  # [start, stop) frame ranges of main-camera runs lasting ≥ min_seconds
    short_runs: int  # main-camera runs dropped for being shorter than min_seconds
    cues: ViewCues

    def counts(self) -> dict[str, int]:
        return {
            "frames": len(self.main_camera),
            "main_camera_frames": int(self.main_camera.sum()),
            "shots": int(self.shot[-1]) + 1 if len(self.shot) else 0,
            "clips": len(self.clips),
            "short_runs_dropped": self.short_runs,
        }


def segment(cues: ViewCues, fps: float, config: ViewConfig | None = None, min_seconds: float = 0.4) -> Segmentation:
    """Main-camera clips from per-frame cues: smoothed decision, cut at shot boundaries, runs ≥ min_seconds."""
    config = config or ViewConfig()
    main = smooth(is_main_camera(cues, config), config.smoothing_kernel)
    shot = np.cumsum(cues.histogram_distance > config.shot_boundary).astype(np.int32)
    clips, short = [], 0
    start = None
    for f in range(len(main) + 1):
        ends = f == len(main) or not main[f] or (start is not None and shot[f] != shot[start])
        if start is not None and ends:
            if f - start >= min_seconds * fps - 1e-6:
                clips.append((start, f))
            else:
                short += 1
            start = None
        if f < len(main) and main[f] and start is None:
            start = f
    return Segmentation(main, shot, clips, short, cues)
