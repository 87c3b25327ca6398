"""Where the renderer is judged: the mouth box of a face's landmarks, crops of it, and the preview grid."""

import torch
from torchvision.ops import roi_align
from torchvision.utils import make_grid

LIPS = slice(48, 68)


def mouth_boxes(landmarks: torch.Tensor, scale: float = 1.5, min_side: float = 16.0) -> torch.Tensor:
    """Square boxes ``[B, 4]`` (x0, y0, x1, y1 in crop pixels) around the lip landmarks of ``[B, 68, >=2]``:
    ``scale`` times the lips' larger extent, at least ``min_side``, centred on the lips."""
    lips = landmarks[:, LIPS, :2].float()
    low, high = lips.amin(1), lips.amax(1)  # [B, 2]
    centre = (low + high) / 2
    half = (scale * (high - low).amax(1)).clamp_min(min_side)[:, None] / 2  # [B, 1]
    return torch.cat([centre - half, centre + half], 1)


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Crops ``[B, C, size, size]`` of ``images [B, C, H, W]`` at ``boxes [B, 4]`` (bilinear, differentiable).

    Box coordinates are crop pixels with pixel ``i``'s centre at ``i`` (the landmarks' convention).
    """
    indices = torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None]
    rois = torch.cat([indices, boxes + 0.5], 1).to(images.dtype)  # roi_align(aligned=True): centres at i + 0.5
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


def sketch_picture(sketch: torch.Tensor) -> torch.Tensor:
    """A sketch ``[B, C, H, W]`` as dark lines on white ``[B, 3, H, W]`` (the strongest channel at each pixel)."""
    return (1.0 - sketch.amax(1, keepdim=True).clamp(0, 1)).expand(-1, 3, -1, -1)


def preview_grid(columns: list[torch.Tensor]) -> torch.Tensor:
    """One image ``[3, H', W']``: a row per sample, the ``columns`` (each ``[B, 3, H, W]``) side by side."""
    rows = torch.stack([column.float().clamp(0, 1).cpu() for column in columns], 1)  # [B, columns, 3, H, W]
    return make_grid(rows.flatten(0, 1), nrow=len(columns), padding=2, pad_value=1.0)
