"""Contrastive losses of the SFE pretraining: InfoNCE over time (sync) and over the batch (speaker)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy


@dataclass
class InfoNCEOutput:
    """A contrastive loss with the logits and targets it came from, for accuracies."""

    loss: torch.Tensor  # []
    logits: torch.Tensor  # [..., N, M]: query n against candidate m
    targets: torch.Tensor  # [..., N]: index of the matching candidate

    def accuracy(self, top_k: int = 1) -> torch.Tensor:
        """Fraction of queries whose matching candidate is among the ``top_k`` highest logits."""
        candidates = self.logits.shape[-1]
        return multiclass_accuracy(
            self.logits.detach().flatten(0, -2),
            self.targets.flatten(),
            num_classes=candidates,
            top_k=min(top_k, candidates),
            average="micro",
            validate_args=False,
        )


class ScaledCosine(nn.Module):
    """Cosine similarity times a learnable scale ``w`` (the inverse temperature, init 10).

    The published method also adds a learnable bias (init -5); a softmax cross-entropy is blind to a shift
    shared by all logits (its gradient is 0), so it is left out (``SFEPretraining`` drops it from older
    checkpoints).
    """

    def __init__(self, scale: float = 10.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """``[..., N, D]`` and ``[..., M, D]`` -> logits ``[..., N, M]``, computed in float32."""
        queries = F.normalize(queries.float(), dim=-1)
        candidates = F.normalize(candidates.float(), dim=-1)
        return self.scale * queries @ candidates.transpose(-1, -2)


class SyncInfoNCE(nn.Module):
    """Content (sync) loss: within each clip, every audio step against every visual step of the same clip.

    One batched matmul gives all clips' ``[T, T]`` logits at once; the matching step is the target.
    """

    def __init__(self):
        super().__init__()
        self.similarity = ScaledCosine()

    def forward(self, audio: torch.Tensor, visual: torch.Tensor) -> InfoNCEOutput:
        """Audio and visual content features ``[B, T, D]`` -> loss and logits ``[B, T, T]``."""
        batch, steps = audio.shape[:2]
        logits = self.similarity(audio, visual)  # [B, T, T]
        targets = torch.arange(steps, device=logits.device).expand(batch, steps)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return InfoNCEOutput(loss, logits, targets)


class SpeakerInfoNCE(nn.Module):
    """Speaker (identity) loss: each clip's audio speaker feature against the visual ones of every clip.

    Under DDP, ``candidates`` is the global batch (gathered with gradient) and ``offset`` the position of
    this rank's first clip in it, so each rank's queries see every clip of the global batch as a negative.
    Given the candidates' ``speakers``, other clips of a query's own speaker are no negatives: their logits
    are masked out (-inf), so the loss never pushes apart two clips of one person.
    """

    def __init__(self):
        super().__init__()
        self.similarity = ScaledCosine()

    def forward(
        self,
        audio: torch.Tensor,
        candidates: torch.Tensor,
        offset: int = 0,
        speakers: torch.Tensor | None = None,
    ) -> InfoNCEOutput:
        """Audio ``[B, D]`` of this rank's clips, visual ``[N, D]`` of all clips and their speaker ids ``[N]``
        (None: all different) -> loss, logits ``[B, N]``."""
        logits = self.similarity(audio, candidates)  # [B, N]
        targets = offset + torch.arange(audio.shape[0], device=logits.device)
        if speakers is not None:
            same_speaker = speakers[targets][:, None] == speakers[None, :]  # [B, N]
            same_speaker[torch.arange(len(targets), device=logits.device), targets] = False
            logits = logits.masked_fill(same_speaker, float("-inf"))
        return InfoNCEOutput(F.cross_entropy(logits, targets), logits, targets)
