"""The SyncNet of syncnet_python (Chung and Zisserman, "Out of time", 2016): the scorer behind LSE-D / LSE-C.

Written from the published architecture so that the published weights (``syncnet_v2.model``, a plain state dict)
load into it by name: ``netcnnaud`` / ``netfcaud`` embed MFCC windows ``[N, 1, 13, 20]`` (13 coefficients x 20
steps of 10 ms, 0.2 s), ``netcnnlip`` / ``netfclip`` embed 5-frame face stacks ``[N, 3, 5, 224, 224]`` (BGR,
0-255). Both give ``[N, 1024]``. Never scored with random weights: see :mod:`lightning_modules.sync_scoring`.
"""

import torch
from torch import nn

# (kind, in, out, kernel, stride, padding); "pool" rows: (kind, kernel, stride, padding).
AUDIO_LAYERS = [
    ("conv", 1, 64, (3, 3), (1, 1), (1, 1)), ("pool", (1, 1), (1, 1), 0),
    ("conv", 64, 192, (3, 3), (1, 1), (1, 1)), ("pool", (3, 3), (1, 2), 0),
    ("conv", 192, 384, (3, 3), (1, 1), (1, 1)),
    ("conv", 384, 256, (3, 3), (1, 1), (1, 1)),
    ("conv", 256, 256, (3, 3), (1, 1), (1, 1)), ("pool", (3, 3), (2, 2), 0),
    ("conv", 256, 512, (5, 4), (1, 1), (0, 0)),
]  # fmt: skip
LIP_LAYERS = [
    ("conv", 3, 96, (5, 7, 7), (1, 2, 2), 0), ("pool", (1, 3, 3), (1, 2, 2), 0),
    ("conv", 96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), ("pool", (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ("conv", 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("conv", 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ("conv", 256, 256, (1, 3, 3), (1, 1, 1), (0, 1, 1)), ("pool", (1, 3, 3), (1, 2, 2), 0),
    ("conv", 256, 512, (1, 6, 6), (1, 1, 1), 0),
]  # fmt: skip


def _trunk(layers: list[tuple], dims: int) -> nn.Sequential:
    """Conv-BN-ReLU blocks and max pools in the published order (so the state-dict indices match)."""
    conv, norm, pool = (
        (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
    )
    modules: list[nn.Module] = []
    for layer in layers:
        if layer[0] == "conv":
            _, inputs, outputs, kernel, stride, padding = layer
            modules += [conv(inputs, outputs, kernel, stride, padding), norm(outputs), nn.ReLU(inplace=True)]
        else:
            _, kernel, stride, padding = layer
            modules.append(pool(kernel, stride, padding))
    return nn.Sequential(*modules)


def _head(embedding: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embedding))


class SyncNet(nn.Module):
    """Audio (MFCC) and lip (face-stack) embeddings whose Euclidean distance is small for in-sync pairs."""

    def __init__(self, embedding: int = 1024):
        super().__init__()
        self.netcnnaud = _trunk(AUDIO_LAYERS, 2)
        self.netfcaud = _head(embedding)
        self.netcnnlip = _trunk(LIP_LAYERS, 3)
        self.netfclip = _head(embedding)

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """``[N, 1, 13, 20]`` MFCC windows -> ``[N, embedding]``."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, 3, 5, 224, 224]`` BGR 0-255 face stacks -> ``[N, embedding]``."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))
