"""Stage-2 nets: the SFE audio branch run on interleaved frame phases, and the mixture density head."""

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lightning_modules.nets.sfe import SpeechFeatureExtractor


def phase_features(sfe: SpeechFeatureExtractor, audio: torch.Tensor, stride: int) -> dict[str, torch.Tensor | None]:
    """Per-frame SFE features ``[B, T, D]`` from mel windows ``[B, T, 20, 80]``, with the BiGRU run on steps
    ``stride`` frames apart, as in pretraining (``phase_states``)."""
    batch, frames = audio.shape[:2]
    encoded = sfe.encoder(audio.flatten(0, 1)).unflatten(0, (batch, frames))  # [B, T, C]
    return sfe.read_memories(phase_states(sfe.gru, encoded, stride))


def phase_states(
    gru: nn.GRU, encoded: torch.Tensor, stride: int, forward_state: torch.Tensor | None = None
) -> torch.Tensor:
    """States ``[B, T, 2 * hidden]`` of the bidirectional ``gru`` over encoded frames ``[B, T, C]``, run on each of
    the ``stride`` interleaved phases (frames 0, s, 2s, ...; 1, s+1, ...; ...) as its own sequence and interleaved
    back, so each state has seen steps spaced as in stage 1. Phases of unequal length are packed: no padding enters
    a state.

    ``forward_state [stride, B, hidden]`` (zeros when None) starts the forward direction of the phase whose first
    frame is 0, 1, ...: a live decoder carries it over from the frames before these. The backward direction always
    starts from zeros after the last frame.
    """
    batch, frames = encoded.shape[:2]
    stride = max(1, min(stride, frames))
    longest = -(-frames // stride)
    padded = F.pad(encoded, (0, 0, 0, longest * stride - frames))  # [B, L * s, C]
    sequences = rearrange(padded, "b (l s) c -> (s b) l c", s=stride)  # phase-major
    lengths = torch.tensor([len(range(phase, frames, stride)) for phase in range(stride)]).repeat_interleave(batch)
    packed = pack_padded_sequence(sequences, lengths, batch_first=True, enforce_sorted=False)
    initial = None
    if forward_state is not None:
        forward = forward_state[:stride].flatten(0, 1)  # [(s b), hidden], phase-major as the sequences
        initial = torch.stack([forward, torch.zeros_like(forward)])  # [2 directions, (s b), hidden]
    states, _ = pad_packed_sequence(gru(packed, initial)[0], batch_first=True, total_length=longest)
    return rearrange(states, "(s b) l c -> b (l s) c", s=stride)[:, :frames]  # [B, T, 2 * hidden]


class MixtureDensityHead(nn.Module):
    """SFE features and a reference face -> a Gaussian mixture over each frame's landmarks and pose.

    The normalised reference landmarks ``[B, points_dim]`` are encoded by a linear layer to ``reference_dim``;
    ``concat(content, speaker, reference) -> ReLU -> Linear(hidden) -> ReLU -> dropout`` feeds three heads:
    ``M`` means of ``points_dim + pose_dim`` (the landmark part is an offset from the reference), one sigma
    per component (ELU + 1, clamped) and ``M`` mixture logits. The ReLU after the hidden layer keeps it from
    folding into the linear heads. ``closure``: a fourth head, the logit of each frame's lips being closed
    (not in the published model; ``LandmarkMDN`` trains it and closes the decoded lips with it). ``visemes`` > 0:
    a head of that many viseme logits per frame, an auxiliary target that asks the hidden layer for the phonetic
    class of the mouth (not in the published model).
    """

    def __init__(
        self,
        feature_dim: int = 128,
        points_dim: int = 136,
        pose_dim: int = 6,
        reference_dim: int = 64,
        hidden_dim: int = 320,
        components: int = 3,
        dropout: float = 0.2,
        sigma_min: float = 0.01,
        sigma_max: float = 10.0,
        closure: bool = False,
        visemes: int = 0,
    ):
        super().__init__()
        self.points_dim, self.components = points_dim, components
        self.out_dim = points_dim + pose_dim
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.reference = nn.Linear(points_dim, reference_dim)
        self.hidden = nn.Sequential(
            nn.ReLU(), nn.Linear(2 * feature_dim + reference_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.means = nn.Linear(hidden_dim, components * self.out_dim)
        self.sigmas = nn.Linear(hidden_dim, components)
        self.logits = nn.Linear(hidden_dim, components)
        self.closure = nn.Linear(hidden_dim, 1) if closure else None
        self.visemes = nn.Linear(hidden_dim, visemes) if visemes > 0 else None

    def forward(
        self,
        content: torch.Tensor,
        speaker: torch.Tensor,
        reference: torch.Tensor,
        encoder_reference: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``[B, T, D]`` twice and ``[B, points_dim]`` -> ``means [B, T, M, out]``, ``sigmas``, ``logits [B, T, M]``
        (and ``closure_logits [B, T]`` with the closure head, ``viseme_logits [B, T, V]`` with the viseme head).

        ``encoder_reference`` (default ``reference``) is what the reference encoder sees; the offset of the
        means is always ``reference`` itself."""
        frames = content.shape[1]
        encoder_reference = reference if encoder_reference is None else encoder_reference
        encoded = self.reference(encoder_reference)[:, None].expand(-1, frames, -1)  # [B, T, reference_dim]
        hidden = self.hidden(torch.cat([content, speaker, encoded.to(content.dtype)], dim=-1))
        means = rearrange(self.means(hidden), "b t (m d) -> b t m d", m=self.components).float()
        offset = F.pad(reference.float(), (0, self.out_dim - self.points_dim))[:, None, None]  # [B, 1, 1, out]
        sigmas = (F.elu(self.sigmas(hidden).float()) + 1).clamp(self.sigma_min, self.sigma_max)
        outputs = {"means": means + offset, "sigmas": sigmas, "logits": self.logits(hidden).float()}
        if self.closure is not None:
            outputs["closure_logits"] = self.closure(hidden).float().squeeze(-1)
        if self.visemes is not None:
            outputs["viseme_logits"] = self.visemes(hidden).float()
        return outputs
