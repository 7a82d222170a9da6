"""Curves of one retrieval task: multiphase (probe x min_candidates) vs single-phase Flat / IVF / HNSW.

Every point reports recall@k against exact (Flat) top-k on the same queries, the task metric (``score``:
ranked ids -> metrics dict), mean candidates per query, single-query latency p50 / p99 (one query at a time)
and batched queries/s. :func:`evaluate_task` is the entry point any vector task plugs into (Beauty, Myntra,
a synthetic 1M catalogue): item vectors, query vectors and one :class:`CodeSource` per tokenizer.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import faiss
import numpy as np

from baselines.faiss_ann.content_retrieval import drop_history
from baselines.faiss_ann.index import IndexSpec, build_index, recall_against_exact, search
from baselines.multiphase.search import MultiphaseSearcher, check_vectors

Score = Callable[[np.ndarray], dict[str, float]]  # ranked ids [nq, k] -> task metrics


@dataclasses.dataclass(frozen=True)
class CurveConfig:
    """The settings swept per task (defaults: what the chapter-6 runs use)."""

    k: int = 10                                            # top-k of every search (recall@k vs Flat)
    probes: tuple[int, ...] = (1, 4, 16)                   # codewords kept per level (beam width)
    min_candidates: tuple[int, ...] = (1, 10, 100, 1000)   # backoff target N
    ordered_backoff: bool = True                           # below depth 1: next-nearest level-0 cells (False: all)
    ivf_nlist: int | None = None                           # None: ~4 sqrt(n) as chapter 1 (power of two)
    ivf_nprobes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    hnsw_ef_searches: tuple[int, ...] = (16, 32, 64, 128, 256)
    latency_queries: int = 300                             # queries timed one at a time (first ones)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 1 or min(self.probes, default=0) < 1 or min(self.min_candidates, default=-1) < 0:
            raise ValueError("k and every probe must be >= 1, every min_candidates >= 0")
        if self.latency_queries < 1:
            raise ValueError(f"latency_queries must be >= 1, got {self.latency_queries}")


@dataclasses.dataclass(frozen=True)
class CodeSource:
    """One tokenizer's view of the catalogue: item codes, a query-code encoder, the queries' encoder inputs."""

    name: str
    item_codes: np.ndarray  # [num_items, L] int (semantic codes, no de-dup digit)
    encoder: Any            # .probe(inputs, probe) -> ProbePaths (query_codes.ResidualCodeEncoder / Parallel...)
    query_inputs: Any       # what encoder.probe reads for the queries: [nq, d] or {modality: [nq, d_m]}


def latency_summary(seconds: np.ndarray) -> dict[str, float]:
    """p50 / p99 / mean of per-query seconds, in milliseconds."""
    return {"p50_ms": round(float(np.percentile(seconds, 50)) * 1e3, 4),
            "p99_ms": round(float(np.percentile(seconds, 99)) * 1e3, 4),
            "mean_ms": round(float(np.mean(seconds)) * 1e3, 4)}


def exclusion_width(exclude: np.ndarray | None) -> int:
    """Columns of the -1 padded exclusion array (0 without one)."""
    return 0 if exclude is None else int(exclude.shape[1])


def faiss_point(index, queries: np.ndarray, exact_ids: np.ndarray, *, k: int, exclude: np.ndarray | None,
                latency_queries: int, score: Score | None) -> dict[str, Any]:
    """One single-phase index: batched pass (ids, queries/s), then single-query latencies."""
    extra = exclusion_width(exclude)
    started = time.perf_counter()
    _, ids = search(index, queries, k + extra)
    seconds = time.perf_counter() - started
    ranked = drop_history(ids, exclude, k) if exclude is not None else ids[:, :k]
    single = np.empty(min(latency_queries, len(queries)))
    for row in range(single.size):
        started = time.perf_counter()
        index.search(queries[row:row + 1], k + extra)
        single[row] = time.perf_counter() - started
    point = {f"recall@{k}": round(recall_against_exact(ranked, exact_ids, k), 6),
             "queries_per_second": round(len(queries) / max(seconds, 1e-9), 1), **latency_summary(single)}
    return {**point, **({"task": score(ranked)} if score else {})}


def single_phase_curves(item_vectors: np.ndarray, queries: np.ndarray, exact_ids: np.ndarray, curve: CurveConfig, *,
                        exclude: np.ndarray | None = None, score: Score | None = None,
                        indexes: dict[str, Any] | None = None) -> dict[str, list[dict]]:
    """Flat, IVF (nprobe sweep) and HNSW32 (efSearch sweep) points through chapter 1's index code.

    ``indexes``: prebuilt ``{"ivf": (index, nlist), "hnsw": index}`` (the 1M task reuses chapter 3's cache).
    """
    common = dict(k=curve.k, exclude=exclude, latency_queries=curve.latency_queries, score=score)
    flat = build_index(item_vectors, IndexSpec("Flat", metric="ip"))
    if indexes is not None:
        (ivf, nlist), hnsw = indexes["ivf"], indexes["hnsw"]
    else:
        nlist = curve.ivf_nlist or max(1, 1 << round(np.log2(4 * np.sqrt(len(item_vectors)))))
        while nlist > 1 and nlist * 39 > len(item_vectors):
            nlist //= 2
        ivf = build_index(item_vectors, IndexSpec(f"IVF{nlist},Flat", metric="ip", seed=curve.seed,
                                                  train_size=min(len(item_vectors), 256 * nlist)))
        hnsw = build_index(item_vectors, IndexSpec("HNSW32", metric="ip", seed=curve.seed))
    curves = {"flat": [{"name": "Flat", **faiss_point(flat, queries, exact_ids, **common)}], "ivf": [], "hnsw": []}
    for nprobe in curve.ivf_nprobes:
        if nprobe > nlist:
            continue
        faiss.extract_index_ivf(ivf).nprobe = nprobe
        curves["ivf"].append({"name": f"IVF{nlist},Flat", "nprobe": nprobe,
                              **faiss_point(ivf, queries, exact_ids, **common)})
    for ef_search in curve.hnsw_ef_searches:
        faiss.ParameterSpace().set_index_parameter(hnsw, "efSearch", ef_search)
        curves["hnsw"].append({"name": "HNSW32", "ef_search": ef_search,
                               **faiss_point(hnsw, queries, exact_ids, **common)})
    return curves


def multiphase_curve(searcher: MultiphaseSearcher, queries: np.ndarray, query_inputs: Any, exact_ids: np.ndarray,
                     curve: CurveConfig, *, exclude: np.ndarray | None = None, score: Score | None = None,
                     timed: bool = True) -> list[dict]:
    """One point per (probe, min_candidates): batched pass, then (``timed``) single-query latencies."""
    points = []
    latency_rows = slice(0, min(curve.latency_queries, len(queries)))
    for probe in curve.probes:
        for min_candidates in curve.min_candidates:
            setting = dict(probe=probe, min_candidates=min_candidates)
            result = searcher.search(queries, curve.k, encoder_inputs=query_inputs, exclude=exclude,
                                     ordered_backoff=curve.ordered_backoff, **setting)
            point = {**setting, f"recall@{curve.k}": round(recall_against_exact(result.ids, exact_ids, curve.k), 6),
                     "mean_candidates": round(float(result.num_candidates.mean()), 1),
                     "mean_depth": round(float(result.depth.mean()), 3),
                     "queries_per_second": round(len(queries) / max(result.seconds, 1e-9), 1)}
            if timed:
                inputs = _rows(query_inputs, latency_rows)
                seconds = searcher.latencies(queries[latency_rows], curve.k, encoder_inputs=inputs,
                                             exclude=None if exclude is None else exclude[latency_rows],
                                             ordered_backoff=curve.ordered_backoff, **setting)
                point.update(latency_summary(seconds))
            if score:
                point["task"] = score(result.ids)
            points.append(point)
    return points


def _rows(inputs: Any, rows: slice) -> Any:
    return {name: array[rows] for name, array in inputs.items()} if isinstance(inputs, dict) else inputs[rows]


def exact_top_k(item_vectors: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None) -> np.ndarray:
    """Exact inner-product top-``k`` (history removed), the reference of every recall."""
    flat = build_index(item_vectors, IndexSpec("Flat", metric="ip"))
    _, ids = search(flat, queries, k + exclusion_width(exclude))
    return drop_history(ids, exclude, k) if exclude is not None else ids[:, :k]


def evaluate_task(item_vectors: np.ndarray, query_vectors: np.ndarray, sources: Sequence[CodeSource], *,
                  curve: CurveConfig = CurveConfig(), exclude: np.ndarray | None = None,
                  score: Score | None = None, indexes: dict[str, Any] | None = None) -> dict[str, Any]:
    """All curves of one task on one query set: ``{"multiphase": {name: points}, "flat", "ivf", "hnsw", "matched"}``.

    ``exclude`` ``[nq, H]`` (-1 padded) items never returned per query; ``score`` adds task metrics to each point.
    """
    from baselines.multiphase.matched import matched_recall

    vectors = check_vectors(item_vectors, name="item vectors")
    queries = check_vectors(query_vectors, name="query vectors")
    exact_ids = exact_top_k(vectors, queries, curve.k, exclude)
    result: dict[str, Any] = {"num_items": int(len(vectors)), "num_queries": int(len(queries)),
                              "faiss_threads": faiss.omp_get_max_threads(), "multiphase": {}}
    for source in sources:
        searcher = MultiphaseSearcher(vectors, source.item_codes, source.encoder)
        result["multiphase"][source.name] = multiphase_curve(searcher, queries, source.query_inputs, exact_ids, curve,
                                                             exclude=exclude, score=score)
    result.update(single_phase_curves(vectors, queries, exact_ids, curve, exclude=exclude, score=score,
                                      indexes=indexes))
    result["matched"] = {name: matched_recall(points, result["ivf"], k=curve.k)
                         for name, points in result["multiphase"].items()}
    return result
