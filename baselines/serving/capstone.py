"""Chapter 10's capstone, search track: the served API end to end on chapter 2's Myntra test queries.

The system: a query -> the two-tower query tower -> **multiphase retrieval** (RQ-KMeans semantic IDs of the served
product embeddings, then exact scores inside the probed cells) -> **reranking** (chapter 4's LightGBM, optionally
with the cross-encoder) -> top 10, served by the FastAPI app of :mod:`baselines.serving.app`. Every test query goes
through the API in-process (``fastapi.testclient``: the full request path, validation, caches and middleware, no
network), so the quality numbers are computed from the API's responses and the latency breakdown is the API's own
per-stage timing.

Choices on VALID only (test read once): the multiphase setting (probe x min_candidates, by valid NDCG@10 after
LightGBM; ties to the faster) and the full system's reranker (LightGBM vs LightGBM + CE on a valid subset).
Single-system rows beside it: BM25 and frozen MiniLM (chapter 2's per-query results), the two-tower alone (dense
through the API), dense + rerank (chapter 4's pipeline, through the API). An A/B experiment routes every test query
(unit = query id) through the API's hash assignment, control = the two-tower alone, treatment = the full system;
the replay scores both arms on every unit (paired interval) and the guardrail compares the arms' served p99.
No Myntra MMQ tokenizer run exists (Myntra's MMQ rows are issue-15 work), so the search track's semantic IDs are
RQ-KMeans; the Beauty track (:mod:`baselines.serving.capstone_beauty`) uses MMQ's.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

LOGGER = logging.getLogger(__name__)
RETRIEVAL_DEPTH = 100          # the retrieval stage's list (recall@100 of the fully relevant products)
GUARDRAIL_MAX_RATIO = 3.0      # a treatment may take at most 3x the control's served p99 (a reranker costs time)


@dataclasses.dataclass(frozen=True)
class SearchTrackConfig:
    """The search track's grid and budgets (defaults: the capstone's)."""

    probes: tuple[int, ...] = (1, 4, 16)
    min_candidates: tuple[int, ...] = (100, 300, 1000)
    ce_valid_queries: int = 200         # the valid queries that choose LightGBM vs LightGBM + CE (CE is slow)
    ce_test_queries: int = 200          # the test queries the cross-encoder pipelines answer (the first ones)
    max_queries: int | None = None      # a quick look: the first queries of each split only (None: all)
    seed: int = 0
    experiment_salt: str = "capstone-1"


def relevant_recall(benchmark, queries, ranked: np.ndarray) -> np.ndarray:
    """Per query: fully relevant (grade 3) products in ``ranked`` over min(depth, all fully relevant ones)."""
    depth = ranked.shape[1]
    found = np.array([(benchmark.grades(query, row[row >= 0]) == 3).sum() for query, row in zip(queries, ranked)])
    total = np.array([(benchmark.grades(query) == 3).sum() for query in queries])
    return (found / np.maximum(np.minimum(depth, total), 1)).astype(np.float32)


def _ranked_rows(responses: list[dict], row_of: dict[str, int], depth: int) -> np.ndarray:
    ranked = np.full((len(responses), depth), -1, dtype=np.int64)
    for position, body in enumerate(responses):
        rows = [row_of[item["item_id"]] for item in body["items"][:depth]]
        ranked[position, :len(rows)] = rows
    return ranked


def _call_all(client, texts: list[str], pipeline: str, k: int, desc: str, *, progress: bool,
              user_ids: list[str] | None = None) -> list[dict]:
    """POST /search for every text; any non-200 is an error naming the query."""
    bodies = []
    for position, text in enumerate(tqdm(texts, desc=desc, disable=not progress, leave=False)):
        payload: dict[str, Any] = {"query": text, "k": k}
        if user_ids is not None:
            payload["user_id"] = user_ids[position]
        else:
            payload["pipeline"] = pipeline
        response = client.post("/search", json=payload)
        if response.status_code != 200:
            raise RuntimeError(f"/search {payload} -> {response.status_code}: {response.text[:300]}")
        bodies.append(response.json())
    return bodies


def _latency_summary(bodies: list[dict]) -> dict[str, dict[str, float]]:
    summary = {}
    for stage in ("embed", "retrieve", "rerank", "total"):
        values = np.array([body["timings_ms"][stage] for body in bodies])
        summary[stage] = {"mean": round(float(values.mean()), 4), "p50": round(float(np.percentile(values, 50)), 4),
                          "p95": round(float(np.percentile(values, 95)), 4),
                          "p99": round(float(np.percentile(values, 99)), 4)}
    return summary


def run_search_track(config: SearchTrackConfig = SearchTrackConfig(), *, exposure_log=None,
                     progress: bool = True) -> dict[str, Any]:
    """Everything the capstone report needs from the search track (module docstring); per-query arrays included."""
    from fastapi.testclient import TestClient

    from baselines.serving.ab import Experiment, guardrail, replay
    from baselines.serving.app import create_app
    from baselines.serving.config import ServingConfig, load_engine
    from baselines.two_tower.search import QuerySearchConfig, evaluate_ranked, load_benchmark, query_texts
    from baselines.two_tower.table import per_query_matrix
    from mmq import registry

    started = time.perf_counter()
    serving = ServingConfig(multiphase=True, rerankers=("lightgbm", "lightgbm_ce"), seed=config.seed,
                            multiphase_probe=config.probes[0], multiphase_min_candidates=config.min_candidates[0])
    engine = load_engine(serving)
    _, search_config = registry.load_experiment(serving.search_run)
    benchmark, _, item_ids = load_benchmark(search_config)
    row_of = {item: row for row, item in enumerate(item_ids)}
    queries = {split: benchmark.split(split)[:config.max_queries] for split in ("valid", "test")}
    texts = {split: query_texts(queries[split])[0] for split in queries}
    multiphase = engine.current.multiphase
    client = TestClient(create_app(engine, max_k=RETRIEVAL_DEPTH, pipeline="dense"))

    def ndcg(split: str, bodies: list[dict], rows: slice = slice(None)) -> tuple[float, np.ndarray]:
        ranked = _ranked_rows(bodies, row_of, 10)
        metrics, per_query = evaluate_ranked(benchmark, queries[split][rows], ranked, (10,))
        return metrics["ndcg@10"], per_query["ndcg@10"].astype(np.float32)

    # --- VALID: the multiphase setting, then the reranker --------------------------------------------------
    grid = []
    for probe in config.probes:
        for minimum in config.min_candidates:
            multiphase.probe, multiphase.min_candidates = probe, minimum
            engine.clear_caches()
            bodies = _call_all(client, texts["valid"], "multiphase+lightgbm", 10, f"valid probe {probe} N {minimum}",
                               progress=progress)
            mean_ms = float(np.mean([body["timings_ms"]["retrieve"] for body in bodies]))
            grid.append({"probe": probe, "min_candidates": minimum, "valid_ndcg@10": round(ndcg("valid", bodies)[0], 6),
                         "retrieve_mean_ms": round(mean_ms, 4)})
    best_value = max(point["valid_ndcg@10"] for point in grid)
    chosen = min((point for point in grid if point["valid_ndcg@10"] >= best_value - 0.002),
                 key=lambda point: point["retrieve_mean_ms"])
    multiphase.probe, multiphase.min_candidates = chosen["probe"], chosen["min_candidates"]
    engine.clear_caches()
    subset = slice(0, config.ce_valid_queries)
    rerank_choice = {}
    for pipeline in ("multiphase+lightgbm", "multiphase+lightgbm_ce"):
        bodies = _call_all(client, texts["valid"][subset], pipeline, 10, f"valid {pipeline}", progress=progress)
        rerank_choice[pipeline] = round(ndcg("valid", bodies, subset)[0], 6)
    full = max(rerank_choice, key=lambda pipeline: (rerank_choice[pipeline], pipeline == "multiphase+lightgbm"))
    if rerank_choice["multiphase+lightgbm_ce"] - rerank_choice["multiphase+lightgbm"] < 0.005:
        full = "multiphase+lightgbm"    # the cross-encoder must earn its ~50x latency by a visible margin

    # --- TEST, read once: every pipeline through the API ---------------------------------------------------
    engine.clear_caches()
    pipelines = ("dense", "multiphase", "dense+lightgbm", "multiphase+lightgbm", "dense+lightgbm_ce",
                 "multiphase+lightgbm_ce")
    test: dict[str, Any] = {}
    per_query: dict[str, np.ndarray] = {}
    for pipeline in pipelines:
        depth = RETRIEVAL_DEPTH if "+" not in pipeline else 10
        rows = slice(0, config.ce_test_queries) if pipeline.endswith("_ce") else slice(None)
        bodies = _call_all(client, texts["test"][rows], pipeline, depth, f"test {pipeline}", progress=progress)
        value, per_query[pipeline] = ndcg("test", bodies, rows)
        entry = {"ndcg@10": round(value, 6), "latency_ms": _latency_summary(bodies), "queries": len(bodies)}
        if "+" not in pipeline:
            recall = relevant_recall(benchmark, queries["test"], _ranked_rows(bodies, row_of, depth))
            entry["recall@100"] = round(float(recall.mean()), 6)
            per_query[f"{pipeline}_recall@100"] = recall
        test[pipeline] = entry
    # single systems from chapter 2's per-query results (same test queries, same order)
    for label, run in (("bm25", "experiments/ch2/myntra_bm25.yaml"),
                       ("frozen_minilm", "experiments/ch2/myntra_frozen_minilm.yaml")):
        values = per_query_matrix(run, (config.seed,), "test_ndcg_at_10")
        if values is not None:
            per_query[label] = values[0][:len(queries["test"])].astype(np.float32)
            test[label] = {"ndcg@10": round(float(per_query[label].mean()), 6), "source": f"{run} per_query.npz"}
    committed = per_query_matrix(serving.search_run, (config.seed,), "test_ndcg_at_10")
    consistency = None
    if committed is not None:
        difference = np.abs(committed[0][:len(per_query["dense"])] - per_query["dense"])
        consistency = {"queries_differing": int((difference > 1e-6).sum()), "queries": int(difference.size),
                       "max_abs_diff": round(float(difference.max()), 6),
                       "mean_chapter2": round(float(committed[0][:difference.size].mean()), 6),
                       "mean_api": round(float(per_query["dense"].mean()), 6)}

    # --- A/B through the API: unit = test query id, control = two-tower alone, treatment = the full system ----
    experiment = Experiment("capstone-search", config.experiment_salt, ("control", "treatment"), (0.5, 0.5))
    arms = {"control": "dense", "treatment": full}
    routed = TestClient(create_app(engine, max_k=RETRIEVAL_DEPTH, experiment=experiment, arm_pipelines=arms,
                                   exposure_log=exposure_log))
    engine.clear_caches()
    scored = len(per_query[full])            # the cross-encoder pipelines answer only the first ce_test_queries
    units = [str(query.query_id) for query in queries["test"][:scored]]
    bodies = _call_all(routed, texts["test"][:scored], "", 10, "A/B routed test queries", progress=progress,
                       user_ids=units)
    served_ms = {arm: np.array([body["timings_ms"]["total"] for body in bodies if body["arm"] == arm])
                 for arm in experiment.arms}
    ab = replay(experiment, units, {"control": per_query["dense"][:scored], "treatment": per_query[full]},
                seed=config.seed)
    ab["guardrail"] = guardrail(served_ms, "control", max_ratio=GUARDRAIL_MAX_RATIO)
    ab["guardrail_max_ratio"] = GUARDRAIL_MAX_RATIO
    ab["arms"] = arms
    ab["routed_matches_assignment"] = all(body["arm"] == experiment.assign(unit) for body, unit in zip(bodies, units))
    return {"grid_valid": grid, "chosen": {"probe": chosen["probe"], "min_candidates": chosen["min_candidates"]},
            "rerank_choice_valid": rerank_choice, "ce_valid_queries": len(texts["valid"][subset]),
            "full_pipeline": full, "test": test,
            "num_queries": {split: len(queries[split]) for split in queries}, "num_products": len(item_ids),
            "dense_matches_chapter2_per_query_max_abs_diff": consistency, "ab": ab,
            "multiphase": multiphase.description.split(", probe")[0], "per_query": per_query,
            "seconds": round(time.perf_counter() - started, 1)}
