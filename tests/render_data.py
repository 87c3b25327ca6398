"""Synthetic stage-3 batches for the renderer tests: RenderBatch tensors built on the fly from a seed.

A reference is a smooth random colour field with a face's 68 landmarks (the canonical face, jittered); the
target moves the landmarks (a head shift and an opened jaw), warps the reference along with them by a
thin-plate spline, and paints the open mouth dark: a warp explains everything but the mouth interior.
"""

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.face import CANONICAL_FACE
from lightning_modules.nets.sketch import LandmarkSketch
from lightning_modules.nets.warp import tps_sampling_grid, warp

LOWER_FACE = [*range(4, 13), *range(55, 60), *range(65, 68)]  # jaw, lower outer and inner lips


class SyntheticRenderPairs(Dataset):
    """``count`` deterministic reference/target pairs of ``size`` px crops."""

    def __init__(self, count: int, size: int = 64, seed: int = 0):
        self.count, self.size, self.seed = count, size, seed
        self.inside = LandmarkSketch(size, size, sigma=1.0)._inside

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + index)
        size = self.size
        colours = torch.rand(1, 3, 6, 6, generator=generator)
        reference = F.interpolate(colours, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        canonical = torch.from_numpy(CANONICAL_FACE).clone()
        canonical[60:68, 1] = canonical[60:68, 1].mean()  # a closed mouth
        landmarks = canonical * 0.4 * size + torch.tensor([size / 2, size / 2, 0.0])
        landmarks = landmarks + 0.01 * size * torch.randn(68, 3, generator=generator)
        target = landmarks.clone()
        target[:, :2] += 0.04 * size * (2 * torch.rand(2, generator=generator) - 1)
        opening = 0.12 * size * torch.rand((), generator=generator)
        target[LOWER_FACE, 1] += opening
        grid = tps_sampling_grid(landmarks[None, :, :2], target[None, :, :2], size, grid_size=size)
        image = warp(reference, grid)[0]
        mouth = self.inside(target[None, 60:68, :2])[0]  # [S, S]
        image = torch.where(mouth > 0, torch.tensor([0.15, 0.05, 0.05])[:, None, None], image)
        return {
            "reference": reference[0],
            "target": image,
            "reference_landmarks": landmarks,
            "target_landmarks": target,
            "speaker": torch.tensor(index % 4),
        }


class SyntheticRenderData(LightningDataModule):
    """Train and validation splits of :class:`SyntheticRenderPairs` (different seeds)."""

    def __init__(self, size: int = 64, batch_size: int = 4, train_pairs: int = 32, val_pairs: int = 8):
        super().__init__()
        self.batch_size = batch_size
        self.train_set = SyntheticRenderPairs(train_pairs, size, seed=0)
        self.val_set = SyntheticRenderPairs(val_pairs, size, seed=1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
