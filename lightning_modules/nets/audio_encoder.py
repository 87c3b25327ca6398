"""The SFE's audio encoder: a 2D conv stack over one mel window, as in the published MACL code."""

import torch
from torch import nn


class ConvBlock(nn.Module):
    """conv-BN-LeakyReLU(0.2); with ``residual`` the input is added before the activation (shapes kept)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int | tuple[int, int] = 1, residual: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.LeakyReLU(0.2)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.conv(x))
        return self.activation(out + x if self.residual else out)


def _strided_size(size: int, stride: int) -> int:
    """Output length of a 3-wide, 1-padded convolution with ``stride``."""
    return (size - 1) // stride + 1


class AudioEncoder(nn.Module):
    """Encodes one ``[window_frames, mel_bins]`` mel window (default ``[20, 80]``) into an ``out_dim`` vector.

    Channels ``width, 2w, 4w, 8w`` with residual blocks, strides (2,4), (2,2), (2,2), then a valid conv whose
    kernel covers what is left of the window (``[3, 5]`` for ``[20, 80]``), so the output is 1x1.
    """

    def __init__(self, out_dim: int = 256, width: int = 32, window_frames: int = 20, mel_bins: int = 80):
        super().__init__()
        strides = [(2, 4), (2, 2), (2, 2)]
        channels = [width, 2 * width, 4 * width, 8 * width]
        layers = [ConvBlock(1, width), ConvBlock(width, width, residual=True)]
        height, length = window_frames, mel_bins
        for in_channels, out_channels, stride in zip(channels[:-1], channels[1:], strides, strict=True):
            layers += [
                ConvBlock(in_channels, out_channels, stride),
                ConvBlock(out_channels, out_channels, residual=True),
            ]
            height, length = _strided_size(height, stride[0]), _strided_size(length, stride[1])
        layers += [
            nn.Conv2d(channels[-1], out_dim, (height, length), bias=False),
            nn.BatchNorm2d(out_dim),
            nn.LeakyReLU(0.2),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """``[N, 20, 80]`` mel windows -> ``[N, out_dim]``."""
        return self.layers(windows.unsqueeze(1)).flatten(1)
