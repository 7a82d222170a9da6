"""Benchmark faiss ANN indexes: build time, queries/s, recall@k vs exact Flat, memory."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import faiss
import numpy as np

from .index import IndexSpec, _as_matrix, build_index, recall_against_exact, search

logger = logging.getLogger(__name__)


def clustered_vectors(
    num: int, dim: int, num_clusters: int = 64, seed: int = 0, *, spread: float = 1.0
) -> np.ndarray:
    """Gaussian-mixture vectors, L2-normalised, float32 [num, dim] (synthetic catalogue stand-in).

    Cluster centres are random unit vectors; each point is ``centre + spread * noise`` where the
    noise has expected norm 1, so ``spread`` is the noise-to-centre norm ratio.
    """
    if num < 1 or dim < 1 or num_clusters < 1:
        raise ValueError(f"num, dim, num_clusters must be >= 1, got {num}, {dim}, {num_clusters}")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    assign = rng.integers(0, num_clusters, size=num)
    noise = rng.standard_normal((num, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
    x = centres[assign] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, dtype=np.float32)


def _best_search_time(index: faiss.Index, queries: np.ndarray, k: int, batch_size: int, repeats: int):
    """Run the batched search ``repeats`` times; return (best seconds, scores, ids)."""
    best = float("inf")
    scores = ids = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        scores, ids = search(index, queries, k, batch_size=batch_size)
        best = min(best, time.perf_counter() - t0)
    return best, scores, ids


def _row(spec: IndexSpec, index: faiss.Index, build_s: float, search_s: float, nq: int, k: int) -> dict:
    """Per-index measurements (recall / speedup are filled in once the Flat reference exists)."""
    return {
        "name": spec.display_name,
        "factory": spec.factory,
        "metric": spec.metric,
        "nprobe": spec.nprobe,
        "ef_search": spec.ef_search,
        "k": k,
        "ntotal": int(index.ntotal),
        "build_s": build_s,
        "search_s": search_s,
        "qps": nq / search_s if search_s > 0 else float("inf"),
        "memory_bytes": int(faiss.serialize_index(index).nbytes),
    }


def benchmark_indexes(
    database: np.ndarray,
    queries: np.ndarray,
    specs: Sequence[IndexSpec],
    k: int = 10,
    *,
    batch_size: int = 4096,
    repeats: int = 3,
) -> list[dict]:
    """Build and time every spec; recall@k and qps speedup are measured against exact Flat.

    The exact reference is a ``Flat`` index of the same metric built in this run: a spec whose
    factory is ``"Flat"`` serves as the reference, otherwise one is built (and not reported).
    Row keys: name, factory, metric, nprobe, ef_search, k, ntotal, build_s, search_s, qps,
    recall_at_k, speedup_vs_flat, memory_bytes.
    """
    if not specs:
        raise ValueError("specs must be non-empty")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    database = _as_matrix(database, what="database")
    queries = _as_matrix(queries, what="queries")
    nq = queries.shape[0]

    exact: dict[str, tuple[np.ndarray, float]] = {}  # metric -> (exact ids, Flat qps)
    rows, approx_ids = [], []
    for spec in specs:
        t0 = time.perf_counter()
        index = build_index(database, spec)
        build_s = time.perf_counter() - t0
        search_s, _, ids = _best_search_time(index, queries, k, batch_size, repeats)
        row = _row(spec, index, build_s, search_s, nq, k)
        del index
        if spec.factory.strip() == "Flat" and spec.metric not in exact:
            exact[spec.metric] = (ids, row["qps"])
        rows.append(row)
        approx_ids.append(ids)

    for row, ids in zip(rows, approx_ids):
        metric = row["metric"]
        if metric not in exact:  # no Flat spec of this metric given: build an unreported one
            flat = build_index(database, IndexSpec("Flat", metric=metric))
            t, _, flat_ids = _best_search_time(flat, queries, k, batch_size, repeats)
            exact[metric] = (flat_ids, nq / t)
        exact_ids, flat_qps = exact[metric]
        row["recall_at_k"] = recall_against_exact(ids, exact_ids, k)
        row["speedup_vs_flat"] = row["qps"] / flat_qps
        logger.info(
            "%s: build %.2fs, %.0f q/s, recall@%d %.4f, speedup x%.2f, %.1f MiB",
            row["name"], row["build_s"], row["qps"], k, row["recall_at_k"],
            row["speedup_vs_flat"], row["memory_bytes"] / 2**20,
        )
    return rows


def format_benchmark(rows: Sequence[dict]) -> str:
    """Render benchmark rows as a markdown table."""
    if not rows:
        return "(no rows)"
    k = rows[0]["k"]
    lines = [
        f"| index | metric | build s | queries/s | recall@{k} vs Flat | speedup vs Flat | memory MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['metric']} | {r['build_s']:.2f} | {r['qps']:,.0f} | "
            f"{r['recall_at_k']:.4f} | {r['speedup_vs_flat']:.2f}x | {r['memory_bytes'] / 2**20:.1f} |"
        )
    return "\n".join(lines)
