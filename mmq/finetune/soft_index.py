"""Soft-index straight-through estimator and the SID embedding that consumes it (docs/method.md §4.1-4.2).

    p    = [cos(z, q_1) .. cos(z, q_K)]           (per SID position)
    soft = softmax(p / tau);  hard = onehot(argmax p)
    ind  = soft + sg(hard - soft)                  forward: hard one-hot; backward: through soft

A downstream model embeds a SID as ``ind @ E`` per position, so its forward pass equals an
ordinary embedding lookup of the hard codes while the downstream loss reaches the tokenizer.
A few lines of tensor algebra with no library equivalent (torch's gumbel_softmax(hard=True) adds
Gumbel noise, which the paper's estimator does not).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


def soft_straight_through(logits: Tensor, tau: float) -> Tensor:
    """``[..., K]`` logits -> one-hot forward, ``softmax(logits / tau)`` gradient (same shape)."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    soft = torch.softmax(logits / tau, dim=-1)
    hard = nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(soft)
    return soft + (hard - soft).detach()


def one_hot_codes(codes: Tensor, codebook_size: int) -> Tensor:
    """Hard indices ``[n, L, K]`` of integer codes ``[n, L]`` (frozen SIDs: no gradient)."""
    return nn.functional.one_hot(codes, codebook_size).float()


class SidEmbedding(nn.Module):
    """One embedding table per SID position; ``forward(ind [n, L, K]) -> [n, L, d]`` = ``ind @ E_l``."""

    def __init__(self, codebook_sizes: Sequence[int], dim: int, init_std: float = 0.01) -> None:
        super().__init__()
        if not codebook_sizes or min(codebook_sizes) < 1 or dim < 1:
            raise ValueError(f"need >= 1 position with codebook size >= 1 and dim >= 1, got {codebook_sizes}, {dim}")
        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)
        self.codebook_size = max(self.codebook_sizes)  # positions with fewer codes never index the padding rows
        self.tables = nn.Parameter(torch.randn(len(self.codebook_sizes), self.codebook_size, dim) * init_std)

    @property
    def num_positions(self) -> int:
        return len(self.codebook_sizes)

    def forward(self, indices: Tensor) -> Tensor:
        if indices.ndim != 3 or tuple(indices.shape[1:]) != (self.num_positions, self.codebook_size):
            raise ValueError(f"indices must be [n, {self.num_positions}, {self.codebook_size}], "
                             f"got {tuple(indices.shape)}")
        return torch.einsum("nlk,lkd->nld", indices, self.tables)
