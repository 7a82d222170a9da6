"""Chapter-6 experiment (registry kind ``multiphase``): semantic-ID coarse -> vector fine, one task per run.

Steps: build the task (catalogue vectors, code sources, valid / test queries) -> on VALID, score every
multiphase setting (untimed) and pick each tokenizer's best by the task metric -> on TEST, every curve
(multiphase per tokenizer, Flat, IVF nprobe sweep, HNSW efSearch sweep) with recall@k vs Flat, the task
metric, candidates per query, single-query p50 / p99 latency (1 thread) and batched queries/s -> the
matched-recall comparison against IVF. Everything lands in ``report.json``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import faiss
import torch

from baselines.multiphase.evaluation import CurveConfig, evaluate_task, exact_top_k, multiphase_curve
from baselines.multiphase.matched import verdict
from baselines.multiphase.search import MultiphaseSearcher
from baselines.multiphase.tasks import TASKS, with_queries
from mmq.registry import Upstream

LOGGER = logging.getLogger(__name__)
BEAUTY_TOKENIZERS = ("experiments/tokenizers/beauty_rq_kmeans.yaml", "experiments/tokenizers/beauty_rq_vae.yaml",
                     "experiments/mmq/beauty_mmq.yaml")


@dataclasses.dataclass(frozen=True)
class MultiphaseConfig:
    """One task's multiphase evaluation (defaults: Beauty with its three SID runs)."""

    task: str = "beauty"                              # beauty | myntra | scale (ch3 1M synthetic) | synthetic
    tokenizers: tuple[str, ...] = BEAUTY_TOKENIZERS   # beauty: SID run YAMLs (rebuilt when their files are absent)
    tokenizer_seed: int = 0
    fit_methods: tuple[str, ...] = ("rq_kmeans", "rq_vae")  # myntra / synthetic: tokenizers fitted on the items
    code_length: int = 3                              # ... their levels,
    codebook_size: int = 256                          # ... codes per level
    rq_vae_steps: int = 3000                          # ... and RQ-VAE steps (the Beauty SID runs' settings)
    curve: CurveConfig = CurveConfig()
    max_history: int = 20                             # beauty: TIGER protocol, as chapter 1
    decay: float | None = None                        # beauty: None = chapter 1's choice on VALID over decay_grid
    decay_grid: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0)
    selection_metric: str = "ndcg@10"                 # task metric choosing each tokenizer's setting on VALID
    valid_queries: int = 3000                         # VALID queries scored per setting (first ones; 0 = all)
    synthetic_items: int = 2000                       # synthetic task sizes
    synthetic_queries: int = 200
    synthetic_dim: int = 32
    synthetic_clusters: int = 20
    seed: int = 0                                     # fits of this package's tokenizers, synthetic data
    num_threads: int = 1                              # torch / faiss threads (latency is single-thread)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        if self.task == "beauty" and not self.tokenizers:
            raise ValueError("the beauty task needs at least one SID run in tokenizers")
        if self.task != "beauty" and not self.fit_methods:
            raise ValueError(f"the {self.task} task needs at least one of fit_methods")
        if self.valid_queries < 0:
            raise ValueError(f"valid_queries must be >= 0, got {self.valid_queries}")


def multiphase_upstream(config: MultiphaseConfig) -> list[Upstream]:
    """The Beauty task consumes its SID runs (their identities are part of this run's)."""
    if config.task != "beauty":
        return []
    return [Upstream(f"tokenizers[{index}]", path, config.tokenizer_seed) for index, path in enumerate(config.tokenizers)]


def select_settings(task, config: MultiphaseConfig) -> dict[str, Any]:
    """Per tokenizer, the VALID points (untimed) and the setting with the best ``selection_metric``."""
    valid = task.splits["valid"]
    rows = slice(0, config.valid_queries or len(valid.vectors))
    vectors = valid.vectors[rows]
    exclude = None if valid.exclude is None else valid.exclude[rows]
    exact_ids = exact_top_k(task.item_vectors, vectors, config.curve.k, exclude)
    chosen = {}
    for source in with_queries(task.sources, valid):
        inputs = source.query_inputs
        inputs = {name: array[rows] for name, array in inputs.items()} if isinstance(inputs, dict) else inputs[rows]
        searcher = MultiphaseSearcher(task.item_vectors, source.item_codes, source.encoder)
        score = lambda ranked: valid.score(ranked, rows)  # noqa: E731
        points = multiphase_curve(searcher, vectors, inputs, exact_ids, config.curve, exclude=exclude, score=score,
                                  timed=False)
        best = max(points, key=lambda point: (point["task"][config.selection_metric], -point["mean_candidates"]))
        chosen[source.name] = {"probe": best["probe"], "min_candidates": best["min_candidates"],
                               "valid_points": points, "num_valid_queries": int(len(vectors))}
    return chosen


def run_multiphase(config: MultiphaseConfig, seed: int) -> dict[str, Any]:
    """Build the task, select settings on VALID, evaluate every curve on TEST; the run's metrics."""
    torch.set_num_threads(config.num_threads)
    faiss.omp_set_num_threads(config.num_threads)
    task = TASKS[config.task](config)
    selected = select_settings(task, config)
    test = task.splits["test"]
    curves = evaluate_task(task.item_vectors, test.vectors, with_queries(task.sources, test), curve=config.curve,
                           exclude=test.exclude, score=test.score, indexes=task.indexes)
    for name, points in curves["multiphase"].items():
        pick = selected[name]
        selected[name]["test"] = next(point for point in points if point["probe"] == pick["probe"]
                                      and point["min_candidates"] == pick["min_candidates"])
    k = config.curve.k
    return {"task": config.task, **task.info, "selected_on_valid": selected, **curves,
            "verdicts": {name: verdict(rows, k=k) for name, rows in curves["matched"].items()},
            "num_threads": config.num_threads,
            "note": "latencies measured with torch/faiss at num_threads; other jobs may share the cores"}


def run(config: MultiphaseConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``multiphase`` kind."""
    return run_multiphase(config, seed)
