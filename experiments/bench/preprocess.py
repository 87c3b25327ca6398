"""Preprocessing speed per worker: decoding alone, MediaPipe Face Mesh alone and the whole clip pipeline
(decode, Face Mesh, registration, crops, JPEG, mel) on the same clips of the embedded corpus, in one process.
The whole pipeline's overhead is its time over decoding plus Face Mesh (the goal: under 25%).
"""

import time

from datamodules import face
from datamodules.corpus import discover
from datamodules.media import read_clip
from datamodules.preprocess import process_clip
from datamodules.synthetic import ensure_default_corpus

CLIPS = 8
REPEATS = 2


def run() -> list[dict]:
    clips = discover(ensure_default_corpus(), "lrs3")[:CLIPS]
    process_clip(clips[0])  # warm-up: imports, Face Mesh graph, page cache
    seconds = {"decode": 0.0, "face mesh": 0.0, "whole pipeline": 0.0}
    frames = 0
    for _ in range(REPEATS):
        for clip in clips:
            start = time.perf_counter()
            video, _ = read_clip(clip.path)
            seconds["decode"] += time.perf_counter() - start
            start = time.perf_counter()
            face.track_landmarks(video)
            seconds["face mesh"] += time.perf_counter() - start
            start = time.perf_counter()
            process_clip(clip)
            seconds["whole pipeline"] += time.perf_counter() - start
            frames += len(video)
    size = f"{video.shape[2]}x{video.shape[1]}"
    rows = [{"stage": stage, "frames": frames, "frame size": size, "frames/s": frames / spent}
            for stage, spent in seconds.items()]  # fmt: skip
    overhead = seconds["whole pipeline"] / (seconds["decode"] + seconds["face mesh"]) - 1
    rows.append({"stage": "overhead of the whole over decode + face mesh", "percent": 100 * overhead})
    return rows
