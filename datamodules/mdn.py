"""Stage-2 data: per-frame audio windows with registered landmarks, pose and a reference face shape."""

from typing import TypedDict

import numpy as np
import torch

from datamodules.audio import audio_windows
from datamodules.shards import ShardDataModule, window_start


class LandmarkBatch(TypedDict):
    """One batch of :class:`LandmarkDataModule` (B clips, T consecutive frames)."""

    audio: torch.Tensor  # float32 [B, T, 20, 80], the mel window centred on each frame
    registered: torch.Tensor  # float32 [B, T, 68, 3], landmarks in the canonical frame (expression)
    pose: torch.Tensor  # float32 [B, T, 6], axis-angle (3), translation in crop pixels (2), log-scale (1)
    reference: torch.Tensor  # float32 [B, 68, 3], registered landmarks of the clip's most closed mouth
    landmarks: torch.Tensor  # float32 [B, T, 68, 3], image-space landmarks in face-crop pixels (evaluation)
    mask: torch.Tensor  # float32 [B, T], 1 for real, valid frames; 0 for padding or long face gaps
    speaker: torch.Tensor  # int64 [B], index into LandmarkDataModule.speakers


class LandmarkDataModule(ShardDataModule):
    """Windows of ``frames`` consecutive video frames (random in training, centred otherwise); a clip shorter
    than the window is padded by repeating its last frame, with ``mask`` 0 there."""

    def __init__(
        self,
        shards: str = "data/shards/synthetic",
        frames: int = 32,
        batch_size: int = 16,
        num_workers: int = 2,
        seed: int = 0,
    ):
        super().__init__(shards, batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.frames = frames

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        length, valid = record["frames"], record["valid"].astype(bool)
        start = window_start(length, self.frames, valid, train)
        window = start + np.arange(self.frames)
        real = window < length
        window = np.minimum(window, length - 1)  # [T]
        mask = (real & valid[window]).astype(np.float32)
        return {
            "audio": torch.from_numpy(audio_windows(record["mel"], window).astype(np.float32)),
            "registered": torch.from_numpy(record["registered"][window]),
            "pose": torch.from_numpy(record["pose"][window]),
            "reference": torch.from_numpy(record["registered"][record["reference_index"]]),
            "landmarks": torch.from_numpy(record["landmarks"][window]),
            "mask": torch.from_numpy(mask),
            "speaker": speaker_index[record["speaker"]],
        }
