"""Metrics that are not plain losses or accuracies."""

import torch


def memory_perplexity(addressing: torch.Tensor) -> torch.Tensor:
    """Perplexity of the mean addressing distribution over slots, from ``[..., K]`` softmax addressings.

    ``exp`` of the entropy of the batch's average slot distribution: K when every slot is used equally, 1 when
    every state reads the same slot (a collapsed memory).
    """
    usage = addressing.detach().float().flatten(0, -2).mean(dim=0)  # [K]
    return torch.exp(torch.special.entr(usage).sum())
