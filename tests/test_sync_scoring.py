"""Sync scoring: the offset search, SyncNet's MFCC and weights loading, and the project's own sync expert."""

import numpy as np
import pytest
import torch

from lightning_modules.checkpoints import CheckpointError
from lightning_modules.nets.syncnet import SyncNet
from lightning_modules.sync_scoring import SyncNetScorer, mfcc, offset_search, syncnet_crop


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_offset_search_finds_a_known_audio_delay(metric):
    visual = torch.randn(60, 16, generator=torch.Generator().manual_seed(0))
    audio = torch.roll(visual, 4, dims=0)  # the audio comes 4 frames late
    score = offset_search(visual, audio, max_offset=15, metric=metric)
    assert score.offset == 4
    assert score.confidence > 0
    assert score.distance < score.distance_at_zero
    aligned = offset_search(visual, visual, max_offset=15, metric=metric)
    assert aligned.offset == 0 and aligned.distance == pytest.approx(aligned.distance_at_zero)


def test_mfcc_matches_python_speech_features():
    """The reference is the package SyncNet's scoring script calls (a dev dependency), on 16-bit sample values as
    that script reads them, over every frame of a chirp with noise and a silent stretch."""
    from python_speech_features import mfcc as reference_mfcc

    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    signal = 0.4 * np.sin(2 * np.pi * (200 + 3000 * t) * t) + 0.05 * rng.standard_normal(len(t))
    signal[3000:4000] = 0.0
    signal = np.round(signal * 32767) / 32768
    features = mfcc(signal)
    expected = reference_mfcc(signal * 32768, 16000).T  # [13, frames]
    assert features.shape == expected.shape == (13, 49)  # 1 + ceil((8000 - 400) / 160) frames
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=2e-3)


def test_syncnet_embeds_both_streams_to_1024():
    net = SyncNet().eval()
    with torch.no_grad():
        assert net.forward_audio(torch.rand(2, 1, 13, 20)).shape == (2, 1024)
        assert net.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)


def test_syncnet_scorer_loads_a_state_dict_and_refuses_others(tmp_path):
    """The scorer runs the weights of the file it was given (not a fresh net): two files of two nets give two
    scores, the same file twice the same score."""
    weights, other = tmp_path / "syncnet_v2.model", tmp_path / "other_syncnet.model"
    torch.manual_seed(0)
    saved = SyncNet().state_dict()
    torch.save(saved, weights)
    torch.save(SyncNet().state_dict(), other)
    scorer = SyncNetScorer(weights)
    for name, value in scorer.net.state_dict().items():
        assert torch.equal(value, saved[name]), name
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (12, 224, 224, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(12 * 640)).astype(np.float32)
    score = scorer.score(crops, audio, max_offset=3)
    assert score.distance_at_zero == SyncNetScorer(weights).score(crops, audio, max_offset=3).distance_at_zero
    assert score.distance_at_zero != SyncNetScorer(other).score(crops, audio, max_offset=3).distance_at_zero
    wrong = tmp_path / "other.model"
    torch.save({"weight": torch.zeros(3)}, wrong)
    with pytest.raises(CheckpointError, match="not a SyncNet state dict"):
        SyncNetScorer(wrong)
    with pytest.raises(CheckpointError, match="does not exist"):
        SyncNetScorer(tmp_path / "missing.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        SyncNetScorer(garbage)


def test_syncnet_crop_is_224_square_around_the_face():
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[80:120, 130:170] = 255  # the "face"
    crop = syncnet_crop(frame, (150.0, 100.0, 20.0))
    assert crop.shape == (224, 224, 3)
    assert crop[60:120, 80:140].mean() > 200  # the face sits in the upper middle of the crop


@pytest.mark.slow
def test_sfe_sync_expert_prefers_aligned_audio_on_held_out_speakers(embedded_shards, tmp_path):
    """A FAST stage-1 run of its own seed, used as the sync expert, scores each held-out (test-speaker) clip better
    with its own audio than with the audio delayed by 5 frames, and finds the delay."""
    from litdata import StreamingDataset

    from datamodules.audio import audio_windows
    from datamodules.shards import decode_frames
    from lightning_modules.sync_scoring import SFESyncExpert
    from tests.trainer import fast_fit

    fast_fit(tmp_path, "sfe", "expert", "--seed_everything", "7", "--data.shards", str(embedded_shards))
    expert = SFESyncExpert(tmp_path / "sfe" / "expert" / "checkpoints" / "last.ckpt")
    better, found = [], []
    dataset = StreamingDataset(str(embedded_shards / "test"), shuffle=False)
    for position in range(len(dataset)):
        record = dataset[position]
        frames = np.arange(record["frames"])
        stacks = np.clip(frames[:, None] + np.arange(-2, 3)[None], 0, len(frames) - 1)
        crops = torch.from_numpy(decode_frames(record, "mouth", stacks)).movedim(-1, -3).float() / 255
        aligned = expert.score(torch.from_numpy(audio_windows(record["mel"], frames)).float(), crops)
        delayed_audio = torch.from_numpy(audio_windows(record["mel"], np.clip(frames - 5, 0, None))).float()
        delayed = expert.score(delayed_audio, crops)
        better.append(aligned.distance_at_zero < delayed.distance_at_zero)
        found.append(abs(delayed.offset - 5) <= 1)
    assert np.mean(better) >= 0.8, f"aligned scored better on {np.mean(better):.0%} of {len(better)} held-out clips"
    assert np.mean(found) >= 0.5, f"the 5-frame delay was found on {np.mean(found):.0%} of the clips"
