"""Live generation's price: for chunks of a few frames with a bounded look-ahead, the latency from audio in to
frame out and the lip accuracy (mouth LMD) each setting costs, against today's offline chunks.

The MDN (``BENCH_MDN``, default the shipped ``weights/mdn.ckpt``; its most likely component, as ``make evaluate``)
predicts the landmarks of the embedded corpus's held-out clips (the first ``BENCH_LOOKAHEAD_CLIPS``, default 2, of
the test split of ``data/shards/synthetic``, their audio from the raw corpus) in three ways: through
``experiments.streaming.landmark_chunks`` with chunks of ``chunk`` frames, 25 frames of past context and
``look-ahead`` frames of future context, all recomputed for every chunk; statefully, through ``live_landmark_chunks``
and ``lightning_modules.mdn_live.LiveLandmarks`` (each frame's audio encoded once, the BiGRU's forward state carried
over, its backward direction over the chunk and its look-ahead); and offline (chunks of 250 frames with 25 of
context on each side: a clip whole). Per setting: the mouth LMD against the truth (``make evaluate``'s measure,
inter-ocular units) and against the offline prediction; the latency = the audio the first frame of a chunk waits
for, (chunk + look-ahead + 4 frames of mel context) / 25 s from the start of its own frame, plus the median compute
time of a chunk (audio features, the MDN, the cross-fade); the real-time factor (compute over audio seconds; above 1
a live stream falls behind). The MDN runs in one torch thread (a live mode leaves the other cores to the renderer;
on a loaded machine more threads only contend). A setting is live-ready when its latency is at most 0.5 s, its
real-time factor at most 1 and its mouth LMD within 10% of offline. LMD does not depend on the machine's load; the
latency and real-time factor do.
"""

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import torch

from datamodules.media import FPS, SAMPLE_RATE, Speech
from datamodules.shards import raw_corpus, read_index
from experiments.bench import Options
from experiments.bench.report import Row, at_most
from experiments.evaluation.columns import mean_metrics
from experiments.evaluation.split import raw_audio, split_records, variant_tracks
from experiments.evaluation.videos import landmark_metrics
from experiments.streaming import (
    CHUNK_FRAMES,
    MEL_CONTEXT_FRAMES,
    OVERLAP_FRAMES,
    Chunk,
    LiveStep,
    Predictor,
    landmark_chunks,
    live_landmark_chunks,
)

MDN = Path(os.environ.get("BENCH_MDN", "weights/mdn.ckpt"))
SHARDS = Path("data/shards/synthetic")
CLIPS = int(os.environ.get("BENCH_LOOKAHEAD_CLIPS", 2))
PAST_FRAMES = OVERLAP_FRAMES  # context before a live chunk
CHUNKS = (1, 5, 10, 25)
LOOKAHEADS = (0, 2, 5, 10, 25)
STATEFUL_CHUNKS = (1, 5, 10)
STATEFUL_LOOKAHEADS = (0, 2, 5, 10)
MAX_LATENCY = 0.5  # seconds
LMD_MARGIN = 1.1  # within 10% of offline


@dataclass(frozen=True)
class Setting:
    """Chunks of ``chunk`` frames, ``past`` frames of context recomputed before each and ``lookahead`` after;
    ``stateful``: the live decoder, which recomputes no past (it carries it)."""

    chunk: int
    past: int
    lookahead: int
    stateful: bool = False

    @property
    def waiting_seconds(self) -> float:
        """Audio the first frame of a chunk waits for after its own start before it can be computed."""
        return (self.chunk + self.lookahead + MEL_CONTEXT_FRAMES) / FPS

    def __str__(self) -> str:
        if self.stateful:
            return f"stateful, chunk {self.chunk}, look-ahead {self.lookahead} frames"
        return f"chunk {self.chunk}, past {self.past}, look-ahead {self.lookahead} frames"


OFFLINE = Setting(CHUNK_FRAMES, OVERLAP_FRAMES, OVERLAP_FRAMES)  # today's generation: a 4 s clip whole


@dataclass
class Measured:
    """One setting over the clips: per-clip mouth LMD against the truth and against offline, per-chunk seconds."""

    truth: list[float] = field(default_factory=list)
    offline: list[float] = field(default_factory=list)
    chunk_seconds: list[float] = field(default_factory=list)
    audio_seconds: float = 0.0

    def lmd(self, against: str) -> float:
        return mean_metrics([{"lmd_mouth": value} for value in getattr(self, against)])["lmd_mouth"]

    @property
    def real_time_factor(self) -> float:
        return sum(self.chunk_seconds) / self.audio_seconds

    def latency(self, setting: Setting) -> float:
        return setting.waiting_seconds + float(np.median(self.chunk_seconds))


def settings() -> list[Setting]:
    """The offline setting, the recomputing live grid (chunk x look-ahead, ``PAST_FRAMES`` of past context), then
    the stateful grid."""
    recomputing = [Setting(chunk, PAST_FRAMES, lookahead) for chunk in CHUNKS for lookahead in LOOKAHEADS]
    stateful = [Setting(chunk, 0, lookahead, True) for chunk in STATEFUL_CHUNKS for lookahead in STATEFUL_LOOKAHEADS]
    return [OFFLINE, *recomputing, *stateful]


def mdn_predictor(mdn, reference: np.ndarray) -> Predictor:
    """``landmark_chunks``' predictor: the MDN's most likely component for the registered ``reference [68, 3]``."""
    anchor = torch.from_numpy(reference)

    def predict(windows: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        result = mdn.generate(torch.from_numpy(windows), anchor, mode="max")
        return result["registered"][0].numpy(), result["pose"][0].numpy()

    return predict


def mdn_live_step(mdn, reference: np.ndarray) -> LiveStep:
    """``live_landmark_chunks``' step: a fresh live decoder of the MDN's most likely component for the registered
    ``reference [68, 3]``."""
    from lightning_modules.mdn_live import LiveLandmarks

    live = LiveLandmarks(mdn, torch.from_numpy(reference), mode="max")

    def step(windows: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
        registered, pose = live(torch.from_numpy(windows), frames)
        return registered.numpy(), pose.numpy()

    return step


def setting_chunks(speech: Speech, mdn, reference: np.ndarray, setting: Setting) -> Iterator[Chunk]:
    """The chunks of ``speech`` as ``setting`` produces them, for the registered ``reference [68, 3]``."""
    if setting.stateful:
        return live_landmark_chunks(speech, mdn_live_step(mdn, reference), setting.chunk, setting.lookahead)
    return landmark_chunks(speech, mdn_predictor(mdn, reference), setting.chunk, setting.past, setting.lookahead)


def chunked_track(chunks: Iterator[Chunk]) -> tuple[np.ndarray, list[float]]:
    """Registered landmarks ``[T, 68, 3]`` of ``chunks`` as they are produced, and each chunk's seconds."""
    parts, seconds = [], []
    while True:
        began = time.perf_counter()
        part = next(chunks, None)
        if part is None:
            return np.concatenate(parts), seconds
        seconds.append(time.perf_counter() - began)
        parts.append(part.registered)


def held_out_clips(shards: Path, limit: int, scratch: Path) -> Iterator[tuple[dict, Speech]]:
    """The first ``limit`` records of the test split of ``shards`` with their audio (from the raw corpus)."""
    corpus = raw_corpus(shards, read_index(shards))
    for record in split_records(shards, "test", limit):
        audio = raw_audio(corpus, record["clip"])
        wav = scratch / f"{record['clip'].replace('/', '-')}.wav"
        soundfile.write(wav, audio, SAMPLE_RATE, subtype="FLOAT")
        yield record, Speech(wav, wav, len(audio))


@torch.inference_mode()
def measure(mdn, shards: Path, limit: int, grid: list[Setting]) -> tuple[dict[Setting, Measured], float]:
    """Each setting of ``grid`` over the held-out clips, and the mouth LMD of whole clips as ``make evaluate``
    computes it (from the shards' mel windows)."""
    measured = {setting: Measured() for setting in grid}
    evaluated = []
    with tempfile.TemporaryDirectory() as scratch:
        for record, speech in held_out_clips(shards, limit, Path(scratch)):
            truth, valid, frames = record["registered"], record["valid"].astype(bool), int(record["frames"])
            evaluated.append(
                landmark_metrics(variant_tracks(record, "model", mdn, 1)["registered"], truth, valid)["lmd_mouth"]
            )
            reference = truth[int(record["reference_index"])]
            offline = chunked_track(setting_chunks(speech, mdn, reference, OFFLINE))[0][:frames]
            for setting, result in measured.items():
                track, seconds = chunked_track(setting_chunks(speech, mdn, reference, setting))
                result.truth.append(landmark_metrics(track[:frames], truth, valid)["lmd_mouth"])
                result.offline.append(landmark_metrics(track[:frames], offline, valid)["lmd_mouth"])
                result.chunk_seconds += seconds
                result.audio_seconds += speech.seconds
    return measured, float(np.mean(evaluated))


def setting_rows(setting: Setting, result: Measured, offline_lmd: float) -> list[Row]:
    """A setting's four figures; a live setting's carry the goals of live readiness."""
    live = setting != OFFLINE
    latency_note = f"{setting.waiting_seconds:.2f} s of audio + {1e3 * np.median(result.chunk_seconds):.0f} ms compute"
    return [
        Row(f"{setting}: mouth LMD against the truth", result.lmd("truth"), "IOD",
            at_most(LMD_MARGIN * offline_lmd) if live else None),
        Row(f"{setting}: mouth LMD against offline", result.lmd("offline"), "IOD"),
        Row(f"{setting}: latency, audio in to frame out", result.latency(setting), "s",
            at_most(MAX_LATENCY) if live else None, latency_note),
        Row(f"{setting}: real-time factor", result.real_time_factor, "x", at_most(1.0) if live else None),
    ]  # fmt: skip


def live_ready(measured: dict[Setting, Measured], offline_lmd: float) -> list[Setting]:
    """The live settings that meet all three goals, fastest first."""
    ready = [
        setting
        for setting, result in measured.items()
        if setting != OFFLINE
        and result.latency(setting) <= MAX_LATENCY
        and result.real_time_factor <= 1.0
        and result.lmd("truth") <= LMD_MARGIN * offline_lmd
    ]
    return sorted(ready, key=lambda setting: measured[setting].latency(setting))


def run(options: Options) -> list[Row]:
    """Every setting's figures, offline first, then the live-ready settings (module docstring)."""
    if not MDN.is_file() or not (SHARDS / "index.json").is_file():
        missing = MDN if not MDN.is_file() else SHARDS
        return [Row.not_measured("live-ready settings", "settings", f"{missing} is missing (make weights, make data)")]
    from lightning_modules.mdn import load_landmark_mdn

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured, evaluated = measure(load_landmark_mdn(MDN), SHARDS, CLIPS, settings())
    finally:
        torch.set_num_threads(threads)
    offline_lmd = measured[OFFLINE].lmd("truth")
    rows = [Row(f"whole clips as make evaluate predicts them ({CLIPS} test clips): mouth LMD", evaluated, "IOD")]
    for setting in settings():
        rows += setting_rows(setting, measured[setting], offline_lmd)
    ready = live_ready(measured, offline_lmd)
    names = "; ".join(str(setting) for setting in ready) or "none"
    rows.append(Row("live-ready settings (latency, real-time factor and LMD goals all met)", len(ready), "settings",
                    note=names))  # fmt: skip
    return rows
