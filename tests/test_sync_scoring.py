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
    # Reference: python_speech_features.mfcc(int16 samples, 16000) of this signal, frames 0 and 4.
    t = np.arange(1600) / 16000
    signal = np.round((0.5 * np.sin(2 * np.pi * 440 * t) + 0.25 * np.sin(2 * np.pi * 2500 * t)) * 32767) / 32768
    expected = np.array([
        [22.6079, -0.6931, -19.7992, 15.1059, -24.7466, -69.4777, -16.1051, -0.3993, -34.24, 8.082, 41.3565, 0.3411,
         -0.2452],
        [22.6031, 5.3037, -21.6013, 19.8672, -17.5007, -63.2435, -11.4126, 3.1231, -31.3359, 10.7394, 42.3993, 0.322,
         -0.0923],
    ])  # fmt: skip
    features = mfcc(signal)
    assert features.shape == (13, 9)  # 1 + ceil((1600 - 400) / 160) frames
    np.testing.assert_allclose(features[:, [0, 4]].T, expected, atol=2e-3)


def test_syncnet_embeds_both_streams_to_1024():
    net = SyncNet().eval()
    with torch.no_grad():
        assert net.forward_audio(torch.rand(2, 1, 13, 20)).shape == (2, 1024)
        assert net.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)


def test_syncnet_scorer_loads_a_state_dict_and_refuses_others(tmp_path):
    weights = tmp_path / "syncnet_v2.model"
    torch.save(SyncNet().state_dict(), weights)
    scorer = SyncNetScorer(weights)
    crops = np.random.default_rng(0).integers(0, 255, (12, 224, 224, 3), dtype=np.uint8)
    score = scorer.score(crops, np.zeros(12 * 640, np.float32), max_offset=3)
    assert -3 <= score.offset <= 3 and np.isfinite(score.distance)
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
