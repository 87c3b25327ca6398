"""Generation in bounded memory: a recording of any length is cut into chunks of video frames.

Each chunk gets its mel windows from its own stretch of audio plus a little context (so they equal those of
the whole recording), the landmark model runs on the chunk plus ``overlap`` frames on each side (so its
recurrent state has context), and consecutive chunks are cross-faded over the overlap (so a sampled track
does not jump at a chunk boundary). Only one chunk's features and landmarks are held at a time.

A live mode bounds the future instead: ``lookahead`` frames after the chunk (``overlap`` before it stays), so the
first frame of a chunk waits for ``chunk + lookahead + MEL_CONTEXT_FRAMES`` frames of audio from its own start
(``experiments/bench/lookahead.py`` measures what each look-ahead costs in latency and lip accuracy). Recomputing
the past context costs most of a small chunk's time; ``live_landmark_chunks`` instead hands a stateful model
(``lightning_modules.mdn_live.LiveLandmarks``) each frame's mel window once and keeps no context here.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from datamodules import face
from datamodules.audio import MELS_PER_FRAME, audio_windows, mel_spectrogram
from datamodules.media import FPS, SAMPLE_RATE, Speech

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
# Video frames of audio on each side of a chunk for its mel windows: 2 before and 3 after for the 200 ms
# window, and one more so that the STFT's edge padding (256 samples) never reaches a row that is used.
MEL_CONTEXT_FRAMES = 4
CHUNK_FRAMES = 250  # 10 s
OVERLAP_FRAMES = 25  # 1 s

# (audio windows [1, n, 20, 80], chunk index) -> registered landmarks [n, 68, 3], relative pose [n, 6]
Predictor = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
# (audio windows [1, n, 20, 80] of the frames heard since the last call, frames to emit f) -> registered landmarks
# [f, 68, 3], relative pose [f, 6] of the next f frames; a stateful model keeps what it heard after them as look-ahead
LiveStep = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def audio_features(speech: Speech, start: int, stop: int) -> np.ndarray:
    """The 200 ms mel windows ``[stop - start, 20, 80]`` of video frames ``start .. stop - 1`` of ``speech``,
    computed from their own stretch of audio: equal to those of the whole recording."""
    total = speech.frames
    low, high = max(0, start - MEL_CONTEXT_FRAMES), min(total, stop + MEL_CONTEXT_FRAMES)
    waveform = speech.read(low * SAMPLES_PER_FRAME, (high - low) * SAMPLES_PER_FRAME)
    mel = mel_spectrogram(waveform, high - low)  # rows 4 * low .. 4 * high - 1 of the whole recording's mel
    offsets = np.arange(20) - 2 * MELS_PER_FRAME
    rows = np.clip(np.arange(start, stop)[:, None] * MELS_PER_FRAME + offsets, 0, total * MELS_PER_FRAME - 1)
    return mel[rows - low * MELS_PER_FRAME]


def whole_audio_features(audio: np.ndarray) -> np.ndarray:
    """The mel windows ``[T, 20, 80]`` of a whole 16 kHz recording ``[N]`` at once (T frames cover it)."""
    frames = -(-len(audio) // SAMPLES_PER_FRAME)
    return audio_windows(mel_spectrogram(audio, frames), np.arange(frames))


@dataclass(frozen=True)
class Chunk:
    """Video frames ``start .. stop - 1`` with their landmarks: ``registered`` ``[n, 68, 3]``, ``pose`` ``[n, 6]``."""

    index: int
    start: int
    stop: int
    registered: np.ndarray
    pose: np.ndarray

    def image_landmarks(self, reference_pose: np.ndarray, depth: float = 0.0) -> np.ndarray:
        """Image-space landmarks ``[n, 68, 3]`` of the chunk for a face placed as ``reference_pose`` ``[6]`` (the
        photo's absolute pose; the landmark model's pose is relative to it), depth translation ``depth``."""
        return face.unregister(self.registered, face.absolute_pose(self.pose, reference_pose), depth=depth)


def landmark_chunks(
    speech: Speech,
    predict: Predictor,
    chunk: int = CHUNK_FRAMES,
    overlap: int = OVERLAP_FRAMES,
    lookahead: int | None = None,
) -> Iterator[Chunk]:
    """Landmarks of every video frame of ``speech``, one chunk of ``chunk`` frames at a time, with ``overlap``
    frames of context before each chunk and ``lookahead`` after it (None: ``overlap``; module docstring)."""
    total = speech.frames
    lookahead = overlap if lookahead is None else lookahead
    tail_registered = tail_pose = None
    for index, start in enumerate(range(0, total, chunk)):
        stop = min(start + chunk, total)
        low, high = max(0, start - overlap), min(total, stop + lookahead)
        registered, pose = predict(audio_features(speech, low, high)[None], index)
        registered, pose = np.asarray(registered, np.float32), np.asarray(pose, np.float32)
        if tail_registered is not None:
            blend = min(len(tail_registered), stop - start)
            weight = ((np.arange(blend) + 1.0) / (blend + 1.0)).astype(np.float32)
            core = slice(start - low, start - low + blend)
            registered[core] = (
                weight[:, None, None] * registered[core] + (1 - weight[:, None, None]) * tail_registered[:blend]
            )
            pose[core] = weight[:, None] * pose[core] + (1 - weight[:, None]) * tail_pose[:blend]
        tail_registered, tail_pose = registered[stop - low :], pose[stop - low :]
        yield Chunk(index, start, stop, registered[start - low : stop - low], pose[start - low : stop - low])


def live_landmark_chunks(speech: Speech, step: LiveStep, chunk: int, lookahead: int) -> Iterator[Chunk]:
    """Landmarks of every video frame of ``speech``, one chunk of ``chunk`` frames at a time, from a stateful
    ``step`` that has heard ``lookahead`` frames after the chunk: each frame's mel windows are computed and handed
    over once, so no past context is recomputed (the model carries it)."""
    total, heard = speech.frames, 0
    for index, start in enumerate(range(0, total, chunk)):
        stop = min(start + chunk, total)
        high = min(total, stop + lookahead)
        registered, pose = step(audio_features(speech, heard, high)[None], stop - start)
        heard = high
        yield Chunk(index, start, stop, np.asarray(registered, np.float32), np.asarray(pose, np.float32))
