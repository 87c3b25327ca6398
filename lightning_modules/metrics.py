"""Metrics that are not plain losses or accuracies: memory usage (stage 1) and landmark motion (stage 2)."""

import torch
from torchmetrics import Metric


def memory_perplexity(addressing: torch.Tensor) -> torch.Tensor:
    """Perplexity of the mean addressing distribution over slots, from ``[..., K]`` softmax addressings.

    ``exp`` of the entropy of the batch's average slot distribution: K when every slot is used equally, 1 when
    every state reads the same slot (a collapsed memory).
    """
    usage = addressing.detach().float().flatten(0, -2).mean(dim=0)  # [K]
    return torch.exp(torch.special.entr(usage).sum())


MOUTH = slice(48, 68)


def mouth_opening(landmarks: torch.Tensor) -> torch.Tensor:
    """Mean vertical gap ``[...]`` between the inner lips (61-67, 62-66, 63-65) of ``[..., 68, >=2]`` landmarks."""
    return (landmarks[..., [67, 66, 65], 1] - landmarks[..., [61, 62, 63], 1]).mean(-1)


def point_distances(predicted: torch.Tensor, target: torch.Tensor, points: slice = slice(None)) -> torch.Tensor:
    """Mean image-plane (x, y) distance over ``points`` of ``[..., 68, >=2]`` landmarks -> ``[...]``."""
    return torch.linalg.vector_norm(predicted[..., points, :2] - target[..., points, :2], dim=-1).mean(-1)


class LandmarkDistance(Metric):
    """LMD: mean x, y distance between predicted and true landmarks ``[B, T, 68, 3]`` over ``points`` and the
    frames with ``mask`` 1, in the landmarks' units (inter-ocular units for registered landmarks)."""

    full_state_update = False

    def __init__(self, points: slice = slice(None), **kwargs):
        super().__init__(**kwargs)
        self.points = points
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        distances = point_distances(predicted.float(), target.float(), self.points)  # [B, T]
        self.total += (distances * mask).sum().double()
        self.count += mask.sum().double()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class LandmarkVelocityDistance(LandmarkDistance):
    """LVD: mean x, y distance between predicted and true frame-to-frame landmark velocities, over pairs of
    consecutive frames that both have ``mask`` 1."""

    def update(self, predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        super().update(predicted.diff(dim=1), target.diff(dim=1), mask[:, 1:] * mask[:, :-1])


class MouthOpeningCorrelation(Metric):
    """Pearson correlation of predicted and true mouth opening over frames with ``mask`` 1, each clip centred
    on its own means: how well the mouth follows the speech in time, not how open a speaker's mouth is on
    average. 0 for a prediction that does not move."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("products", "predicted_squares", "target_squares"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        mask = mask.double()
        count = mask.sum(1, keepdim=True).clamp_min(1)
        openings = []
        for landmarks in (predicted, target):
            opening = mouth_opening(landmarks.double())  # [B, T]
            openings.append((opening - (opening * mask).sum(1, keepdim=True) / count) * mask)
        self.products += (openings[0] * openings[1]).sum()
        self.predicted_squares += (openings[0] ** 2).sum()
        self.target_squares += (openings[1] ** 2).sum()

    def compute(self) -> torch.Tensor:
        scale = torch.sqrt(self.predicted_squares * self.target_squares)
        return (self.products / scale if scale > 0 else torch.zeros_like(scale)).float()


class BestOfKDistance(Metric):
    """Best-of-K LMD over ``points``: per clip, the distance of the closest of K samples ``[K, B, T, 68, 3]``
    (mean over the clip's frames with ``mask`` 1), averaged over clips."""

    full_state_update = False

    def __init__(self, points: slice = MOUTH, **kwargs):
        super().__init__(**kwargs)
        self.points = points
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("clips", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, samples: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        distances = point_distances(samples.float(), target.float()[None], self.points)  # [K, B, T]
        frames = mask.sum(1)  # [B]
        per_clip = (distances * mask).sum(-1) / frames.clamp_min(1)  # [K, B]
        valid = frames > 0
        self.total += per_clip.min(0).values[valid].sum().double()
        self.clips += valid.sum().double()

    def compute(self) -> torch.Tensor:
        return (self.total / self.clips.clamp_min(1)).float()


class SampleDiversity(Metric):
    """Diversity of K samples ``[K, B, T, 68, 3]``: the mean x, y distance between two different samples of
    the same frame, over all pairs, landmarks and frames with ``mask`` 1; 0 when every sample is the same."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, samples: torch.Tensor, mask: torch.Tensor) -> None:
        samples = samples.float()
        first, second = torch.triu_indices(len(samples), len(samples), offset=1)
        distances = point_distances(samples[first], samples[second])  # [pairs, B, T]
        self.total += (distances * mask).sum().double()
        self.count += mask.sum().double() * len(first)

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()
