"""Speech of the embedded corpus: English sentences spoken offline by the engines of ``engines`` (piper's neural
voice, espeak-ng's variants), with the start and end of every phoneme, transformed into each pseudo-speaker's
voice: tract length and pitch together by resampling (``tract``), speaking rate and loudness.
"""

import functools
from dataclasses import dataclass

import numpy as np
from scipy import signal

from datamodules.corpus import CorpusError
from datamodules.media import SAMPLE_RATE
from datamodules.synthetic.engines import espeak_sentence, piper_sentence
from datamodules.synthetic.sentences import HARVARD

ENGINES = ("piper", "espeak")


@dataclass(frozen=True)
class Voice:
    """How one pseudo-speaker sounds: engine and variant, espeak pitch, tract scale, speaking rate, loudness."""

    engine: str  # piper | espeak
    variant: str  # piper: "joe"; espeak: a voice name with a variant, e.g. "en-us+m3"
    pitch: int  # espeak pitch parameter 0-100 (piper keeps its own)
    tract: float  # all frequencies (formants and pitch) scale by this: a shorter (> 1) or longer (< 1) tract
    rate: float  # speaking rate over the engine's normal one
    gain_db: float  # peak level of the clip, dB below full scale

    @property
    def name(self) -> str:
        return f"{self.engine}:{self.variant}"


@dataclass
class Utterance:
    """Speech of one clip at SAMPLE_RATE: audio, timed phonemes (IPA, "" is silence) and timed words."""

    audio: np.ndarray  # [N] float32
    phonemes: list[tuple[str, float, float]]  # symbol (stress mark kept in front), start s, end s; tiles the clip
    words: list[tuple[str, float, float]]
    text: str


# ---------------------------------------------------------------------------------------------------------
# A voice's sentence at the corpus rate, and a clip of several sentences


@functools.lru_cache(maxsize=256)
def speak_sentence(voice: Voice, sentence: str):
    """``(audio [N] float32 at SAMPLE_RATE, phonemes, words)`` of one sentence in ``voice`` (times in seconds).

    The engine speaks ``voice.tract / voice.rate`` times slower; resampling its output by ``1 / tract`` raises
    every frequency by ``tract`` and brings the rate to ``voice.rate``.
    """
    stretch = voice.tract / voice.rate
    if voice.engine == "piper":
        audio, rate, phonemes, words = piper_sentence(sentence, stretch)
    elif voice.engine == "espeak":
        audio, rate, phonemes, words = espeak_sentence(sentence, voice.variant, voice.pitch, int(round(175 / stretch)))
    else:
        raise CorpusError(f"Unknown speech engine {voice.engine!r}; choose one of {', '.join(ENGINES)}.")
    scale = 1.0 / voice.tract
    length = int(round(len(audio) * SAMPLE_RATE / rate * scale))
    audio = signal.resample(np.pad(audio, (0, 256)), length + int(round(256 * SAMPLE_RATE / rate * scale)))[:length]
    phonemes = [(symbol, start * scale, end * scale) for symbol, start, end in phonemes]
    words = [(word, start * scale, end * scale) for word, start, end in words]
    return audio.astype(np.float32), phonemes, words


def speak_clip(rng: np.random.Generator, voice: Voice, seconds: float) -> Utterance:
    """Harvard sentences in ``voice`` with pauses, filling ``seconds``; the last is cut after a word that fits.

    A clip opens with a short silence, and ends with one too. Even a clip too short for a whole word says the
    beginning of one.
    """
    total = int(round(seconds * SAMPLE_RATE))
    audio = np.zeros(total, np.float32)
    phonemes: list[tuple[str, float, float]] = []
    words: list[tuple[str, float, float]] = []
    time = rng.uniform(0.12, 0.35)
    end_room = seconds - 0.1
    for sentence in rng.permutation(HARVARD):
        if time > end_room - 0.3:
            break
        sound, spoken, spans = speak_sentence(voice, str(sentence))
        length = len(sound) / SAMPLE_RATE
        if time + length > end_room:
            fitting = [end for _, _, end in spans if time + end <= end_room]
            if fitting:
                length = fitting[-1] + 0.02
            elif words:
                break
            else:
                length = end_room - time
            spoken = [(symbol, start, min(end, length)) for symbol, start, end in spoken if start < length]
            spans = [(word, start, min(end, length)) for word, start, end in spans if start < length]
        count = int(round(length * SAMPLE_RATE))
        first = int(round(time * SAMPLE_RATE))
        count = min(count, total - first)
        fade = np.minimum(1.0, np.arange(count)[::-1] / (0.015 * SAMPLE_RATE))
        audio[first : first + count] += sound[:count] * fade
        phonemes += [(symbol, time + start, time + end) for symbol, start, end in spoken]
        words += [(word, time + start, time + end) for word, start, end in spans]
        time += length + rng.uniform(0.25, 0.6)
    peak = np.abs(audio).max() + 1e-9
    audio = audio / peak * 0.95 * 10 ** (voice.gain_db / 20) + 3e-4 * rng.standard_normal(total).astype(np.float32)
    return Utterance(audio.astype(np.float32), _tile(phonemes, seconds), words, " ".join(word for word, _, _ in words))


def _tile(phonemes: list[tuple[str, float, float]], seconds: float) -> list[tuple[str, float, float]]:
    """The phonemes with silences ("") filling every gap, adjacent silences merged, rounded to the millisecond."""
    tiled: list[list] = []
    time = 0.0
    for symbol, start, end in sorted(phonemes, key=lambda phoneme: phoneme[1]):
        start, end = max(start, time), min(end, seconds)
        if end <= start:
            continue
        if start > time:
            tiled.append(["", time, start])
        tiled.append([symbol, start, end])
        time = end
    if time < seconds:
        tiled.append(["", time, seconds])
    merged: list[list] = []
    for symbol, start, end in tiled:
        if merged and symbol == "" and merged[-1][0] == "":
            merged[-1][2] = end
        else:
            merged.append([symbol, start, end])
    rounded: list[tuple[str, float, float]] = []
    for symbol, _, end in merged:
        start, end = (rounded[-1][2] if rounded else 0.0), round(end, 4)
        if end > start:
            rounded.append((symbol, start, end))
    return rounded


def median_pitch(audio: np.ndarray, low: float = 60.0, high: float = 400.0) -> float:
    """Median F0 (Hz) of the voiced 40 ms frames of ``audio [N]`` at SAMPLE_RATE, by normalised autocorrelation."""
    frame, hop = int(0.04 * SAMPLE_RATE), int(0.01 * SAMPLE_RATE)
    lags = np.arange(int(SAMPLE_RATE / high), int(SAMPLE_RATE / low) + 1)
    level = np.abs(audio).max() + 1e-9
    pitches = []
    for start in range(0, len(audio) - frame - lags[-1], hop):
        chunk = audio[start : start + frame]
        if np.sqrt(np.mean(chunk**2)) < 0.05 * level:
            continue
        shifted = np.stack([audio[start + lag : start + lag + frame] for lag in lags])
        correlation = shifted @ chunk / (np.linalg.norm(shifted, axis=1) * np.linalg.norm(chunk) + 1e-9)
        best = int(np.argmax(correlation))
        if correlation[best] > 0.75:
            pitches.append(SAMPLE_RATE / lags[best])
    return float(np.median(pitches)) if pitches else 0.0
