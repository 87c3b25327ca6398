"""Stage-1 data: sequences of audio windows and 5-frame visual stacks for contrastive SFE pretraining."""

from typing import Literal, TypedDict

import numpy as np
import torch

from datamodules.audio import audio_windows
from datamodules.shards import ShardDataModule, ShardsError, decode_frames, to_image_tensor, window_start

STACK_OFFSETS = np.arange(-2, 3)  # the 5 frames centred on a step
GRAY = (0.299, 0.587, 0.114)  # ITU-R 601 luma weights, as torchvision's rgb_to_grayscale


class SFEBatch(TypedDict):
    """One batch of :class:`SFEDataModule` (B clips, T steps) as ``training_step`` sees it; the loader ships
    ``frames`` as uint8 and :meth:`SFEDataModule.on_after_batch_transfer` converts (and augments) them."""

    audio: torch.Tensor  # float32 [B, T, 20, 80], mel windows in [0, 1] centred on each step's frame
    frames: torch.Tensor  # float32 [B, T, 5, 3, H, W] in [0, 1]; H = W = 96 (mouth) or 256 (face)
    speaker: torch.Tensor  # int64 [B], index into SFEDataModule.speakers


def augment_colours(
    frames: torch.Tensor, strength: float = 0.3, grayscale_probability: float = 0.2, generator=None
) -> torch.Tensor:
    """Colour jitter (brightness, contrast, saturation, each a factor in ``[1 - strength, 1 + strength]``) and
    random grayscale of float ``frames`` ``[B, ..., 3, H, W]`` in [0, 1], one draw per sample (all frames of a
    sample alike), on the frames' device. Hue is left alone (it costs more than the three others together).

    The four are linear in colour, so they fold into one 3 x 3 matrix and one offset per sample and frame
    (clamped to [0, 1] once, at the end): two passes over the frames instead of a dozen.
    """
    batch, height, width = frames.shape[0], frames.shape[-2], frames.shape[-1]
    flat = frames.reshape(batch, -1, 3, height * width)  # [B, N, 3, P]

    def draw(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, device=frames.device, generator=generator)

    brightness, contrast, saturation = (draw(1 - strength, 1 + strength) for _ in range(3))  # [B] each
    luma = frames.new_tensor(GRAY)  # [3], sums to 1
    to_gray = luma.expand(3, 3)  # [3, 3]: every channel becomes the luma
    identity = torch.eye(3, device=frames.device, dtype=frames.dtype)
    mixing = saturation.view(-1, 1, 1) * identity + (1 - saturation).view(-1, 1, 1) * to_gray  # [B, 3, 3]
    gray = torch.rand(batch, device=frames.device, generator=generator) < grayscale_probability
    mixing = torch.where(gray.view(-1, 1, 1), to_gray @ mixing, mixing)
    matrix = (contrast * brightness).view(-1, 1, 1, 1) * mixing[:, None]  # [B, 1, 3, 3]
    mean_luma = (luma @ flat).mean(-1)  # [B, N], each frame's mean gray level
    offset = ((1 - contrast) * brightness).view(-1, 1) * mean_luma  # [B, N]: the grays are kept by the matrix
    return (matrix @ flat + offset[..., None, None]).clamp_(0, 1).view_as(frames)


class SFEDataModule(ShardDataModule):
    """Samples of T steps taken every ``step_stride`` frames from a random window of a clip (a fixed, centred
    window for validation and test).

    A sample spans ``step_stride * (steps - 1) + 5`` frames; clips shorter than that are left out of every split
    (their steps would repeat, giving the sync loss identical candidates with different targets). The clip
    lengths come from ``index.json``'s ``clip_frames``, and LitData streams only the long enough clips.

    Args:
        shards: a folder made by ``make data``.
        steps: T, the number of steps per sample (the sync loss's negatives are the other steps).
        step_stride: video frames between steps (3 in the paper).
        visual_input: ``mouth`` (96 x 96 mouth crops, the default) or ``face`` (256 x 256 aligned faces, the
            published input, about 7x the pixels).
        augment: colour jitter (brightness, contrast, saturation) and random grayscale on the training frames,
            one draw per sample, on the device after the batch is transferred (:func:`augment_colours`).
        speech_augmentation: the training audio heard through a random microphone, room and codec
            (``datamodules.speech_augmentation``); off is the published recipe.
    """

    image_keys = ("frames",)
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
        speech_augmentation: bool = False,
        seed: int = 0,
    ):
        super().__init__(shards, batch_size, num_workers, seed, speech_augmentation)
        self.save_hyperparameters()
        self.steps = steps
        self.step_stride = step_stride
        self.visual_input = visual_input
        self.augment = augment

    @property
    def span(self) -> int:
        """Frames one sample covers: from the first step's first stack frame to the last step's last."""
        return self.step_stride * (self.steps - 1) + len(STACK_OFFSETS)

    def usable(self, split: str, index: dict) -> list[int]:
        """The clips of at least :attr:`span` frames; ShardsError when the index lacks clip lengths or none is
        long enough."""
        if "clip_frames" not in index:
            raise ShardsError(
                f"{self.shards}/index.json has no clip_frames (written by an older `make data`); rerun `make data` "
                "on it to update the index (nothing is processed again)."
            )
        positions = [
            position for position, clip in enumerate(index["splits"][split]) if index["clip_frames"][clip] >= self.span
        ]
        if not positions:
            raise ShardsError(
                f"{self.shards} has no {split} clip of at least {self.span} frames (step_stride * (steps - 1) + 5); "
                "lower data.steps or data.step_stride."
            )
        return positions

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        start = window_start(record["frames"], self.span, record["valid"].astype(bool), train)
        centres = start + len(STACK_OFFSETS) // 2 + self.step_stride * np.arange(self.steps)  # [T]
        stacks = centres[:, None] + STACK_OFFSETS[None, :]  # [T, 5]
        return {
            "audio": torch.from_numpy(audio_windows(record["mel"], centres).astype(np.float32)),
            "frames": to_image_tensor(decode_frames(record, self.visual_input, stacks)),  # uint8 [T, 5, 3, H, W]
            "speaker": speaker_index[record["speaker"]],
        }

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Frames to float32 in [0, 1]; colour-augmented when a Trainer is fitting and ``augment`` is on."""
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if self.augment and self.training:
            batch = {**batch, "frames": augment_colours(batch["frames"])}
        return batch
