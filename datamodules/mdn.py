"""Stage-2 data: per-frame audio windows with registered landmarks, relative pose and a reference frame."""

from typing import Literal, TypedDict

import numpy as np
import torch

from datamodules import face
from datamodules.audio import audio_windows
from datamodules.shards import ShardDataModule, ShardsError, read_index, window_start


class LandmarkBatch(TypedDict):
    """One batch of :class:`LandmarkDataModule` (B clips, T consecutive frames)."""

    audio: torch.Tensor  # float32 [B, T, 20, 80], the mel window centred on each frame
    registered: torch.Tensor  # float32 [B, T, 68, 3], landmarks in the canonical frame (expression)
    pose: torch.Tensor  # float32 [B, T, 6], pose relative to the reference frame (face.relative_pose), raw
    reference: torch.Tensor  # float32 [B, 68, 3], registered landmarks of the reference frame
    reference_pose: torch.Tensor  # float32 [B, 6], the reference frame's absolute pose
    landmarks: torch.Tensor  # float32 [B, T, 68, 3], image-space landmarks in face-crop pixels (evaluation)
    mask: torch.Tensor  # float32 [B, T], 1 for real, valid frames; 0 for padding or long face gaps
    lips_closed: torch.Tensor  # float32 [B, T], 1 where the lips are together (``closed_frames``)
    visemes: torch.Tensor  # int64 [B, T], the corpus's viseme (index in VISEME_CLASSES), -1 where not known
    speaker: torch.Tensor  # int64 [B], index into LandmarkDataModule.speakers


REFERENCES = ("closed", "any")
CLOSURE_TARGETS = ("landmarks", "truth")
CLOSED_SHARE = 0.35  # of the clip's opening range (most closed to 90th percentile) under which the lips are together


def lips_closed(registered: np.ndarray, valid: np.ndarray, reference_index: int) -> np.ndarray:
    """Whether the lips are together in each frame ``[T]`` (0/1): the inner-lip gap is within ``CLOSED_SHARE`` of
    the clip's range above its most closed frame. Relative to the clip, because Face Mesh leaves a person-specific
    gap between closed lips (about 0.05 inter-ocular units on one embedded-corpus face, 0.01 on another)."""
    opening = face.mouth_opening(registered)
    rest = opening[reference_index]
    top = np.quantile(opening[valid], 0.9) if valid.any() else rest
    return ((opening - rest) < CLOSED_SHARE * max(top - rest, 1e-6)).astype(np.float32)


def _ground_truth(record: dict, key: str) -> np.ndarray | None:
    """A record's per-frame ground truth ``key`` ``[T]`` when the clip has it (the embedded corpus), else None."""
    truth = record.get(key)
    return truth if truth is not None and len(truth) == record["frames"] else None


def closed_frames(record: dict, target: str = "landmarks") -> np.ndarray:
    """Whether the lips are together in each frame ``[T]`` (float32 0/1) of a shard record, by its landmarks
    (``landmarks``: :func:`lips_closed`), or (``truth``) by the corpus's ground truth where the clip has one
    (``lips_together``, the embedded corpus's articulation: exact on a p, b or m of one frame), else its landmarks."""
    truth = _ground_truth(record, "lips_together") if target == "truth" else None
    if truth is not None:
        return truth.astype(np.float32)
    return lips_closed(record["registered"], record["valid"].astype(bool), record["reference_index"])


def known_visemes(record: dict) -> np.ndarray:
    """The viseme index of each frame ``[T]`` (int64) of a shard record, -1 where the clip has no ground truth."""
    visemes = _ground_truth(record, "visemes")
    return visemes.astype(np.int64) if visemes is not None else np.full(record["frames"], -1, np.int64)


def reference_frame(registered: np.ndarray, valid: np.ndarray, window: np.ndarray, choice: str = "closed") -> int:
    """The reference of a window, a valid frame outside ``window`` (frame indices ``[T]``) when the clip has one,
    else a valid frame inside it: the one with the most closed mouth (``closed``, published), or a random one
    (``any``: a user's photo may smile or show its teeth, and the lips must still close from there)."""
    outside = valid.copy()
    outside[window] = False
    candidates = outside if outside.any() else valid
    if choice == "any":
        frames = np.flatnonzero(candidates)
        return int(frames[torch.randint(len(frames), ()).item()])
    return int(np.argmin(np.where(candidates, face.inner_lip_area(registered), np.inf)))


class LandmarkDataModule(ShardDataModule):
    """Windows of ``frames`` consecutive video frames (random in training, centred otherwise); a clip shorter
    than the window is padded by repeating its last frame, with ``mask`` 0 there.

    Each window comes with a reference frame that it does not contain: the valid frame with the most closed
    mouth outside the window, so the model cannot copy its target from the reference. A clip with no valid frame
    outside the window (one no longer than the window, or whose other frames have no face) takes the most
    closed valid frame inside it instead; that frame's relative pose is then 0. ``pose`` is relative to the
    reference (``face.relative_pose``); ``face.absolute_pose(pose, reference_pose)`` gives the stored pose back.

    ``training_reference``: ``closed`` (published) or ``any`` frame outside the window as the training reference
    (validation and test keep the most closed one, so their figures stay comparable). ``speech_augmentation``:
    the training audio heard through a random microphone, room and codec (``datamodules.speech_augmentation``).
    ``closure_target``: where the batch's ``lips_closed`` comes from (:func:`closed_frames`).
    """

    def __init__(
        self,
        shards: str = "data/shards/synthetic",
        frames: int = 32,
        batch_size: int = 16,
        num_workers: int = 2,
        training_reference: Literal["closed", "any"] = "closed",
        speech_augmentation: bool = False,
        closure_target: Literal["landmarks", "truth"] = "landmarks",
        seed: int = 0,
    ):
        super().__init__(shards, batch_size, num_workers, seed, speech_augmentation)
        if training_reference not in REFERENCES:
            raise ValueError(f"data.init_args.training_reference must be closed or any, not {training_reference!r}.")
        if closure_target not in CLOSURE_TARGETS:
            raise ValueError(f"data.init_args.closure_target must be landmarks or truth, not {closure_target!r}.")
        self.save_hyperparameters()
        self.frames = frames
        self.training_reference = training_reference
        self.closure_target = closure_target

    @property
    def statistics(self) -> dict:
        """The train-split statistics of ``index.json`` (mean and std of ``registered`` ``[68][3]`` and of the
        relative ``pose`` ``[6]``), for the model to normalise with (linked into its ``statistics`` argument)."""
        statistics = (self.index or read_index(self.shards)).get("statistics")
        if statistics is None:
            raise ShardsError(
                f"{self.shards}/index.json has no train-split statistics (an older `make data`, or no train clips); "
                "rerun `make data` on it (nothing is processed again)."
            )
        return statistics

    def sample(self, record: dict, train: bool, speaker_index: dict[str, int]) -> dict:
        length, valid = record["frames"], record["valid"].astype(bool)
        start = window_start(length, self.frames, valid, train)
        window = start + np.arange(self.frames)
        real = window < length
        window = np.minimum(window, length - 1)  # [T]
        mask = (real & valid[window]).astype(np.float32)
        reference = reference_frame(record["registered"], valid, window, self.training_reference if train else "closed")
        reference_pose = record["pose"][reference]
        return {
            "audio": torch.from_numpy(audio_windows(record["mel"], window).astype(np.float32)),
            "registered": torch.from_numpy(record["registered"][window]),
            "pose": torch.from_numpy(face.relative_pose(record["pose"][window], reference_pose)),
            "reference": torch.from_numpy(record["registered"][reference]),
            "reference_pose": torch.from_numpy(reference_pose),
            "landmarks": torch.from_numpy(record["landmarks"][window]),
            "mask": torch.from_numpy(mask),
            "lips_closed": torch.from_numpy(closed_frames(record, self.closure_target)[window]),
            "visemes": torch.from_numpy(known_visemes(record)[window]),
            "speaker": speaker_index[record["speaker"]],
        }
