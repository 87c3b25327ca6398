"""Thin-plate-spline warps driven by landmarks, batched in torch, and the image resampling they drive.

Coordinates are crop pixels as the data contract gives them (x right, y down, pixel ``i``'s centre at ``i``);
``grid_sample``'s normalised coordinates (``align_corners=False``) are ``(x + 0.5) * 2 / size - 1``.
"""

import torch
import torch.nn.functional as F


def to_normalised(points: torch.Tensor, size: int) -> torch.Tensor:
    """Crop pixels ``[..., 2]`` -> ``grid_sample`` coordinates in [-1, 1] of a ``size`` crop."""
    return (points + 0.5) * (2.0 / size) - 1.0


def border_anchors(per_side: int, device: torch.device | None = None) -> torch.Tensor:
    """``[4 * per_side, 2]`` normalised points along the crop border, pinned by the warp (the background stays)."""
    if per_side == 0:
        return torch.zeros(0, 2, device=device)
    steps = torch.linspace(-1.0, 1.0, per_side + 1, device=device)[:-1]
    ones = torch.ones_like(steps)
    return torch.cat(
        [
            torch.stack([steps, -ones], 1),
            torch.stack([ones, steps], 1),
            torch.stack([-steps, ones], 1),
            torch.stack([-ones, -steps], 1),
        ]
    )


def _radial(squared_distance: torch.Tensor) -> torch.Tensor:
    """The thin-plate kernel ``U = r^2 log r^2`` from ``r^2`` (0 at 0)."""
    return squared_distance * torch.log(squared_distance.clamp_min(1e-12))


def tps_coefficients(
    control: torch.Tensor, values: torch.Tensor, regularisation: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fits ``f(control) = values`` with a thin-plate spline; ``[B, N, 2]`` each -> kernel weights ``[B, N, 2]``
    and affine part ``[B, 3, 2]``.

    Solved in float64 (N is about 100, so it is cheap); ``regularisation`` (kernel ridge) lets coinciding
    control points with different values (the inner lips of a closed mouth) meet halfway.
    """
    batch, count, _ = control.shape
    control64, values64 = control.double(), values.double()
    kernel = _radial(torch.cdist(control64, control64).square())  # [B, N, N]
    kernel = kernel + regularisation * torch.eye(count, dtype=kernel.dtype, device=kernel.device)
    affine = torch.cat([torch.ones_like(control64[..., :1]), control64], -1)  # [B, N, 3]
    system = torch.zeros(batch, count + 3, count + 3, dtype=kernel.dtype, device=kernel.device)
    system[:, :count, :count] = kernel
    system[:, :count, count:] = affine
    system[:, count:, :count] = affine.transpose(1, 2)
    right = torch.cat([values64, torch.zeros(batch, 3, 2, dtype=kernel.dtype, device=kernel.device)], 1)
    solution = torch.linalg.solve(system, right)  # [B, N + 3, 2]
    return solution[:, :count].to(control.dtype), solution[:, count:].to(control.dtype)


def tps_evaluate(points: torch.Tensor, control: torch.Tensor, weights: torch.Tensor, affine: torch.Tensor):
    """The spline of :func:`tps_coefficients` at ``points [B, P, 2]`` -> ``[B, P, 2]``."""
    kernel = _radial(torch.cdist(points, control).square())  # [B, P, N]
    return kernel @ weights + affine[:, 0:1] + points @ affine[:, 1:]


def tps_sampling_grid(
    source: torch.Tensor,
    target: torch.Tensor,
    size: int,
    grid_size: int = 64,
    anchors: int = 0,
    regularisation: float = 0.0,
) -> torch.Tensor:
    """The ``grid_sample`` grid ``[B, size, size, 2]`` that moves an image's ``source`` landmarks to ``target``.

    ``source`` and ``target`` are ``[B, N, 2]`` crop pixels. For each output pixel the spline (fitted from the
    target points to the source points, plus ``anchors`` fixed points per border side) says where in the
    source image to read. It is evaluated on a ``grid_size`` lattice through the outermost pixel centres and
    upsampled bilinearly, which is exact for the affine part and 16x cheaper at 64 for 256.
    """
    control = to_normalised(target, size)
    values = to_normalised(source, size)
    pinned = border_anchors(anchors, source.device).to(control.dtype).expand(len(control), -1, -1)
    control, values = torch.cat([control, pinned], 1), torch.cat([values, pinned], 1)
    weights, affine = tps_coefficients(control, values, regularisation)
    edge = 1.0 - 1.0 / size  # the outermost pixel centres
    axis = torch.linspace(-edge, edge, grid_size, device=source.device, dtype=control.dtype)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    lattice = torch.stack([x, y], -1).reshape(1, -1, 2).expand(len(control), -1, -1)
    coarse = tps_evaluate(lattice, control, weights, affine).reshape(-1, grid_size, grid_size, 2)
    if grid_size == size:
        return coarse
    fine = F.interpolate(coarse.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=True)
    return fine.permute(0, 2, 3, 1)


def warp(image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Reads ``image [B, C, H, W]`` at ``grid [B, H, W, 2]`` (bilinear; outside the image repeats the border)."""
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=False)
