"""Preprocessing speed per worker: decoding alone, MediaPipe Face Mesh alone and the whole clip pipeline (decode,
Face Mesh, registration, crops, JPEG, mel) on the same clips of the embedded corpus, in one process, the three
alternating clip by clip. The whole pipeline's overhead is its time over decoding plus Face Mesh (goal: at most
25%; 30% before the clip was decoded once for its two passes).
"""

import time
from unittest import mock

from datamodules import face
from datamodules.corpus import discover
from datamodules.media import read_clip
from datamodules.preprocess import clip as clip_pipeline
from datamodules.preprocess import process_clip
from datamodules.synthetic import ensure_default_corpus
from experiments.bench import Options
from experiments.bench.report import Row, at_most

CLIPS = 8
REPEATS = 2


def run(options: Options) -> list[Row]:
    clips = discover(ensure_default_corpus(), "lrs3")[:CLIPS]
    process_clip(clips[0])  # warm-up: imports, Face Mesh graph, page cache
    seconds = {"decoding alone (ffmpeg, frames + audio)": 0.0, "Face Mesh alone (tracking mode)": 0.0,
               "the whole clip pipeline": 0.0, "the whole clip pipeline, decoding each pass (before)": 0.0}  # fmt: skip
    decoding, mesh, whole, before = seconds
    frames = 0
    for _ in range(REPEATS):
        for clip in clips:
            start = time.perf_counter()
            video, _ = read_clip(clip.path)
            seconds[decoding] += time.perf_counter() - start
            start = time.perf_counter()
            face.track_landmarks(video)
            seconds[mesh] += time.perf_counter() - start
            start = time.perf_counter()
            process_clip(clip)
            seconds[whole] += time.perf_counter() - start
            with mock.patch.object(clip_pipeline, "KEPT_FRAMES_BYTES", 0):
                start = time.perf_counter()
                process_clip(clip)
                seconds[before] += time.perf_counter() - start
            frames += len(video)
    size = f"{video.shape[2]}x{video.shape[1]}"
    rows = [Row(f"{stage}, {size} clips", frames / spent, "frames/s") for stage, spent in seconds.items()]
    overhead = {stage: 100 * (seconds[stage] / (seconds[decoding] + seconds[mesh]) - 1) for stage in (whole, before)}
    return [*rows, Row("overhead of the whole pipeline over decoding + Face Mesh", overhead[whole], "%", at_most(25)),
            Row("overhead of the pipeline decoding each pass (before)", overhead[before], "%")]  # fmt: skip
