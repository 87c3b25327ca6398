"""Video metrics against known values: SSIM/PSNR, CPBD sharpness, the weight-free mouth-audio sync."""

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from lightning_modules.video_metrics import (
    PSNR_CAP,
    cpbd,
    image_quality,
    lagged_correlation,
    mouth_audio_sync,
    speech_envelope,
)


def test_identical_images_give_ssim_one_and_the_psnr_cap():
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    quality = image_quality(images, images.clone())
    assert torch.allclose(quality["ssim"], torch.ones(3))
    assert torch.equal(quality["psnr"], torch.full((3,), PSNR_CAP))


def test_psnr_of_a_known_error():
    target = torch.full((1, 3, 32, 32), 0.5)
    quality = image_quality(target + 0.1, target)  # MSE 0.01 -> 20 dB
    assert quality["psnr"].item() == pytest.approx(20.0, abs=1e-3)
    assert quality["ssim"].item() < 1.0


def test_cpbd_falls_with_blur():
    """The sharp astronaut scores what the published Python port gives for it (``cpbd.compute`` of cpbd-py312
    1.0.3 on the same gray image: 0.4356; not a dependency, the figure is quoted), and each blur step lowers the
    score by a good part of what is left."""
    sharp = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    scores = [cpbd(sharp if sigma == 0 else cv2.GaussianBlur(sharp, (0, 0), sigma)) for sigma in (0, 0.5, 1, 2)]
    assert scores[0] == pytest.approx(0.4356, abs=0.01), scores
    assert scores[1] < 0.8 * scores[0] and scores[2] < 0.5 * scores[1] and scores[3] <= 0.5 * scores[2], scores
    assert cpbd(np.full((128, 128), 120, np.uint8)) == 0.0  # no edges: nothing to judge


def test_lagged_correlation_finds_a_known_lag():
    rng = np.random.default_rng(0)
    visual = rng.standard_normal(80)
    acoustic = np.roll(visual, 4)  # acoustic[t + 4] == visual[t]
    correlations = lagged_correlation(visual, acoustic, max_offset=6)
    assert int(np.nanargmax(correlations)) - 6 == 4
    assert correlations[6 + 4] == pytest.approx(1.0)


def _shifted(audio: np.ndarray, frames: int) -> np.ndarray:
    """``audio`` delayed by ``frames`` video frames (silence in front), same length."""
    delayed = np.zeros_like(audio)
    delayed[frames * 640 :] = audio[: len(audio) - frames * 640]
    return delayed


def test_mouth_audio_sync_finds_a_three_frame_delay(synthetic_corpus):
    from datamodules.media import read_clip
    from experiments.evaluation.measure import mouth_opening_track, track_faces

    frames, audio = read_clip(sorted(synthetic_corpus.rglob("*.mp4"))[0])
    opening = mouth_opening_track(track_faces(frames))
    aligned = mouth_audio_sync(opening, speech_envelope(audio, len(frames)))
    delayed = mouth_audio_sync(opening, speech_envelope(_shifted(audio, 3), len(frames)))
    assert delayed["offset"] - aligned["offset"] == 3
    assert abs(aligned["offset"]) <= 1
    assert aligned["correlation"] > delayed["correlation"]
