"""Speech for generation: a recording of any format and length decoded to a 16 kHz mono WAV, read in pieces."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from datamodules.media.reading import (
    FPS,
    SAMPLE_RATE,
    MediaError,
    last_error_line,
    non_finite_audio,
    probe,
    run_ffmpeg,
)

MIN_SPEECH_SECONDS = 0.5
SILENT_PEAK = 1e-4  # speech whose absolute peak stays below this is silent
DAMAGED_PEAK = 1e3  # float samples this far beyond full scale are not sound: their mel spectrogram overflows
_SCAN_BLOCK = 1 << 20  # samples read at a time when a whole speech file is scanned


@dataclass(frozen=True)
class Speech:
    """A speech recording decoded to a 16 kHz mono float32 WAV file (``wav``), read in pieces on demand so
    that a long recording never has to fit in memory; ``source`` is the file the user gave."""

    source: Path
    wav: Path
    samples: int

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def frames(self) -> int:
        """Video frames at 25 fps that cover the speech: the video is at most one frame longer than it."""
        return -(-self.samples // (SAMPLE_RATE // FPS))

    def read(self, start: int, count: int) -> np.ndarray:
        """Samples ``[count]`` float32 from ``start``; zeros before the start and after the end."""
        out = np.zeros(count, np.float32)
        first, last = max(start, 0), min(start + count, self.samples)
        if last > first:
            with soundfile.SoundFile(self.wav) as stream:
                stream.seek(first)
                out[first - start : last - start] = stream.read(last - first, dtype="float32")
        return out


def decode_speech(path: str | Path, wav: str | Path) -> Speech:
    """Decodes the first audio stream of ``path`` (any format, rate and channel count ffmpeg reads) into a
    16 kHz mono float32 WAV at ``wav``; raises MediaError with one sentence when the file cannot be read, holds
    no audio, lasts under 0.5 s, holds NaN, infinite or absurdly large samples (a damaged float recording), or is
    silent."""
    path, wav = Path(path), Path(wav)
    info = probe(path)
    if not info.has_audio:
        raise MediaError(f"{path} has no audio track.")
    result = run_ffmpeg("-v", "error", "-y", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE),
                     "-c:a", "pcm_f32le", "-f", "wav", str(wav))  # fmt: skip
    if result.returncode != 0 or not wav.is_file():
        raise MediaError(f"{path}: the audio does not decode ({last_error_line(result.stderr)}).")
    samples = soundfile.info(str(wav)).frames
    if samples < MIN_SPEECH_SECONDS * SAMPLE_RATE:
        raise MediaError(
            f"{path} holds {samples / SAMPLE_RATE:.2f} s of audio; at least {MIN_SPEECH_SECONDS:g} s are needed."
        )
    peak, broken, first_broken, start = 0.0, 0, 0, 0
    for block in soundfile.blocks(str(wav), blocksize=_SCAN_BLOCK, dtype="float32"):
        finite = np.isfinite(block)
        if not finite.all():
            first_broken = first_broken if broken else start + int(np.argmin(finite))
            broken += int((~finite).sum())
        peak = max(peak, float(np.abs(block[finite]).max(initial=0.0)))
        start += len(block)
    if broken:
        raise MediaError(non_finite_audio(path, broken, first_broken))
    if peak > DAMAGED_PEAK:
        raise MediaError(
            f"{path} peaks at {peak:.1e} times full scale, which is no sound: the recording is damaged; export it "
            "again."
        )
    if peak < SILENT_PEAK:
        raise MediaError(f"{path} is silent (its loudest sample is {peak:.1e} of full scale).")
    return Speech(path, wav, samples)
