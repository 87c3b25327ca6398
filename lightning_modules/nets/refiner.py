"""The renderer's learned refinement: a small U-Net that paints what a warp cannot (mouth interior, teeth).

It starts at half resolution (a strided first conv) and comes back to full resolution only in its output
conv, so a 256x256 frame costs about half a GMAC at ``width=16``: cheap on a CPU.
"""

import torch
import torch.nn.functional as F
from torch import nn


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1), nn.LeakyReLU(0.2, inplace=True))


class ResidualBlock(nn.Module):
    """Two 3x3 convs with a skip connection, at a constant width."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.body(x), 0.2)


class RefinementUNet(nn.Module):
    """``[B, in_channels, H, W]`` -> ``[B, out_channels, H, W]`` raw outputs (H, W divisible by 2^levels).

    Encoder widths ``width * 2^min(level, 2)`` at H/2 ... H/2^levels, residual blocks at the bottom, decoder
    with skip connections back to H/2, then an upsample and a 3x3 conv on the full-resolution input.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 16, levels: int = 4, blocks: int = 1):
        super().__init__()
        widths = [width * 2 ** min(level, 2) for level in range(levels)]
        self.down = nn.ModuleList(
            _conv(in_channels if level == 0 else widths[level - 1], widths[level], stride=2) for level in range(levels)
        )
        self.bottom = nn.Sequential(*(ResidualBlock(widths[-1]) for _ in range(blocks)))
        self.up = nn.ModuleList(
            _conv(widths[level + 1] + widths[level], widths[level]) for level in reversed(range(levels - 1))
        )
        self.out = nn.Conv2d(widths[0] + in_channels, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips, feature = [], x
        for down in self.down:
            feature = down(feature)
            skips.append(feature)
        feature = self.bottom(feature)
        for up, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            feature = F.interpolate(feature, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            feature = up(torch.cat([feature, skip], 1))
        feature = F.interpolate(feature, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(torch.cat([feature, x], 1))
