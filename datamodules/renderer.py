"""Stage-3 data: a reference face, a different target face of the same clip, and both faces' landmarks."""

from typing import TypedDict

import numpy as np
import torch

from datamodules import face
from datamodules.shards import ShardDataModule, decode_frames, to_image_tensor

MIN_TRAINING_GAP = 5  # frames between reference and target in training, where the clip allows


class RenderBatch(TypedDict):
    """One batch of :class:`RenderDataModule` as ``training_step`` sees it (images ship as uint8 and
    :meth:`RenderDataModule.on_after_batch_transfer` converts them)."""

    reference: torch.Tensor  # float32 [B, 3, 256, 256] in [0, 1], the identity to keep
    target: torch.Tensor  # float32 [B, 3, 256, 256] in [0, 1], the frame to reproduce
    target_landmarks: torch.Tensor  # float32 [B, 68, 3], the target's landmarks in face-crop pixels
    reference_landmarks: torch.Tensor  # float32 [B, 68, 3]
    speaker: torch.Tensor  # int64 [B]


def training_pair(valid: np.ndarray, opening: np.ndarray | None = None, open_reference: float = 0.0) -> tuple[int, int]:
    """A random valid target and a random valid reference at least ``MIN_TRAINING_GAP`` frames from it; where the
    clip has no such frame, any other valid frame, else any other frame: never the target itself. With probability
    ``open_reference``, given the mouth ``opening`` ``[T]``, an :func:`open_to_closed_pair` instead where the clip
    has one."""
    if opening is not None and torch.rand(()).item() < open_reference:
        pair = open_to_closed_pair(valid, opening)
        if pair is not None:
            return pair
    frames = np.arange(len(valid))
    valid_frames = frames[valid] if valid.any() else frames
    target = int(valid_frames[torch.randint(len(valid_frames), ()).item()])
    options = (valid & (np.abs(frames - target) >= MIN_TRAINING_GAP), valid & (frames != target), frames != target)
    choices = frames[next(option for option in options if option.any())]
    return int(choices[torch.randint(len(choices), ()).item()]), target


def open_to_closed_pair(valid: np.ndarray, opening: np.ndarray) -> tuple[int, int] | None:
    """A reference among the clip's most open third of valid frames and a target among its most closed third, at
    least ``MIN_TRAINING_GAP`` frames apart (``None`` where the clip has no such pair): the case a random pair
    rarely gives, a photo's open mouth to be closed on p, b and m."""
    frames = np.arange(len(valid))[valid]
    if len(frames) < 3:
        return None
    low, high = np.quantile(opening[frames], [1 / 3, 2 / 3])
    closed, open_ = frames[opening[frames] <= low], frames[opening[frames] >= high]
    target = int(closed[torch.randint(len(closed), ()).item()])
    references = open_[(np.abs(open_ - target) >= MIN_TRAINING_GAP) & (opening[open_] > opening[target])]
    if not len(references):
        return None
    return int(references[torch.randint(len(references), ()).item()]), target


def evaluation_pair(registered: np.ndarray, valid: np.ndarray) -> tuple[int, int]:
    """The clip's most-closed-mouth valid frame as reference and, as target, the valid frame farthest from it in
    mouth opening (the hardest fixed pair a clip offers)."""
    reference = face.reference_index(registered, valid)
    opening = face.mouth_opening(registered)
    distance = np.abs(opening - opening[reference])
    distance[~valid] = -np.inf
    distance[reference] = -np.inf
    return reference, int(np.argmax(distance))


class RenderDataModule(ShardDataModule):
    """Pairs of frames of one clip, the reference never the target: in training a random valid target and a
    random valid reference at least 5 frames from it (closer, or an invalid frame, only when the clip has
    nothing else), or with probability ``open_reference`` an open reference and a closed target
    (:func:`open_to_closed_pair`; 0, the default, is the published random pairs); in validation and test the clip's
    most-closed-mouth frame as reference and the valid frame farthest from it in mouth opening as target."""

    image_keys = ("reference", "target")

    def __init__(
        self,
        shards: str = "data/shards/synthetic",
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 0,
        open_reference: float = 0.0,
    ):
        super().__init__(shards, batch_size, num_workers, seed)
        self.open_reference = open_reference
        self.save_hyperparameters()

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        valid = record["valid"].astype(bool)
        if train:
            opening = face.mouth_opening(record["registered"]) if self.open_reference > 0 else None
            reference, target = training_pair(valid, opening, self.open_reference)
        else:
            reference, target = evaluation_pair(record["registered"], valid)
        images = to_image_tensor(decode_frames(record, "face", np.array([reference, target])))  # uint8 [2, 3, H, W]
        return {
            "reference": images[0],
            "target": images[1],
            "target_landmarks": torch.from_numpy(record["landmarks"][target]),
            "reference_landmarks": torch.from_numpy(record["landmarks"][reference]),
            "speaker": speaker_index[record["speaker"]],
        }
