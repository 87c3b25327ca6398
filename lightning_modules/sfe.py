"""Stage 1: memory-augmented audio-visual contrastive pretraining of the Speech Feature Extractor (SFE).

A batch (the stage-1 data contract) holds ``audio [B, T, 20, 80]`` mel windows, ``frames [B, T, 5, 3, H, W]``
in [0, 1] (the 5 video frames around each step, augmented by the DataModule) and ``speaker [B]``. The audio
branch (:class:`~lightning_modules.nets.sfe.SpeechFeatureExtractor`) is what stage 2 takes over through
:func:`load_speech_feature_extractor`.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule

from lightning_modules.checkpoints import (
    constructor_arguments,
    load_sub_state_dict,
    read_stage_checkpoint,
    stamp_stage,
    with_default_hyperparameters,
)
from lightning_modules.losses import SpeakerInfoNCE, SyncInfoNCE
from lightning_modules.metrics import memory_perplexity
from lightning_modules.nets.sfe import SpeechFeatureExtractor
from lightning_modules.nets.visual_encoder import VisualEncoder

STAGE = "sfe"
AUDIO_PREFIX = "audio."
EXPECTED = "an SFE checkpoint (written by lightning_modules.sfe.SFEPretraining)"
ADDED_ARGUMENTS = ("step_stride",)
"""SFEPretraining arguments newer than the first checkpoints: those get the default when loaded."""
REMOVED = ("sync_loss.similarity.bias", "speaker_loss.similarity.bias")
"""Parameters of older checkpoints, each right after its module's ``similarity.scale``: the similarity biases,
which never changed a loss (``losses.ScaledCosine``)."""


class SFEPretraining(LightningModule):
    """Trains the SFE audio branch against a visual encoder with two InfoNCE losses (sync + speaker).

    Audio-branch arguments (``audio_dim`` ... ``mel_bins``) are those of ``SpeechFeatureExtractor``;
    ``memory=False`` is the no-memory ablation (linear projections instead of memory reads). The visual
    encoder is a ResNet-18 of base ``visual_width`` on each of ``frames_per_step`` frames: 32 by default (a quarter of
    the published trunk's work, as good a teacher on the embedded corpus: ``results/tables/sfe-trunk.md``), 64 as
    published.
    ``step_stride`` (video frames between steps) is the data's, linked by the CLI and kept in the hyperparameters
    so that stage 2 knows the spacing of the steps its BiGRU was trained on.
    In training the speaker loss's negatives are the global batch (gathered across DDP ranks); in validation
    and test they are the device's batch. Clips of the query's own speaker are never its negatives.
    """

    def __init__(
        self,
        audio_dim: int = 256,
        audio_width: int = 32,
        gru_hidden: int = 512,
        feature_dim: int = 128,
        memory: bool = True,
        memory_slots: int = 512,
        memory_hidden: int = 512,
        window_frames: int = 20,
        mel_bins: int = 80,
        visual_width: int = 32,
        visual_hidden: int = 512,
        frames_per_step: int = 5,
        step_stride: int = 3,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.audio = SpeechFeatureExtractor(
            audio_dim=audio_dim,
            audio_width=audio_width,
            gru_hidden=gru_hidden,
            feature_dim=feature_dim,
            memory=memory,
            memory_slots=memory_slots,
            memory_hidden=memory_hidden,
            window_frames=window_frames,
            mel_bins=mel_bins,
        )
        self.visual = VisualEncoder(feature_dim, visual_width, frames_per_step, visual_hidden, step_stride)
        self.sync_loss = SyncInfoNCE()
        self.speaker_loss = SpeakerInfoNCE()

    def forward(self, audio: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """The audio branch alone: ``[B, T, 20, 80]`` -> content and speaker features ``[B, T, D]``."""
        return self.audio(audio)

    def speaker_steps(self, batch: dict) -> torch.Tensor:
        """``[B]`` step per clip whose visual speaker feature is the identity target.

        A random step in training, as published; the centre step otherwise, so validation is deterministic.
        """
        batch_size, steps = batch["audio"].shape[:2]
        if self.training:
            return torch.randint(steps, (batch_size,), device=self.device)
        return torch.full((batch_size,), steps // 2, device=self.device)

    def gather_candidates(self, visual: torch.Tensor, speakers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """This rank's visual speaker features ``[B, D]`` and speaker ids ``[B]`` -> the global batch's ``[N, D]``
        and ``[N]``, and this rank's offset in it.

        Features are gathered with gradient, so each rank's loss also trains the other ranks' visual features.
        Ranks may hold different batch sizes (a last, short batch): rows are padded to the largest and the
        padding dropped.
        """
        if self.trainer.world_size == 1:
            return visual, speakers, 0
        sizes = self.all_gather(torch.tensor(visual.shape[0], device=visual.device))  # [W]
        padding = int(sizes.max()) - visual.shape[0]
        gathered = self.all_gather(F.pad(visual, (0, 0, 0, padding)), sync_grads=True)  # [W, max(B), D]
        gathered_speakers = self.all_gather(F.pad(speakers, (0, padding)))  # [W, max(B)]
        valid = torch.arange(gathered.shape[1], device=visual.device) < sizes[:, None]  # [W, max(B)]
        return gathered[valid], gathered_speakers[valid], int(sizes[: self.global_rank].sum())

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        batch_size = batch["audio"].shape[0]
        audio = self.audio(batch["audio"])  # content, speaker [B, T, D]
        visual_content, visual_speaker = self.visual(batch["frames"])  # [B, T, D] each
        sync = self.sync_loss(audio["content"], visual_content)
        clips = torch.arange(batch_size, device=self.device)
        visual_identity = visual_speaker[clips, self.speaker_steps(batch)]  # [B, D]
        # Evaluation compares within each device's batch: no per-step collective (ranks may hold different
        # numbers of evaluation batches), so id_* depend on how clips are dealt to devices; sync_* do not.
        if stage == "train":
            candidates, speakers, offset = self.gather_candidates(visual_identity, batch["speaker"])
        else:
            candidates, speakers, offset = visual_identity, batch["speaker"], 0
        speaker = self.speaker_loss(audio["speaker"].mean(dim=1), candidates, offset, speakers)
        loss = sync.loss + speaker.loss
        metrics = {
            "sync_loss": sync.loss,
            "speaker_loss": speaker.loss,
            "sync_top1": sync.accuracy(1),
            "sync_top5": sync.accuracy(5),
            "id_top1": speaker.accuracy(1),
            "id_top3": speaker.accuracy(3),
        }
        for name in ("content", "speaker"):
            if audio[f"{name}_addressing"] is not None:
                metrics[f"memory_perplexity_{name}"] = memory_perplexity(audio[f"{name}_addressing"])
        if stage == "train":
            metrics["sync_scale"] = self.sync_loss.similarity.scale
            metrics["speaker_scale"] = self.speaker_loss.similarity.scale
        self.log_dict(
            {f"{stage}/{name}": value.detach() for name, value in metrics.items()},
            batch_size=batch_size,
            sync_dist=stage != "train",
        )
        self.log(f"{stage}/loss", loss.detach(), batch_size=batch_size, prog_bar=True, sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stamp_stage(checkpoint, STAGE, type(self))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        drop_removed_parameters(checkpoint, [name for name, _ in self.named_parameters()])


def drop_removed_parameters(checkpoint: dict, names: list[str]) -> None:
    """Drops :data:`REMOVED` from an older checkpoint's weights and from its optimiser states, whose entries are
    numbered by position among the parameters (``names``: this module's, in order), so that it loads and resumes."""
    removed = [name for name in REMOVED if name in checkpoint["state_dict"]]
    if not removed:
        return
    for name in removed:
        del checkpoint["state_dict"][name]
    then = []  # the parameter names in the checkpoint's order
    for name in names:
        then += [name] + [bias for bias in removed if bias == name.removesuffix("scale") + "bias"]
    position = {then.index(name): now for now, name in enumerate(names)}  # the checkpoint's position -> ours
    for optimizer in checkpoint.get("optimizer_states", []):
        optimizer["state"] = {position[old]: state for old, state in optimizer["state"].items() if old in position}
        for group in optimizer["param_groups"]:
            group["params"] = [position[old] for old in group["params"] if old in position]


@dataclass
class SFEHandoff:
    """What stage 2 takes over from an SFE checkpoint: the audio branch and the settings it was trained with."""

    net: SpeechFeatureExtractor
    hparams: dict
    """``SFEPretraining``'s arguments (``feature_dim``, ``memory``, ``step_stride``, ...); one of
    ``ADDED_ARGUMENTS`` that the checkpoint predates has its default."""


def load_speech_feature_extractor(path: str | Path) -> SFEHandoff:
    """Rebuilds the SFE audio branch (encoder, BiGRU, both memories) from an SFE checkpoint, on the CPU.

    The net is built from the checkpoint's own hyper-parameters and returned in training mode, like any new
    module, beside those hyper-parameters (:class:`SFEHandoff`). A missing, unreadable or other-stage file
    raises ``CheckpointError`` with one sentence.
    """
    checkpoint = read_stage_checkpoint(path, STAGE, EXPECTED)
    checkpoint = with_default_hyperparameters(checkpoint, SFEPretraining, ADDED_ARGUMENTS)
    net = SpeechFeatureExtractor(**constructor_arguments(SpeechFeatureExtractor, checkpoint, path, EXPECTED))
    load_sub_state_dict(net, checkpoint, AUDIO_PREFIX, path, EXPECTED)
    hparams = {name: value for name, value in checkpoint["hyper_parameters"].items() if not name.startswith("_")}
    return SFEHandoff(net, hparams)
