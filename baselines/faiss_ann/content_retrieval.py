"""Course chapter 1: content-based next-item retrieval with FAISS.

A user's query vector is a recency-weighted mean of the text embeddings of their history
(weight ``decay ** age``, age 0 = most recent; ``decay=0`` is the last item alone, ``decay=1`` the
plain mean). The query searches a FAISS index over all item embeddings; items already in the
history are removed from the results; the held-out next item is the target.
"""

from __future__ import annotations

import time

import numpy as np

from baselines.faiss_ann.index import IndexSpec, build_index, recall_against_exact, search
from mmq.metrics import ranking_metrics
from mmq.recommenders.sequences import pad_histories  # re-exported: the chapter-1 API


def history_queries(padded_histories: np.ndarray, item_embeddings: np.ndarray, decay: float) -> np.ndarray:
    """Recency-weighted, L2-normalised mean of history embeddings ``[num_users, dim]``."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    valid = padded_histories >= 0                                     # [users, H]
    if not valid.any(axis=1).all():
        raise ValueError("every user needs at least one history item to build a query")
    width = padded_histories.shape[1]
    age = np.arange(width - 1, -1, -1, dtype=np.float64)             # right-aligned: last column is age 0
    weights = np.where(valid, np.power(decay, age)[None, :], 0.0)     # 0.0 ** 0 == 1 keeps the last item
    vectors = item_embeddings[np.where(valid, padded_histories, 0)]  # [users, H, dim]
    queries = np.einsum("uh,uhd->ud", weights, vectors)
    norms = np.linalg.norm(queries, axis=1, keepdims=True)
    return (queries / np.maximum(norms, 1e-12)).astype(np.float32)


def drop_history(ids: np.ndarray, padded_histories: np.ndarray, k: int) -> np.ndarray:
    """Remove history items (and ``-1``) from ranked ``ids``, keep the first ``k`` per row (pad ``-1``)."""
    seen = (ids[:, :, None] == padded_histories[:, None, :]).any(axis=2) | (ids < 0)  # [users, k + H]
    order = np.argsort(seen, axis=1, kind="stable")                  # unseen first, rank order kept
    kept = np.take_along_axis(ids, order, axis=1)[:, :k]
    kept_seen = np.take_along_axis(seen, order, axis=1)[:, :k]
    return np.where(kept_seen, -1, kept)


def retrieve(index, queries: np.ndarray, padded_histories: np.ndarray, k: int, *,
             exclude_history: bool = True) -> tuple[np.ndarray, float]:
    """Top-``k`` item ids per query (history removed) and the search throughput in queries/s."""
    extra = padded_histories.shape[1] if exclude_history else 0
    started = time.perf_counter()
    _, ids = search(index, queries, k + extra)
    seconds = time.perf_counter() - started
    ranked = drop_history(ids, padded_histories, k) if exclude_history else ids[:, :k]
    return ranked, len(queries) / max(seconds, 1e-9)


def evaluate_split(index, item_embeddings: np.ndarray, histories: list[np.ndarray], targets: np.ndarray, *,
                   decay: float, ks: tuple[int, ...], max_history: int,
                   exclude_history: bool = True) -> tuple[dict[str, float], np.ndarray, float]:
    """Metrics@ks, the ranked ids and queries/s for one split."""
    padded = pad_histories(histories, max_history)
    queries = history_queries(padded, item_embeddings, decay)
    ranked, queries_per_second = retrieve(index, queries, padded, max(ks), exclude_history=exclude_history)
    return ranking_metrics(ranked, targets, ks), ranked, queries_per_second


def build_flat(item_embeddings: np.ndarray) -> object:
    """Exact inner-product index (the reference every ANN index is compared with)."""
    return build_index(item_embeddings, IndexSpec(factory="Flat", metric="ip"))


def compare_to_exact(approx_ranked: np.ndarray, exact_ranked: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Overlap of approximate and exact top-k lists (recall vs Flat) for every k."""
    return {f"recall_vs_flat@{k}": recall_against_exact(approx_ranked, exact_ranked, k) for k in ks}
