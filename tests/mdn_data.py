"""Synthetic stage-2 batches for the MDN tests: ``LandmarkBatch`` tensors built on the fly from a seed.

Each clip has a smooth random mouth-opening track; its audio window is a fixed spectral pattern of the
opening, and its registered landmarks are the canonical face (scaled per speaker) with the lower lip and
chin moved down by the opening. A per-clip lip style (corners spread or rounded) and a slow head sway that
the audio does not tell make the mapping one-to-many. The reference is the clip's most closed frame.
"""

import math

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.face import CANONICAL_FACE

CANONICAL = torch.from_numpy(CANONICAL_FACE)
LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]
CHIN = [6, 7, 8, 9, 10]
CORNERS = {48: -1.0, 54: 1.0, 60: -1.0, 64: 1.0}

# A tiny SFE for MDN tests (SpeechFeatureExtractor arguments).
TINY_SFE = dict(audio_dim=32, audio_width=8, gru_hidden=32, feature_dim=16, memory_slots=16, memory_hidden=32)


def face_track(opening: torch.Tensor, scale: float, style: float) -> torch.Tensor:
    """Registered landmarks ``[T, 68, 3]`` of a face of ``scale`` and lip ``style`` with mouth ``opening [T]``."""
    faces = (CANONICAL * scale).expand(len(opening), -1, -1).clone()
    faces[:, LOWER_LIP, 1] += opening[:, None]
    faces[:, CHIN, 1] += 0.5 * opening[:, None]
    for point, side in CORNERS.items():
        faces[:, point, 0] += side * style * (0.02 + 0.1 * opening)
    return faces


class SyntheticLandmarkClips(Dataset):
    """``clips`` deterministic clips of ``frames`` frames; ``time_shuffled`` rolls the audio by half a clip."""

    def __init__(self, clips: int, frames: int, speakers: int = 4, seed: int = 0, time_shuffled: bool = False):
        self.clips, self.frames, self.speakers, self.seed = clips, frames, speakers, seed
        self.time_shuffled = time_shuffled
        self.mel_basis = torch.rand(2, 80, generator=torch.Generator().manual_seed(12345))

    def __len__(self) -> int:
        return self.clips

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + index)
        speaker = index % self.speakers
        steps = torch.rand(self.frames + 4, generator=generator)
        opening = 0.15 * torch.nn.functional.avg_pool1d(steps[None], 5, 1)[0]  # [T], smooth, 0 .. 0.15
        opening = opening - opening.min()
        style = 1.0 if torch.rand((), generator=generator) < 0.5 else -1.0
        registered = face_track(opening, 1.0 + 0.05 * speaker, style)
        phase = 2 * math.pi * torch.rand((), generator=generator)
        time = torch.arange(self.frames, dtype=torch.float32)
        pose = 0.05 * torch.stack([torch.sin(time / 6 + phase + k) for k in range(6)], dim=-1)  # [T, 6]
        spectrum = opening[:, None] / 0.15 * self.mel_basis[0] + 0.2 * (speaker + 1) / self.speakers * self.mel_basis[1]
        audio = (spectrum[:, None, :] + 0.05 * torch.rand(self.frames, 20, 80, generator=generator)).clamp(0, 1)
        if self.time_shuffled:
            audio = audio.roll(self.frames // 2, dims=0)
        closed = int(opening.argmin())
        return {
            "audio": audio,
            "registered": registered,
            "pose": pose,
            "reference": registered[closed],
            "reference_pose": torch.tensor([0.0, 0.0, 0.0, 128.0, 128.0, math.log(100.0)]),
            "landmarks": registered * 100 + 128,
            "mask": torch.ones(self.frames),
            "lips_closed": (opening < 0.05).float(),
            "speaker": torch.tensor(speaker),
        }


def clip_statistics(dataset: Dataset) -> dict:
    """``index.json``-style statistics of a dataset's registered landmarks and relative pose."""
    registered = torch.cat([dataset[index]["registered"] for index in range(len(dataset))])
    pose = torch.cat([dataset[index]["pose"] for index in range(len(dataset))])
    return {
        "registered": {"mean": registered.mean(0).tolist(), "std": registered.std(0).tolist()},
        "relative_pose": {"mean": pose.mean(0).tolist(), "std": pose.std(0).tolist()},
    }


class SyntheticLandmarkData(LightningDataModule):
    """Train, validation and test splits of :class:`SyntheticLandmarkClips` (different seeds)."""

    def __init__(
        self,
        frames: int = 16,
        batch_size: int = 4,
        train_clips: int = 32,
        val_clips: int = 8,
        time_shuffled: bool = False,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.train_set = SyntheticLandmarkClips(train_clips, frames, seed=0)
        self.val_set = SyntheticLandmarkClips(val_clips, frames, seed=1, time_shuffled=time_shuffled)

    @property
    def statistics(self) -> dict:
        return clip_statistics(self.train_set)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
