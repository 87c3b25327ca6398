"""Speech augmentation on mel windows, so that models trained on text-to-speech voices hear microphones too.

The embedded corpus speaks through two TTS engines in digital silence; a person's recording has a noise floor,
a room, a band-limited microphone or codec, another loudness and another vocal tract. Each training sample
(all its windows alike) gets, each with its own probability, a vocal-tract warp of the frequency axis,
reverberation, band limiting, a lossy codec's dropped quiet components, additive coloured noise at a random SNR
and a loudness change. Everything works on the data contract's log-mel windows ``[B, T, 20, 80]`` in [0, 1] on
the batch's device (GPU or CPU), so no waveform has to be stored or decoded again. Tempo is not perturbed: it
would move the speech against the frames it is paired with.
"""

import math
from dataclasses import dataclass

import torch

from datamodules.audio import F_MAX, F_MIN, HOP_LENGTH, MEL_BINS, MIN_LEVEL_DB, REF_LEVEL_DB
from datamodules.media import SAMPLE_RATE

FRAME_SECONDS = HOP_LENGTH / SAMPLE_RATE  # 10 ms between mel frames


@dataclass(frozen=True)
class SpeechAugmentation:
    """Probabilities and ranges of each perturbation (one draw per sample)."""

    warp_probability: float = 0.8
    warp_range: tuple[float, float] = (0.86, 1.16)  # vocal-tract length factor: formants and pitch move with it
    reverb_probability: float = 0.4
    rt60_range: tuple[float, float] = (0.15, 0.8)  # seconds for the reverberant energy to fall 60 dB
    direct_to_reverb_db: tuple[float, float] = (-3.0, 12.0)
    band_probability: float = 0.5
    lowpass_hz: tuple[float, float] = (2800.0, 7400.0)  # telephone to wide-band microphones
    highpass_hz: tuple[float, float] = (60.0, 400.0)
    slope_db_per_octave: tuple[float, float] = (18.0, 48.0)
    codec_probability: float = 0.3
    codec_drop_db: tuple[float, float] = (25.0, 45.0)  # components this far below their frame's peak are dropped
    noise_probability: float = 0.7
    snr_db: tuple[float, float] = (0.0, 35.0)
    noise_colour: tuple[float, float] = (-1.0, 2.0)  # noise power ~ f^-colour: 0 white, 1 pink, 2 brown
    gain_probability: float = 0.9
    gain_db: tuple[float, float] = (-20.0, 10.0)


def to_decibels(windows: torch.Tensor) -> torch.Tensor:
    """Normalised log-mel in [0, 1] -> amplitude in dB (``datamodules.audio``'s mapping undone)."""
    return windows * -MIN_LEVEL_DB + MIN_LEVEL_DB + REF_LEVEL_DB


def from_decibels(decibels: torch.Tensor) -> torch.Tensor:
    """Amplitude in dB -> normalised log-mel in [0, 1] (the floor and ceiling of ``datamodules.audio``)."""
    return ((decibels - REF_LEVEL_DB - MIN_LEVEL_DB) / -MIN_LEVEL_DB).clamp(0.0, 1.0)


def mel_centres_hz(device: torch.device | None = None) -> torch.Tensor:
    """The centre frequency ``[80]`` (Hz) of each mel bin of the data contract (Slaney's mel scale)."""

    def hz_to_mel(hz: float) -> float:
        return hz / (200.0 / 3) if hz < 1000 else 15.0 + math.log(hz / 1000) / (math.log(6.4) / 27)

    mels = torch.linspace(hz_to_mel(F_MIN), hz_to_mel(F_MAX), MEL_BINS + 2, device=device)[1:-1]
    linear = mels * (200.0 / 3)
    return torch.where(mels >= 15.0, 1000 * torch.exp((mels - 15.0) * (math.log(6.4) / 27)), linear)


def _uniform(low: float, high: float, batch: int, device, generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(batch, device=device, generator=generator)


def _chosen(probability: float, batch: int, device, generator) -> torch.Tensor:
    return torch.rand(batch, device=device, generator=generator) < probability


def warp_frequencies(decibels: torch.Tensor, factors: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``[B, T, F, 80]`` with each sample's spectrum stretched by ``factors [B]`` along Hz (a longer or shorter
    vocal tract): bin k takes the level at ``centre_k / factor``, interpolated between bins."""
    source = centres[None] / factors[:, None]  # [B, 80] Hz
    position = torch.searchsorted(centres.contiguous(), source.contiguous()).clamp(1, MEL_BINS - 1)
    low, high = centres[position - 1], centres[position]
    fraction = ((source - low) / (high - low)).clamp(0.0, 1.0)  # edges repeat the outer bins
    index = (position - 1)[:, None, None].expand(*decibels.shape[:-1], MEL_BINS)
    lower, upper = decibels.gather(-1, index), decibels.gather(-1, index + 1)
    return lower + fraction[:, None, None] * (upper - lower)


def reverberate(power: torch.Tensor, rt60: torch.Tensor, direct_to_reverb_db: torch.Tensor) -> torch.Tensor:
    """Power ``[B, T, F, 80]`` (F mel frames per window) plus an exponentially decaying tail of each frame's
    power: a room of ``rt60 [B]`` seconds at ``direct_to_reverb_db [B]``."""
    frames = power.shape[2]
    delays = torch.arange(1, frames, device=power.device, dtype=power.dtype)  # [F - 1]
    decay = torch.exp(-math.log(1e6) * delays[None] * FRAME_SECONDS / rt60[:, None])  # [B, F - 1]
    decay = decay / decay.sum(-1, keepdim=True) * 10 ** (-direct_to_reverb_db[:, None] / 10)
    tail = torch.zeros_like(power)
    for delay in range(1, frames):
        tail[:, :, delay:] += decay[:, delay - 1, None, None, None] * power[:, :, :-delay]
    return power + tail


def band_limit(decibels: torch.Tensor, lowpass: torch.Tensor, highpass: torch.Tensor, slope: torch.Tensor,
               centres: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Attenuates each sample's bins above ``lowpass [B]`` and below ``highpass [B]`` Hz by ``slope [B]`` dB per
    octave (at most 80 dB), as a phone's microphone or a narrow-band codec does."""
    above = torch.log2(centres[None] / lowpass[:, None]).clamp_min(0.0)
    below = torch.log2(highpass[:, None] / centres[None]).clamp_min(0.0)
    attenuation = (slope[:, None] * (above + below)).clamp_max(80.0)  # [B, 80]
    return decibels - attenuation[:, None, None]


def drop_masked(decibels: torch.Tensor, drop_db: torch.Tensor) -> torch.Tensor:
    """A lossy codec's effect: components more than ``drop_db [B]`` below their frame's loudest are removed."""
    threshold = decibels.amax(-1, keepdim=True) - drop_db[:, None, None, None]
    return torch.where(decibels < threshold, torch.full_like(decibels, MIN_LEVEL_DB), decibels)


def add_noise(power: torch.Tensor, snr_db: torch.Tensor, colour: torch.Tensor, centres: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:  # fmt: skip
    """Power ``[B, T, F, 80]`` plus stationary noise of spectrum ~ ``f^-colour`` whose mean power sits ``snr_db``
    below the sample's mean speech power, each cell fluctuating as a band of noise does (log-normal)."""
    shape = (centres[None] / 1000.0) ** -colour[:, None]  # [B, 80]
    shape = shape / shape.mean(-1, keepdim=True)
    speech = power.mean(dim=(1, 2, 3))  # [B]
    level = speech * 10 ** (-snr_db / 10)
    fluctuation = torch.exp(0.35 * torch.randn(power.shape, device=power.device, generator=generator) - 0.06)
    return power + level[:, None, None, None] * shape[:, None, None] * fluctuation


def augment_speech(
    windows: torch.Tensor, settings: SpeechAugmentation = SpeechAugmentation(), generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mel windows ``[B, T, 20, 80]`` in [0, 1] -> the same speech as a random microphone, room and codec would
    give it (module docstring); one draw per sample, on the windows' device."""
    batch, device = windows.shape[0], windows.device
    centres = mel_centres_hz(device)
    silent = windows <= 0.0
    decibels = to_decibels(windows.float())

    def pick(probability: float) -> torch.Tensor:
        return _chosen(probability, batch, device, generator)[:, None, None, None]

    def draw(bounds: tuple[float, float]) -> torch.Tensor:
        return _uniform(*bounds, batch, device, generator)

    warped = warp_frequencies(decibels, draw(settings.warp_range), centres)
    decibels = torch.where(pick(settings.warp_probability), warped, decibels)
    power = torch.where(silent, torch.zeros_like(decibels), 10 ** (decibels / 10))  # the floor holds no energy
    reverberant = reverberate(power, draw(settings.rt60_range), draw(settings.direct_to_reverb_db))
    power = torch.where(pick(settings.reverb_probability), reverberant, power)
    decibels = 10 * torch.log10(power.clamp_min(1e-12))
    limited = band_limit(decibels, draw(settings.lowpass_hz), draw(settings.highpass_hz),
                         draw(settings.slope_db_per_octave), centres)  # fmt: skip
    decibels = torch.where(pick(settings.band_probability), limited, decibels)
    decibels = torch.where(pick(settings.codec_probability), drop_masked(decibels, draw(settings.codec_drop_db)),
                           decibels)  # fmt: skip
    power = 10 ** (decibels / 10)
    noisy = add_noise(power, draw(settings.snr_db), draw(settings.noise_colour), centres, generator)
    power = torch.where(pick(settings.noise_probability), noisy, power)
    decibels = 10 * torch.log10(power.clamp_min(1e-12))
    gain = torch.where(
        pick(settings.gain_probability)[:, 0, 0, 0], draw(settings.gain_db), torch.zeros(batch, device=device)
    )
    return from_decibels(decibels + gain[:, None, None, None]).to(windows.dtype)
