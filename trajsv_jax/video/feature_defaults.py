"""Defaults of `trajsv features`, without cv2: the CLI's parser shows them and `video.features` uses them."""

DEFAULT_HEIGHT = 360  # decode height: features need little resolution
SAMPLE_FPS = 2.0  # frames per second sampled in each clip (SoccerNet features are at 2 fps)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP preprocessing, RGB, on [0, 1] pixels
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SOCCERNET_NAME = "{half}_ResNET_TF2_PCA512.npy"
SOCCERNET_FPS = 2.0
