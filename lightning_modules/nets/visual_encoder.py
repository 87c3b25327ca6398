"""The SFE's visual encoder: a ResNet-18 on every frame of the 5-frame stack, with content and speaker heads."""

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _resnet_stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Two torchvision ``BasicBlock``s, the first one downsampling when the shape changes."""
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
    return nn.Sequential(
        BasicBlock(in_channels, out_channels, stride, downsample), BasicBlock(out_channels, out_channels)
    )


def resnet18_trunk(width: int = 64) -> nn.Sequential:
    """ResNet-18 without its classifier, channels ``width, 2w, 4w, 8w``, ending in a global average pool.

    At ``width=64`` it is torchvision's ``resnet18`` layer for layer, with the same parameter names, so a
    torchvision ResNet-18 state dict (minus ``fc``) loads into it; a smaller width makes CPU runs fast.
    The adaptive pool makes it work for any input size (96x96 mouths, 256x256 faces).
    """
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False),
            bn1=nn.BatchNorm2d(width),
            relu=nn.ReLU(inplace=True),
            maxpool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            layer1=_resnet_stage(width, width, 1),
            layer2=_resnet_stage(width, 2 * width, 2),
            layer3=_resnet_stage(2 * width, 4 * width, 2),
            layer4=_resnet_stage(4 * width, 8 * width, 2),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
        )
    )


def _head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def stack_layout(steps: int, frames: int, step_stride: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where the distinct frames of ``steps`` stacks of ``frames`` frames, one stack every ``step_stride`` frames,
    sit: ``(source_step, source_slot)`` ``[N]`` (one stack slot holding each of the N distinct frames) and
    ``positions`` ``[steps, frames]`` (the distinct frame in each slot). ``N = step_stride * (steps - 1) + frames``
    when the stacks overlap (``step_stride < frames``)."""
    positions = step_stride * torch.arange(steps)[:, None] + torch.arange(frames)[None, :]  # [T, F]
    distinct = torch.arange(int(positions.max()) + 1)  # [N]
    source_step = (distinct // step_stride).clamp(max=steps - 1)
    return source_step, distinct - step_stride * source_step, positions


class VisualEncoder(nn.Module):
    """Frame stacks ``[B, T, frames, 3, H, W]`` in [0, 1] -> content and speaker features ``[B, T, dim]``.

    Each frame goes through the shared ResNet-18 trunk alone; the ``frames`` per-frame features of a step are
    concatenated in time order (so lip motion is visible to the heads) and fed to two MLP heads.

    With ``step_stride < frames`` consecutive stacks share frames (stride 3: a clip's 8 stacks of 5 hold 26
    distinct frames, not 40). When the input's stacks do overlap so (checked on the pixels, not assumed), the
    trunk encodes each distinct frame once and the stacks are gathered from its features: the same features as
    encoding every slot, 35% fewer frames. In training, the batch-norm statistics then count each frame once.

    The trunk runs channels-last (its weights and the frames, NHWC), which oneDNN and cuDNN convolve faster than
    NCHW: 1.17x the whole training step on 2 CPU cores, side by side (``docs/benchmarks.md``).
    """

    def __init__(
        self, dim: int = 128, width: int = 64, frames: int = 5, head_hidden: int = 512, step_stride: int | None = None
    ):
        super().__init__()
        self.trunk = resnet18_trunk(width).to(memory_format=torch.channels_last)
        self.content_head = _head(frames * 8 * width, head_hidden, dim)
        self.speaker_head = _head(frames * 8 * width, head_hidden, dim)
        self.step_stride = step_stride
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def overlapping(self, frames: torch.Tensor) -> bool:
        """Whether each stack of ``[B, T, F, 3, H, W]`` starts with the last ``F - step_stride`` frames of the one
        before (exactly, pixel for pixel)."""
        stride, steps, per_step = self.step_stride, frames.shape[1], frames.shape[2]
        if stride is None or not 0 < stride < per_step or steps < 2:
            return False
        return torch.equal(frames[:, 1:, : per_step - stride], frames[:, :-1, stride:])

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, F, 3, H, W]`` in [0, 1] -> content ``[B, T, dim]``, speaker ``[B, T, dim]``."""
        batch, steps, per_step = frames.shape[:3]
        if self.overlapping(frames):
            source_step, source_slot, positions = stack_layout(steps, per_step, self.step_stride)
            images = frames[:, source_step, source_slot]  # [B, N, 3, H, W], each distinct frame once
        else:
            positions = torch.arange(steps * per_step).view(steps, per_step)
            images = frames.flatten(1, 2)  # [B, T*F, 3, H, W]
        normalised = ((images.flatten(0, 1) - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        features = self.trunk(normalised)  # [B*N, 8w]
        features = features.view(batch, images.shape[1], -1)[:, positions.to(features.device)]  # [B, T, F, 8w]
        stacked = features.flatten(2)  # [B, T, F*8w], the frames of a step in time order
        return self.content_head(stacked), self.speaker_head(stacked)
