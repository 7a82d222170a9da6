"""The search engine behind the API: encode -> retrieve over a versioned index, with caches and hot swap.

- An :class:`IndexVersion` is an immutable (faiss index, item ids, item records, version string). The engine holds
  one reference to the current version; :meth:`SearchEngine.swap` builds nothing under the lock, it only
  replaces that reference, so requests in flight finish on the version they started with and new requests see
  the new one (no request is lost or answered from a half-built index).
- Caches (``cachetools``): a query-embedding LRU (keyed by the cleaned query; embeddings do not depend on the
  index) and a result cache with a TTL keyed by (index version, query, k), so a swap invalidates every result
  at once without a flush race.
- A search runs a pipeline: ``retrieval`` = ``dense`` (the faiss index) or ``multiphase`` (semantic-ID candidates,
  then exact scores; :mod:`baselines.serving.stages`), then an optional ``rerank`` stage that reorders the top
  ``reranker.depth`` retrieved items. Both extra stages belong to the index version (they are bound to its row
  order). The result cache key carries the pipeline.
- Every search returns per-stage timings (embed, retrieve, rerank, total) in milliseconds and whether each cache hit.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import faiss
import numpy as np
from cachetools import LRUCache, TTLCache

from mmq.arrays import check_finite_rows

Encoder = Callable[[list[str]], np.ndarray]   # texts -> [n, dim] float32, unit norm
RETRIEVALS = ("dense", "multiphase")


class UnknownItemError(KeyError):
    """An item id the current index does not hold."""


class StageUnavailableError(ValueError):
    """A requested retrieval or rerank stage that the current index version does not serve."""


@dataclasses.dataclass(frozen=True)
class IndexVersion:
    """One immutable index generation: the faiss index, its item ids (row order) and their display records."""

    version: str
    index: faiss.Index
    item_ids: tuple[str, ...]
    records: dict[str, dict[str, Any]]
    multiphase: Any = None                       # a stages.MultiphaseRetriever over the same rows, or None
    rerankers: dict[str, Any] = dataclasses.field(default_factory=dict)   # name -> stages.Reranker

    def __post_init__(self) -> None:
        if self.index.ntotal != len(self.item_ids):
            raise ValueError(f"index {self.version!r} holds {self.index.ntotal} vectors for {len(self.item_ids)} ids")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise ValueError(f"index {self.version!r} has duplicate item ids")
        if self.multiphase is not None and self.multiphase.searcher.vectors.shape[0] != len(self.item_ids):
            raise ValueError(f"index {self.version!r}: the multiphase stage holds "
                             f"{self.multiphase.searcher.vectors.shape[0]} items for {len(self.item_ids)} ids")

    @property
    def retrievals(self) -> tuple[str, ...]:
        """The retrieval stages this version serves."""
        return RETRIEVALS if self.multiphase is not None else ("dense",)


def build_version(version: str, vectors: np.ndarray, item_ids: Sequence[str],
                  records: dict[str, dict[str, Any]] | None = None, *, factory: str = "Flat",
                  multiphase: Any = None, rerankers: dict[str, Any] | None = None) -> IndexVersion:
    """An inner-product index over ``vectors`` (validated: 2-D, finite, one row per id) with optional stages."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(item_ids) or vectors.shape[0] == 0:
        raise ValueError(f"vectors must be [num_items={len(item_ids)}, dim] and non-empty, got {vectors.shape}")
    check_finite_rows(vectors, name=f"item vectors of index {version!r}")
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    ids = tuple(str(item) for item in item_ids)
    return IndexVersion(version, index, ids, records or {item: {} for item in ids}, multiphase, dict(rerankers or {}))


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Top-k items with scores, the index version that answered, stage timings and cache outcomes."""

    items: list[dict[str, Any]]
    version: str
    timings_ms: dict[str, float]
    embedding_cached: bool
    result_cached: bool
    retrieval: str = "dense"
    rerank: str | None = None


class SearchEngine:
    """Thread-safe query -> top-k over the current :class:`IndexVersion` (see the module docstring)."""

    def __init__(self, encoder: Encoder, index: IndexVersion, *, embedding_cache_size: int = 10_000,
                 result_cache_size: int = 10_000, result_ttl_seconds: float = 300.0) -> None:
        if embedding_cache_size < 1 or result_cache_size < 1 or result_ttl_seconds <= 0:
            raise ValueError("cache sizes must be >= 1 and the result TTL > 0 seconds")
        self._encoder = encoder
        self._current = index
        self._lock = threading.Lock()                 # guards the caches and the version reference
        self._embeddings: LRUCache = LRUCache(maxsize=embedding_cache_size)
        self._results: TTLCache = TTLCache(maxsize=result_cache_size, ttl=result_ttl_seconds)
        self.swaps = 0

    @property
    def current(self) -> IndexVersion:
        """The index version new requests use."""
        return self._current

    def swap(self, new: IndexVersion) -> IndexVersion:
        """Atomically make ``new`` current (it must have the current width); returns the replaced version."""
        if new.index.d != self._current.index.d:
            raise ValueError(f"index {new.version!r} has dim {new.index.d}, the encoder makes {self._current.index.d}")
        with self._lock:
            old, self._current = self._current, new
            self._results.clear()                     # keys carry the version anyway; free the memory now
            self.swaps += 1
        return old

    def clear_caches(self) -> None:
        """Empty both caches (benchmarks measure the uncached path this way)."""
        with self._lock:
            self._embeddings.clear()
            self._results.clear()

    def item(self, item_id: str) -> dict[str, Any]:
        """The record of ``item_id`` in the current index (UnknownItemError when absent)."""
        records = self._current.records
        if item_id not in records:
            raise UnknownItemError(item_id)
        return {"item_id": item_id, **records[item_id]}

    def _embed(self, query: str) -> tuple[np.ndarray, bool]:
        with self._lock:
            cached = self._embeddings.get(query)
        if cached is not None:
            return cached, True
        vector = np.ascontiguousarray(self._encoder([query]), dtype=np.float32)
        if vector.shape != (1, self._current.index.d) or not np.isfinite(vector).all():
            raise RuntimeError(f"the encoder returned {vector.shape} (finite: {bool(np.isfinite(vector).all())}) "
                               f"for one query; expected (1, {self._current.index.d})")
        with self._lock:
            self._embeddings[query] = vector
        return vector, False

    def search(self, query: str, k: int, *, retrieval: str = "dense", rerank: str | None = None) -> SearchResult:
        """Top-``k`` for an already validated, cleaned query through ``retrieval`` (+ ``rerank``).

        A stage the current version does not serve raises :class:`StageUnavailableError` naming what it serves.
        """
        started = time.perf_counter()
        version = self._current                       # one version for the whole request
        if retrieval not in version.retrievals:
            raise StageUnavailableError(f"retrieval {retrieval!r} is not served by index {version.version!r} "
                                        f"(available: {list(version.retrievals)})")
        if rerank is not None and rerank not in version.rerankers:
            raise StageUnavailableError(f"rerank {rerank!r} is not served by index {version.version!r} "
                                        f"(available: {sorted(version.rerankers) or 'none'})")
        key = (version.version, query, int(k), retrieval, rerank)
        with self._lock:
            hit = self._results.get(key)
        if hit is not None:
            total = (time.perf_counter() - started) * 1e3
            return SearchResult(hit, version.version, {"embed": 0.0, "retrieve": 0.0, "rerank": 0.0, "total": total},
                                True, True, retrieval, rerank)
        vector, embedding_cached = self._embed(query)
        embedded = time.perf_counter()
        reranker = version.rerankers[rerank] if rerank is not None else None
        depth = min(max(int(k), reranker.depth if reranker is not None else 0), version.index.ntotal)
        if retrieval == "multiphase":
            scores, rows = version.multiphase.search(vector, depth)
        else:
            scores, rows = version.index.search(vector, depth)
        retrieved = time.perf_counter()
        keep = rows[0] >= 0
        rows, scores = rows[0][keep], scores[0][keep]
        first_stage = scores
        if reranker is not None and rows.size:
            # the reranker reorders the top ``depth``; retrieved items beyond it (k > depth) follow in retrieval
            # order, each scored just below the lowest reranked score
            head = min(reranker.depth, rows.size)
            reranked_scores = np.asarray(reranker.score(query, rows[:head], first_stage[:head]), dtype=np.float32)
            order = np.argsort(-reranked_scores, kind="stable")
            tail = reranked_scores.min() - 1.0 - np.arange(rows.size - head, dtype=np.float32)
            rows = np.concatenate([rows[:head][order], rows[head:]])
            first_stage = np.concatenate([first_stage[:head][order], first_stage[head:]])
            scores = np.concatenate([reranked_scores[order], tail])
        reranked = time.perf_counter()
        items = []
        for row, score, retrieval_score in zip(rows[:k].tolist(), scores[:k].tolist(), first_stage[:k].tolist()):
            item = version.item_ids[row]
            extra = {"retrieval_score": float(retrieval_score)} if reranker is not None else {}
            items.append({"item_id": item, "score": float(score), **extra, **version.records[item]})
        with self._lock:
            self._results[key] = items
        timings = {"embed": (embedded - started) * 1e3, "retrieve": (retrieved - embedded) * 1e3,
                   "rerank": (reranked - retrieved) * 1e3, "total": (time.perf_counter() - started) * 1e3}
        return SearchResult(items, version.version, timings, embedding_cached, False, retrieval, rerank)


def parse_pipeline(spec: str) -> tuple[str, str | None]:
    """``"dense"``, ``"multiphase"``, ``"dense+lightgbm"``, ``"multiphase+lightgbm_ce"`` -> (retrieval, rerank)."""
    from baselines.serving.stages import RERANKERS

    parts = str(spec).split("+")
    if len(parts) > 2 or parts[0] not in RETRIEVALS or (len(parts) == 2 and parts[1] not in RERANKERS):
        raise ValueError(f"pipeline {spec!r} must be '<retrieval>[+<rerank>]' with retrieval in {list(RETRIEVALS)} "
                         f"and rerank in {list(RERANKERS)}")
    return parts[0], parts[1] if len(parts) == 2 else None


def pipeline_name(retrieval: str, rerank: str | None) -> str:
    """The inverse of :func:`parse_pipeline`."""
    return retrieval if rerank is None else f"{retrieval}+{rerank}"
