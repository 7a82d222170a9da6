"""Shared next-item evaluation: history exclusion and top-K metrics for any sequential model.

[choice] Items already in the user's history are removed from the ranked list (as in chapter 1);
in Amazon 5-core data a user reviews an item once, so the held-out target is practically never in
its own history and the exclusion only removes impossible answers.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mmq.metrics import ranking_metrics

METRIC_KS = (5, 10, 20)


@dataclasses.dataclass(frozen=True)
class NextItemEvaluationConfig:
    """How a next-item retriever is scored; an evaluation setting, kept out of every training config."""

    beam_size: int = 20                      # candidates generated per user (the paper's beam 20)
    batch_size: int = 1024                   # users per evaluation batch
    exclude_history: bool = True             # remove the user's history items from the ranked list [choice]
    ks: tuple[int, ...] = METRIC_KS          # Recall@k / NDCG@k cut-offs (those <= beam_size are reported)

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.batch_size < 1 or not self.ks or min(self.ks) < 1:
            raise ValueError(f"beam_size, batch_size and every k must be >= 1, got {self}")

    @property
    def reported_ks(self) -> tuple[int, ...]:
        """The cut-offs a list of ``beam_size`` candidates can score."""
        return tuple(k for k in self.ks if k <= self.beam_size)


def topk_excluding_history(scores: torch.Tensor, histories: torch.Tensor, k: int) -> torch.Tensor:
    """Top-``k`` item indices ``[users, k]`` of full-catalogue ``scores`` ``[users, items]``.

    ``histories`` ``[users, H]`` holds item indices (``-1`` = padding) that are masked out.
    """
    if scores.ndim != 2 or histories.ndim != 2 or scores.shape[0] != histories.shape[0]:
        raise ValueError(f"scores [users, items] and histories [users, H] disagree: "
                         f"{tuple(scores.shape)} vs {tuple(histories.shape)}")
    masked = scores.clone()
    rows, columns = torch.nonzero(histories >= 0, as_tuple=True)
    masked[rows, histories[rows, columns]] = float("-inf")
    return torch.topk(masked, k, dim=1).indices


def drop_history_items(ranked: np.ndarray, histories: np.ndarray, k: int) -> np.ndarray:
    """Remove history items from ranked candidate lists ``[users, C]``; keep order; ``[users, k]`` (-1 pad)."""
    if ranked.shape[0] != histories.shape[0]:
        raise ValueError(f"ranked has {ranked.shape[0]} rows, histories {histories.shape[0]}")
    in_history = (ranked[:, :, None] == histories[:, None, :]).any(axis=2) | (ranked < 0)   # [users, C]
    output = np.full((ranked.shape[0], k), -1, dtype=np.int64)
    for row in range(ranked.shape[0]):
        kept = ranked[row][~in_history[row]][:k]
        output[row, :len(kept)] = kept
    return output


def next_item_metrics(ranked: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = METRIC_KS) -> dict[str, float]:
    """Recall/NDCG/... at ``ks`` for ranked lists ``[users, >= max(ks)]`` (``-1`` = no item)."""
    return ranking_metrics(np.asarray(ranked), np.asarray(targets), ks=ks)
