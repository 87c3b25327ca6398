"""Stage-3 data: a reference face, a target face of the same clip and the target's landmarks."""

from typing import TypedDict

import numpy as np
import torch

from datamodules.shards import ShardDataModule, decode_frames, to_tensor_images


class RenderBatch(TypedDict):
    """One batch of :class:`RenderDataModule`."""

    reference: torch.Tensor  # float32 [B, 3, 256, 256] in [0, 1], the identity to keep
    target: torch.Tensor  # float32 [B, 3, 256, 256] in [0, 1], the frame to reproduce
    target_landmarks: torch.Tensor  # float32 [B, 68, 3], the target's landmarks in face-crop pixels
    reference_landmarks: torch.Tensor  # float32 [B, 68, 3]
    speaker: torch.Tensor  # int64 [B]


class RenderDataModule(ShardDataModule):
    """Pairs of frames of one clip: in training a random reference and a random valid target; in validation
    and test the clip's most-closed-mouth frame as reference and its middle valid frame as target."""

    def __init__(self, shards: str = "data/shards/synthetic", batch_size: int = 8, num_workers: int = 2, seed: int = 0):
        super().__init__(shards, batch_size, num_workers, seed)
        self.save_hyperparameters()

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        valid_frames = np.flatnonzero(record["valid"])
        if train:
            reference, target = valid_frames[torch.randint(len(valid_frames), (2,)).numpy()]
        else:
            reference, target = record["reference_index"], valid_frames[len(valid_frames) // 2]
        images = to_tensor_images(decode_frames(record, "face", np.array([reference, target])))
        return {
            "reference": images[0],
            "target": images[1],
            "target_landmarks": torch.from_numpy(record["landmarks"][target]),
            "reference_landmarks": torch.from_numpy(record["landmarks"][reference]),
            "speaker": speaker_index[record["speaker"]],
        }
