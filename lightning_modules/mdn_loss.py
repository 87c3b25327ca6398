"""The MDN loss: a weighted Gaussian-mixture negative log-likelihood with a Dirichlet prior on the weights."""

import math
from dataclasses import dataclass

import torch
from torch import nn

LIPS = slice(48, 68)
SCOPES = ("frame", "clip")


@dataclass
class MixtureLossOutput:
    """The total loss and its terms (all ``[]``)."""

    loss: torch.Tensor
    nll: torch.Tensor  # weighted NLL per target dimension, averaged over valid frames
    prior: torch.Tensor  # negative log Dirichlet density of the mixture weights (up to a constant)


def landmark_weights(
    opening: torch.Tensor, pose_dim: int, lip_weight: float, closed_weight: float, closed_opening: float
) -> torch.Tensor:
    """Per-dimension NLL weights ``[B, T, 136 + pose_dim]`` from the true mouth opening ``[B, T]``.

    Lip points (48-67) weigh ``lip_weight * (1 + closed_weight * c)`` with ``c`` going from 0 (opening at
    least ``closed_opening``) to 1 (closed), so lip contacts are fitted tightly; everything else weighs 1.
    """
    closedness = (1 - opening / closed_opening).clamp(0, 1)  # [B, T]
    points = torch.ones(*opening.shape, 68, 2, device=opening.device)
    points[..., LIPS, :] = lip_weight * (1 + closed_weight * closedness)[..., None, None]
    return torch.cat([points.flatten(-2), torch.ones(*opening.shape, pose_dim, device=opening.device)], dim=-1)


class MixtureNLL(nn.Module):
    """Gaussian mixture NLL of target tracks, isotropic within each component.

    ``scope="frame"`` (the published MDN): every frame is its own mixture, ``log p(x_t) = logsumexp_m [log
    pi_tm + sum_d w_d log N(x_td; mu_tmd, sigma_tm)]``. ``scope="clip"``: one component explains a clip's
    whole track, ``log p(x) = logsumexp_m [log pi_m + sum_t sum_d w_d log N(...)]`` with the clip's weights
    ``pi_m`` (the logits of frame 0; ``LandmarkMDN`` makes them equal over time), so that the components are
    alternative tracks, not a per-frame choice. Either is divided by the summed weights of the valid frames so
    that it is a per-dimension figure; plus ``dirichlet_weight`` times ``-(alpha - 1) sum_m log pi_m``, the Dirichlet
    prior that keeps every component alive: per frame, averaged over frames; per clip, in the units of the clip's
    log-likelihood (divided by the same sum), so that the weights settle at (wins + dirichlet_weight) / (1 + M
    dirichlet_weight) of the clips, not at uniform. Computed in float32.
    """

    def __init__(self, dirichlet_alpha: float = 2.0, dirichlet_weight: float = 0.005, scope: str = "frame"):
        super().__init__()
        if scope not in SCOPES:
            raise ValueError(f"the mixture scope must be one of {', '.join(SCOPES)}, not {scope!r}.")
        self.dirichlet_alpha, self.dirichlet_weight, self.scope = dirichlet_alpha, dirichlet_weight, scope

    def forward(
        self,
        means: torch.Tensor,
        sigmas: torch.Tensor,
        logits: torch.Tensor,
        target: torch.Tensor,
        weights: torch.Tensor,
        mask: torch.Tensor,
    ) -> MixtureLossOutput:
        """Means ``[B, T, M, D]``; sigmas, logits ``[B, T, M]``; target, weights ``[B, T, D]``; mask ``[B, T]``."""
        means, sigmas, logits, target = means.float(), sigmas.float(), logits.float(), target.float()
        log_weights = logits.log_softmax(dim=-1)  # [B, T, M]
        squared = ((target[..., None, :] - means) / sigmas[..., None]) ** 2  # [B, T, M, D]
        log_density = -0.5 * squared - torch.log(sigmas)[..., None] - 0.5 * math.log(2 * math.pi)
        weighted = (log_density * weights[..., None, :]).sum(-1)  # [B, T, M]
        valid = mask.float()
        if self.scope == "clip":
            track = (weighted * valid[..., None]).sum(1)  # [B, M]
            dimensions = (weights.sum(-1) * valid).sum().clamp_min(1)
            nll = -torch.logsumexp(log_weights[:, 0] + track, dim=-1).sum() / dimensions
            clips = (valid.sum(1) > 0).float()  # [B]
            prior = -(self.dirichlet_alpha - 1) * (log_weights[:, 0].sum(-1) * clips).sum() / dimensions
            return MixtureLossOutput(nll + self.dirichlet_weight * prior, nll, prior)
        nll = -torch.logsumexp(log_weights + weighted, dim=-1) / weights.sum(-1)  # [B, T]
        prior = -(self.dirichlet_alpha - 1) * log_weights.sum(-1)  # [B, T]
        count = valid.sum().clamp_min(1)
        nll, prior = (nll * valid).sum() / count, (prior * valid).sum() / count
        return MixtureLossOutput(nll + self.dirichlet_weight * prior, nll, prior)
