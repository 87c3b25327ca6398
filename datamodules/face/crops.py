"""Square crops of a clip's face and mouth (cut out, and placed back with a feathered edge) and their JPEG storage."""

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

FACE_CROP_SIZE = 256
MOUTH_CROP_SIZE = 96
FACE_CROP_SCALE = 1.6  # crop side over the largest side of the mean landmark box
MOUTH_CROP_SCALE = 1.6  # mouth crop side over the median lip width


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


def jpeg_bytes(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """One RGB uint8 image ``[H, W, 3]`` as JPEG bytes ``[bytes]``; cvtColor makes OpenCV's BGR in a tenth of the
    time of copying the reversed-channel view (the bytes are the same)."""
    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]


def pack_jpegs(encoded: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """JPEG images (``jpeg_bytes``) as one byte blob ``[bytes]`` and its offsets ``[N + 1]``."""
    offsets = np.concatenate([[0], np.cumsum([len(blob) for blob in encoded])]).astype(np.int64)
    return np.concatenate(encoded).astype(np.uint8), offsets


def encode_jpeg(images: list[np.ndarray], quality: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 images as one JPEG byte blob ``[bytes]`` and its offsets ``[N + 1]``."""
    return pack_jpegs([jpeg_bytes(image, quality) for image in images])


def decode_jpeg(blob: np.ndarray, offsets: np.ndarray, index: int) -> np.ndarray:
    """Image ``index`` ``[H, W, 3]`` RGB uint8 of a blob made by :func:`encode_jpeg`."""
    return cv2.imdecode(blob[offsets[index] : offsets[index + 1]], cv2.IMREAD_COLOR)[..., ::-1]
