"""Graded search metrics for the query benchmark, per query (for paired intervals) and averaged.

- ``ndcg@k``: gains ``2^grade - 1`` over the full catalogue's grades (the ideal list is the catalogue's best k);
- ``recall@k``: *capped* recall of exact (grade 3) products, ``hits / min(k, #exact)`` (BEIR's R_cap@k), so a
  query with 2,000 exact products can still reach 1 at k = 10;
- ``precision@k``: share of the top k that is exact;
- ``mrr@k``: reciprocal rank of the first exact product within the top k (0 if none).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

METRIC_NAMES = ("ndcg", "recall", "precision", "mrr")


def graded_metrics(ranked: np.ndarray, grades: Sequence[np.ndarray] | Callable[[int], np.ndarray],
                   ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Per-query metrics of ``ranked`` ``[queries, >= max(ks)]`` item indices (``-1`` = empty slot).

    ``grades(q)`` (or ``grades[q]``) is query q's grade of every catalogue item. Returns ``{"ndcg@10": [queries]}``.
    """
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[1] < max(ks):
        raise ValueError(f"ranked must be [queries, >= {max(ks)}], got {ranked.shape}")
    lookup = grades if callable(grades) else grades.__getitem__
    out = {f"{name}@{k}": np.zeros(len(ranked)) for name in METRIC_NAMES for k in ks}
    discounts = 1.0 / np.log2(np.arange(2, max(ks) + 2))
    for row, items in enumerate(ranked):
        catalogue = np.asarray(lookup(row))
        valid = items >= 0
        got = np.where(valid, catalogue[np.where(valid, items, 0)], 0).astype(np.int64)
        exact_total = int((catalogue == 3).sum())
        ideal = np.sort(catalogue[catalogue > 0])[::-1].astype(np.int64)
        first_exact = np.flatnonzero(got == 3)
        for k in ks:
            gains = (2.0 ** got[:k] - 1.0) @ discounts[:k]
            ideal_gain = (2.0 ** ideal[:k] - 1.0) @ discounts[:min(k, ideal.size)]
            out[f"ndcg@{k}"][row] = gains / ideal_gain if ideal_gain > 0 else 0.0
            hits = int((got[:k] == 3).sum())
            out[f"recall@{k}"][row] = hits / min(k, exact_total) if exact_total else 0.0
            out[f"precision@{k}"][row] = hits / k
            out[f"mrr@{k}"][row] = 1.0 / (first_exact[0] + 1) if first_exact.size and first_exact[0] < k else 0.0
    return out


def mean_metrics(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: round(float(values.mean()), 6) for name, values in per_query.items()}
