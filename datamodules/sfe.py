"""Stage-1 data: sequences of audio windows and 5-frame visual stacks for contrastive SFE pretraining."""

from typing import Literal, TypedDict

import numpy as np
import torch
from torchvision.transforms import v2

from datamodules.audio import audio_windows
from datamodules.shards import ShardDataModule, decode_frames, to_tensor_images, window_start

STACK_OFFSETS = np.arange(-2, 3)  # the 5 frames centred on a step


class SFEBatch(TypedDict):
    """One batch of :class:`SFEDataModule` (B clips, T steps)."""

    audio: torch.Tensor  # float32 [B, T, 20, 80], mel windows in [0, 1] centred on each step's frame
    frames: torch.Tensor  # float32 [B, T, 5, 3, H, W] in [0, 1]; H = W = 96 (mouth) or 256 (face)
    speaker: torch.Tensor  # int64 [B], index into SFEDataModule.speakers


class SFEDataModule(ShardDataModule):
    """Samples of T steps taken every ``step_stride`` frames from a random window of a clip (a fixed, centred
    window for validation and test).

    Args:
        shards: a folder made by ``make data``.
        steps: T, the number of steps per sample (the sync loss's negatives are the other steps).
        step_stride: video frames between steps (3 in the paper).
        visual_input: ``mouth`` (96 x 96 mouth crops, the default) or ``face`` (256 x 256 aligned faces, the
            published input, about 7x the pixels).
        augment: colour jitter (brightness, contrast, saturation; hue costs 20x more on CPU) and random
            grayscale on the training frames, one draw per sample.
    """

    frames_per_step = len(STACK_OFFSETS)  # video frames per step; the model's frames_per_step must match

    def __init__(
        self,
        shards: str = "data/shards/synthetic",
        steps: int = 8,
        step_stride: int = 3,
        visual_input: Literal["mouth", "face"] = "mouth",
        batch_size: int = 8,
        num_workers: int = 2,
        augment: bool = True,
        seed: int = 0,
    ):
        super().__init__(shards, batch_size, num_workers, seed)
        self.save_hyperparameters()
        self.steps = steps
        self.step_stride = step_stride
        self.visual_input = visual_input
        self.augment = augment
        self.augmentation = v2.Compose(
            [v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3), v2.RandomGrayscale(p=0.2)]
        )

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        span = self.step_stride * (self.steps - 1) + len(STACK_OFFSETS)
        start = window_start(record["frames"], span, record["valid"].astype(bool), train)
        centres = start + len(STACK_OFFSETS) // 2 + self.step_stride * np.arange(self.steps)
        centres = np.minimum(centres, record["frames"] - 1)  # [T]; clips shorter than the span repeat their end
        stacks = np.clip(centres[:, None] + STACK_OFFSETS[None, :], 0, record["frames"] - 1)  # [T, 5]
        frames = to_tensor_images(decode_frames(record, self.visual_input, stacks))  # [T, 5, 3, H, W]
        if train and self.augment:
            frames = self.augmentation(frames.flatten(0, 1)).view_as(frames)
        return {
            "audio": torch.from_numpy(audio_windows(record["mel"], centres).astype(np.float32)),
            "frames": frames,
            "speaker": speaker_index[record["speaker"]],
        }
