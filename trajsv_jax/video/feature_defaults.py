"""Settings of the front end without cv2, so that the CLI's parser can show them: the defaults of `trajsv features`
(which `video.features` uses) and the main-camera view thresholds of `trajsv preprocess` (`ViewConfig`, which
`video.shots` uses)."""

from __future__ import annotations

import dataclasses

from trajsv_jax.errors import UserError

DEFAULT_HEIGHT = 360  # decode height: features need little resolution
SAMPLE_FPS = 2.0  # frames per second sampled in each clip (SoccerNet features are at 2 fps)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP preprocessing, RGB, on [0, 1] pixels
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SOCCERNET_NAME = "{half}_ResNET_TF2_PCA512.npy"
SOCCERNET_FPS = 2.0


def _setting(default, text: str):
    """A dataclass field with the help text the CLI shows beside its flag (`flag`)."""
    return dataclasses.field(default=default, metadata={"help": text})


def flag(name: str) -> str:
    """The command-line flag of a setting: `min_pitch_share` -> `--min-pitch-share`."""
    return "--" + name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """Thresholds of the main-camera classifier (shots.py); defaults suit daylight and floodlit grass pitches.

    The close-up cue is relative to the video itself: a wide view's largest non-grass blob on the grass depends on the
    camera (stands or a track enclosed by grass can be large: 0.053 of the frame on one real camera, 0.016 on
    another), so a frame is a close-up when its blob is `close_up_factor` times the median of the video's wide views.
    """

    pitch_hue: tuple[int, int] = _setting((30, 90), "OpenCV hue range (0-180) of grass, LO,HI")
    min_saturation: int = _setting(40, "least HSV saturation (0-255) of a grass pixel")
    min_value: int = _setting(40, "least HSV value (0-255) of a grass pixel")
    min_pitch_share: float = _setting(0.25, "main camera: least share of grass pixels in the frame")
    min_line_density: float = _setting(0.002, "main camera: least painted-line pixels per grass pixel")
    close_up_factor: float = _setting(
        2.5, "close-up: largest non-grass blob over this many times the median of the video's wide views"
    )
    min_close_up_share: float = _setting(0.04, "close-up: a largest blob under this share of the frame never is one")
    shot_boundary: float = _setting(0.3, "shot cut: least colour-histogram (Bhattacharyya) distance between frames")
    smoothing_kernel: int = _setting(3, "frames of the opening and closing of the per-frame decision (odd; paper: 3)")

    def validate(self) -> None:
        """A UserError naming the flag of every value out of its range."""
        hue = self.pitch_hue
        problems = []
        if not (len(hue) == 2 and 0 <= hue[0] < hue[1] <= 180):
            problems.append(f"{flag('pitch_hue')} {','.join(map(str, hue))} is not LO,HI with 0 <= LO < HI <= 180")
        for name, least, most in (
            ("min_saturation", 0, 255),
            ("min_value", 0, 255),
            ("min_pitch_share", 0, 1),
            ("min_line_density", 0, 1),
            ("close_up_factor", 1, float("inf")),
            ("min_close_up_share", 0, 1),
            ("shot_boundary", 0, 1),
        ):
            if not least <= getattr(self, name) <= most:
                problems.append(f"{flag(name)} {getattr(self, name)} is not in [{least}, {most}]")
        if self.smoothing_kernel < 1 or self.smoothing_kernel % 2 == 0:
            problems.append(f"{flag('smoothing_kernel')} {self.smoothing_kernel} is not an odd number >= 1")
        if problems:
            raise UserError(f"view thresholds: {'; '.join(problems)}. Change them (see `trajsv preprocess --help`).")
