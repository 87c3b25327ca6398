"""Synthetic stage-1 batches for the SFE tests: tensors in the batch contract, built on the fly from a seed.

``audio [T, 20, 80]``, ``frames [T, 5, 3, S, S]`` in [0, 1] and ``speaker`` per clip. Each step has a hidden
mouth state (opening, spread) drawn at random; the audio window is a fixed spectral pattern of that state
and the frames draw a dark mouth ellipse of that size on a face whose brightness is the speaker's, so the
audio-visual match is learnable in seconds. ``time_shuffled`` rolls each clip's audio by half its steps, so
no audio step lies beside its own frames (the no-sync baseline).
"""

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

# A tiny SFEPretraining: fast enough for many steps in a test.
TINY = dict(
    audio_dim=32,
    audio_width=8,
    gru_hidden=32,
    feature_dim=16,
    memory_slots=16,
    memory_hidden=32,
    visual_width=8,
    visual_hidden=32,
)


class SyntheticClips(Dataset):
    """``clips`` deterministic clips of ``steps`` steps; ``speakers`` speakers with their own voice and face."""

    def __init__(
        self,
        clips: int,
        steps: int,
        image_size: int,
        speakers: int = 4,
        seed: int = 0,
        time_shuffled: bool = False,
    ):
        self.clips, self.steps, self.image_size = clips, steps, image_size
        self.speakers, self.seed, self.time_shuffled = speakers, seed, time_shuffled
        bases = torch.Generator().manual_seed(12345)
        self.mel_bases = torch.rand(3, 80, generator=bases)  # opening, spread, speaker timbre

    def __len__(self) -> int:
        return self.clips

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + index)
        speaker = index % self.speakers
        level = (speaker + 1) / (self.speakers + 1)
        state = torch.rand(self.steps, 2, generator=generator)  # [T, 2] mouth opening and spread
        spectrum = state @ self.mel_bases[:2] + level * self.mel_bases[2]  # [T, 80]
        noise = 0.05 * torch.rand(self.steps, 20, 80, generator=generator)
        audio = (spectrum[:, None, :] / 3 + noise).clamp(0, 1)  # [T, 20, 80]
        if self.time_shuffled:
            audio = audio.roll(self.steps // 2, dims=0)
        return {
            "audio": audio,
            "frames": self._frames(state, level),
            "speaker": torch.tensor(speaker),
        }

    def _frames(self, state: torch.Tensor, level: float) -> torch.Tensor:
        """``[T, 2]`` mouth states -> ``[T, 5, 3, S, S]``: the same mouth in all 5 frames of a step."""
        axis = torch.linspace(-1, 1, self.image_size)
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        height = 0.1 + 0.5 * state[:, 0, None, None]  # [T, 1, 1]
        width = 0.2 + 0.6 * state[:, 1, None, None]
        mouth = ((x / width) ** 2 + ((y - 0.3) / height) ** 2) < 1  # [T, S, S]
        face = torch.where(mouth, torch.tensor(0.05), torch.tensor(0.3 + 0.6 * level))
        return face[:, None, None].expand(-1, 5, 3, -1, -1).contiguous()


class SyntheticSFEData(LightningDataModule):
    """Train, validation and test splits of :class:`SyntheticClips` (different seeds); only evaluation is shuffled."""

    def __init__(
        self,
        steps: int = 4,
        batch_size: int = 4,
        image_size: int = 32,
        train_clips: int = 64,
        val_clips: int = 16,
        time_shuffled: bool = False,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.train_set = SyntheticClips(train_clips, steps, image_size, seed=0)
        self.val_set = SyntheticClips(val_clips, steps, image_size, seed=1, time_shuffled=time_shuffled)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, drop_last=True)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()
