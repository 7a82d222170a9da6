"""Shared next-item evaluation: history exclusion, top-K metrics and per-event target ranks.

Every next-item retriever (generative retrieval, SASRec) scores a split through :func:`score_ranked`:
its metrics (reported) and each event's target rank (kept in ``per_event.npz``,
:mod:`mmq.metrics.per_event`), from which :func:`metrics_from_ranks` gives the same metrics exactly.

History exclusion ([choice], ``NextItemEvaluationConfig.history_exclusion``): by default every item the
user interacted with before the target (the full history, not only the model's last ``max_history``
inputs) is excluded from the ranked list. Generative retrieval excludes them *inside* the beam search
(:func:`mmq.generative.beam_search.beam_search`), so a beam of ``k`` always yields ``k`` unseen items;
full-catalogue scorers mask them before the top-k. ``recent_after_beam`` is the protocol of runs made
before 2026-12 (the last ``max_history`` items dropped from the finished beam, which can leave fewer than
``k``); ``none`` ranks everything. Every generative run also reports its lists without exclusion
(``valid_no_exclusion`` / ``test_no_exclusion``). In Amazon 5-core data a user reviews an item once, so the
held-out target is practically never in its own history and the exclusion only removes impossible answers.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import torch

from mmq.metrics import ranking_metrics

METRIC_KS = (5, 10, 20)
HISTORY_EXCLUSIONS = ("full_in_beam", "recent_after_beam", "none")


@dataclasses.dataclass(frozen=True)
class NextItemEvaluationConfig:
    """How a next-item retriever is scored; an evaluation setting, kept out of every training config."""

    beam_size: int = 20                      # candidates generated per user (the paper's beam 20)
    batch_size: int = 1024                   # users per evaluation batch
    history_exclusion: str = "full_in_beam"  # full_in_beam | recent_after_beam (runs before 2026-12) | none
    ks: tuple[int, ...] = METRIC_KS          # Recall@k / NDCG@k cut-offs (those <= beam_size are reported)

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.batch_size < 1 or not self.ks or min(self.ks) < 1:
            raise ValueError(f"beam_size, batch_size and every k must be >= 1, got {self}")
        if self.history_exclusion not in HISTORY_EXCLUSIONS:
            raise ValueError(f"history_exclusion must be one of {HISTORY_EXCLUSIONS}, got {self.history_exclusion!r}")

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


class NextItemEvaluation(NamedTuple):
    """One split scored: the reported metrics and each event's 1-based target rank (0 = not listed)."""

    metrics: dict[str, float]
    ranks: np.ndarray          # int32 [events]
    list_length: int           # length of the ranked lists the ranks refer to


def score_ranked(ranked: np.ndarray, targets: np.ndarray, ks: tuple[int, ...] = METRIC_KS) -> NextItemEvaluation:
    """Metrics of ranked lists ``[users, L]`` (as :func:`next_item_metrics`) and the per-event target ranks."""
    ranked = np.asarray(ranked)
    return NextItemEvaluation(next_item_metrics(ranked, targets, ks=ks), target_ranks(ranked, targets),
                              int(ranked.shape[1]))


def target_ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based position of each target in its ranked list ``[users, L]`` (``-1`` = no item), 0 if absent; int32."""
    ranked, targets = np.asarray(ranked), np.asarray(targets)
    if ranked.ndim != 2 or targets.ndim != 1 or ranked.shape[0] != targets.shape[0]:
        raise ValueError(f"ranked [users, L] and targets [users] disagree: {ranked.shape} vs {targets.shape}")
    if (targets < 0).any():
        raise ValueError("targets must be non-negative item indices")
    matches = ranked == targets[:, None]                                      # [users, L]
    if (matches.sum(axis=1) > 1).any():
        raise ValueError("a ranked list holds its target more than once")
    return np.where(matches.any(axis=1), matches.argmax(axis=1) + 1, 0).astype(np.int32)


def metrics_from_ranks(ranks: np.ndarray, list_length: int, ks: tuple[int, ...] = METRIC_KS) -> dict[str, float]:
    """The :func:`next_item_metrics` dict from target ranks (0 = not in a list of ``list_length``), equal to it exactly.

    Per event, with a hit at cut-off ``k`` when ``1 <= rank <= k``: recall = hit rate = hit,
    precision = hit / k, ndcg = hit / log2(rank + 1), mrr@k = hit / rank; ``mrr`` uses the whole list.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or ranks.size == 0 or not np.issubdtype(ranks.dtype, np.integer):
        raise ValueError(f"ranks must be a non-empty 1-D integer array, got {ranks.dtype} {ranks.shape}")
    if ranks.min() < 0 or ranks.max() > list_length:
        raise ValueError(f"ranks must lie in [0, {list_length}]")
    if not ks or min(ks) < 1 or max(ks) > list_length:
        raise ValueError(f"every k must lie in [1, {list_length}], got ks={tuple(ks)}")
    ranks = ranks.astype(np.int64)
    found = ranks > 0
    reciprocal = np.where(found, 1.0 / np.maximum(ranks, 1), 0.0)
    results: dict[str, float] = {}
    for k in ks:
        hit = found & (ranks <= k)
        discounts = 1.0 / np.log2(np.arange(2, k + 2))                       # computed as ranking_metrics does
        results[f"recall@{k}"] = float(hit.astype(np.float64).mean())
        results[f"precision@{k}"] = float((hit.astype(np.int64) / k).mean())
        results[f"hit_rate@{k}"] = float(hit.astype(np.float64).mean())
        results[f"ndcg@{k}"] = float(np.where(hit, discounts[np.clip(ranks, 1, k) - 1], 0.0).mean())
        results[f"mrr@{k}"] = float(np.where(hit, reciprocal, 0.0).mean())
    results["mrr"] = float(reciprocal.mean())
    return results
