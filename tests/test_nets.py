"""The SFE nets (lightning_modules/nets/): shapes, the memory read, the ResNet-18 trunk, the ablation path."""

import pytest
import torch
import torchvision

from lightning_modules.nets.audio_encoder import AudioEncoder
from lightning_modules.nets.memory import LinearReadout, MemoryBank
from lightning_modules.nets.sfe import SpeechFeatureExtractor
from lightning_modules.nets.visual_encoder import VisualEncoder, resnet18_trunk


@pytest.mark.parametrize(("window_frames", "mel_bins"), [(20, 80), (16, 64)])
def test_audio_encoder_maps_a_window_to_one_vector(window_frames, mel_bins):
    encoder = AudioEncoder(out_dim=48, width=8, window_frames=window_frames, mel_bins=mel_bins)
    assert encoder(torch.rand(6, window_frames, mel_bins)).shape == (6, 48)


def test_memory_read_is_the_addressing_weighted_sum_of_slots():
    memory = MemoryBank(state_dim=12, slots=7, dim=5, hidden=16)
    read, addressing = memory(torch.randn(3, 4, 12))

    assert read.shape == (3, 4, 5) and addressing.shape == (3, 4, 7)
    assert (addressing >= 0).all()
    torch.testing.assert_close(addressing.sum(-1), torch.ones(3, 4))
    torch.testing.assert_close(read, torch.einsum("bnk,kd->bnd", addressing, memory.slots))


def test_memory_read_stays_in_the_slots_convex_hull():
    memory = MemoryBank(state_dim=4, slots=3, dim=2, hidden=8)
    with torch.no_grad():
        memory.slots.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    read, _ = memory(100 * torch.randn(50, 4))
    assert (read >= 0).all() and (read.sum(-1) <= 1 + 1e-6).all()


def test_linear_readout_has_the_memory_interface_without_addressing():
    read, addressing = LinearReadout(state_dim=12, dim=5)(torch.randn(3, 4, 12))
    assert read.shape == (3, 4, 5) and addressing is None


def test_resnet18_trunk_is_torchvision_resnet18_at_width_64():
    reference = torchvision.models.resnet18(weights=None)
    weights = {name: value for name, value in reference.state_dict().items() if not name.startswith("fc.")}
    trunk = resnet18_trunk(64)
    trunk.load_state_dict(weights)  # strict: same names and shapes
    reference.fc = torch.nn.Identity()
    reference.eval(), trunk.eval()
    images = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(trunk(images), reference(images))


@pytest.mark.parametrize("size", [48, 96])
def test_visual_encoder_gives_content_and_speaker_features_for_any_size(size):
    encoder = VisualEncoder(dim=16, width=8, frames=5, head_hidden=32)
    content, speaker = encoder(torch.rand(2, 3, 5, 3, size, size))
    assert content.shape == speaker.shape == (2, 3, 16)


@pytest.mark.parametrize("memory", [True, False])
def test_speech_feature_extractor_shapes(memory):
    net = SpeechFeatureExtractor(
        audio_dim=32, audio_width=8, gru_hidden=16, feature_dim=12, memory=memory, memory_slots=9, memory_hidden=20
    )
    out = net(torch.rand(2, 6, 20, 80))
    assert out["content"].shape == out["speaker"].shape == (2, 6, 12)
    for name in ("content_addressing", "speaker_addressing"):
        assert (out[name].shape == (2, 6, 9)) if memory else out[name] is None


def test_speech_feature_extractor_is_bidirectional_over_time():
    net = SpeechFeatureExtractor(audio_dim=16, audio_width=4, gru_hidden=8, memory_slots=4, memory_hidden=8).eval()
    audio = torch.rand(1, 5, 20, 80)
    changed = audio.clone()
    changed[:, -1] = torch.rand(20, 80)
    with torch.no_grad():
        before, after = net(audio)["content"], net(changed)["content"]
    assert not torch.allclose(before[:, 0], after[:, 0]), "the first step should see the future through the GRU"
