"""Top-K ranking metrics (recall, precision, hit rate, NDCG, MRR) over a full item catalogue."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TargetsLike = np.ndarray | Sequence[int] | Sequence[np.ndarray]

PAD_ITEM = -1
MAX_BLOCK_ELEMENTS = 1 << 22  # bounds the temporary [queries, items] arrays in topk_from_scores


def topk_from_scores(
    scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Return the [num_queries, k] int64 indices of the top-k items by descending score (ties: lower index first)."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty 2-D array [num_queries, num_items], got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN values")
    num_queries, num_items = scores.shape
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if k > num_items:
        raise ValueError(f"k={k} exceeds the number of items ({num_items})")

    valid = np.ones(scores.shape, dtype=bool)
    if exclude is not None:
        if len(exclude) != num_queries:
            raise ValueError(f"exclude has {len(exclude)} entries but scores has {num_queries} queries")
        excluded_items = [np.asarray(items, dtype=np.int64).ravel() for items in exclude]
        lengths = np.array([len(items) for items in excluded_items], dtype=np.int64)
        if lengths.sum() > 0:
            columns = np.concatenate(excluded_items)
            if columns.min() < 0 or columns.max() >= num_items:
                raise ValueError(f"exclude contains item indices outside [0, {num_items})")
            valid[np.repeat(np.arange(num_queries), lengths), columns] = False

    rows_per_block = max(1, MAX_BLOCK_ELEMENTS // num_items)
    blocks = [
        _topk_block(scores[start : start + rows_per_block], valid[start : start + rows_per_block], k)
        for start in range(0, num_queries, rows_per_block)
    ]
    return np.concatenate(blocks, axis=0)


def _topk_block(scores: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k (ties by lower index, -1 padding when too few valid items) for one block of queries."""
    num_queries, num_items = scores.shape
    masked = np.where(valid, scores, -np.inf)
    kth_value = np.partition(masked, num_items - k, axis=1)[:, num_items - k][:, None]
    greater = valid & (masked > kth_value)
    equal = valid & (masked == kth_value)
    still_needed = k - greater.sum(axis=1, keepdims=True)
    # Among items tied with the k-th value, keep the lowest indices first.
    selected = greater | (equal & (np.cumsum(equal, axis=1) <= still_needed))

    rows, columns = np.nonzero(selected)
    row_starts = np.concatenate([[0], np.cumsum(selected.sum(axis=1))[:-1]])
    slots = np.arange(len(rows)) - row_starts[rows]
    top_items = np.full((num_queries, k), PAD_ITEM, dtype=np.int64)
    top_items[rows, slots] = columns
    top_scores = np.full((num_queries, k), -np.inf)
    top_scores[rows, slots] = scores[rows, columns]
    is_pad = top_items == PAD_ITEM
    order = np.lexsort((top_items, -top_scores, is_pad), axis=1)
    return np.take_along_axis(top_items, order, axis=1)


def as_target_sets(targets: TargetsLike) -> np.ndarray | list[np.ndarray]:
    """Normalise targets to a 1-D int64 array (single target) or a list of unique int64 arrays (target sets)."""
    if isinstance(targets, np.ndarray) and targets.ndim == 1 and targets.dtype != object:
        single = targets
    elif isinstance(targets, (list, tuple)) and all(np.ndim(target) == 0 for target in targets):
        single = np.asarray(targets)
    else:
        single = None
    if single is not None:
        if single.size == 0:
            raise ValueError("targets is empty")
        if not np.issubdtype(single.dtype, np.integer):
            raise ValueError(f"targets must be integers, got dtype {single.dtype}")
        if (single < 0).any():
            raise ValueError("targets must be non-negative item indices")
        return single.astype(np.int64)

    target_sets = []
    for query_index, target in enumerate(targets):
        target = np.asarray(target).ravel()
        if target.size == 0:
            raise ValueError(f"query {query_index} has an empty target set")
        if not np.issubdtype(target.dtype, np.integer):
            raise ValueError(f"targets of query {query_index} must be integers, got dtype {target.dtype}")
        if (target < 0).any():
            raise ValueError(f"targets of query {query_index} must be non-negative item indices")
        target_sets.append(np.unique(target).astype(np.int64))
    if not target_sets:
        raise ValueError("targets is empty")
    return target_sets


def hit_matrix(ranked: np.ndarray, targets: TargetsLike, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (hits [num_queries, k] bool, num_targets [num_queries]) for the top-k of each ranked list."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or ranked.shape[0] == 0 or ranked.shape[1] == 0:
        raise ValueError(f"ranked must be a non-empty 2-D array [num_queries, list_length], got shape {ranked.shape}")
    if not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError(f"ranked must hold integer item indices, got dtype {ranked.dtype}")
    if k is None:
        k = ranked.shape[1]
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if k > ranked.shape[1]:
        raise ValueError(f"k={k} exceeds the ranked list length ({ranked.shape[1]})")
    top = ranked[:, :k].astype(np.int64)
    sorted_top = np.sort(top, axis=1)
    if ((sorted_top[:, 1:] == sorted_top[:, :-1]) & (sorted_top[:, 1:] != PAD_ITEM)).any():
        raise ValueError("ranked contains a repeated item within one query's list")

    normalised = as_target_sets(targets)
    num_targets_given = len(normalised)
    if num_targets_given != top.shape[0]:
        raise ValueError(f"targets has {num_targets_given} queries but ranked has {top.shape[0]}")
    if isinstance(normalised, np.ndarray):
        hits = (top == normalised[:, None]) & (top != PAD_ITEM)
        return hits, np.ones(top.shape[0], dtype=np.int64)

    # Multi-target: encode (query, item) pairs as single integers and test membership once.
    num_targets = np.array([len(target) for target in normalised], dtype=np.int64)
    flat_targets = np.concatenate(normalised)
    stride = max(int(flat_targets.max()), int(top.max())) + 1
    query_of_target = np.repeat(np.arange(top.shape[0], dtype=np.int64), num_targets)
    target_keys = query_of_target * stride + flat_targets
    ranked_keys = np.arange(top.shape[0], dtype=np.int64)[:, None] * stride + top
    hits = np.isin(ranked_keys, target_keys) & (top != PAD_ITEM)
    return hits, num_targets


def _reduce(values: np.ndarray, per_query: bool) -> float | np.ndarray:
    """Return the per-query array or its mean as a python float."""
    return values if per_query else float(values.mean())


def _recall(hits: np.ndarray, num_targets: np.ndarray) -> np.ndarray:
    """Per-query recall from a hit matrix."""
    return hits.sum(axis=1) / num_targets


def _precision(hits: np.ndarray) -> np.ndarray:
    """Per-query precision from a hit matrix."""
    return hits.sum(axis=1) / hits.shape[1]


def _hit_rate(hits: np.ndarray) -> np.ndarray:
    """Per-query hit indicator from a hit matrix."""
    return hits.any(axis=1).astype(np.float64)


def _ndcg(hits: np.ndarray, num_targets: np.ndarray) -> np.ndarray:
    """Per-query NDCG from a hit matrix."""
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = hits @ discounts
    ideal_dcg = np.cumsum(discounts)[np.minimum(num_targets, hits.shape[1]) - 1]
    return dcg / ideal_dcg


def _reciprocal_rank(hits: np.ndarray) -> np.ndarray:
    """Per-query reciprocal rank of the first hit, 0 if none."""
    first_hit = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first_hit + 1), 0.0)


def recall_at_k(ranked: np.ndarray, targets: TargetsLike, k: int, per_query: bool = False) -> float | np.ndarray:
    """Fraction of each query's targets found in its top k, averaged over queries."""
    hits, num_targets = hit_matrix(ranked, targets, k)
    return _reduce(_recall(hits, num_targets), per_query)


def precision_at_k(ranked: np.ndarray, targets: TargetsLike, k: int, per_query: bool = False) -> float | np.ndarray:
    """Fraction of the top k slots holding a target, averaged over queries."""
    hits, _ = hit_matrix(ranked, targets, k)
    return _reduce(_precision(hits), per_query)


def hit_rate_at_k(ranked: np.ndarray, targets: TargetsLike, k: int, per_query: bool = False) -> float | np.ndarray:
    """Fraction of queries with at least one target in the top k."""
    hits, _ = hit_matrix(ranked, targets, k)
    return _reduce(_hit_rate(hits), per_query)


def ndcg_at_k(ranked: np.ndarray, targets: TargetsLike, k: int, per_query: bool = False) -> float | np.ndarray:
    """Binary-relevance NDCG@k with log2 discount and ideal DCG of min(|targets|, k) hits."""
    hits, num_targets = hit_matrix(ranked, targets, k)
    return _reduce(_ndcg(hits, num_targets), per_query)


def mrr(
    ranked: np.ndarray, targets: TargetsLike, k: int | None = None, per_query: bool = False
) -> float | np.ndarray:
    """Mean reciprocal rank of the first target within the top k (whole list if k is None), 0 if absent."""
    hits, _ = hit_matrix(ranked, targets, k)
    return _reduce(_reciprocal_rank(hits), per_query)


def ranking_metrics(ranked: np.ndarray, targets: TargetsLike, ks: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
    """Compute recall/precision/hit_rate/ndcg/mrr at every k in ks plus full-list mrr, as a flat dict."""
    ranked = np.asarray(ranked)
    if len(ks) == 0:
        raise ValueError("ks is empty")
    if min(ks) <= 0:
        raise ValueError(f"every k must be positive, got ks={tuple(ks)}")
    if ranked.ndim == 2 and max(ks) > ranked.shape[1]:
        raise ValueError(f"ranked has width {ranked.shape[1]} but max(ks)={max(ks)}")
    hits, num_targets = hit_matrix(ranked, targets)
    results: dict[str, float] = {}
    for k in ks:
        top_hits = hits[:, :k]
        results[f"recall@{k}"] = float(_recall(top_hits, num_targets).mean())
        results[f"precision@{k}"] = float(_precision(top_hits).mean())
        results[f"hit_rate@{k}"] = float(_hit_rate(top_hits).mean())
        results[f"ndcg@{k}"] = float(_ndcg(top_hits, num_targets).mean())
        results[f"mrr@{k}"] = float(_reciprocal_rank(top_hits).mean())
    results["mrr"] = float(_reciprocal_rank(hits).mean())
    return results
