"""The face moved at the photo's own resolution: the renderer's motion, computed at its working size, applied to
the photo's own pixels.

The renderer gives, per frame, where each pixel of its ``S x S`` face crop reads the reference (``grid``,
``grid_sample`` coordinates) and the colour its learned part adds (``paint``: the mouth interior). The crop is
an axis-aligned square of the photo (``CropBox``), so the grid's displacement from the identity, upsampled (or
for a face smaller than the crop, downsampled) to the photo's pixels inside the box, says where each of those
pixels reads the photo. Reading the photo there keeps every pixel of the face as sharp as the photo, whatever the
face's size, as far as the resampling kernel allows: the head moves by fractions of a pixel, and a bicubic read
between pixels smooths the finest detail (on matplotlib's 512x600 Grace Hopper the frames kept 0.82 of the upper
face's sharpness, before encoding), so the photo is read with the 8x8 Lanczos kernel (0.90, for about 3 times
the resampling's cost); the paint is resampled over the mouth only and added, and where the renderer draws the
mouth's interior by rule (``drawn``), its colour replaces what the photo gave there: added to the photo's own
pixels, the paint would carry the stretched lips' texture into the cavity. The displacement is tapered to
zero over the box's edge (the ``feather`` of ``CropBox.paste``), so the face meets the photo with no seam and no
colour step, and nothing outside the box ever changes.
"""

import cv2
import numpy as np
import torch

from datamodules.face import CropBox

PHOTO_KERNEL = cv2.INTER_LANCZOS4  # the photo's resampling (module docstring)
PAINT_FLOOR = 1.0 / 512  # paint below this (in [0, 1] colour units) is left out of the mouth's box


def identity_grid(size: int) -> torch.Tensor:
    """``[size, size, 2]``: the ``grid_sample`` coordinates (``align_corners=False``) of each pixel's own centre."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y], -1)


def feather_weights(coordinates: np.ndarray, size: int, feather: float) -> np.ndarray:
    """Per-axis weight of crop coordinates ``[N]`` (pixels of a ``size`` crop): 1 inside, falling linearly to 0
    over ``feather * size`` pixels at the crop's edge, 0 outside (``CropBox.paste``'s alpha)."""
    distance = np.minimum(coordinates + 0.5, size - 0.5 - coordinates)
    return np.clip(distance / max(feather * size, 1e-6), 0.0, 1.0).astype(np.float32)


class PhotoCompositor:
    """Frames of ``photo`` ``[H, W, 3]`` uint8 whose face, in ``box``, moves by the renderer's motion at ``size``.

    Only the box's pixels (clipped to the photo) are computed; :meth:`frame` takes one frame's ``grid`` ``[S, S,
    2]``, ``paint`` ``[S, S, 3]`` and ``drawn`` ``[S, S, 4]`` (numpy, as :meth:`FaceRenderer.motion` gives them per
    frame).
    """

    def __init__(self, photo: np.ndarray, box: CropBox, size: int = 256, feather: float = 0.1):
        self.photo, self.size = photo, size
        height, width = photo.shape[:2]
        half = box.side / 2
        self.x0, self.y0 = max(int(np.floor(box.centre_x - half)), 0), max(int(np.floor(box.centre_y - half)), 0)
        self.x1 = min(int(np.ceil(box.centre_x + half)) + 1, width)
        self.y1 = min(int(np.ceil(box.centre_y + half)) + 1, height)
        self.factor = size / box.side  # crop pixels per photo pixel
        xs, ys = np.arange(self.x0, self.x1, dtype=np.float32), np.arange(self.y0, self.y1, dtype=np.float32)
        crop_x = (xs - (box.centre_x - half)) * self.factor  # crop coordinates of the region's pixels
        crop_y = (ys - (box.centre_y - half)) * self.factor
        self.crop_x, self.crop_y = np.meshgrid(crop_x, crop_y)  # [h, w] each, for cv2.remap
        # Photo pixels per crop pixel of displacement, tapered to 0 at the box's edge.
        self.taper = (
            np.outer(feather_weights(crop_y, size, feather), feather_weights(crop_x, size, feather)) / self.factor
        )
        self.base_x, self.base_y = np.meshgrid(xs, ys)
        self.identity = identity_grid(size)

    @property
    def region(self) -> tuple[slice, slice]:
        """The rows and columns of the photo that a frame may change."""
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def displacement(self, grid: torch.Tensor) -> np.ndarray:
        """``[B, S, S, 2]`` grids -> ``[B, S, S, 2]`` float32 displacements in crop pixels (read minus own)."""
        return ((grid.float() - self.identity) * (self.size / 2)).numpy()

    def frame_layers(self, motion: dict[str, torch.Tensor]) -> list[tuple]:
        """Per frame of :meth:`FaceRenderer.motion`'s batch, :meth:`frame`'s arguments after the first: its
        displacement, paint and drawn interior (``None`` without one), as numpy."""

        def channels_last(layer: torch.Tensor) -> np.ndarray:
            return layer.permute(0, 2, 3, 1).float().cpu().numpy()

        displacements = self.displacement(motion["grid"].cpu())  # [n, S, S, 2]
        paints = channels_last(motion["paint"])  # [n, S, S, 3]
        drawns = channels_last(motion["drawn"]) if "drawn" in motion else [None] * len(paints)  # [n, S, S, 4]
        return list(zip(displacements, paints, drawns, strict=True))

    def frame(self, displacement: np.ndarray, paint: np.ndarray | None = None, drawn: np.ndarray | None = None):
        """The photo ``[H, W, 3]`` uint8 with its face moved by ``displacement`` ``[S, S, 2]`` (crop pixels,
        :meth:`displacement`), ``paint`` ``[S, S, 3]`` (``[0, 1]`` colour units) added, and the drawn interior
        ``drawn`` ``[S, S, 4]`` (colour, cover) laid over it."""
        moved = cv2.remap(displacement, self.crop_x, self.crop_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        map_x = self.base_x + self.taper * moved[..., 0]
        map_y = self.base_y + self.taper * moved[..., 1]
        # Fixed-point maps: what remap converts float maps to block by block anyway (the same pixels), converted once.
        fixed_xy, fixed_fraction = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
        face = cv2.remap(self.photo, fixed_xy, fixed_fraction, PHOTO_KERNEL, borderMode=cv2.BORDER_REPLICATE)
        if paint is not None:
            self._lay_mouth(face, paint, drawn)
        frame = self.photo.copy()
        frame[self.region] = face
        return frame

    def _lay_mouth(self, face: np.ndarray, paint: np.ndarray, drawn: np.ndarray | None) -> None:
        """Adds ``paint`` ``[S, S, 3]`` to the region ``face`` ``[h, w, 3]`` uint8 in place and lays ``drawn``
        ``[S, S, 4]`` over it, over the box of the region's pixels whose crop coordinates fall where either is not 0
        (the mouth)."""
        touched = np.abs(paint).max(-1) > PAINT_FLOOR
        if drawn is not None:
            touched |= drawn[..., 3] > 0
        rows, columns = np.nonzero(touched)
        if not len(rows):
            return
        first_y = np.searchsorted(self.crop_y[:, 0], rows.min() - 1)
        last_y = np.searchsorted(self.crop_y[:, 0], rows.max() + 1, side="right")
        first_x = np.searchsorted(self.crop_x[0], columns.min() - 1)
        last_x = np.searchsorted(self.crop_x[0], columns.max() + 1, side="right")
        if last_y <= first_y or last_x <= first_x:
            return
        window = slice(first_y, last_y), slice(first_x, last_x)

        def resampled(layer: np.ndarray) -> np.ndarray:
            return cv2.remap(layer, self.crop_x[window], self.crop_y[window], cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip

        mouth = face[window] + 255.0 * resampled(paint)
        if drawn is not None:
            layer = resampled(drawn)
            cover = layer[..., 3:]
            mouth = mouth * (1 - cover) + 255.0 * layer[..., :3] * cover
        face[window] = np.clip(mouth + 0.5, 0, 255).astype(np.uint8)
