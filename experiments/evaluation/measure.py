"""Measurements on video frames with MediaPipe: landmark tracks, mouth opening, and the crops the sync scorers take."""

from dataclasses import dataclass

import numpy as np
import torch

from datamodules import face
from datamodules.audio import audio_windows

STACK_OFFSETS = np.arange(-2, 3)  # the 5 frames around a step, as in stage-1 training


@dataclass(frozen=True)
class Track:
    """MediaPipe landmarks of a clip: ``landmarks [T, 68, 3]`` in frame pixels (gaps filled), ``detected [T]``."""

    landmarks: np.ndarray
    detected: np.ndarray

    @property
    def face_ratio(self) -> float:
        return float(self.detected.mean()) if len(self.detected) else 0.0


def track_faces(frames: np.ndarray) -> Track:
    """Tracks the face in ``[T, H, W, 3]`` RGB uint8 frames; raises NoFaceError when no frame has one."""
    landmarks, detected = face.track_landmarks(frames)
    filled, _ = face.fill_gaps(landmarks, detected)
    return Track(filled, detected)


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """Distance ``[...]`` between the outer eye corners (points 36 and 45) in the image plane."""
    return np.linalg.norm(landmarks[..., 36, :2] - landmarks[..., 45, :2], axis=-1)


def mouth_opening_track(track: Track) -> np.ndarray:
    """Inner-lip gap per frame ``[T]`` in inter-ocular units; NaN where no face was detected."""
    opening = face.mouth_opening(track.landmarks) / np.maximum(inter_ocular(track.landmarks), 1e-6)
    return np.where(track.detected, opening, np.nan)


def syncnet_boxes(track: Track) -> np.ndarray:
    """Face boxes ``[T, 3]`` (centre x, y, half side) for SyncNet's crop, median-smoothed over 13 frames as in
    syncnet_python (the landmark box stands in for its S3FD detector's box)."""
    from scipy.signal import medfilt

    low, high = track.landmarks[..., :2].min(1), track.landmarks[..., :2].max(1)  # [T, 2]
    centre, half = (low + high) / 2, (high - low).max(-1) / 2
    kernel = min(13, len(half) - (1 - len(half) % 2))
    columns = [centre[:, 0], centre[:, 1], half]
    return np.stack([medfilt(column, kernel) if kernel >= 3 else column for column in columns], -1)


def mel_envelope(mel: np.ndarray, frames: int) -> np.ndarray:
    """Per-frame loudness ``[frames]`` from a normalised log-mel ``[4 * frames, 80]``: the mean over bins and the
    frame's 4 mel steps (for clips whose raw audio is not at hand, e.g. shards)."""
    return np.asarray(mel, np.float64)[: 4 * frames].reshape(frames, -1).mean(1)


def expert_inputs(frames: np.ndarray, mel: np.ndarray, track: Track, visual_input: str) -> tuple:
    """The sync expert's per-frame inputs: mel windows ``[T, 20, 80]`` of the log-mel ``[4T, 80]``
    (``datamodules.audio.mel_spectrogram``) and 5-frame crop stacks ``[T, 5, 3, S, S]`` in [0, 1], cut the way
    preprocessing cuts them (mouth crops of 96, or the clip's 256 face crop)."""
    count = len(frames)
    windows = torch.from_numpy(audio_windows(mel, np.arange(count)).astype(np.float32))
    if visual_input == "face":
        box = face.face_crop_box(track.landmarks, track.detected | True)
        crops = np.stack([box.cut(frame, face.FACE_CROP_SIZE) for frame in frames])
    else:
        boxes = face.mouth_crop_boxes(track.landmarks)
        crops = np.stack([box.cut(frame, face.MOUTH_CROP_SIZE) for box, frame in zip(boxes, frames, strict=True)])
    stacks = np.clip(np.arange(count)[:, None] + STACK_OFFSETS[None, :], 0, count - 1)  # [T, 5]
    return windows, torch.from_numpy(np.ascontiguousarray(crops[stacks])).movedim(-1, -3).float() / 255.0
