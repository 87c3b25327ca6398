"""Memory read-outs of the SFE: a learned bank of slots, and the linear projection of the no-memory ablation."""

import torch
from torch import nn


class MemoryBank(nn.Module):
    """``slots`` learned vectors of ``dim`` dims, read by a softmax over slots from an MLP of the state.

    The read is a convex combination of the slots, so a speech state can only point at stored visual
    outcomes; the addressing is returned so that slot usage (a collapsed memory) can be monitored.
    """

    def __init__(self, state_dim: int, slots: int = 512, dim: int = 128, hidden: int = 512):
        super().__init__()
        self.address = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, slots))
        self.slots = nn.Parameter(torch.randn(slots, dim))

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, state_dim]`` -> read ``[B, T, dim]``, addressing ``[B, T, slots]`` (rows sum to 1).

        The softmax runs in float32 even under mixed precision: bf16 cannot resolve 512 small probabilities.
        """
        addressing = self.address(state).float().softmax(dim=-1)
        read = torch.einsum("...k,kd->...d", addressing, self.slots)
        return read, addressing


class LinearReadout(nn.Module):
    """The ``memory: false`` ablation: a linear projection of the state, with no slots and no addressing."""

    def __init__(self, state_dim: int, dim: int = 128):
        super().__init__()
        self.projection = nn.Linear(state_dim, dim)

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``[B, T, state_dim]`` -> read ``[B, T, dim]`` and no addressing."""
        return self.projection(state), None
