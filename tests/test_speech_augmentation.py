"""Speech augmentation on mel windows (datamodules/speech_augmentation.py): each perturbation does what it names."""

import dataclasses

import numpy as np
import pytest
import torch

from datamodules.audio import audio_windows, mel_spectrogram
from datamodules.speech_augmentation import (
    SpeechAugmentation,
    augment_speech,
    from_decibels,
    mel_centres_hz,
    to_decibels,
)

NOTHING = SpeechAugmentation(**{field.name: 0.0 for field in dataclasses.fields(SpeechAugmentation) if
                                field.name.endswith("probability")})  # fmt: skip


def only(name: str, **ranges) -> SpeechAugmentation:
    return dataclasses.replace(NOTHING, **{f"{name}_probability": 1.0}, **ranges)


def tone_windows(hz: float, level: float = 0.5) -> torch.Tensor:
    """Windows ``[1, 6, 20, 80]`` of a steady sine at ``hz`` (amplitude ``level``) after 0.1 s of digital silence."""
    seconds = np.arange(16000) / 16000
    audio = (level * np.sin(2 * np.pi * hz * seconds) * (seconds >= 0.1)).astype(np.float32)
    mel = mel_spectrogram(audio, 25)
    return torch.from_numpy(audio_windows(mel, np.arange(0, 24, 4)).astype(np.float32))[None]


def peak_hz(windows: torch.Tensor) -> float:
    return float(mel_centres_hz()[windows[0, -1].mean(0).argmax()])


def test_the_decibel_mapping_is_the_mel_features_own_and_no_perturbation_changes_nothing():
    windows = tone_windows(440.0)
    assert torch.allclose(from_decibels(to_decibels(windows)), windows, atol=1e-6)
    assert torch.allclose(augment_speech(windows, NOTHING), windows, atol=1e-5)
    louder = mel_spectrogram(0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype(np.float32), 12)
    quieter = mel_spectrogram(0.05 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype(np.float32), 12)
    peak = louder.mean(0).argmax()
    assert (louder - quieter)[:, peak].mean() == pytest.approx(0.2, abs=0.005), "20 dB is 0.2 of the mel range"


def test_gain_moves_every_audible_cell_by_its_decibels():
    windows = tone_windows(440.0, level=0.05)
    louder = augment_speech(windows, only("gain", gain_db=(10.0, 10.0)))
    audible = (windows > 0) & (windows < 0.85)
    assert torch.allclose((louder - windows)[audible], torch.tensor(0.1), atol=1e-4)


def test_the_vocal_tract_warp_moves_a_spectral_peak_by_its_factor():
    windows = tone_windows(1000.0)
    for factor in (0.87, 1.15):
        warped = augment_speech(windows, only("warp", warp_range=(factor, factor)))
        assert peak_hz(warped) == pytest.approx(1000.0 * factor, rel=0.06)
    assert peak_hz(windows) == pytest.approx(1000.0, rel=0.06)


def test_band_limiting_removes_what_lies_beyond_the_cut():
    high = tone_windows(6000.0)
    limited = augment_speech(high, only("band", lowpass_hz=(3000.0, 3000.0), slope_db_per_octave=(40.0, 40.0)))
    drop = (high - limited)[0, -1].max()
    assert drop == pytest.approx(0.4, abs=0.02), "one octave above the cut at 40 dB per octave"
    low = tone_windows(1000.0)
    passed = augment_speech(low, only("band", lowpass_hz=(3000.0, 3000.0), slope_db_per_octave=(40.0, 40.0)))
    assert torch.allclose(passed[0, -1].amax(-1), low[0, -1].amax(-1), atol=0.01), "the pass band is kept"
    hum = tone_windows(150.0)
    thin = augment_speech(hum, only("band", highpass_hz=(300.0, 300.0), slope_db_per_octave=(40.0, 40.0)))
    peak = hum[0, -1].mean(0).argmax()
    octaves = np.log2(300.0 / float(mel_centres_hz()[peak]))
    assert 0.5 < octaves < 1.5
    drop = (hum - thin)[0, -1, :, peak].mean()
    assert drop == pytest.approx(0.4 * octaves, abs=0.02), "40 dB per octave below the high-pass, at the tone"


def test_noise_fills_digital_silence_at_the_drawn_signal_to_noise_ratio():
    windows = tone_windows(1000.0)
    assert (windows[0, 0, :4] == 0).all(), "the clip starts in digital silence"
    noisy = augment_speech(windows, only("noise", snr_db=(0.0, 0.0), noise_colour=(0.0, 0.0)),
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert (noisy[0, 0, :4] > 0.05).all(), "the silence now has a floor"
    power = lambda w: (10 ** (to_decibels(w) / 10)).mean()  # noqa: E731
    assert (10 * torch.log10(power(noisy) / power(windows))).item() == pytest.approx(3.0, abs=1.0)
    quiet = augment_speech(windows, only("noise", snr_db=(30.0, 30.0)), generator=torch.Generator().manual_seed(0))
    assert (10 * torch.log10(power(quiet) / power(windows))).item() < 0.1


def test_reverberation_leaves_a_decaying_tail_after_the_sound_starts():
    seconds = np.arange(16000) / 16000
    burst = (0.5 * np.sin(2 * np.pi * 500 * seconds) * (seconds < 0.1)).astype(np.float32)
    windows = torch.from_numpy(audio_windows(mel_spectrogram(burst, 25), np.array([4])).astype(np.float32))[None]
    room = augment_speech(windows, only("reverb", rt60_range=(0.5, 0.5), direct_to_reverb_db=(0.0, 0.0)))
    bin_ = windows[0, 0].mean(0).argmax()
    after = slice(13, 20)  # mel frames 110-180 ms: the burst ended at 100 ms
    assert (windows[0, 0, after, bin_] < 0.3).all(), "the dry burst has ended"
    tail = room[0, 0, after, bin_]
    assert (tail > windows[0, 0, after, bin_] + 0.1).all(), "the room keeps it sounding"
    assert (tail[1:] <= tail[:-1] + 1e-6).all(), "and the tail decays"


def test_the_codec_drops_quiet_components_and_keeps_the_loud_ones():
    windows = tone_windows(1000.0)
    coded = augment_speech(windows, only("codec", codec_drop_db=(30.0, 30.0)))
    frame = windows[0, -1, -1]
    loud = frame > frame.max() - 0.3
    assert torch.equal(coded[0, -1, -1][loud], frame[loud])
    assert (coded[0, -1, -1][~loud] == 0).all()


def test_each_sample_gets_its_own_draw_and_a_seed_repeats_it():
    windows = tone_windows(700.0).expand(4, -1, -1, -1).contiguous()
    first = augment_speech(windows, generator=torch.Generator().manual_seed(3))
    again = augment_speech(windows, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert not torch.allclose(first[0], first[1]), "samples of one batch differ"
    assert first.min() >= 0 and first.max() <= 1
