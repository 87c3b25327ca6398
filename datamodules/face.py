"""Faces: MediaPipe Face Mesh -> 68 iBUG-300W landmarks, registration to a canonical face, aligned crops.

The 468-point mesh is mapped to the 68 iBUG-300W points by ``MEDIAPIPE_TO_IBUG68`` (iBUG index -> mesh index):

| iBUG  | region (subject's right = image left first)  | MediaPipe mesh indices |
|-------|----------------------------------------------|------------------------|
| 0-8   | jaw, right ear to chin                       | 127 234 93 58 172 136 150 176 152 |
| 9-16  | jaw, chin to left ear                        | 400 379 365 397 288 323 454 356 |
| 17-21 | right eyebrow, outer to inner                | 70 63 105 66 107 |
| 22-26 | left eyebrow, inner to outer                 | 336 296 334 293 300 |
| 27-30 | nose bridge, top to tip                      | 168 197 5 4 |
| 31-35 | nose base, right to left                     | 75 97 2 326 305 |
| 36-41 | right eye: outer, upper x2, inner, lower x2  | 33 160 158 133 153 144 |
| 42-47 | left eye: inner, upper x2, outer, lower x2   | 362 385 387 263 373 380 |
| 48-59 | outer lips from the right corner, clockwise  | 61 39 37 0 267 269 291 405 314 17 84 181 |
| 60-67 | inner lips from the right corner, clockwise  | 78 82 13 312 308 317 14 87 |

Landmarks are 3D: x, y in pixels and MediaPipe's relative depth z scaled like x (smaller z: nearer the camera).
Each frame is registered to ``CANONICAL_FACE`` by a similarity transform (Umeyama) fitted on the rigid points
(upper jaw, nose, eyes): the registered landmarks keep the expression, the pose ``[rx, ry, rz, tx, ty,
log_scale]`` (axis-angle rotation, image-plane translation in pixels, log of the scale) keeps the head motion.
"""

import contextlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import mediapipe as mp
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

MEDIAPIPE_TO_IBUG68 = np.array([
    127, 234, 93, 58, 172, 136, 150, 176, 152, 400, 379, 365, 397, 288, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
])  # fmt: skip
# The left-right counterpart of each iBUG point (a horizontal flip maps point i to MIRRORED_IBUG68[i]).
MIRRORED_IBUG68 = np.array([
    *range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65,
])  # fmt: skip
# Points that move with the head but not with speech: upper jaw, nose, eyes.
RIGID_POINTS = np.array([0, 1, 2, 14, 15, 16, *range(27, 48)])
INNER_LIPS = np.arange(60, 68)
OUTER_LIPS = np.arange(48, 60)

# A mean frontal face in iBUG order, x right, y down, z away from the camera, centred, outer eye corners
# (36, 45) one unit apart: the MediaPipe meshes of the two face photos that installed packages ship
# (scikit-image's astronaut, matplotlib's Grace Hopper), each frontalised and made left-right symmetric,
# then averaged.
CANONICAL_FACE = np.array([
    [-0.744, -0.210, 0.620], [-0.736, -0.065, 0.650], [-0.728, 0.074, 0.635], [-0.668, 0.365, 0.501],
    [-0.605, 0.473, 0.374], [-0.533, 0.551, 0.242], [-0.437, 0.626, 0.132], [-0.260, 0.726, -0.049],
    [0.000, 0.769, -0.133], [0.260, 0.726, -0.049], [0.437, 0.626, 0.132], [0.533, 0.551, 0.242],
    [0.605, 0.473, 0.374], [0.668, 0.365, 0.501], [0.728, 0.074, 0.635], [0.736, -0.065, 0.650],
    [0.744, -0.210, 0.620], [-0.623, -0.507, 0.130], [-0.563, -0.583, 0.052], [-0.464, -0.629, -0.015],
    [-0.329, -0.640, -0.078], [-0.168, -0.631, -0.111], [0.168, -0.631, -0.111], [0.329, -0.640, -0.078],
    [0.464, -0.629, -0.015], [0.563, -0.583, 0.052], [0.623, -0.507, 0.130], [0.000, -0.453, -0.133],
    [0.000, -0.313, -0.264], [0.000, -0.186, -0.411], [0.000, -0.096, -0.453], [-0.159, 0.021, -0.229],
    [-0.093, 0.060, -0.257], [0.000, 0.063, -0.276], [0.093, 0.060, -0.257], [0.159, 0.021, -0.229],
    [-0.500, -0.367, 0.098], [-0.430, -0.423, 0.033], [-0.313, -0.434, 0.016], [-0.192, -0.362, 0.039],
    [-0.287, -0.350, 0.013], [-0.402, -0.347, 0.032], [0.192, -0.362, 0.039], [0.313, -0.434, 0.016],
    [0.430, -0.423, 0.033], [0.500, -0.367, 0.098], [0.402, -0.347, 0.032], [0.287, -0.350, 0.013],
    [-0.323, 0.266, -0.050], [-0.194, 0.194, -0.228], [-0.097, 0.178, -0.270], [0.000, 0.189, -0.279],
    [0.097, 0.178, -0.270], [0.194, 0.194, -0.228], [0.323, 0.266, -0.050], [0.175, 0.362, -0.206],
    [0.094, 0.382, -0.249], [0.000, 0.389, -0.258], [-0.094, 0.382, -0.249], [-0.175, 0.362, -0.206],
    [-0.281, 0.263, -0.070], [-0.077, 0.244, -0.217], [0.000, 0.247, -0.228], [0.077, 0.244, -0.217],
    [0.281, 0.263, -0.070], [0.079, 0.304, -0.211], [0.000, 0.307, -0.222], [-0.079, 0.304, -0.211],
], np.float32)  # fmt: skip

FACE_CROP_SIZE = 256
MOUTH_CROP_SIZE = 96
MAX_INTERPOLATED_GAP = 5  # frames without a face that are interpolated
MIN_FACE_RATIO = 0.8  # a clip with fewer frames with a face is skipped
FACE_CROP_SCALE = 1.6  # crop side over the largest side of the mean landmark box
MOUTH_CROP_SCALE = 1.6  # mouth crop side over the median lip width


class NoFaceError(ValueError):
    """No usable face; the message is one sentence naming the input."""


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silences what MediaPipe's C++ side prints to file descriptor 2 while it starts (TFLite and absl banners)."""
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class FaceMeshTracker:
    """MediaPipe Face Mesh over the frames of one clip (tracking mode) or over single photos (static mode)."""

    def __init__(self, static_images: bool = False, min_confidence: float = 0.5):
        with native_stderr_silenced():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static_images,
                max_num_faces=1,
                refine_landmarks=False,
                min_detection_confidence=min_confidence,
                min_tracking_confidence=min_confidence,
            )
        self._started = False

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """The 68 landmarks ``[68, 3]`` (pixels) of the face in an RGB uint8 frame ``[H, W, 3]``, or None."""
        if self._started:
            result = self._mesh.process(frame)
        else:
            with native_stderr_silenced():
                result = self._mesh.process(frame)
            self._started = True
        if not result.multi_face_landmarks:
            return None
        height, width = frame.shape[:2]
        mesh = result.multi_face_landmarks[0].landmark
        points = np.array([(mesh[i].x, mesh[i].y, mesh[i].z) for i in MEDIAPIPE_TO_IBUG68], np.float32)
        return points * np.array([width, height, width], np.float32)

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceMeshTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track_landmarks(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks ``[T, 68, 3]`` (NaN where no face) and the detected mask ``[T]`` of a clip's frames."""
    found = []
    with FaceMeshTracker() as tracker:
        for frame in frames:
            found.append(tracker(frame))
    landmarks = np.full((len(found), 68, 3), np.nan, np.float32)
    detected = np.array([points is not None for points in found], bool)
    for index in np.flatnonzero(detected):
        landmarks[index] = found[index]
    return landmarks, detected


def detect_landmarks(image: np.ndarray, name: str = "the image") -> np.ndarray:
    """The 68 landmarks ``[68, 3]`` of the face in one photo; NoFaceError naming ``name`` when there is none."""
    with FaceMeshTracker(static_images=True) as tracker:
        points = tracker(image)
    if points is None:
        raise NoFaceError(f"No face was found in {name}; use a photo with one clearly visible, roughly frontal face.")
    return points


def fill_gaps(landmarks: np.ndarray, detected: np.ndarray, max_gap: int = MAX_INTERPOLATED_GAP):
    """Interpolates missing frames of ``landmarks`` ``[T, 68, 3]``; returns them and the valid mask ``[T]``.

    Every gap is filled (linearly inside the clip, by holding at its ends) so that crops stay continuous,
    but only gaps of at most ``max_gap`` frames count as valid.
    """
    frames = len(detected)
    known = np.flatnonzero(detected)
    if len(known) == 0:
        raise NoFaceError("no frame has a face")
    flat = landmarks.reshape(frames, -1)
    filled = np.stack([np.interp(np.arange(frames), known, flat[known, k]) for k in range(flat.shape[1])], 1)
    valid = detected.copy()
    missing = np.flatnonzero(~detected)
    if len(missing):
        runs = np.split(missing, np.flatnonzero(np.diff(missing) > 1) + 1)
        for run in runs:
            if len(run) <= max_gap:
                valid[run] = True
    return filled.reshape(landmarks.shape).astype(np.float32), valid


def umeyama(source: np.ndarray, target: np.ndarray):
    """Similarity ``target ~ scale * rotation @ source + translation`` by least squares, batched.

    ``source`` ``[N, 3]``, ``target`` ``[..., N, 3]``; returns scale ``[...]``, rotation ``[..., 3, 3]``
    and translation ``[..., 3]`` (Umeyama 1991, reflections excluded).
    """
    source_mean = source.mean(-2)
    target_mean = target.mean(-2, keepdims=True)
    centred_source = source - source_mean
    centred_target = target - target_mean
    covariance = np.swapaxes(centred_target, -1, -2) @ centred_source / len(source)  # [..., 3, 3]
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    correction = np.ones(singular.shape)
    correction[..., -1] = sign
    rotation = u @ (correction[..., :, None] * vt)
    scale = (singular * correction).sum(-1) / (centred_source**2).sum() * len(source)
    translation = target_mean[..., 0, :] - scale[..., None] * (rotation @ source_mean)
    return scale, rotation, translation


def register(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Registered landmarks ``[T, 68, 3]`` (canonical frame) and pose ``[T, 6]`` of ``landmarks`` ``[T, 68, 3]``."""
    scale, rotation, translation = umeyama(CANONICAL_FACE[RIGID_POINTS], landmarks[:, RIGID_POINTS])
    registered = np.einsum("tji,tnj->tni", rotation, landmarks - translation[:, None]) / scale[:, None, None]
    rotation_vector = Rotation.from_matrix(rotation).as_rotvec()
    pose = np.concatenate([rotation_vector, translation[:, :2], np.log(scale)[:, None]], 1)
    return registered.astype(np.float32), pose.astype(np.float32)


def unregister(registered: np.ndarray, pose: np.ndarray, depth: float = 0.0) -> np.ndarray:
    """Image-space landmarks ``[..., 68, 3]`` from registered ones and their pose ``[..., 6]`` (inverse of
    :func:`register`, with the unobserved depth translation set to ``depth``)."""
    shape = registered.shape
    rotation = Rotation.from_rotvec(pose[..., :3].reshape(-1, 3)).as_matrix()  # [N, 3, 3]
    points = registered.reshape(-1, 68, 3)
    scale = np.exp(pose[..., 5]).reshape(-1, 1, 1)
    translation = np.concatenate([pose[..., 3:5].reshape(-1, 2), np.full((len(points), 1), depth)], 1)
    landmarks = scale * np.einsum("nij,nkj->nki", rotation, points) + translation[:, None]
    return landmarks.reshape(shape).astype(np.float32)


def relative_pose(pose: np.ndarray, reference_pose: np.ndarray) -> np.ndarray:
    """Pose ``[..., 6]`` relative to ``reference_pose`` (``[6]`` or ``[..., 6]``): rotation ``R_t R_ref^-1`` as
    axis-angle, translation ``(t_t - t_ref) / exp(s_ref)`` (in units of the reference face's size), log-scale
    ``s_t - s_ref``. A frame's pose relative to itself is 0."""
    pose, reference = np.broadcast_arrays(np.asarray(pose, np.float64), np.asarray(reference_pose, np.float64))
    flat, flat_reference = pose.reshape(-1, 6), reference.reshape(-1, 6)
    rotation = Rotation.from_rotvec(flat[:, :3]) * Rotation.from_rotvec(flat_reference[:, :3]).inv()
    translation = (flat[:, 3:5] - flat_reference[:, 3:5]) / np.exp(flat_reference[:, 5:6])
    relative = np.concatenate([rotation.as_rotvec(), translation, flat[:, 5:6] - flat_reference[:, 5:6]], 1)
    return relative.reshape(pose.shape).astype(np.float32)


def absolute_pose(relative: np.ndarray, reference_pose: np.ndarray) -> np.ndarray:
    """The absolute pose ``[..., 6]`` of a pose ``relative`` ``[..., 6]`` to ``reference_pose`` (``[6]`` or
    ``[..., 6]``): the exact inverse of :func:`relative_pose`."""
    relative, reference = np.broadcast_arrays(np.asarray(relative, np.float64), np.asarray(reference_pose, np.float64))
    flat, flat_reference = relative.reshape(-1, 6), reference.reshape(-1, 6)
    rotation = Rotation.from_rotvec(flat[:, :3]) * Rotation.from_rotvec(flat_reference[:, :3])
    translation = flat_reference[:, 3:5] + flat[:, 3:5] * np.exp(flat_reference[:, 5:6])
    pose = np.concatenate([rotation.as_rotvec(), translation, flat_reference[:, 5:6] + flat[:, 5:6]], 1)
    return pose.reshape(relative.shape).astype(np.float32)


def inner_lip_area(landmarks: np.ndarray) -> np.ndarray:
    """Area ``[...]`` of the inner-lip polygon (points 60-67) in the image plane: 0 for a closed mouth."""
    x, y = landmarks[..., INNER_LIPS, 0], landmarks[..., INNER_LIPS, 1]
    return 0.5 * np.abs((x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y).sum(-1))


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Mean vertical gap ``[...]`` between the inner lips (61-67, 62-66, 63-65), in the landmarks' units."""
    upper, lower = landmarks[..., [61, 62, 63], 1], landmarks[..., [67, 66, 65], 1]
    return (lower - upper).mean(-1)


def reference_index(registered: np.ndarray, valid: np.ndarray) -> int:
    """The valid frame with the most closed mouth (smallest inner-lip area): the MDN's reference frame."""
    area = inner_lip_area(registered)
    return int(np.argmin(np.where(valid, area, np.inf)))


@dataclass(frozen=True)
class CropBox:
    """A square crop: centre and side in source pixels."""

    centre_x: float
    centre_y: float
    side: float

    @classmethod
    def from_array(cls, box: np.ndarray) -> "CropBox":
        """The box of a record's ``face_box`` ``[3]``: centre x, centre y, side."""
        centre_x, centre_y, side = (float(value) for value in np.asarray(box).reshape(3))
        return cls(centre_x, centre_y, side)

    def as_array(self) -> np.ndarray:
        """``[3]`` float32: centre x, centre y, side (a record's ``face_box``)."""
        return np.array([self.centre_x, self.centre_y, self.side], np.float32)

    def to_crop(self, landmarks: np.ndarray, size: int) -> np.ndarray:
        """``landmarks`` ``[..., 3]`` from source pixels to the pixels of a ``size`` crop (z scaled alike)."""
        factor = size / self.side
        origin = np.array([self.centre_x - self.side / 2, self.centre_y - self.side / 2, 0.0], np.float32)
        return ((landmarks - origin) * factor).astype(np.float32)

    def cut(self, frame: np.ndarray, size: int) -> np.ndarray:
        """The crop of an ``[H, W, 3]`` frame resampled to ``[size, size, 3]``; outside pixels repeat the edge."""
        factor = size / self.side
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        return cv2.warpAffine(
            frame, self._affine(size), (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE
        )

    def paste(self, frame: np.ndarray, crop: np.ndarray, feather: float = 0.1) -> np.ndarray:
        """``frame`` ``[H, W, 3]`` with ``crop`` ``[S, S, 3]`` put back where :meth:`cut` took it (the inverse of
        ``cut``), blended over an edge ``feather * S`` crop pixels wide so no seam shows; outside the box the frame
        is untouched. The result has the frame's dtype."""
        size = crop.shape[0]
        height, width = frame.shape[:2]
        ramp = max(feather * size, 1e-6)
        distance = np.minimum(np.arange(size), np.arange(size)[::-1]) + 0.5  # [S] to the nearest crop edge
        edge = np.clip(distance / ramp, 0.0, 1.0).astype(np.float32)
        alpha = np.outer(edge, edge)  # [S, S], 1 inside, falling to 0 at the border
        inverse = cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
        placed = cv2.warpAffine(
            crop.astype(np.float32), self._affine(size), (width, height), flags=inverse, borderMode=cv2.BORDER_REPLICATE
        )
        weight = cv2.warpAffine(alpha, self._affine(size), (width, height), flags=inverse, borderValue=0.0)
        blended = weight[..., None] * placed + (1.0 - weight[..., None]) * frame.astype(np.float32)
        if np.issubdtype(frame.dtype, np.integer):
            blended = np.clip(np.rint(blended), np.iinfo(frame.dtype).min, np.iinfo(frame.dtype).max)
        return blended.astype(frame.dtype)

    def _affine(self, size: int) -> np.ndarray:
        """``[2, 3]`` affine from source pixels to the pixels of a ``size`` crop."""
        factor = size / self.side
        return np.array(
            [
                [factor, 0, -(self.centre_x - self.side / 2) * factor],
                [0, factor, -(self.centre_y - self.side / 2) * factor],
            ],
            np.float32,
        )


def face_crop_box(landmarks: np.ndarray, valid: np.ndarray) -> CropBox:
    """One square box for the whole clip around the mean landmark box, so the crop does not jitter and the
    head motion stays visible in it."""
    points = landmarks[valid, :, :2]
    low, high = points.min(1).mean(0), points.max(1).mean(0)
    centre = (low + high) / 2
    side = FACE_CROP_SCALE * float((high - low).max())
    return CropBox(float(centre[0]), float(centre[1] - 0.05 * side), side)


def mouth_crop_boxes(landmarks: np.ndarray) -> list[CropBox]:
    """Per-frame square boxes around the mouth: a fixed side (from the median lip width) and a centre that
    follows the mouth, smoothed over time (sigma 1 frame) for stable crops."""
    lips = landmarks[:, 48:68, :2]
    width = float(np.median(np.linalg.norm(landmarks[:, 54, :2] - landmarks[:, 48, :2], axis=-1)))
    side = MOUTH_CROP_SCALE * max(width, 1.0)
    centres = gaussian_filter1d(lips.mean(1), sigma=1.0, axis=0, mode="nearest")
    return [CropBox(float(x), float(y + 0.1 * side), side) for x, y in centres]


def encode_jpeg(images: list[np.ndarray], quality: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 images as one JPEG byte blob ``[bytes]`` and its offsets ``[N + 1]``."""
    encoded = [cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1] for image in images]
    offsets = np.concatenate([[0], np.cumsum([len(blob) for blob in encoded])]).astype(np.int64)
    return np.concatenate(encoded).astype(np.uint8), offsets


def decode_jpeg(blob: np.ndarray, offsets: np.ndarray, index: int) -> np.ndarray:
    """Image ``index`` ``[H, W, 3]`` RGB uint8 of a blob made by :func:`encode_jpeg`."""
    return cv2.imdecode(blob[offsets[index] : offsets[index + 1]], cv2.IMREAD_COLOR)[..., ::-1]
