"""The SFE nets (lightning_modules/nets/): shapes, the memory read, the ResNet-18 trunk, the ablation path."""

import copy

import pytest
import torch
import torchvision

from lightning_modules.nets.audio_encoder import AudioEncoder
from lightning_modules.nets.memory import LinearReadout, MemoryBank
from lightning_modules.nets.sfe import SpeechFeatureExtractor
from lightning_modules.nets.visual_encoder import VisualEncoder, resnet18_trunk, stack_layout


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


def overlapping_stacks(clips: int, steps: int, stride: int, size: int = 32) -> torch.Tensor:
    """``[clips, steps, 5, 3, size, size]``: stacks of 5 consecutive frames of random clips, one every ``stride``."""
    video = torch.rand(clips, stride * (steps - 1) + 5, 3, size, size)
    positions = stride * torch.arange(steps)[:, None] + torch.arange(5)[None, :]
    return video[:, positions]


def test_stack_layout_finds_each_distinct_frame_of_overlapping_stacks_once():
    source_step, source_slot, positions = stack_layout(steps=8, frames=5, step_stride=3)
    assert len(source_step) == 26 and positions.shape == (8, 5)  # 8 stacks of 5 hold 26 frames
    stacks = overlapping_stacks(1, 8, 3, size=2)
    distinct = stacks[:, source_step, source_slot]
    assert torch.equal(distinct[:, positions], stacks)


def encoded_frames(encoder: VisualEncoder, frames: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    """The encoder's features of ``frames`` and how many frames its trunk encoded for them."""
    seen = []
    hook = encoder.trunk.register_forward_hook(lambda module, inputs, output: seen.append(len(inputs[0])))
    features = encoder(frames)
    hook.remove()
    return features, sum(seen)


def every_frame_features(encoder: VisualEncoder, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: the encoder's trunk on every slot of ``[B, T, F, 3, H, W]``, each step's features
    concatenated in time order, then its heads."""
    batch, steps = frames.shape[:2]
    features = encoder.trunk((frames.flatten(0, 2) - encoder.mean) / encoder.std).view(batch, steps, -1)
    return encoder.content_head(features), encoder.speaker_head(features)


@pytest.mark.parametrize("stride", [1, 3, 4])
def test_visual_encoder_encodes_shared_frames_once_with_the_same_features_and_gradients(stride):
    torch.manual_seed(0)
    encoder = VisualEncoder(dim=16, width=8, frames=5, head_hidden=32, step_stride=stride).eval()
    reference = copy.deepcopy(encoder)
    frames = overlapping_stacks(clips=2, steps=6, stride=stride)

    (content, speaker), encoded = encoded_frames(encoder, frames)
    want_content, want_speaker = every_frame_features(reference, frames)

    assert encoded == 2 * (stride * 5 + 5)  # each distinct frame once, not 2 * 6 * 5
    torch.testing.assert_close(content, want_content)
    torch.testing.assert_close(speaker, want_speaker)
    (content.square().sum() + speaker.sum()).backward()
    (want_content.square().sum() + want_speaker.sum()).backward()
    for (name, got), want in zip(encoder.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got.grad, want.grad, msg=name)


def test_visual_encoder_encodes_every_slot_when_the_stacks_do_not_overlap():
    encoder = VisualEncoder(dim=16, width=8, frames=5, head_hidden=32, step_stride=3).eval()
    frames = overlapping_stacks(clips=2, steps=4, stride=3)
    frames[1, 2, 0] += 0.01  # one shared frame differs between two stacks
    (content, _), encoded = encoded_frames(encoder, frames)
    assert encoded == 2 * 4 * 5
    torch.testing.assert_close(content, every_frame_features(encoder, frames)[0])


def test_visual_encoder_trunk_runs_channels_last_with_the_features_of_nchw():
    torch.manual_seed(0)
    encoder = VisualEncoder(dim=16, width=8, frames=5, head_hidden=32, step_stride=3).eval()
    nchw = copy.deepcopy(encoder)
    nchw.trunk.to(memory_format=torch.contiguous_format)
    encoder.load_state_dict(nchw.state_dict())  # weights saved NCHW (older checkpoints) load into NHWC
    frames = overlapping_stacks(clips=2, steps=4, stride=3)
    formats = []
    hook = encoder.trunk.conv1.register_forward_hook(
        lambda module, inputs, output: formats.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
    )
    content, speaker = encoder(frames)
    hook.remove()

    assert formats == [True]
    assert encoder.trunk.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    want_content, want_speaker = nchw(frames)
    torch.testing.assert_close(content, want_content, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(speaker, want_speaker, atol=1e-5, rtol=1e-4)


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
