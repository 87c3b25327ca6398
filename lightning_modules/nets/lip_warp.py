"""The lips' part of the renderer's warp: column by column between the four lip edges, so a closing mouth skips
the reference's open mouth.

A thin-plate spline is smooth, so it cannot fold: when the target's inner lips meet and the reference's are
apart, it reads the reference's cavity (teeth, dark) along the closed lips. Within the lips, each output column
instead reads the reference's column piecewise-linearly: the target's upper lip (outer to inner edge) from the
reference's upper lip, its inner mouth from the reference's inner mouth (nothing, when it is closed) and its lower
lip from the reference's lower lip. Coordinates are crop pixels as in :mod:`lightning_modules.nets.warp`.
"""

import torch

# iBUG-68 lip edges, each a chain across the mouth: outer upper, inner upper, inner lower, outer lower.
LIP_EDGES = ((48, 49, 50, 51, 52, 53, 54), (60, 61, 62, 63, 64), (60, 67, 66, 65, 64), (48, 59, 58, 57, 56, 55, 54))


def edge_heights(points: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The y of the polyline through ``points [B, K, 2]`` (taken in order of x) at ``x [B, ...]``, linearly
    between its points; NaN outside its span of x."""
    order = points[..., 0].argsort(-1)
    knots_x = torch.gather(points[..., 0], 1, order).contiguous()
    knots_y = torch.gather(points[..., 1], 1, order)
    flat = x.reshape(len(x), -1).contiguous()
    right = torch.searchsorted(knots_x, flat).clamp(1, knots_x.shape[1] - 1)
    x0, x1 = torch.gather(knots_x, 1, right - 1), torch.gather(knots_x, 1, right)
    y0, y1 = torch.gather(knots_y, 1, right - 1), torch.gather(knots_y, 1, right)
    heights = y0 + ((flat - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0, 1) * (y1 - y0)
    inside = (flat > knots_x[:, :1]) & (flat < knots_x[:, -1:])
    return torch.where(inside, heights, torch.full_like(heights, torch.nan)).reshape(x.shape)


def _lip_edges(landmarks: torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    """The four lip edges' heights at ``x``, top to bottom; inner lips that cross are taken in order."""
    outer_upper, inner_upper, inner_lower, outer_lower = (
        edge_heights(landmarks[:, list(chain), :2].float(), x) for chain in LIP_EDGES
    )
    return [outer_upper, torch.minimum(inner_upper, inner_lower), torch.maximum(inner_upper, inner_lower), outer_lower]


def _between(value: torch.Tensor, start: torch.Tensor, stop: torch.Tensor, to_start, to_stop) -> torch.Tensor:
    """``value`` in [start, stop] carried linearly onto [to_start, to_stop]."""
    return to_start + (value - start) / (stop - start).clamp_min(1e-3) * (to_stop - to_start)


def lip_column_grid(grid: torch.Tensor, source: torch.Tensor, target: torch.Tensor, size: int) -> torch.Tensor:
    """``grid`` ``[B, S, S, 2]`` (``grid_sample`` coordinates of a ``size`` crop, as the spline gives it) with the
    rows it reads within the target's lips replaced (module docstring); ``source`` and ``target`` are the
    reference's and the target's landmarks ``[B, 68, >=2]``. Outside the lips, and where the spline's column
    falls outside the reference's inner lips, the grid is unchanged."""
    side = grid.shape[1]
    scale = size / side
    lips = target[:, LIP_EDGES[0] + LIP_EDGES[3], :2].float() / scale - 0.5  # grid cells
    first = lips.amin((0, 1)).floor().clamp(0, side - 1).long().tolist()  # the lips' box over the batch: x, y
    last = lips.amax((0, 1)).ceil().clamp(0, side - 1).long().tolist()
    box = (slice(None), slice(first[1], last[1] + 1), slice(first[0], last[0] + 1))
    read = (grid[box] + 1) * (size / 2) - 0.5  # crop pixels of the source that each output pixel reads
    read_x, read_y = read[..., 0], read[..., 1]
    axis = (torch.arange(side, dtype=grid.dtype, device=grid.device) + 0.5) * scale - 0.5
    out_y = axis[box[1], None]  # [h, 1]: each output row's height
    columns = axis[box[2]].expand(len(grid), -1)  # [B, w]: the target's edges depend on the column alone
    top, upper, lower, bottom = (edge[:, None] for edge in _lip_edges(target, columns))  # [B, 1, w] each
    source_top, source_upper, source_lower, source_bottom = _lip_edges(source, read_x)
    rows = torch.where(
        out_y < upper,
        _between(out_y, top, upper, source_top, source_upper),
        torch.where(
            out_y < lower,
            _between(out_y, upper, lower, source_upper, source_lower),
            _between(out_y, lower, bottom, source_lower, source_bottom),
        ),
    )
    within = (out_y >= top) & (out_y <= bottom) & ~torch.isnan(rows)
    read_y = torch.where(within, rows, read_y)
    grid = grid.clone()
    grid[box] = (torch.stack([read_x, read_y], -1) + 0.5) * (2 / size) - 1
    return grid
