"""Chapter-1 experiment: dense content retrieval on a sequential dataset, exact vs approximate.

Steps: load + split (leave-one-out) -> cached text embeddings -> select the history decay on the
validation split with the exact index -> score query strategies and every ANN index on valid and
test -> recall of each index against Flat and its queries/s.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import faiss
from tqdm import tqdm

from baselines.faiss_ann.content_retrieval import (build_flat, compare_to_exact, evaluate_split, pad_histories,
                                                   history_queries, retrieve)
from baselines.faiss_ann.index import IndexSpec, build_index, default_specs
from mmq import artifacts
from mmq.data import leave_one_out, load_dataset
from mmq.features import TextFeatureConfig, item_text_embeddings
from mmq.features.text import recipe_name, text_feature_path

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DenseRetrievalConfig:
    """Chapter-1 dense retrieval settings (defaults: Beauty, titles, MiniLM)."""

    dataset: str = "beauty"
    kcore: int | None = None            # None: the dataset's default (5-core)
    max_history: int = 20               # TIGER protocol
    text: TextFeatureConfig = TextFeatureConfig()
    decay_grid: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0)  # chosen on valid
    selection_metric: str = "ndcg@10"
    ks: tuple[int, ...] = (5, 10, 20)
    exclude_history: bool = True        # never recommend an item already in the history
    nprobe: int | None = None           # None: default_specs' choice for the catalogue size
    ef_search: int | None = None

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cutoffs, got {self.ks}")
        known = {f"{name}@{k}" for k in self.ks for name in ("recall", "ndcg", "precision", "hit_rate", "mrr")}
        if self.selection_metric not in known:
            raise ValueError(f"selection_metric {self.selection_metric!r} is not computed for ks={list(self.ks)}; "
                             f"choose one of {sorted(known)}")
        if not self.decay_grid or not all(0.0 <= decay <= 1.0 for decay in self.decay_grid):
            raise ValueError(f"decay_grid must be non-empty values in [0, 1], got {self.decay_grid}")


def run_dense_retrieval(config: DenseRetrievalConfig, seed: int) -> dict[str, Any]:
    """Run the whole chapter-1 experiment and return its metrics dict (JSON-friendly)."""
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    split = leave_one_out(dataset, max_history=config.max_history)
    embeddings = item_text_embeddings(dataset, config.text)
    common = dict(ks=config.ks, max_history=config.max_history, exclude_history=config.exclude_history)

    flat = build_flat(embeddings)
    valid_history, valid_target = split.history_and_target("valid")
    selection = {}
    for decay in tqdm(config.decay_grid, desc="decay on valid"):
        metrics, _, _ = evaluate_split(flat, embeddings, valid_history, valid_target, decay=decay, **common)
        selection[str(decay)] = metrics[config.selection_metric]
    best_decay = float(max(config.decay_grid, key=lambda decay: selection[str(decay)]))
    LOGGER.info("selected decay %.2f on valid (%s %.4f)", best_decay, config.selection_metric, selection[str(best_decay)])

    strategies = {"last item (decay 0)": 0.0, "mean of history (decay 1)": 1.0,
                  f"recency-weighted (decay {best_decay:g}, valid-selected)": best_decay}
    query_results = {}
    for name, decay in strategies.items():
        query_results[name] = {"decay": decay, **{
            split_name: evaluate_split(flat, embeddings, *split.history_and_target(split_name), decay=decay, **common)[0]
            for split_name in ("valid", "test")}}

    specs = default_specs(dataset.num_items, embeddings.shape[1], seed=seed)
    specs = [_with_search_overrides(spec, config) for spec in specs]
    test_history, test_target = split.history_and_target("test")
    padded = pad_histories(test_history, config.max_history)
    queries = history_queries(padded, embeddings, best_decay)
    exact_ranked, _ = retrieve(flat, queries, padded, max(config.ks), exclude_history=config.exclude_history)
    index_results = []
    for spec in tqdm(specs, desc="indexes"):
        started = time.perf_counter()
        index = build_index(embeddings, spec)
        build_seconds = time.perf_counter() - started
        # throughput: best of 3 passes over all test queries (history removal included)
        runs = [retrieve(index, queries, padded, max(config.ks), exclude_history=config.exclude_history)
                for _ in range(3)]
        ranked, queries_per_second = runs[0][0], max(run[1] for run in runs)
        index_results.append({
            "name": spec.display_name, "factory": spec.factory, "nprobe": spec.nprobe, "ef_search": spec.ef_search,
            "build_seconds": round(build_seconds, 3), "queries_per_second": round(queries_per_second, 1),
            "index_bytes": int(faiss.serialize_index(index).nbytes),
            **compare_to_exact(ranked, exact_ranked, config.ks),
            "valid": evaluate_split(index, embeddings, valid_history, valid_target, decay=best_decay, **common)[0],
            "test": evaluate_split(index, embeddings, test_history, test_target, decay=best_decay, **common)[0],
        })
    flat_speed = next(entry["queries_per_second"] for entry in index_results if entry["factory"] == "Flat")
    for entry in index_results:
        entry["speedup_vs_flat"] = round(entry["queries_per_second"] / flat_speed, 3)
    feature_meta = text_feature_path(dataset, config.text).with_suffix(".json")
    return {
        "dataset": dataset.statistics(),
        "text_recipe": recipe_name(config.text.recipe),
        "text_encoding": _read_json_or_none(feature_meta),
        "decay_selection_valid": selection,
        "selected_decay": best_decay,
        "query_strategies": query_results,
        "indexes": index_results,
        "faiss_threads": faiss.omp_get_max_threads(),
        "num_queries": int(len(test_target)),
    }


def run(config: DenseRetrievalConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``dense_retrieval`` kind."""
    return run_dense_retrieval(config, seed)


def _with_search_overrides(spec: IndexSpec, config: DenseRetrievalConfig) -> IndexSpec:
    """Apply the config's nprobe / efSearch to the specs that use them."""
    changes: dict[str, Any] = {}
    if config.nprobe is not None and spec.nprobe is not None:
        changes["nprobe"] = config.nprobe
    if config.ef_search is not None and spec.ef_search is not None:
        changes["ef_search"] = config.ef_search
    return dataclasses.replace(spec, **changes)  # display_name follows the new search parameters


def _read_json_or_none(path) -> dict | None:
    return artifacts.read_json(path) if path.exists() else None
