"""The broadcast-video front end (paper IV-A, VI-A (1)): video → main-camera clips → calibration → tracking → store.

decode.py (frames, read ahead in a thread, with one-line errors for bad files), segment.py (camera-view
classification → clips), calibrate.py (image ↔ pitch from landmarks, with a lens model), camera.py (imported
calibrations, per-frame camera tracking, refinement on the painted lines), detect.py (players and ball),
track.py (two-stage tracker), mot_eval.py (MOTA / IDF1 / HOTA), teams.py (kit colours → teams),
trajectories.py (clean tracks on the pitch), preprocess.py (the whole path → a source in the store),
pictures.py (tracks over a frame, trajectories on a pitch), features.py (frozen 512-d visual features per clip).
Every learned part is pluggable (an ONNX file the user supplies); every stage has a default that needs no weights.
"""
