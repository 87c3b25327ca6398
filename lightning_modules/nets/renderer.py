"""The stage-3 renderer net: thin-plate-spline warp of the reference (column-wise within the lips), then a learned
refinement.

The warp moves the reference photo's own pixels from its landmarks to the target's, so identity comes from
the photo, not from what the net learned; the refinement (a small U-Net on the warped reference, the
reference and the target's landmark sketch) predicts a small flow correction, a colour residual for what the
warp cannot supply (mouth interior, teeth) and the mask that lets it in.
"""

import torch
from torch import nn

from lightning_modules.nets.lip_warp import lip_column_grid
from lightning_modules.nets.mouth_interior import interior_box, mouth_interior
from lightning_modules.nets.onnx_runtime import OnnxFunction
from lightning_modules.nets.refiner import RefinementUNet
from lightning_modules.nets.sketch import LandmarkSketch
from lightning_modules.nets.warp import tps_sampling_grid, warp

PAINT, MASK, FLOW = slice(0, 3), slice(3, 4), slice(4, 6)


class WarpRefineRenderer(nn.Module):
    """Reference ``[B, 3, S, S]`` in [0, 1] and landmarks ``[B, 68, 3]`` (crop pixels) -> the target frame.

    ``grid_size``, ``anchors`` (pinned points per border side) and ``regularisation`` shape the spline
    (``nets.warp.tps_sampling_grid``); ``sketch_size``/``sketch_sigma`` the landmark sketch; ``width``,
    ``levels`` and ``blocks`` the U-Net; ``flow`` adds a predicted correction of at most ``max_flow``
    (normalised units: 0.05 is 6 px at 256) to the spline's grid. The frame is ``mask * corrected + (1 - mask) *
    painted`` with ``painted = corrected + residual``: the residual and flow heads start at zero, so an untrained
    net renders exactly its warp; ``mask_bias`` is the mask's starting logit. With ``paint_margin`` (crop pixels)
    the mask is 1 outside the target's inner mouth grown by about that margin (:meth:`paint_region`), so the residual
    only paints where the warp has nothing to offer and the rest of the face is the photo's own pixels; ``None``
    lets it paint anywhere (checkpoints older than the option). ``paint_gain`` scales the residual head's
    logits: its weights start at zero and Adam moves them by about the learning rate a step, so a gain lets a
    short run reach the dark of an open mouth. With ``draw_interior`` the inside of a mouth that opens wider than
    the reference's is drawn by rule over the paint (:mod:`~lightning_modules.nets.mouth_interior`: cavity, upper
    teeth, tongue), which L1 alone blurs into a lip-pink band.
    """

    def __init__(
        self,
        size: int = 256,
        grid_size: int = 64,
        anchors: int = 4,
        regularisation: float = 1e-3,
        sketch_size: int = 128,
        sketch_sigma: float = 2.0,
        width: int = 16,
        levels: int = 4,
        blocks: int = 1,
        flow: bool = True,
        max_flow: float = 0.05,
        mask_bias: float = 0.0,
        paint_margin: float | None = None,
        paint_gain: float = 1.0,
        draw_interior: bool = True,
    ):
        super().__init__()
        self.size, self.grid_size, self.anchors, self.regularisation = size, grid_size, anchors, regularisation
        self.flow, self.max_flow, self.paint_margin, self.paint_gain = flow, max_flow, paint_margin, paint_gain
        self.draw_interior = draw_interior
        self.sketch = LandmarkSketch(sketch_size, size, sketch_sigma)
        outputs = 6 if flow else 4
        self.refiner = RefinementUNet(6 + self.sketch.out_channels, outputs, width, levels, blocks)
        self.runtime: OnnxFunction | None = None  # use_onnx_runtime: the refinement by ONNX Runtime, for inference
        with torch.no_grad():
            self.refiner.out.bias[MASK] = mask_bias
            for heads in (PAINT, FLOW) if flow else (PAINT,):
                self.refiner.out.weight[heads] = 0.0
                self.refiner.out.bias[heads] = 0.0

    def use_onnx_runtime(self, threads: int | None = None) -> "WarpRefineRenderer":
        """Runs :meth:`refinement` by ONNX Runtime whenever gradients are off (inference on a CPU: the same
        frames to float rounding, several times faster); exported from the current weights, so call it after
        loading them. Training is unchanged. Returns ``self``."""
        inputs = (torch.zeros(1, 3, self.size, self.size),) * 2 + (self.sketch(torch.zeros(1, 68, 3)),)
        self.runtime = OnnxFunction(_Refinement(self), inputs, ("warped", "reference", "sketch"), threads)
        return self

    def spline_grid(self, reference_landmarks: torch.Tensor, target_landmarks: torch.Tensor) -> torch.Tensor:
        """``[B, S, S, 2]``: where each output pixel reads the reference under the landmark spline, column by column
        between the lip edges within the lips (:func:`~lightning_modules.nets.lip_warp.lip_column_grid`: a closing
        mouth does not read the reference's open one)."""
        grid = tps_sampling_grid(
            reference_landmarks[..., :2].float(),
            target_landmarks[..., :2].float(),
            self.size,
            self.grid_size,
            self.anchors,
            self.regularisation,
        )
        return lip_column_grid(grid, reference_landmarks, target_landmarks, self.size)

    def target_sketch(self, target_landmarks: torch.Tensor) -> torch.Tensor:
        """The target's sketch ``[B, parts + 1, S, S]`` (rasterised at ``sketch_size``, upsampled)."""
        return self._upsampled(self.sketch(target_landmarks))

    def _upsampled(self, sketch: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(sketch, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def paint_region(self, sketch: torch.Tensor) -> torch.Tensor:
        """``[B, 1, S, S]`` in [0, 1] from the target's sketch ``[B, parts + 1, S, S]``: 1 on its inner-mouth polygon,
        0.5 at ``paint_margin`` crop pixels from it and 0 at twice that (a dilation, then a box blur; both square
        windows, taken along rows then columns: the same, at a fraction of the cost)."""
        radius = max(1, round(self.paint_margin))
        side = 2 * radius + 1
        grown = nn.functional.max_pool2d(sketch[:, -1:], (1, side), 1, (0, radius))
        grown = nn.functional.max_pool2d(grown, (side, 1), 1, (radius, 0))
        blurred = nn.functional.avg_pool2d(grown, (1, side), 1, (0, radius), count_include_pad=False)
        return nn.functional.avg_pool2d(blurred, (side, 1), 1, (radius, 0), count_include_pad=False)

    def refinement(
        self, warped: torch.Tensor, reference: torch.Tensor, sketch: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The learned part from the spline warp and the reference ``[B, 3, S, S]`` and the target's sketch
        ``[B, parts + 1, sketch_size, sketch_size]``: the flow correction ``[B, 2, S, S]`` (normalised units; 0
        without ``flow``), the mask ``[B, 1, S, S]`` (1: keep the warp) and the paint ``[B, 3, S, S]``."""
        sketch = self._upsampled(sketch).to(reference.dtype)
        raw = self.refiner(torch.cat([warped, reference, sketch], 1))
        if self.flow:
            correction = self.max_flow * torch.tanh(raw[:, FLOW].float())
        else:
            correction = torch.zeros_like(raw[:, :2])
        mask = torch.sigmoid(raw[:, MASK])
        if self.paint_margin is not None:
            mask = 1 - self.paint_region(sketch) * (1 - mask)
        return correction, mask, (1 - mask) * torch.tanh(self.paint_gain * raw[:, PAINT])

    def motion(
        self, reference: torch.Tensor, reference_landmarks: torch.Tensor, target_landmarks: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """What the frame is made of, at the working size: ``grid`` ``[B, S, S, 2]`` (where each output pixel reads
        the reference: the spline plus the learned correction), ``paint`` ``[B, 3, S, S]`` (the colour added to the
        reference read there: the learned ``(1 - mask) * residual`` and the drawn interior; 0 outside the mouth),
        ``warped`` (the spline warp alone), ``mask`` ``[B, 1, S, S]`` (1: keep the warp) and, with the drawn
        interior, ``drawn`` ``[B, 4, S, S]`` (its colour and its cover: where the frame is that colour whatever the
        reference held there). Generation applies ``grid``, ``paint`` and ``drawn`` to the photo at its own
        resolution (:mod:`experiments.generation.compositing`)."""
        grid = self.spline_grid(reference_landmarks, target_landmarks)
        warped = warp(reference, grid)
        refine = self.runtime if self.runtime is not None and not torch.is_grad_enabled() else self.refinement
        correction, mask, paint = refine(warped, reference, self.sketch(target_landmarks))
        grid = grid + correction.permute(0, 2, 3, 1)
        parts = {"grid": grid, "warped": warped, "mask": mask}
        if self.draw_interior:
            rows, columns = interior_box(target_landmarks, self.size)
            cover, colour = mouth_interior(reference, reference_landmarks, target_landmarks, (rows, columns))
            read = warp(reference, grid[:, rows, columns])  # what the frame has there before the paint
            paint = paint.clone()
            box = paint[..., rows, columns]
            paint[..., rows, columns] = box + cover * (colour - read - box)
            drawn = paint.new_zeros(len(paint), 4, *paint.shape[2:])
            drawn[..., rows, columns] = torch.cat([colour, cover], 1)
            parts["drawn"] = drawn
        return {**parts, "paint": paint}

    def forward(
        self,
        reference: torch.Tensor,
        reference_landmarks: torch.Tensor,
        target_landmarks: torch.Tensor,
        refine: bool = True,
    ) -> dict[str, torch.Tensor]:
        """``output`` (the frame) and ``warped`` (the spline warp alone) ``[B, 3, S, S]``; with ``refine``
        also ``mask`` ``[B, 1, S, S]`` (1: keep the warp) and ``paint`` ``[B, 3, S, S]`` (:meth:`motion`). The output
        is the reference read at the corrected grid plus the paint, clamped to [0, 1]."""
        if not refine:
            warped = warp(reference, self.spline_grid(reference_landmarks, target_landmarks))
            return {"output": warped, "warped": warped}
        parts = self.motion(reference, reference_landmarks, target_landmarks)
        corrected = warp(reference, parts["grid"]) if self.flow else parts["warped"]
        output = (corrected + parts["paint"]).clamp(0, 1)
        return {"output": output, "warped": parts["warped"], "mask": parts["mask"], "paint": parts["paint"]}


class _Refinement(nn.Module):
    """:meth:`WarpRefineRenderer.refinement` as a module's forward, for the ONNX export."""

    def __init__(self, renderer: WarpRefineRenderer):
        super().__init__()
        self.renderer = renderer

    def forward(self, warped: torch.Tensor, reference: torch.Tensor, sketch: torch.Tensor):
        return self.renderer.refinement(warped, reference, sketch)
