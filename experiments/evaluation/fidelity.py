"""Fidelity of a generated video to its photo, from its frames and MediaPipe landmarks: upper-face sharpness, the
change outside the face region, flicker, and the blink rate.

- **Upper-face sharpness**: the variance of the Laplacian of the grey image over the eyes and forehead (the box
  from the brows' outer ends, a forehead above the brows as tall as brows-to-eyes, down to the lower lids), the
  median over frames. Divided by the same measure of the photo it says how much of the photo's sharpness the
  video keeps (1: as sharp; below: blurred; well above: sharpened into artefacts). The mouth is left out: the
  part a renderer paints.
- **Change outside the face region**: the mean absolute difference between consecutive frames over the pixels
  outside the face crop box, in 1/255 units per frame: 0 when the background, hair and clothes stay still.
- **Flicker**: the mean absolute second difference in time, ``|f[t+1] - 2 f[t] + f[t-1]| / 2`` in 1/255 units,
  over a region: smooth motion gives almost none, a frame that jumps and comes back gives much.
- **Blink rate**: blinks per minute, a blink being a run of frames whose eye aspect ratio (lid gap over eye
  width, three lid pairs and both eyes averaged) falls below ``BLINK_THRESHOLD`` of the clip's median (the open
  eye). The lids come from MediaPipe Face Mesh with its refined eye and iris model (``refine_landmarks``): the
  plain mesh's lids hardly follow a blink (its ratio falls by a fifth on shut eyes, the refined one's by 60%).
"""

import cv2
import mediapipe as mp
import numpy as np

from datamodules import face
from datamodules.media import FPS

BROWS, EYES = slice(17, 27), slice(36, 48)
FOREHEAD = 1.0  # forehead height above the brows, in units of the brows-to-lower-lids height
BLINK_THRESHOLD = 0.6  # an eye aspect ratio below this share of the median is closed
# MediaPipe mesh points of each eye: two corners, then three (upper lid, lower lid) pairs
MESH_EYES = np.array([[33, 133, 160, 144, 159, 145, 158, 153], [362, 263, 385, 380, 386, 374, 387, 373]])


def upper_face_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` pixels of the eyes and forehead of one face's landmarks ``[68, >=2]``."""
    points = np.concatenate([landmarks[BROWS, :2], landmarks[EYES, :2]])
    top, bottom = landmarks[BROWS, 1].min(), landmarks[EYES, 1].max()
    x0, x1 = points[:, 0].min(), points[:, 0].max()
    y0 = top - FOREHEAD * (bottom - top)
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)) + 1, int(np.ceil(bottom)) + 1


def laplacian_variance(image: np.ndarray) -> float:
    """The variance of the Laplacian (3x3) of an RGB or grey uint8 image's grey levels: its sharpness."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(grey.astype(np.float64), cv2.CV_64F, ksize=1).var())


def upper_face_sharpness(frames: np.ndarray, landmarks: np.ndarray) -> float:
    """The median over frames ``[T, H, W, 3]`` of the Laplacian variance over each frame's upper face (its
    landmarks ``[T, 68, >=2]``); a single photo is one frame."""
    values = []
    for frame, points in zip(frames, landmarks, strict=True):
        x0, y0, x1, y1 = upper_face_box(points)
        height, width = frame.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 - x0 >= 3 and y1 - y0 >= 3:
            values.append(laplacian_variance(frame[y0:y1, x0:x1]))
    return float(np.median(values)) if values else float("nan")


def face_region_mask(shape: tuple[int, ...], box: face.CropBox) -> np.ndarray:
    """``[H, W]`` bool: True inside the face crop ``box`` (the pixels a generator may change)."""
    mask = np.zeros(shape[:2], bool)
    half = box.side / 2
    x0, y0 = max(int(np.floor(box.centre_x - half)), 0), max(int(np.floor(box.centre_y - half)), 0)
    mask[y0 : max(int(np.ceil(box.centre_y + half)) + 1, 0), x0 : max(int(np.ceil(box.centre_x + half)) + 1, 0)] = True
    return mask


def change_outside(frames: np.ndarray, region: np.ndarray) -> float:
    """Mean absolute change between consecutive frames ``[T, H, W, 3]`` outside ``region`` ``[H, W]`` bool, in
    1/255 units (0 for fewer than 2 frames or an empty outside)."""
    outside = ~region
    if len(frames) < 2 or not outside.any():
        return 0.0
    total = sum(
        float(np.abs(later[outside].astype(np.int16) - earlier[outside]).mean())
        for earlier, later in zip(frames[:-1], frames[1:], strict=True)
    )
    return total / (len(frames) - 1)


def flicker(frames: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean ``|f[t+1] - 2 f[t] + f[t-1]| / 2`` over frames ``[T, H, W, 3]`` and the pixels of ``region`` ``[H, W]``
    bool (all by default), in 1/255 units (0 for fewer than 3 frames)."""
    if len(frames) < 3:
        return 0.0
    region = np.ones(frames.shape[1:3], bool) if region is None else region
    total = 0.0
    for before, now, after in zip(frames[:-2], frames[1:-1], frames[2:], strict=True):
        second = after[region].astype(np.int16) - 2 * now[region].astype(np.int16) + before[region]
        total += float(np.abs(second).mean()) / 2
    return total / (len(frames) - 2)


def eye_aspect_ratio(mesh: np.ndarray) -> np.ndarray:
    """``[T]``: the lid gap over the eye's width, averaged over three lid pairs and both eyes of MediaPipe mesh
    points ``[T, >=468, >=2]`` (``MESH_EYES``)."""
    points = mesh[..., :2][:, MESH_EYES]  # [T, 2 eyes, 8, 2]
    width = np.linalg.norm(points[:, :, 0] - points[:, :, 1], axis=-1)
    gaps = np.linalg.norm(points[:, :, 2::2] - points[:, :, 3::2], axis=-1).mean(-1)
    return (gaps / np.maximum(width, 1e-6)).mean(1)


def eye_track(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eye aspect ratio ``[T]`` of frames ``[T, H, W, 3]`` RGB uint8 by MediaPipe Face Mesh with refined eyes
    (tracking mode), and ``[T]`` bool: a face was found (the ratio is NaN where not)."""
    ratios, detected = np.full(len(frames), np.nan), np.zeros(len(frames), bool)
    with face.native_stderr_silenced():
        mesh = mp.solutions.face_mesh.FaceMesh(max_num_faces=1, refine_landmarks=True)
    with mesh:
        for index, frame in enumerate(frames):
            result = mesh.process(np.ascontiguousarray(frame))
            if result.multi_face_landmarks:
                points = np.array([(point.x, point.y) for point in result.multi_face_landmarks[0].landmark])
                ratios[index] = eye_aspect_ratio(points[None] * frame.shape[1::-1])[0]
                detected[index] = True
    return ratios, detected


def count_blinks(ratio: np.ndarray, detected: np.ndarray | None = None) -> int:
    """Runs of frames whose eye aspect ratio ``[T]`` is below ``BLINK_THRESHOLD`` of its median over the frames
    with a face (``detected`` ``[T]`` bool; frames without one never count as closed)."""
    detected = np.ones(len(ratio), bool) if detected is None else detected
    if not detected.any():
        return 0
    closed = detected & (ratio < BLINK_THRESHOLD * np.median(ratio[detected]))
    return int(np.count_nonzero(np.diff(np.concatenate([[0], closed.astype(np.int8)])) == 1))


def blink_rate(frames: np.ndarray, fps: float = FPS) -> float:
    """Blinks per minute of frames ``[T, H, W, 3]`` (:func:`eye_track`, :func:`count_blinks`)."""
    minutes = len(frames) / fps / 60
    return count_blinks(*eye_track(frames)) / minutes if minutes > 0 else float("nan")


def fidelity_metrics(frames: np.ndarray, landmarks: np.ndarray, detected: np.ndarray) -> dict[str, float]:
    """The measures of the module docstring of one video ``[T, H, W, 3]`` with its MediaPipe track ``[T, 68, 3]``
    and ``detected`` ``[T]``: the face region is the face crop box of the track."""
    region = face_region_mask(frames.shape[1:], face.face_crop_box(landmarks, detected | ~detected.any()))
    return {
        "upper_face_sharpness": upper_face_sharpness(frames, landmarks),
        "outside_change": change_outside(frames, region),
        "flicker": flicker(frames),
        "blink_rate": blink_rate(frames),
    }
