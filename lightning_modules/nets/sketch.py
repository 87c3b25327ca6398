"""Rasterised landmark sketches: the 68 iBUG points as soft line drawings, one channel per face part.

The refinement net reads where the target's parts are from these channels, and where the open mouth is from
a filled inner-lip channel (the region whose teeth and interior the warp cannot supply).
"""

import torch
from torch import nn

# iBUG-68 polylines per channel; each tuple is a chain, closed chains repeat their first point.
PARTS = {
    "jaw": [tuple(range(0, 17))],
    "brows_nose": [tuple(range(17, 22)), tuple(range(22, 27)), tuple(range(27, 31)), (30, *range(31, 36), 30)],
    "eyes": [(*range(36, 42), 36), (*range(42, 48), 42)],
    "outer_lips": [(*range(48, 60), 48)],
    "inner_lips": [(*range(60, 68), 60)],
}
INNER_LIPS = tuple(range(60, 68))


def _segments() -> tuple[list[int], list[int], list[int]]:
    """Start and end point of every segment and the channel it belongs to."""
    starts, ends, channels = [], [], []
    for channel, chains in enumerate(PARTS.values()):
        for chain in chains:
            starts += chain[:-1]
            ends += chain[1:]
            channels += [channel] * (len(chain) - 1)
    return starts, ends, channels


class LandmarkSketch(nn.Module):
    """Landmarks ``[B, 68, >=2]`` (pixels of a ``crop_size`` crop) -> sketch ``[B, len(PARTS) + 1, size, size]``.

    Each part channel draws the part's segments as soft lines: Gaussian blobs of ``sigma`` crop pixels at
    ``samples`` points along each segment, summed and clipped at 1. A 2D Gaussian is the product of two 1D
    ones, so a channel is one ``[size, points] @ [points, size]`` product over its own part's points (cheap on a
    CPU). The last channel is 1 inside the inner-lip polygon (even-odd rule) and 0 outside.
    """

    def __init__(self, size: int = 128, crop_size: int = 256, sigma: float = 2.0, samples: int = 6):
        super().__init__()
        self.size, self.crop_size, self.sigma = size, crop_size, sigma
        starts, ends, channels = _segments()
        along = torch.arange(samples, dtype=torch.float32) / samples  # [K]: the end point is the next start
        # [points, 68] interpolation weights: point (segment s, sample k) = (1 - t_k) p_start + t_k p_end
        weights = torch.zeros(len(starts) * samples, 68)
        rows = torch.arange(len(starts) * samples).reshape(len(starts), samples)
        weights[rows, torch.tensor(starts)[:, None]] += 1 - along
        weights[rows, torch.tensor(ends)[:, None]] += along
        counts = torch.bincount(torch.tensor(channels), minlength=len(PARTS)) * samples
        self.part_points = counts.tolist()  # points of each part, in order: _segments runs through the parts in turn
        self.register_buffer("weights", weights, persistent=False)
        self.register_buffer("inner", torch.tensor(INNER_LIPS), persistent=False)
        step = crop_size / size  # sketch pixel centres in crop pixels
        self.register_buffer("axis", (torch.arange(size, dtype=torch.float32) + 0.5) * step - 0.5, persistent=False)

    @property
    def out_channels(self) -> int:
        return len(PARTS) + 1

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        points = self.weights @ landmarks[..., :2].float()  # [B, N, 2]
        profile = torch.exp(-(self.axis[None, None] - points[..., None]).square() / (2 * self.sigma**2))  # [B, N, 2, S]
        parts_x = profile[:, :, 0].split(self.part_points, 1)  # [B, N_part, S] each
        parts_y = profile[:, :, 1].split(self.part_points, 1)
        lines = torch.stack([y.transpose(1, 2) @ x for x, y in zip(parts_x, parts_y, strict=True)], 1)
        lines = lines.clamp(max=1.0)  # [B, parts, S(y), S(x)]
        inside = self._inside(landmarks[:, self.inner, :2].float())  # [B, S, S]
        return torch.cat([lines, inside[:, None]], 1)

    def _inside(self, polygon: torch.Tensor) -> torch.Tensor:
        """``[B, S, S]``: 1 where a pixel lies inside ``polygon [B, K, 2]`` (even-odd crossings of a rightward ray)."""
        a, b = polygon, polygon.roll(-1, dims=1)  # [B, K, 2] edge ends
        y = self.axis[None, :, None]  # [1, S(y), 1]
        ay, by = a[:, None, :, 1], b[:, None, :, 1]  # [B, 1, K]
        straddles = (ay > y) != (by > y)  # [B, S(y), K]
        crossing_x = a[:, None, :, 0] + (y - ay) * (b[:, None, :, 0] - a[:, None, :, 0]) / (by - ay + 1e-9)
        crossing_x = torch.where(straddles, crossing_x, torch.full_like(crossing_x, -torch.inf))  # [B, S(y), K]
        crossings = (self.axis[None, None, :, None] < crossing_x[:, :, None]).sum(-1)  # [B, S(y), S(x)]
        return (crossings % 2).float()
