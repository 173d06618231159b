"""The broadcast-video front end (paper IV-A, VI-A (1)): video → main-camera clips → calibration → tracking → store.

decode.py (frames, with one-line errors for bad files), segment.py (camera-view classification → clips),
calibrate.py (image → pitch homography), detect.py (players and ball), track.py (ByteTrack-style tracker),
features.py (frozen 512-d visual features per clip), preprocess.py (the whole path → a source in the store).
Every learned part is pluggable (an ONNX file the user supplies); every stage has a default that needs no weights.
"""
