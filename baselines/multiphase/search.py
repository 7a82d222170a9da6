"""Two-phase search: semantic-ID candidates (phase 1) -> exact inner product inside them (phase 2).

Phase 1 encodes each query into its ``probe`` best code paths (:mod:`baselines.multiphase.query_codes`) and
collects the items under them with backoff (:class:`~baselines.multiphase.prefix_index.PrefixIndex`). Phase 2
gathers the candidates' vectors and ranks them by inner product with the query (one small matmul per query;
candidate sets differ per query, so queries are ranked one at a time). Excluded items (a user's history) are
removed before the top-k; rows with fewer than ``k`` candidates are padded with ``-1``.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np

from baselines.multiphase.prefix_index import PrefixIndex
from baselines.multiphase.query_codes import num_rows, take_rows
from mmq.arrays import check_finite_rows

ENCODE_CHUNK = 1024  # queries encoded per call (a beam keeps [chunk, probe, dim] residuals in memory)


class MultiphaseResult(NamedTuple):
    """Top-k per query and what phase 1 handed to phase 2."""

    ids: np.ndarray             # [nq, k] int64, -1 = empty slot
    scores: np.ndarray          # [nq, k] float32, -inf for empty slots
    num_candidates: np.ndarray  # [nq] items scored in phase 2 (before exclusion)
    depth: np.ndarray           # [nq] prefix length phase 1 stopped at
    seconds: float              # wall time of the whole batch (encoding included)


def check_vectors(vectors: np.ndarray, *, name: str) -> np.ndarray:
    """``vectors`` as C-contiguous float32 ``[n, d]``; ValueError when empty, not 2-D or with NaN rows."""
    array = np.asarray(vectors)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"{name} must be a non-empty 2-D array [n, dim], got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    check_finite_rows(array, name=name)
    return array


def top_k_of(candidates: np.ndarray, vectors: np.ndarray, query: np.ndarray, k: int,
             exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k`` of ``query`` among item ids ``candidates`` (ties: lower position first)."""
    ids = np.full(k, -1, dtype=np.int64)
    scores = np.full(k, -np.inf, dtype=np.float32)
    if exclude is not None and exclude.size:
        candidates = candidates[~np.isin(candidates, exclude)]
    if candidates.size == 0:
        return ids, scores
    values = vectors[candidates] @ query                         # [c]
    if candidates.size > k:
        best = np.argpartition(-values, k - 1)[:k]
    else:
        best = np.arange(candidates.size)
    best = best[np.lexsort((best, -values[best]))]               # by score, then position
    ids[:best.size], scores[:best.size] = candidates[best], values[best]
    return ids, scores


class MultiphaseSearcher:
    """Item vectors + their semantic IDs + a query-code encoder: answers two-phase top-k queries."""

    def __init__(self, item_vectors: np.ndarray, item_codes: np.ndarray, encoder) -> None:
        self.vectors = check_vectors(item_vectors, name="item vectors")
        codes = np.asarray(item_codes)
        if codes.ndim != 2 or codes.shape[0] != self.vectors.shape[0]:
            raise ValueError(f"item codes {codes.shape} must be [num_items={self.vectors.shape[0]}, code_length]")
        sizes = getattr(encoder, "codebook_sizes", None)
        if sizes is not None and len(sizes) != codes.shape[1]:
            raise ValueError(f"the encoder makes {len(sizes)}-level codes, the items have {codes.shape[1]}")
        self.index = PrefixIndex(codes, sizes)
        self.encoder = encoder

    def _check(self, queries: np.ndarray, encoder_inputs: Any, k: int, exclude: np.ndarray | None):
        queries = check_vectors(queries, name="query vectors")
        if queries.shape[1] != self.vectors.shape[1]:
            raise ValueError(f"query dim {queries.shape[1]} does not match item dim {self.vectors.shape[1]}")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        inputs = queries if encoder_inputs is None else encoder_inputs
        if num_rows(inputs) != queries.shape[0]:
            raise ValueError(f"{num_rows(inputs)} encoder input rows for {queries.shape[0]} queries")
        if exclude is not None and (np.ndim(exclude) != 2 or len(exclude) != queries.shape[0]):
            raise ValueError(f"exclude must be [num_queries, H] (-1 padded), got shape {np.shape(exclude)}")
        return queries, inputs, int(k)

    def _rank(self, paths: np.ndarray, query: np.ndarray, k: int, min_candidates: int, exclude_row,
              first_order: np.ndarray | None = None):
        found = self.index.candidates(paths, min_candidates, first_order)
        ids, scores = top_k_of(found.items, self.vectors, query, k, exclude_row)
        return ids, scores, found.items.size, found.depth

    def search(self, queries: np.ndarray, k: int, *, probe: int = 1, min_candidates: int = 1,
               encoder_inputs: Any = None, exclude: np.ndarray | None = None,
               ordered_backoff: bool = True) -> MultiphaseResult:
        """Batched two-phase top-``k``: all queries encoded at once, then phase 1 + 2 per query.

        ``ordered_backoff``: below depth 1, visit further level-0 cells nearest first (False: the whole catalogue).
        """
        queries, inputs, k = self._check(queries, encoder_inputs, k, exclude)
        count = queries.shape[0]
        ids = np.full((count, k), -1, dtype=np.int64)
        scores = np.full((count, k), -np.inf, dtype=np.float32)
        sizes, depths = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
        started = time.perf_counter()
        probed = [self.encoder.probe(take_rows(inputs, slice(start, start + ENCODE_CHUNK)), probe)
                  for start in range(0, count, ENCODE_CHUNK)]
        paths = np.concatenate([chunk.paths for chunk in probed])                     # [nq, P, L]
        order = np.concatenate([chunk.first_order for chunk in probed]) if ordered_backoff else None
        for row in range(count):
            exclude_row = None if exclude is None else exclude[row]
            ids[row], scores[row], sizes[row], depths[row] = self._rank(
                paths[row], queries[row], k, min_candidates, exclude_row, None if order is None else order[row])
        return MultiphaseResult(ids, scores, sizes, depths, time.perf_counter() - started)

    def latencies(self, queries: np.ndarray, k: int, *, probe: int = 1, min_candidates: int = 1,
                  encoder_inputs: Any = None, exclude: np.ndarray | None = None,
                  ordered_backoff: bool = True) -> np.ndarray:
        """Seconds per query answered alone (encode one query + phase 1 + phase 2), ``[nq]``."""
        queries, inputs, k = self._check(queries, encoder_inputs, k, exclude)
        seconds = np.empty(queries.shape[0])
        for row in range(queries.shape[0]):
            single = take_rows(inputs, slice(row, row + 1))
            started = time.perf_counter()
            probed = self.encoder.probe(single, probe)
            self._rank(probed.paths[0], queries[row], k, min_candidates, None if exclude is None else exclude[row],
                       probed.first_order[0] if ordered_backoff else None)
            seconds[row] = time.perf_counter() - started
        return seconds
