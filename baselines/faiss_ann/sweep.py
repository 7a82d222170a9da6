"""Index-parameter sweeps: recall@k vs queries/s for one index family on one corpus, with faiss's own tools.

An ``IndexFamily`` is a faiss ``index_factory`` string (``{nlist}`` is filled from the corpus size), optional
build settings (HNSW efConstruction) and a search grid in faiss ``ParameterSpace`` syntax
(``"nprobe=1,4,16;k_factor=1,4"``: the cartesian product). Every grid point is applied with
``ParameterSpace.set_index_parameters`` and timed as a batched search; its (recall, seconds) goes into a
``faiss.OperatingPoints``, whose ``optimal_pts`` is the Pareto frontier. Built indexes are cached on disk by
content (corpus fingerprint + factory + build settings + seed), so a rerun reuses them.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import time
from pathlib import Path

import faiss
import numpy as np

from baselines.faiss_ann.index import IndexSpec, build_index, recall_against_exact, search
from mmq import artifacts

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class IndexFamily:
    """One index recipe and the search parameters swept on it."""

    name: str = "Flat"                 # shown in tables / the dashboard
    factory: str = "Flat"              # faiss index_factory string; "{nlist}" = nlist_for(corpus size)
    grid: str = ""                     # ParameterSpace grid, "name=v1,v2;name2=..." ("" = no parameters)
    ef_construction: int | None = None  # HNSW build depth (faiss default 40)
    train_size: int | None = 200_000   # training sample cap (seeded); IVF needs >= 39 * nlist
    compressed: bool = False           # codes smaller than the float vectors (extrapolated to 10M)
    corpora: tuple[str, ...] = ("real", "synthetic")   # where this family is swept

    def __post_init__(self) -> None:
        parse_grid(self.grid)          # fail on a malformed grid at config time
        if not self.factory.strip():
            raise ValueError(f"family {self.name!r}: empty factory string")
        if self.ef_construction is not None and self.ef_construction < 1:
            raise ValueError(f"family {self.name!r}: ef_construction must be >= 1")

    def factory_for(self, num_vectors: int) -> str:
        """The factory string with ``{nlist}`` filled for a corpus of ``num_vectors``."""
        return self.factory.replace("{nlist}", str(nlist_for(num_vectors)))


def nlist_for(num_vectors: int) -> int:
    """IVF list count ~ 4 sqrt(n), a power of two (the faiss wiki's rule of thumb), capped so that every list
    gets >= 39 training points (faiss' own minimum)."""
    nlist = 1 << max(0, round(math.log2(4.0 * math.sqrt(max(num_vectors, 1)))))
    while nlist > 1 and nlist * 39 > num_vectors:
        nlist //= 2
    return nlist


def parse_grid(grid: str) -> list[str]:
    """``"nprobe=1,4;k_factor=1,2"`` -> ParameterSpace strings ``["nprobe=1,k_factor=1", ...]`` ([""] if empty)."""
    if not grid.strip():
        return [""]
    names, values = [], []
    for part in grid.split(";"):
        name, sep, raw = part.partition("=")
        if not sep or not name.strip() or not raw.strip():
            raise ValueError(f"malformed grid part {part!r} in {grid!r}; expected name=v1,v2")
        try:
            parsed = [float(v) if "." in v else int(v) for v in raw.split(",")]
        except ValueError as exc:
            raise ValueError(f"grid {grid!r}: values of {name.strip()!r} must be numbers") from exc
        names.append(name.strip())
        values.append(parsed)
    return [",".join(f"{n}={v}" for n, v in zip(names, combo)) for combo in itertools.product(*values)]


def cached_index(vectors: np.ndarray, fingerprint: str, family: IndexFamily, *, seed: int = 0,
                 cache: Path | None = None) -> tuple[faiss.Index, dict]:
    """Build (or load from ``cache``) ``family``'s index over ``vectors``; returns (index, build info)."""
    factory = family.factory_for(len(vectors))
    key = artifacts.short_hash(fingerprint, factory, family.ef_construction, family.train_size, seed, length=16)
    path = cache / f"{key}.faiss" if cache is not None else None
    if path is not None and path.exists() and path.with_suffix(".json").exists():
        info = artifacts.read_json(path.with_suffix(".json"))
        return faiss.read_index(str(path)), {**info, "reused": True}
    started = time.perf_counter()
    if family.ef_construction is not None:
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        hnsw = faiss.downcast_index(index)
        if not hasattr(hnsw, "hnsw"):
            raise ValueError(f"family {family.name!r}: ef_construction given but {factory!r} is not an HNSW index")
        hnsw.hnsw.efConstruction = family.ef_construction
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    else:
        index = build_index(vectors, IndexSpec(factory, metric="ip", seed=seed,
                                               train_size=min(family.train_size or len(vectors), len(vectors))))
    build_s = time.perf_counter() - started
    info = {"factory": factory, "build_s": build_s, "ntotal": int(index.ntotal), "reused": False}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
        info["bytes"] = path.stat().st_size
        artifacts.write_json(path.with_suffix(".json"), info)
    else:
        info["bytes"] = int(faiss.serialize_index(index).nbytes)
    return index, info


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact inner-product top-``k`` ids [nq, k] (the recall reference)."""
    return search(build_index(vectors, IndexSpec("Flat", metric="ip")), queries, k)[1]


def sweep_family(index: faiss.Index, queries: np.ndarray, truth: np.ndarray, family: IndexFamily, *, k: int = 10,
                 repeats: int = 2, batch_size: int = 4096, space=None) -> tuple[list[dict], list[str]]:
    """Every grid point's recall@k and batched queries/s; returns (points, keys of the Pareto-optimal ones).

    ``space``: the faiss ParameterSpace to set parameters with (``faiss.GpuParameterSpace`` for GPU indexes).
    """
    space = space or faiss.ParameterSpace()
    frontier = faiss.OperatingPoints()
    points = []
    for setting in parse_grid(family.grid):
        if setting:
            try:
                space.set_index_parameters(index, setting)
            except RuntimeError as exc:
                raise ValueError(f"family {family.name!r}: faiss rejects parameters {setting!r}: {exc}") from exc
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            _, ids = search(index, queries, k, batch_size=batch_size)
            best = min(best, time.perf_counter() - started)
        recall = recall_against_exact(ids, truth, k)
        frontier.add(recall, best, setting or "default")
        points.append({"family": family.name, "setting": setting or "default", "recall": recall,
                       "qps": len(queries) / best, "search_s": best})
        LOGGER.info("%s %s: recall@%d %.4f, %.0f q/s", family.name, setting, k, recall, len(queries) / best)
    # OperatingPoints starts with a sentinel point (perf 0, t 0, key ""): not one of ours
    optimal = [frontier.optimal_pts.at(i).key for i in range(frontier.optimal_pts.size())
               if frontier.optimal_pts.at(i).key]
    return points, optimal


def single_query_latency(index: faiss.Index, queries: np.ndarray, setting: str, *, k: int = 10,
                         num_queries: int = 500, space=None) -> dict:
    """p50 / p99 / mean milliseconds of one-query searches with one thread (how a serving worker searches)."""
    if setting and setting != "default":
        (space or faiss.ParameterSpace()).set_index_parameters(index, setting)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        times = []
        for row in range(min(num_queries, len(queries))):
            q = queries[row:row + 1]
            started = time.perf_counter()
            index.search(q, k)
            times.append((time.perf_counter() - started) * 1e3)
    finally:
        faiss.omp_set_num_threads(threads)
    times = np.asarray(times)
    counts, edges = np.histogram(np.log10(times), bins=40)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "mean_ms": float(times.mean()), "num_queries": int(len(times)),
            "histogram_log10_ms": {"counts": counts.tolist(), "edges": [round(float(e), 4) for e in edges]}}


def batch_throughput(index: faiss.Index, queries: np.ndarray, setting: str, batch_sizes: tuple[int, ...], *,
                     k: int = 10, space=None) -> list[dict]:
    """Queries/s when the queries arrive in batches of each size (all threads)."""
    if setting and setting != "default":
        (space or faiss.ParameterSpace()).set_index_parameters(index, setting)
    rows = []
    for size in batch_sizes:
        started = time.perf_counter()
        search(index, queries, k, batch_size=size)
        rows.append({"batch_size": int(size), "qps": len(queries) / (time.perf_counter() - started)})
    return rows


def cheapest(points: list[dict], target: float) -> dict | None:
    """The fastest point reaching recall >= ``target`` (None when no point does)."""
    reaching = [point for point in points if point["recall"] >= target]
    return max(reaching, key=lambda point: point["qps"]) if reaching else None

