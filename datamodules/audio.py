"""Mel features of the data contract: 80 bins, 20 ms windows, 10 ms hop, exactly 4 mel frames per video frame.

Mel frame ``j`` is centred at ``j * 10 ms``, so video frame ``t`` (``[40 t, 40 t + 40) ms`` at 25 fps) owns mel
frames ``4t .. 4t+3``. The audio window of frame ``t`` is the 20 mel frames (200 ms, 5 video frames) centred on
it, ``4(t-2) .. 4(t+3)-1``, with the clip's edges repeated.
"""

import numpy as np
import torch
import torchaudio

from datamodules.media import FPS, SAMPLE_RATE

MEL_BINS = 80
HOP_LENGTH = 160  # 10 ms
WIN_LENGTH = 320  # 20 ms
N_FFT = 512
F_MIN, F_MAX = 90.0, 7600.0
MELS_PER_FRAME = 4  # (1 / 25 s) / 10 ms
WINDOW_MELS = 20  # 5 video frames
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0

_mel_transform = torchaudio.transforms.MelSpectrogram(
    sample_rate=SAMPLE_RATE,
    n_fft=N_FFT,
    win_length=WIN_LENGTH,
    hop_length=HOP_LENGTH,
    f_min=F_MIN,
    f_max=F_MAX,
    n_mels=MEL_BINS,
    power=1.0,
    norm="slaney",
    mel_scale="slaney",
)


def mel_spectrogram(audio: np.ndarray, frames: int) -> np.ndarray:
    """Log-mel ``[4 * frames, 80]`` in [0, 1] of 16 kHz mono ``audio`` ``[N]`` that goes with ``frames`` video frames.

    The audio is cut or zero-padded to ``frames / 25`` s first, so the mel track and the video stay in lockstep.
    """
    samples_per_frame = SAMPLE_RATE // FPS
    waveform = np.zeros(frames * samples_per_frame, np.float32)
    usable = min(len(audio), len(waveform))
    waveform[:usable] = audio[:usable]
    with torch.no_grad():
        amplitude = _mel_transform(torch.from_numpy(waveform))[:, : frames * MELS_PER_FRAME]  # [80, 4T]
    decibels = 20.0 * torch.log10(amplitude.clamp_min(1e-5)) - REF_LEVEL_DB
    normalised = ((decibels - MIN_LEVEL_DB) / -MIN_LEVEL_DB).clamp(0.0, 1.0)
    return normalised.T.contiguous().numpy()


def audio_windows(mel: np.ndarray, frame_indices: np.ndarray) -> np.ndarray:
    """The 200 ms windows ``[len(frame_indices), 20, 80]`` of ``mel`` ``[4T, 80]`` centred on the given frames."""
    offsets = np.arange(WINDOW_MELS) - 2 * MELS_PER_FRAME  # -8 .. 11
    rows = np.asarray(frame_indices)[:, None] * MELS_PER_FRAME + offsets[None, :]
    return mel[np.clip(rows, 0, len(mel) - 1)]
