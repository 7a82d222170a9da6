"""Chapter-3 experiment (kind ``ann_scale``): index tuning at scale, Pareto frontiers, latency, extrapolation.

Steps: the real corpus (every MiniLM item-text vector here + real queries) -> a mixture fitted to it ->
the fit check (recall of the same index settings on the real set and on a synthetic set of the same size) ->
for the real corpus and a 1M-vector synthetic corpus: exact top-k, then every index family's grid (recall@k vs
batched queries/s, Pareto frontier by ``faiss.OperatingPoints``), build time, bytes per vector, and at each
family's operating point (the fastest setting reaching ``operating_recall``) single-query p50/p99 with one
thread and batch size vs throughput -> compressed families built again at smaller synthetic sizes and
extrapolated to 10M (method in ``extrapolate``). A benchmark: the report records the machine and load average.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from baselines.faiss_ann.corpus import MixtureModel, fit_mixture, load_real_corpus, vectors_sha256
from baselines.faiss_ann.gpu import check_device, parameter_space, place
from baselines.faiss_ann.index import IndexSpec, build_index, search
from baselines.faiss_ann.sweep import (IndexFamily, batch_throughput, cached_index, cheapest, exact_neighbours,
                                       single_query_latency, sweep_family)
from mmq.data.paths import cache_dir

LOGGER = logging.getLogger(__name__)

DEFAULT_FAMILIES = (
    IndexFamily("IVF-Flat", "IVF{nlist},Flat", "nprobe=1,2,4,8,16,32,64,128"),
    IndexFamily("HNSW16", "HNSW16", "efSearch=8,16,32,64,128,256", ef_construction=40),
    IndexFamily("HNSW32", "HNSW32", "efSearch=8,16,32,64,128,256", ef_construction=40),
    IndexFamily("HNSW32 efC100", "HNSW32", "efSearch=8,16,32,64,128", ef_construction=100, corpora=("real",)),
    IndexFamily("IVF-PQ48", "IVF{nlist},PQ48", "nprobe=4,8,16,32,64", compressed=True),
    IndexFamily("OPQ48+IVF-PQ48", "OPQ48,IVF{nlist},PQ48", "nprobe=4,8,16,32,64", compressed=True,
                train_size=100_000),
    IndexFamily("IVF-PQ96x4fs", "IVF{nlist},PQ96x4fs", "nprobe=4,8,16,32,64", compressed=True),
    IndexFamily("IVF-PQ96x4fs+refine", "IVF{nlist},PQ96x4fs,RFlat", "nprobe=8,16,32;k_factor_rf=4,16,64"),
)


@dataclasses.dataclass(frozen=True)
class AnnScaleConfig:
    """Chapter-3 benchmark settings (defaults: the committed table)."""

    k: int = 10                              # recall@k against exact inner-product top-k
    beauty_queries: int = 4000               # real queries: Beauty history means (+ the 1,000 ch2 test queries)
    mixture_components: int = 1024           # synthetic model: k-means components ...
    mixture_rank: int = 8                    # ... principal directions kept per component (fit check: 1024 x 8 tracks real recall best of 256x16, 1024x8, 4096x4, 4096x0)
    synthetic_size: int = 1_000_000          # the "1M" corpus
    synthetic_queries: int = 2000            # queries drawn from the same model
    fit_check_queries: int = 2000            # real items held out as queries for the fit check
    fit_check_families: tuple[IndexFamily, ...] = (
        IndexFamily("HNSW32", "HNSW32", "efSearch=8,16,32,64", ef_construction=40),
        IndexFamily("IVF-Flat", "IVF{nlist},Flat", "nprobe=1,2,4,8,16"),
    )
    families: tuple[IndexFamily, ...] = DEFAULT_FAMILIES
    operating_recall: float = 0.95           # a family's operating point: fastest setting reaching this recall
    targets: tuple[float, ...] = (0.90, 0.95, 0.99)   # cheapest setting reaching each
    batch_sizes: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)
    latency_queries: int = 500               # single-query latency sample
    extrapolation_sizes: tuple[int, ...] = (125_000, 250_000, 500_000)   # + synthetic_size, compressed families
    extrapolate_to: int = 10_000_000
    device: str = "cpu"                      # cpu | gpu | auto (faiss GPU indexes; CPU fallback)
    gpu_mode: str = "replicas"               # replicas | shards across GPUs
    threads: int = 2                         # faiss threads for batched search (single-query latency uses 1)

    def __post_init__(self) -> None:
        check_device(self.device, self.gpu_mode)
        if not self.families:
            raise ValueError("families must not be empty")
        if not all(0 < target <= 1 for target in (*self.targets, self.operating_recall)):
            raise ValueError("targets and operating_recall must be recalls in (0, 1]")
        for name in ("k", "synthetic_size", "synthetic_queries", "fit_check_queries", "latency_queries", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def machine() -> dict[str, Any]:
    """Where a benchmark ran: CPU, cores, load average (numbers depend on all three)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "faiss": faiss.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def benchmark_corpus(name: str, vectors: np.ndarray, queries: np.ndarray, fingerprint: str,
                     families: tuple[IndexFamily, ...], config: AnnScaleConfig, seed: int) -> dict[str, Any]:
    """Sweep every family on one corpus; returns its points, frontiers, operating points and the Flat baseline."""
    started = time.perf_counter()
    truth = exact_neighbours(vectors, queries, config.k)
    flat_s = time.perf_counter() - started
    result: dict[str, Any] = {"num_vectors": int(len(vectors)), "num_queries": int(len(queries)),
                              "flat": {"qps": len(queries) / flat_s, "bytes_per_vector": 4 * vectors.shape[1]},
                              "families": []}
    for family in tqdm(families, desc=f"{name}: index families"):
        index, info = cached_index(vectors, fingerprint, family, seed=seed, cache=cache_dir() / "ann" / "indexes")
        placement = place(index, config.device, mode=config.gpu_mode)
        space = parameter_space(placement)
        points, optimal = sweep_family(placement.index, queries, truth, family, k=config.k, space=space)
        operating = cheapest(points, config.operating_recall) or max(points, key=lambda p: p["recall"])
        entry = {
            "family": family.name, "factory": info["factory"], "device": placement.device,
            "device_note": placement.note, "build_s": info["build_s"], "build_reused": info["reused"],
            "bytes_per_vector": info["bytes"] / max(info["ntotal"], 1), "compressed": family.compressed,
            "points": points, "pareto": optimal, "operating_point": operating,
            "cheapest": {f"{target:.2f}": cheapest(points, target) for target in config.targets},
            "latency": single_query_latency(placement.index, queries, operating["setting"], k=config.k,
                                            num_queries=config.latency_queries, space=space),
            "batching": batch_throughput(placement.index, queries, operating["setting"], config.batch_sizes,
                                         k=config.k, space=space),
        }
        result["families"].append(entry)
        del index, placement
    return result


def fit_check(real_vectors: np.ndarray, model: MixtureModel, config: AnnScaleConfig, seed: int) -> dict[str, Any]:
    """Recall of the same settings on real vectors and on a same-size synthetic draw (queries held out / drawn)."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(real_vectors), bool)
    held[rng.choice(len(real_vectors), config.fit_check_queries, replace=False)] = True
    sets = {"real": (real_vectors[~held], real_vectors[held]),
            "synthetic": (model.sample(int((~held).sum()), seed + 11), model.sample(config.fit_check_queries, seed + 12))}
    curves: dict[str, dict[str, list[dict]]] = {}
    neighbour_similarity = {}
    for name, (database, queries) in sets.items():
        scores, truth = search(build_index(database, IndexSpec("Flat", metric="ip")), queries, config.k)
        neighbour_similarity[name] = {"top1": float(scores[:, 0].mean()), f"top{config.k}": float(scores[:, -1].mean())}
        fingerprint = vectors_sha256(database)
        for family in config.fit_check_families:
            index, _ = cached_index(database, fingerprint, family, seed=seed, cache=None)
            points, _ = sweep_family(index, queries, truth, family, k=config.k, repeats=1)
            curves.setdefault(family.name, {})[name] = [{"setting": p["setting"], "recall": p["recall"]} for p in points]
    gaps = [abs(r["recall"] - s["recall"]) for family in curves.values()
            for r, s in zip(family["real"], family["synthetic"])]
    return {"curves": curves, "neighbour_similarity": neighbour_similarity, "max_recall_gap": max(gaps),
            "mean_recall_gap": float(np.mean(gaps))}


def extrapolate(sizes: list[int], values: list[float], target: int, *, kind: str) -> dict[str, Any]:
    """Fit measured values against corpus size and predict ``target``.

    ``kind="linear"`` (build seconds, bytes): least squares ``a + b n``; ``kind="power"`` (queries/s):
    ``log qps = a + b log n``; ``kind="log"`` (recall): ``recall = a + b log n`` clipped to [0, 1].
    """
    n, y = np.asarray(sizes, float), np.asarray(values, float)
    if kind == "linear":
        b, a = np.polyfit(n, y, 1)
        predicted = a + b * target
    elif kind == "power":
        b, a = np.polyfit(np.log(n), np.log(y), 1)
        predicted = float(np.exp(a + b * np.log(target)))
    elif kind == "log":
        b, a = np.polyfit(np.log(n), y, 1)
        predicted = float(np.clip(a + b * np.log(target), 0.0, 1.0))
    else:
        raise ValueError(f"unknown extrapolation kind {kind!r}")
    return {"kind": kind, "slope": float(b), "intercept": float(a), "predicted": float(predicted)}


def extrapolation(model: MixtureModel, config: AnnScaleConfig, seed: int, at_full: dict[str, Any]) -> list[dict]:
    """Compressed families at smaller synthetic sizes + the full-size result -> predictions at ``extrapolate_to``."""
    compressed = [family for family in config.families if family.compressed and "synthetic" in family.corpora]
    measured: dict[str, list[dict]] = {family.name: [] for family in compressed}
    queries = model.sample(config.synthetic_queries, seed + 4)
    for size in tqdm(config.extrapolation_sizes, desc="extrapolation sizes"):
        vectors = model.sample(size, seed + 3)       # a smaller draw from the same model
        truth = exact_neighbours(vectors, queries, config.k)
        fingerprint = vectors_sha256(vectors)
        for family in compressed:
            full = next(f for f in at_full["families"] if f["family"] == family.name)
            setting = full["operating_point"]["setting"]
            index, info = cached_index(vectors, fingerprint, family, seed=seed, cache=cache_dir() / "ann" / "indexes")
            one = dataclasses.replace(family, grid=setting.replace(",", ";") if setting != "default" else "")
            points, _ = sweep_family(index, queries, truth, one, k=config.k)
            measured[family.name].append({"size": size, "setting": setting, "build_s": info["build_s"],
                                          "bytes_per_vector": info["bytes"] / size, "qps": points[0]["qps"],
                                          "recall": points[0]["recall"]})
    rows = []
    for family in compressed:
        full = next(f for f in at_full["families"] if f["family"] == family.name)
        series = measured[family.name] + [{"size": config.synthetic_size, "build_s": full["build_s"],
                                           "bytes_per_vector": full["bytes_per_vector"],
                                           "qps": full["operating_point"]["qps"],
                                           "recall": full["operating_point"]["recall"]}]
        sizes = [row["size"] for row in series]
        rows.append({"family": family.name, "setting": full["operating_point"]["setting"], "measured": series,
                     "target": config.extrapolate_to,
                     "build_s": extrapolate(sizes, [r["build_s"] for r in series], config.extrapolate_to, kind="linear"),
                     "index_bytes": extrapolate(sizes, [r["bytes_per_vector"] * r["size"] for r in series],
                                                config.extrapolate_to, kind="linear"),
                     "qps": extrapolate(sizes, [r["qps"] for r in series], config.extrapolate_to, kind="power"),
                     "recall": extrapolate(sizes, [r["recall"] for r in series], config.extrapolate_to, kind="log")})
    return rows


def synthetic_draws(model: MixtureModel, config: AnnScaleConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic corpus and its queries (the seeds ``run`` and ``synthetic_corpus`` share)."""
    return model.sample(config.synthetic_size, seed + 3), model.sample(config.synthetic_queries, seed + 4)


def synthetic_corpus(config: AnnScaleConfig, seed: int, *, progress: bool = False):
    """``(model, vectors, queries, fingerprint)`` of the synthetic corpus exactly as ``run`` draws it (other
    chapters reuse it, and the indexes this run cached for it)."""
    real = load_real_corpus(beauty_queries=config.beauty_queries, seed=seed, progress=progress)
    model = fit_mixture(real.vectors, num_components=config.mixture_components, rank=config.mixture_rank, seed=seed)
    vectors, queries = synthetic_draws(model, config, seed)
    return model, vectors, queries, vectors_sha256(vectors, queries)


def run(config: AnnScaleConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``ann_scale`` kind (a benchmark: run it with no other job on the cores)."""
    faiss.omp_set_num_threads(config.threads)
    before = machine()
    started = time.perf_counter()
    real = load_real_corpus(beauty_queries=config.beauty_queries, seed=seed, progress=progress)
    model = fit_mixture(real.vectors, num_components=config.mixture_components, rank=config.mixture_rank, seed=seed)
    check = fit_check(real.vectors, model, config, seed)
    LOGGER.info("fit check: max recall gap real vs synthetic %.4f", check["max_recall_gap"])
    corpora = {"real": benchmark_corpus("real", real.vectors, real.queries, real.fingerprint(),
                                        tuple(f for f in config.families if "real" in f.corpora), config, seed)}
    synthetic, synthetic_queries = synthetic_draws(model, config, seed)
    corpora["synthetic"] = benchmark_corpus("synthetic", synthetic, synthetic_queries,
                                            vectors_sha256(synthetic, synthetic_queries),
                                            tuple(f for f in config.families if "synthetic" in f.corpora), config, seed)
    del synthetic
    extrapolated = extrapolation(model, config, seed, corpora["synthetic"])
    return {"machine_before": before, "machine_after": machine(), "threads": config.threads,
            "real_corpus": {"item_sources": real.item_sources, "query_sources": real.query_sources,
                            "fingerprint": real.fingerprint()},
            "mixture": {"components": config.mixture_components, "rank": config.mixture_rank,
                        "fingerprint": model.fingerprint()},
            "fit_check": check, "corpora": corpora, "extrapolation": extrapolated,
            "wall_seconds": time.perf_counter() - started}
