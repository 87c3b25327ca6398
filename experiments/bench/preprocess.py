"""Preprocessing speed per worker: decoding alone, MediaPipe Face Mesh alone and the whole clip pipeline (decode,
Face Mesh, registration, crops, JPEG, mel) on the same clips of the embedded corpus, in one process, the three
alternating clip by clip. The whole pipeline's overhead is its time over decoding plus Face Mesh (goal: at most
25%; 30% before the clip was decoded once for its two passes).
"""

import resource
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


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the ffmpeg decoders) so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(options: Options) -> list[Row]:
    clips = discover(ensure_default_corpus(), "lrs3")[:CLIPS]
    process_clip(clips[0])  # warm-up: imports, Face Mesh graph, page cache
    seconds = {"decoding alone (ffmpeg, frames + audio)": 0.0, "Face Mesh alone (tracking mode)": 0.0,
               "the whole clip pipeline": 0.0, "the whole clip pipeline, decoding each pass (before)": 0.0}  # fmt: skip
    cpu = dict.fromkeys(seconds, 0.0)
    decoding, mesh, whole, before = seconds
    frames = 0

    def timed(stage: str, work, *args):
        began, began_cpu = time.perf_counter(), cpu_seconds()
        result = work(*args)
        seconds[stage] += time.perf_counter() - began
        cpu[stage] += cpu_seconds() - began_cpu
        return result

    for _ in range(REPEATS):
        for clip in clips:
            video, _ = timed(decoding, read_clip, clip.path)
            timed(mesh, face.track_landmarks, video)
            timed(whole, process_clip, clip)
            with mock.patch.object(clip_pipeline, "KEPT_FRAMES_BYTES", 0):
                timed(before, process_clip, clip)
            frames += len(video)
    size = f"{video.shape[2]}x{video.shape[1]}"
    rows = [Row(f"{stage}, {size} clips", frames / spent, "frames/s") for stage, spent in seconds.items()]
    rows += [Row(f"{stage}, CPU time", 1e3 * spent / frames, "ms/frame", note="this process and its ffmpeg children")
             for stage, spent in cpu.items()]  # fmt: skip
    overhead = {stage: 100 * (seconds[stage] / (seconds[decoding] + seconds[mesh]) - 1) for stage in (whole, before)}
    cpu_overhead = {stage: 100 * (cpu[stage] / (cpu[decoding] + cpu[mesh]) - 1) for stage in (whole, before)}
    return [*rows, Row("overhead of the whole pipeline over decoding + Face Mesh", overhead[whole], "%", at_most(25)),
            Row("overhead of the pipeline decoding each pass (before)", overhead[before], "%"),
            Row("overhead in CPU time, the whole pipeline", cpu_overhead[whole], "%",
                note="less sensitive than wall time to other processes on the machine"),
            Row("overhead in CPU time, decoding each pass (before)", cpu_overhead[before], "%")]  # fmt: skip
