"""Stage 3: the face renderer, a landmark-driven thin-plate-spline warp of the reference plus a learned refinement.

A batch (the stage-3 data contract) holds ``reference`` and ``target`` ``[B, 3, 256, 256]`` in [0, 1] (frames
of one clip), their landmarks ``[B, 68, 3]`` in crop pixels, and ``speaker [B]``. The net is
:class:`~lightning_modules.nets.renderer.WarpRefineRenderer`; generation loads it with :func:`load_face_renderer`
and calls :meth:`FaceRenderer.render`.
"""

import inspect
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchvision.utils import save_image

from lightning_modules.checkpoints import (
    constructor_arguments,
    load_sub_state_dict,
    read_stage_checkpoint,
    stamp_stage,
    with_default_hyperparameters,
)
from lightning_modules.image_losses import (
    PerceptualLoss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    ssim_loss,
)
from lightning_modules.image_metrics import crop_boxes, mouth_boxes, preview_grid, sketch_picture
from lightning_modules.nets.patchgan import PatchDiscriminator
from lightning_modules.nets.renderer import WarpRefineRenderer

STAGE = "renderer"
NET_PREFIX = "net."
PERCEPTUAL_PREFIX = "perceptual."
EXPECTED = "a renderer checkpoint (written by lightning_modules.renderer.FaceRenderer)"
ADDED_ARGUMENTS = ("paint_margin", "paint_gain", "draw_interior")
"""Net arguments newer than the first checkpoints: those get WarpRefineRenderer's default (for paint_margin and
paint_gain the old behaviour; the drawn interior is on)."""
NET_ARGUMENTS = tuple(inspect.signature(WarpRefineRenderer).parameters)
"""FaceRenderer's arguments that build the net, passed on by name."""
VARIANTS = {"": "output", "_warp": "warped", "_copy": "reference"}  # metric suffix -> what is compared
MOUTH_SIZE = 64  # side of the mouth crops that metrics and the mouth loss compare


class FaceRenderer(LightningModule):
    """Trains :class:`WarpRefineRenderer` (whose arguments are ``size`` ... ``paint_gain``) to reproduce the target.

    Loss: ``l1_weight`` L1 + ``ssim_weight`` (1 - SSIM) over the crop, ``mouth_weight`` L1 over the mouth box,
    ``perceptual_weight`` VGG feature L1 when ``perceptual_weights`` names a torchvision VGG state dict
    (``perceptual_network`` vgg16 or vgg19; never downloaded), and ``gan_weight`` hinge PatchGAN (0: off).
    Validation and test log PSNR and SSIM over the crop and the mouth box for the output, for the warp alone
    (``_warp``) and for a copy of the reference (``_copy``), and save a preview grid per validation epoch.
    The defaults are the configuration that ``make train-renderer`` trains (``conf/renderer.yaml`` sets none of
    them): this signature is their one source.

    Args:
        size: crop side (the data contract's face crop).
        grid_size: the spline is evaluated on a grid_size x grid_size lattice and upsampled.
        anchors: pinned points per crop border side: the background and the crop edge stay.
        regularisation: spline ridge: coinciding points (a closed mouth's inner lips) meet halfway.
        sketch_size: target landmark sketch resolution (5 part channels + the filled inner mouth).
        sketch_sigma: sketch line width, crop pixels.
        width: U-Net base width (width, 2 width, 4 width, 4 width at 1/2 ... 1/16 resolution).
        levels: U-Net levels.
        blocks: residual blocks at the U-Net's bottom.
        flow: a predicted flow correction on top of the spline.
        max_flow: the largest flow correction, normalised units (0.05 is 6 px at 256).
        mask_bias: the mask's starting logit (-2: paint 88% inside the paint region; residual and flow start at 0,
            so an untrained net renders the warp).
        paint_margin: the residual paints only within about this many crop pixels of the target's inner mouth;
            None: anywhere (checkpoints older than the option load with None).
        paint_gain: scales the residual head's logits (its weights start at 0): paints the open mouth in fewer
            steps (checkpoints older than the option load with 1).
        draw_interior: draw the inside of a mouth opening wider than the reference's by rule (cavity, upper teeth,
            tongue; ``nets.mouth_interior``) over the learned paint; checkpoints older than the option load with it.
        l1_weight: weight of the L1 loss over the crop.
        ssim_weight: weight of 1 - SSIM over the crop.
        mouth_weight: weight of L1 over the mouth box again: a small part of the crop and the part that matters.
        perceptual_weights: path to a torchvision VGG-16/19 state dict to add the perceptual term (never
            downloaded).
        perceptual_network: vgg16 or vgg19.
        perceptual_weight: weight of the perceptual term.
        gan_weight: > 0 adds a hinge PatchGAN term (manual optimisation, a second Adam).
        discriminator_width: PatchGAN base width.
        discriminator_layers: PatchGAN layers.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        gradient_clip: gradient norm clip (the trainer's setting wins when given).
        preview_rows: rows of the per-epoch preview grid (runs/renderer/<name>/previews/, W&B).
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
        mask_bias: float = -2.0,
        paint_margin: float | None = 4.0,
        paint_gain: float = 4.0,
        draw_interior: bool = True,
        l1_weight: float = 1.0,
        ssim_weight: float = 1.0,
        mouth_weight: float = 4.0,
        perceptual_weights: str | None = None,
        perceptual_network: str = "vgg19",
        perceptual_weight: float = 0.1,
        gan_weight: float = 0.0,
        discriminator_width: int = 32,
        discriminator_layers: int = 3,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        gradient_clip: float = 1.0,
        preview_rows: int = 4,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = WarpRefineRenderer(**{name: self.hparams[name] for name in NET_ARGUMENTS})
        self.perceptual = PerceptualLoss(perceptual_weights, perceptual_network) if perceptual_weights else None
        self.discriminator = None
        if gan_weight > 0:
            sketch_channels = self.net.sketch.out_channels
            self.discriminator = PatchDiscriminator(3 + sketch_channels, discriminator_width, discriminator_layers)
            self.automatic_optimization = False
        self.metrics = nn.ModuleDict({stage: self._metric_set() for stage in ("val", "test")})
        self._preview: list[torch.Tensor] | None = None

    @staticmethod
    def _metric_set() -> nn.ModuleDict:
        metrics = {}
        for suffix in VARIANTS:
            for region in ("", "_mouth"):
                metrics[f"psnr{region}{suffix}"] = PeakSignalNoiseRatio(data_range=1.0)
                metrics[f"ssim{region}{suffix}"] = StructuralSimilarityIndexMeasure(data_range=1.0)
        return nn.ModuleDict(metrics)

    def forward(
        self, reference: torch.Tensor, reference_landmarks: torch.Tensor, target_landmarks: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return self.net(reference, reference_landmarks, target_landmarks)

    @torch.inference_mode()
    def render(
        self, reference: torch.Tensor, reference_landmarks: torch.Tensor, target_landmarks: torch.Tensor
    ) -> torch.Tensor:
        """The target frames ``[B, 3, 256, 256]`` in [0, 1] of ``reference [B, 3, 256, 256]`` in [0, 1] moved from
        its landmarks ``[B, 68, 3]`` to ``target_landmarks [B, 68, 3]`` (256-crop pixels)."""
        return self.net(reference, reference_landmarks, target_landmarks)["output"].clamp(0, 1)

    @torch.inference_mode()
    def motion(
        self, reference: torch.Tensor, reference_landmarks: torch.Tensor, target_landmarks: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """What :meth:`render` would make of the same inputs, before it is applied to the crop: ``grid`` ``[B, S, S,
        2]`` (where each pixel reads the reference), ``paint`` ``[B, 3, S, S]`` (the colour added: the mouth
        interior) and, with the drawn interior, ``drawn`` ``[B, 4, S, S]`` (its colour and cover). Generation
        applies them to the photo at the photo's own resolution."""
        parts = self.net.motion(reference, reference_landmarks, target_landmarks)
        return {key: parts[key] for key in ("grid", "paint", "drawn") if key in parts}

    def reconstruction_losses(self, output: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """The weighted terms of the reconstruction loss and their sum ``loss``."""
        target, hp = batch["target"], self.hparams
        boxes = mouth_boxes(batch["target_landmarks"])
        terms = {
            "l1": (hp.l1_weight, F.l1_loss(output, target)),
            "ssim": (hp.ssim_weight, ssim_loss(output, target)),
            "mouth_l1": (
                hp.mouth_weight,
                F.l1_loss(crop_boxes(output, boxes, MOUTH_SIZE), crop_boxes(target, boxes, MOUTH_SIZE)),
            ),
        }
        if self.perceptual is not None:
            terms["perceptual"] = (hp.perceptual_weight, self.perceptual(output, target))
        losses = {name: value for name, (_, value) in terms.items()}
        losses["loss"] = sum(weight * value for weight, value in terms.values())
        return losses

    def _critic_input(self, image: torch.Tensor, batch: dict) -> torch.Tensor:
        return torch.cat([image, self.net.target_sketch(batch["target_landmarks"]).to(image.dtype)], 1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        output = self(batch["reference"], batch["reference_landmarks"], batch["target_landmarks"])["output"]
        losses = self.reconstruction_losses(output, batch)
        if self.discriminator is not None:
            losses.update(self._adversarial_step(output, batch, losses["loss"]))
        self.log_dict(
            {f"train/{name}": value.detach() for name, value in losses.items() if name != "loss"},
            batch_size=len(output),
        )
        self.log("train/loss", losses["loss"].detach(), batch_size=len(output), prog_bar=True)
        return losses["loss"]

    def _adversarial_step(self, output: torch.Tensor, batch: dict, reconstruction: torch.Tensor) -> dict:
        """One discriminator and one generator update (manual optimisation); the GAN losses, detached."""
        generator_optimiser, discriminator_optimiser = self.optimizers()
        self.toggle_optimizer(discriminator_optimiser)
        real = self.discriminator(self._critic_input(batch["target"], batch))
        fake = self.discriminator(self._critic_input(output.detach(), batch))
        critic = hinge_discriminator_loss(real, fake)
        discriminator_optimiser.zero_grad()
        self.manual_backward(critic)
        self.clip_gradients(discriminator_optimiser, self.hparams.gradient_clip, "norm")
        discriminator_optimiser.step()
        self.untoggle_optimizer(discriminator_optimiser)

        self.toggle_optimizer(generator_optimiser)
        adversarial = hinge_generator_loss(self.discriminator(self._critic_input(output, batch)))
        generator_optimiser.zero_grad()
        self.manual_backward(reconstruction + self.hparams.gan_weight * adversarial)
        self.clip_gradients(generator_optimiser, self.hparams.gradient_clip, "norm")
        generator_optimiser.step()
        self.untoggle_optimizer(generator_optimiser)
        return {"critic": critic.detach(), "adversarial": adversarial.detach()}

    def _evaluation_step(self, batch: dict, batch_idx: int, stage: str) -> None:
        result = self(batch["reference"], batch["reference_landmarks"], batch["target_landmarks"])
        result["reference"] = batch["reference"]
        target, batch_size = batch["target"], len(batch["target"])
        boxes = mouth_boxes(batch["target_landmarks"])
        target_mouth = crop_boxes(target, boxes, MOUTH_SIZE)
        metrics = self.metrics[stage]
        for suffix, key in VARIANTS.items():
            image = result[key].clamp(0, 1)
            mouth = crop_boxes(image, boxes, MOUTH_SIZE)
            for name, (prediction, truth) in {"": (image, target), "_mouth": (mouth, target_mouth)}.items():
                for kind in ("psnr", "ssim"):
                    metric = metrics[f"{kind}{name}{suffix}"]
                    metric.update(prediction, truth)
                    shown = not (name or suffix)
                    self.log(f"{stage}/{kind}{name}{suffix}", metric, batch_size=batch_size, prog_bar=shown)
        loss = self.reconstruction_losses(result["output"], batch)["loss"]
        self.log(f"{stage}/loss", loss, batch_size=batch_size, sync_dist=True)
        if stage == "val" and batch_idx == 0:
            rows = slice(0, self.hparams.preview_rows)
            sketch = sketch_picture(self.net.target_sketch(batch["target_landmarks"][rows]))
            self._preview = [batch["reference"][rows], sketch, result["output"][rows], target[rows]]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluation_step(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        """Saves the preview grid (reference | target sketch | output | ground truth) as PNG and to W&B."""
        if self._preview is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            self._preview = None
            return
        grid = preview_grid(self._preview)
        self._preview = None
        path = Path(self.trainer.default_root_dir) / "previews" / f"epoch{self.current_epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(grid, path)
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                caption = "reference | target landmarks | output | ground truth"
                logger.log_image("val/preview", [grid], step=self.global_step, caption=[caption])

    def configure_optimizers(self):
        hp = self.hparams
        if self.discriminator is None:
            return torch.optim.Adam(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        betas = (0.5, 0.999)
        return (
            torch.optim.Adam(self.net.parameters(), lr=hp.lr, betas=betas, weight_decay=hp.weight_decay),
            torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr, betas=betas),
        )

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Clips at ``gradient_clip`` (the trainer's setting wins when given)."""
        self.clip_gradients(optimizer, gradient_clip_val or self.hparams.gradient_clip, gradient_clip_algorithm)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Stamps the stage; the frozen VGG is the user's file, not part of the checkpoint."""
        stamp_stage(checkpoint, STAGE, type(self))
        checkpoint["state_dict"] = {
            name: value for name, value in checkpoint["state_dict"].items() if not name.startswith(PERCEPTUAL_PREFIX)
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Puts the VGG weights (loaded from the user's file) back, so strict loading finds every key."""
        if self.perceptual is not None:
            for name, value in self.perceptual.state_dict().items():
                checkpoint["state_dict"][PERCEPTUAL_PREFIX + name] = value


def load_face_renderer(path: str | Path, onnx_runtime: bool = False) -> FaceRenderer:
    """A :class:`FaceRenderer` for generation (eval mode, CPU) from a renderer checkpoint; with ``onnx_runtime`` its
    refinement runs by ONNX Runtime (``WarpRefineRenderer.use_onnx_runtime``: faster on a CPU, same frames) on one
    thread per call, as generation renders frames in parallel, one worker per core.

    Only the net is rebuilt (from the checkpoint's own hyper-parameters) and loaded: training-only parts (VGG,
    discriminator) are left out. A missing, unreadable or other-stage file raises ``CheckpointError`` with one
    sentence.
    """
    checkpoint = read_stage_checkpoint(path, STAGE, EXPECTED)
    checkpoint = with_default_hyperparameters(checkpoint, WarpRefineRenderer, ADDED_ARGUMENTS)
    arguments = constructor_arguments(WarpRefineRenderer, checkpoint, path, EXPECTED)
    model = FaceRenderer(**arguments, perceptual_weights=None, gan_weight=0.0)
    load_sub_state_dict(model.net, checkpoint, NET_PREFIX, path, EXPECTED)
    if onnx_runtime:
        model.net.use_onnx_runtime(threads=1)
    return model.eval()
