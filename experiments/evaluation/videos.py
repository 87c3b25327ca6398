"""Metrics of one talking-head video (with its audio track), optionally against the true video of the same clip.

Its closure ratio (MediaPipe's inner-lip gap, :mod:`experiments.evaluation.closure`) is measured against the phones
of the true clip's sidecar when ``truth`` is a corpus clip (else of the video's audio by pocketsphinx), beside its
baselines: the first frame repeated (a static face), the video's mouth shuffled in time in blocks of 200 ms, and the
true video.
"""

from pathlib import Path

import numpy as np
import torch

from datamodules import face
from datamodules.audio import mel_spectrogram
from datamodules.media import read_clip
from experiments.evaluation.closure import closure_ratio, frame_classes, mouth_track, shuffled_in_time
from experiments.evaluation.fidelity import fidelity_metrics, upper_face_sharpness
from experiments.evaluation.measure import (
    Track,
    expert_inputs,
    mouth_opening_track,
    syncnet_boxes,
    track_faces,
)
from experiments.evaluation.phones import Phones, clip_phones
from lightning_modules.metrics import MOUTH, LandmarkDistance, LandmarkVelocityDistance
from lightning_modules.sync_scoring import SFESyncExpert, SyncNetScorer, syncnet_crop
from lightning_modules.video_metrics import cpbd, image_quality, mouth_audio_sync, speech_envelope

CPBD_EVERY = 5  # frames between the frames whose sharpness is measured


def face_crops(frames: np.ndarray, box: face.CropBox) -> np.ndarray:
    """The 256 face crops ``[T, 256, 256, 3]`` of ``frames`` in one box."""
    return np.stack([box.cut(frame, face.FACE_CROP_SIZE) for frame in frames])


def landmark_metrics(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """LMD (mouth, face) and LVD of registered landmarks ``[T, 68, 3]`` (inter-ocular units) over ``mask`` ``[T]``."""
    predicted, target = torch.from_numpy(predicted)[None], torch.from_numpy(target)[None]
    mask = torch.from_numpy(mask.astype(np.float32))[None]
    values = {}
    for name, metric in (("lmd_mouth", LandmarkDistance(MOUTH)), ("lmd_face", LandmarkDistance())):
        metric.update(predicted, target, mask)
        values[name] = float(metric.compute())
    velocity = LandmarkVelocityDistance()
    velocity.update(predicted, target, mask)
    values["lvd"] = float(velocity.compute())
    return values


def frame_metrics(frames: np.ndarray, track: Track, envelope: np.ndarray) -> dict[str, float]:
    """CPBD of the face crop, the weight-free mouth-audio sync and the fidelity measures
    (:mod:`experiments.evaluation.fidelity`) of frames ``[T, H, W, 3]``."""
    box = face.face_crop_box(track.landmarks, np.ones(len(frames), bool))
    sharpness = [cpbd(box.cut(frame, face.FACE_CROP_SIZE)) for frame in frames[::CPBD_EVERY]]
    sync = mouth_audio_sync(mouth_opening_track(track), envelope)
    return {
        "cpbd": float(np.mean(sharpness)),
        "mouth_sync_corr": sync["correlation"],
        "mouth_sync_offset": sync["offset"],
        **fidelity_metrics(frames, track.landmarks, track.detected),
    }


def sync_scores(
    frames: np.ndarray,
    audio: np.ndarray,
    mel: np.ndarray,
    track: Track,
    syncnet: SyncNetScorer | None,
    expert: SFESyncExpert | None,
) -> dict[str, float]:
    """LSE-D / LSE-C (published SyncNet) and the project's sync expert, each when its scorer is given."""
    values = {}
    if syncnet is not None and audio is not None:
        crops = np.stack([syncnet_crop(frame, box) for frame, box in zip(frames, syncnet_boxes(track), strict=True)])
        score = syncnet.score(crops, audio)
        values.update(lse_d=score.distance, lse_c=score.confidence, lse_offset=float(score.offset))
    if expert is not None:
        windows, stacks = expert_inputs(frames, mel, track, expert.visual_input)
        score = expert.score(windows, stacks)
        values.update(expert_sync_d=score.distance, expert_sync_c=score.confidence)
        values["expert_sync_offset"] = float(score.offset)
    return values


def video_closure(frames: np.ndarray, track: Track, phones: Phones) -> dict[str, float]:
    """The closure ratio of frames ``[T, H, W, 3]`` (MediaPipe ``track``) against ``phones``, of their first frame
    repeated (``_static``, MediaPipe on it) and of their mouth track shuffled in blocks of 200 ms (``_shuffled``),
    with the counts of closing-phone and open-vowel frames."""
    opening = mouth_opening_track(track)
    static = mouth_track(np.broadcast_to(frames[:1], frames.shape))
    closing, open_vowel = frame_classes(phones, len(frames))
    return {
        "closure_ratio": closure_ratio(opening, phones),
        "closure_ratio_static": closure_ratio(static, phones),
        "closure_ratio_shuffled": closure_ratio(shuffled_in_time(opening), phones),
        "closing_frames": float(closing.sum()),
        "open_frames": float(open_vowel.sum()),
    }


def tracked(frames: np.ndarray, path: Path) -> Track:
    """The face track of the video at ``path``; NoFaceError naming the file when no frame has a face."""
    try:
        return track_faces(frames)
    except face.NoFaceError:
        raise face.NoFaceError(f"No face was found in {path}.") from None


def evaluate_video(
    path: Path,
    truth: Path | None = None,
    syncnet: SyncNetScorer | None = None,
    expert: SFESyncExpert | None = None,
) -> dict[str, float]:
    """All metrics of the video at ``path``; image and landmark metrics against ``truth`` when given.

    Raises MediaError or NoFaceError with one sentence naming the file.
    """
    frames, audio = read_clip(path)
    track = tracked(frames, path)
    values = {"frames": float(len(frames)), "face_ratio": track.face_ratio}
    values.update(frame_metrics(frames, track, speech_envelope(audio, len(frames))))
    values.update(sync_scores(frames, audio, mel_spectrogram(audio, len(frames)), track, syncnet, expert))
    clip = truth if truth is not None else path  # a corpus clip's sidecar gives the phones, else pocketsphinx
    phones, values["closure_phones"] = clip_phones(clip.parent / clip.stem, audio)
    if phones is not None:
        values.update(video_closure(frames, track, phones))
    if truth is not None:
        true_frames, _ = read_clip(truth)
        true_track = tracked(true_frames, truth)
        if phones is not None:
            values["closure_ratio_truth"] = closure_ratio(mouth_opening_track(true_track), phones)
        count = min(len(frames), len(true_frames))
        box = face.face_crop_box(true_track.landmarks[:count], np.ones(count, bool))
        quality = image_quality(
            torch.from_numpy(face_crops(frames[:count], box)).permute(0, 3, 1, 2).float() / 255,
            torch.from_numpy(face_crops(true_frames[:count], box)).permute(0, 3, 1, 2).float() / 255,
        )
        values.update(ssim=float(quality["ssim"].mean()), psnr=float(quality["psnr"].mean()))
        true_sharpness = upper_face_sharpness(true_frames[:count], true_track.landmarks[:count])
        values["upper_face_sharpness_ratio"] = values["upper_face_sharpness"] / max(true_sharpness, 1e-9)
        registered, _ = face.register(track.landmarks[:count])
        true_registered, _ = face.register(true_track.landmarks[:count])
        mask = track.detected[:count] & true_track.detected[:count]
        values.update(landmark_metrics(registered, true_registered, mask))
    return values
