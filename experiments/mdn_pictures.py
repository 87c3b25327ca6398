"""Pictures of stage 2 per validation epoch: mouth-opening curves (PNG) and a landmark animation with audio (MP4).

A trainer callback (in ``experiments/`` because it uses both the model and the data code's media writer):
configured in ``conf/mdn.yaml``; files go to ``<run>/pictures/`` and, with a W&B logger, to W&B.
"""

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import torch
import torchaudio
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from datamodules import audio as mel_settings
from datamodules.media import write_video
from lightning_modules.metrics import mouth_opening

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402

# iBUG-68 outlines: (first point, last point, closed)
OUTLINES = [(0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
            (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True)]  # fmt: skip
TRUE_COLOUR, PREDICTED_COLOUR = (60, 200, 60), (230, 60, 60)


def mel_track(windows: torch.Tensor) -> torch.Tensor:
    """The mel frames ``[4T, 80]`` that frames' own 40 ms span, from their centred windows ``[T, 20, 80]``."""
    own = 2 * mel_settings.MELS_PER_FRAME  # a window starts 2 video frames before its frame
    return windows[:, own : own + mel_settings.MELS_PER_FRAME].reshape(-1, windows.shape[-1])


def mel_to_waveform(mel: torch.Tensor, iterations: int = 32) -> np.ndarray:
    """An approximate 16 kHz waveform ``[N]`` of a normalised log-mel ``[frames, 80]`` (Griffin-Lim), to hear along."""
    decibels = mel.float().T * -mel_settings.MIN_LEVEL_DB + mel_settings.MIN_LEVEL_DB + mel_settings.REF_LEVEL_DB
    amplitude = torch.pow(10.0, decibels / 20.0)
    inverse = torchaudio.transforms.InverseMelScale(
        n_stft=mel_settings.N_FFT // 2 + 1,
        n_mels=mel.shape[-1],
        sample_rate=16000,
        f_min=mel_settings.F_MIN,
        f_max=mel_settings.F_MAX,
        norm="slaney",
        mel_scale="slaney",
    )
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=mel_settings.N_FFT,
        win_length=mel_settings.WIN_LENGTH,
        hop_length=mel_settings.HOP_LENGTH,
        power=1.0,
        n_iter=iterations,
    )
    with torch.no_grad():
        waveform = griffin_lim(inverse(amplitude).clamp_min(0))
    return (0.9 * waveform / waveform.abs().max().clamp_min(1e-6)).numpy().astype(np.float32)


def draw_faces(tracks: list[tuple[np.ndarray, tuple[int, int, int]]], size: int = 256) -> np.ndarray:
    """Frames ``[T, size, size, 3]`` uint8 with each registered track ``[T, 68, >=2]`` drawn in its colour."""
    frames = np.full((len(tracks[0][0]), size, size, 3), 255, np.uint8)
    for points, colour in tracks:
        pixels = np.round(points[..., :2] * 0.42 * size + [size / 2, 0.46 * size]).astype(np.int32)
        for frame, frame_pixels in zip(frames, pixels, strict=True):
            for first, last, closed in OUTLINES:
                cv2.polylines(frame, [frame_pixels[first : last + 1]], closed, colour, 1, cv2.LINE_AA)
    return frames


class MDNPictures(Callback):
    """Keeps the first ``clips`` clips of the first validation batch; after each validation epoch writes their
    predicted (``max`` decoding) and true mouth-opening curves and an animation of the first clip (true in
    green, predicted in red) with its audio (resynthesised from the mel by Griffin-Lim)."""

    def __init__(self, clips: int = 4, every_n_epochs: int = 1):
        self.clips, self.every_n_epochs = clips, every_n_epochs
        self.batch: dict | None = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0 and dataloader_idx == 0 and trainer.is_global_zero:
            names = ("audio", "registered", "reference", "mask")
            self.batch = {name: batch[name][: self.clips].detach().cpu() for name in names}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.batch is None:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        out_dir = Path(trainer.default_root_dir) / "pictures"
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"epoch{trainer.current_epoch:03d}-step{trainer.global_step:06d}"
        batch, self.batch = self.batch, None
        predicted = [
            pl_module.generate(batch["audio"][clip : clip + 1], batch["reference"][clip], mode="max")["registered"][0]
            for clip in range(len(batch["audio"]))
        ]
        curves = self.plot_openings(batch, predicted, out_dir / f"{stem}-mouth-opening.png")
        animation = out_dir / f"{stem}-landmarks.mp4"
        frames = draw_faces(
            [(batch["registered"][0].numpy(), TRUE_COLOUR), (predicted[0].cpu().numpy(), PREDICTED_COLOUR)]
        )
        write_video(animation, frames, mel_to_waveform(mel_track(batch["audio"][0])))
        if isinstance(trainer.logger, WandbLogger):
            import wandb

            trainer.logger.log_image("val/mouth_opening", [str(curves)], step=trainer.global_step)
            trainer.logger.experiment.log({"val/landmarks": wandb.Video(str(animation), format="mp4")})

    @staticmethod
    def plot_openings(batch: dict, predicted: list[torch.Tensor], path: Path) -> Path:
        clips = len(predicted)
        figure, axes = pyplot.subplots(clips, 1, figsize=(6, 1.6 * clips), sharex=True, squeeze=False)
        for clip, axis in enumerate(axes[:, 0]):
            valid = batch["mask"][clip].numpy() > 0
            true = np.where(valid, mouth_opening(batch["registered"][clip]).numpy(), np.nan)
            axis.plot(true, color="tab:green", label="true")
            axis.plot(mouth_opening(predicted[clip].cpu()).numpy(), color="tab:red", label="predicted")
            axis.set_ylabel(f"clip {clip}")
        axes[0, 0].legend(loc="upper right", fontsize="small")
        axes[-1, 0].set_xlabel("frame (25 fps); mouth opening in inter-ocular units")
        figure.tight_layout()
        figure.savefig(path, dpi=80)
        pyplot.close(figure)
        return path
