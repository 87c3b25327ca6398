"""A PatchGAN discriminator (pix2pix): a real/fake score per overlapping image patch."""

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """``[B, in_channels, H, W]`` -> patch scores ``[B, 1, H / 2^layers, W / 2^layers]`` (raw, for a hinge loss).

    Strided 4x4 convs with instance norm, widths ``width * 2^k`` capped at ``8 * width``; each score sees a
    patch of about 70 px at ``layers=3``.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for layer in range(1, layers):
            out = width * min(2**layer, 8)
            blocks += [nn.Conv2d(channels, out, 4, 2, 1), nn.InstanceNorm2d(out), nn.LeakyReLU(0.2, inplace=True)]
            channels = out
        blocks += [nn.Conv2d(channels, 1, 3, 1, 1)]
        self.body = nn.Sequential(*blocks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)
