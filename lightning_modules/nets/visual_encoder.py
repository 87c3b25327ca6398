"""The SFE's visual encoder: a ResNet-18 on every frame of the 5-frame stack, with content and speaker heads."""

from collections import OrderedDict

import torch
from einops import rearrange
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


class VisualEncoder(nn.Module):
    """Frame stacks ``[B, T, frames, 3, H, W]`` in [0, 1] -> content and speaker features ``[B, T, dim]``.

    Each frame goes through the shared ResNet-18 trunk alone; the ``frames`` per-frame features of a step are
    concatenated in time order (so lip motion is visible to the heads) and fed to two MLP heads.
    """

    def __init__(self, dim: int = 128, width: int = 64, frames: int = 5, head_hidden: int = 512):
        super().__init__()
        self.trunk = resnet18_trunk(width)
        self.content_head = _head(frames * 8 * width, head_hidden, dim)
        self.speaker_head = _head(frames * 8 * width, head_hidden, dim)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, F, 3, H, W]`` in [0, 1] -> content ``[B, T, dim]``, speaker ``[B, T, dim]``."""
        batch, steps = frames.shape[:2]
        images = rearrange(frames, "b t f c h w -> (b t f) c h w")
        features = self.trunk((images - self.mean) / self.std)  # [B*T*F, 8w]
        stacked = rearrange(features, "(b t f) c -> b t (f c)", b=batch, t=steps)
        return self.content_head(stacked), self.speaker_head(stacked)
