"""Chapter-10 capstone, Beauty (recommendation) track: MMQ semantic IDs -> multiphase retrieval -> two-tower rerank.

The pipeline, for one user (a leave-one-out history of <= 20 Beauty items):

1. **MMQ multiphase** (chapter 6): the history's recency-weighted mean per modality (title text, collaborative
   vector; chapter 1's query with chapter 6's decay) is encoded by MMQ stage 1's parallel experts into a
   semantic ID; the items sharing its prefix (``probe`` paths, backoff until ``min_candidates`` items) are
   ranked by the inner product of their MiniLM title vector with the history's title query (phase 2); the
   top ``candidates`` unseen items go on. The setting is chapter 6's VALID choice for MMQ (probe 1,
   min_candidates 1000), read from its run report.
2. **Second-stage rerank**: the chapter-2 user-history two-tower (``experiments/ch2/beauty_user_two_tower.yaml``
   seed 0, ``best.pt``) encodes the history; the candidates are reordered by ``user . item`` (its item tower's
   embeddings; both unit norm, so cosine); ties keep the phase-2 order; the top 10 are returned.

:func:`run_beauty_track` evaluates it on every VALID and TEST user beside each single system -- ``dense_flat``
(chapter 1: the title history query, exact faiss Flat), ``two_tower`` (its full-catalogue top 10),
``mmq_multiphase`` (steps 1 alone), ``generative_rq_kmeans`` (the chapter-6 generative run's recorded
``per_event.npz``, test only) -- with the capstone's per-stage candidate recall, the VALID curve over the number of
candidates (chosen on VALID NDCG@10; TEST read once), per-user NDCG@10 / hit@10 arrays for paired intervals, and
single-user latency at one thread. :class:`BeautyPipelineRecommender` serves the same pipeline behind
``POST /recommend`` (the :class:`baselines.serving.recommend.Recommender` interface).

Run folders are only read: a missing run is a FileNotFoundError naming the command that trains it, never a
rebuild. One known inconsistency is handled explicitly: the MMQ run's committed ``report.json`` may record the
sha256 of a different SID table than the (git-ignored) ``semantic_ids.npy`` on this machine. The table is then
accepted only when its sha256 is the one the chapter-6 multiphase run recorded for MMQ (the table whose
probe / min_candidates choice is reused here), and the result says so (``runs.mmq.table``).

Ties: ``mmq_multiphase`` is the top 10 of the top-``candidates`` list, ordered by (title score, candidate
position). Items with identical titles have identical scores, so a user whose target ties at rank 10 can differ
from chapter 6's direct top-10 search (argpartition picks among the tied); on Beauty TEST that is one user
(NDCG@10 0.032631 here vs 0.032617 in chapter 6's report).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from tqdm import tqdm

from baselines.serving.recommend import Ranked, Recommender

LOGGER = logging.getLogger(__name__)

MMQ_RUN = "experiments/mmq/beauty_mmq.yaml"
TWO_TOWER_RUN = "experiments/ch2/beauty_user_two_tower.yaml"
GENERATIVE_RUN = "experiments/ch6/beauty_generative_rq_kmeans.yaml"
MULTIPHASE_RUN = "experiments/ch6/beauty_multiphase.yaml"
SEED = 0
K = 10
CANDIDATE_GRID = (50, 100, 200, 500, 1000)   # 1000 = chapter 6's min_candidates: the whole phase-1 pool
DEFAULT_CANDIDATES = 1000         # served default: run_beauty_track's VALID choice over CANDIDATE_GRID (NDCG@10
                                  # 0.0535 at 500, 0.0564 at 1000 = the whole phase-1 pool of ~1077 items)
FALLBACK_SETTING = {"probe": 1, "min_candidates": 1000, "decay": 0.0}   # chapter 6's VALID choice, if unreadable
SYSTEMS = ("dense_flat", "two_tower", "mmq_multiphase", "capstone", "generative_rq_kmeans")
CHUNK = 2048                      # users per batch


# --- the pure pieces (tested on tiny synthetic data) ----------------------------------------------------------


def candidate_scores(candidates: np.ndarray, user_vectors: np.ndarray, item_vectors: np.ndarray, *,
                     exclude: np.ndarray | None = None, chunk: int = 256) -> np.ndarray:
    """``user . item`` of every candidate ``[users, C]`` (float32); ``-inf`` for empty (-1) and excluded slots.

    ``exclude`` ``[users, H]`` (-1 padded): item ids never returned (the history).
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    users = np.asarray(user_vectors, dtype=np.float32)
    items = np.asarray(item_vectors, dtype=np.float32)
    if candidates.ndim != 2 or users.ndim != 2 or items.ndim != 2 or len(candidates) != len(users):
        raise ValueError(f"candidates [users, C], user vectors [users, d], item vectors [items, d] disagree: "
                         f"{candidates.shape}, {users.shape}, {items.shape}")
    if users.shape[1] != items.shape[1]:
        raise ValueError(f"user dim {users.shape[1]} != item dim {items.shape[1]}")
    if candidates.size and candidates.max() >= len(items):
        raise ValueError(f"candidate ids must be < {len(items)} (the item vectors), got {candidates.max()}")
    if exclude is not None and (np.ndim(exclude) != 2 or len(exclude) != len(candidates)):
        raise ValueError(f"exclude must be [users={len(candidates)}, H], got shape {np.shape(exclude)}")
    scores = np.empty(candidates.shape, dtype=np.float32)
    for start in range(0, len(candidates), chunk):
        rows = slice(start, start + chunk)
        block = candidates[rows]
        values = np.einsum("ucd,ud->uc", items[np.maximum(block, 0)], users[rows], optimize=True)
        invalid = block < 0
        if exclude is not None:
            history = np.asarray(exclude[rows], dtype=np.int64)
            invalid |= ((block[:, :, None] == history[:, None, :]) & (history[:, None, :] >= 0)).any(axis=2)
        scores[rows] = np.where(invalid, -np.inf, values)
    return scores


def top_k_by_score(candidates: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best candidates per row by score (ties: earlier candidate first); ``-1`` / ``-inf`` for empty slots."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    candidates, scores = np.asarray(candidates), np.asarray(scores, dtype=np.float32)
    if candidates.shape != scores.shape or candidates.ndim != 2:
        raise ValueError(f"candidates and scores must be equal [users, C], got {candidates.shape}, {scores.shape}")
    ids = np.full((len(candidates), k), -1, dtype=np.int64)
    top = np.full((len(candidates), k), -np.inf, dtype=np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]        # -inf (empty, excluded) sorts last
    found = np.take_along_axis(scores, order, axis=1)
    kept = np.isfinite(found)
    width = order.shape[1]
    ids[:, :width] = np.where(kept, np.take_along_axis(candidates, order, axis=1), -1)
    top[:, :width] = np.where(kept, found, -np.inf)
    return ids, top


def rerank(candidates: np.ndarray, user_vectors: np.ndarray, item_vectors: np.ndarray, k: int, *,
           exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The second stage: candidates ``[users, C]`` (first-stage order, -1 padded) reordered by ``user . item``;
    top ``k`` ids ``[users, k]`` and scores (excluded / empty slots never returned)."""
    return top_k_by_score(candidates, candidate_scores(candidates, user_vectors, item_vectors, exclude=exclude), k)


def candidate_hits(candidates: np.ndarray, targets: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Per user, whether the target is among the first ``depth`` (all) candidates ``[users]`` (bool)."""
    candidates, targets = np.asarray(candidates), np.asarray(targets)
    if candidates.ndim != 2 or targets.shape != (len(candidates),):
        raise ValueError(f"candidates [users, C] and targets [users] disagree: {candidates.shape}, {targets.shape}")
    return (candidates[:, :depth] == targets[:, None]).any(axis=1)


def candidate_recall(candidates: np.ndarray, targets: np.ndarray, depth: int | None = None) -> float:
    """Share of users whose target is among their first ``depth`` (all) candidates."""
    return float(candidate_hits(candidates, targets, depth).mean())


def per_user_metrics(ranked: np.ndarray, targets: np.ndarray, k: int = K) -> dict[str, np.ndarray]:
    """Per-user ``ndcg@k`` and ``hit@k`` (float32) and the 1-based target ``rank`` (int32, 0 = absent)."""
    from mmq.metrics.intervals import ndcg_at_k_per_event, recall_at_k_per_event
    from mmq.recommenders.evaluation import target_ranks

    ranks = target_ranks(np.asarray(ranked)[:, :k], targets)
    return {f"ndcg@{k}": ndcg_at_k_per_event(ranks, k).astype(np.float32),
            f"hit@{k}": recall_at_k_per_event(ranks, k).astype(np.float32), "rank": ranks}


def from_ranks(ranks: np.ndarray, k: int = K) -> dict[str, np.ndarray]:
    """The :func:`per_user_metrics` arrays from recorded ranks (a longer list's ranks are cut at ``k``)."""
    from mmq.metrics.intervals import ndcg_at_k_per_event, recall_at_k_per_event

    ranks = np.asarray(ranks).astype(np.int32)
    return {f"ndcg@{k}": ndcg_at_k_per_event(ranks, k).astype(np.float32),
            f"hit@{k}": recall_at_k_per_event(ranks, k).astype(np.float32),
            "rank": np.where(ranks <= k, ranks, 0).astype(np.int32)}


def summary(per_user: dict[str, np.ndarray], k: int = K) -> dict[str, float]:
    """Mean NDCG@k and Recall@k (= hit rate, one target per user)."""
    return {f"ndcg@{k}": round(float(per_user[f"ndcg@{k}"].astype(np.float64).mean()), 6),
            f"recall@{k}": round(float(per_user[f"hit@{k}"].astype(np.float64).mean()), 6)}


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 / mean in milliseconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1e3
    return {"p50_ms": round(float(np.percentile(values, 50)), 4), "p95_ms": round(float(np.percentile(values, 95)), 4),
            "p99_ms": round(float(np.percentile(values, 99)), 4), "mean_ms": round(float(values.mean()), 4)}


# --- the served pipeline ------------------------------------------------------------------------------------


class BeautyPipelineRecommender(Recommender):
    """MMQ multiphase top-``candidates`` -> two-tower rerank -> top-k, over item indices (module docstring).

    ``searcher``: a :class:`~baselines.multiphase.search.MultiphaseSearcher` over the title vectors and the MMQ
    codes; ``modalities``: ``{modality: [items, d]}`` the MMQ encoder reads (None: it reads the title query);
    ``model``: a :class:`~baselines.two_tower.user_history.UserHistoryTwoTower`. A model window of ``W`` items
    (its ``max_history``) is also the history-query window; the FULL history is excluded. Timings: ``multiphase``
    (history queries, MMQ query codes, candidate lookup and phase 2), ``encode`` (user tower), ``rerank``.
    """

    name = "capstone"

    def __init__(self, searcher, model: torch.nn.Module, *, modalities: dict[str, np.ndarray] | None, decay: float,
                 candidates: int = DEFAULT_CANDIDATES, probe: int = 1, min_candidates: int = 1000,
                 **kwargs: Any) -> None:
        super().__init__(window=model.max_history, **kwargs)
        if candidates < 1 or probe < 1 or min_candidates < 1:
            raise ValueError(f"candidates, probe and min_candidates must be >= 1, got {candidates}, {probe}, "
                             f"{min_candidates}")
        if searcher.vectors.shape[0] != len(self.catalogue):
            raise ValueError(f"the multiphase stage holds {searcher.vectors.shape[0]} items for a catalogue of "
                             f"{len(self.catalogue)}")
        self.searcher, self.model = searcher, model.eval()
        with torch.no_grad():
            self.item_embeddings = model.all_items().cpu().numpy()                     # [items, d], unit norm
        if len(self.item_embeddings) != len(self.catalogue):
            raise ValueError(f"{len(self.item_embeddings)} two-tower items for a catalogue of {len(self.catalogue)}")
        for name, array in (modalities or {}).items():
            if len(array) != len(self.catalogue):
                raise ValueError(f"modality {name!r} has {len(array)} rows for {len(self.catalogue)} items")
        self.modalities, self.decay = modalities, float(decay)
        self.candidates, self.probe, self.min_candidates = int(candidates), int(probe), int(min_candidates)

    def stage_one(self, padded_window: np.ndarray, exclude: np.ndarray, width: int):
        """History queries -> MMQ multiphase top-``width`` (history excluded): a MultiphaseResult."""
        from baselines.faiss_ann.content_retrieval import history_queries

        queries = history_queries(padded_window, self.searcher.vectors, self.decay)
        inputs = None if self.modalities is None else {
            name: history_queries(padded_window, array, self.decay) for name, array in self.modalities.items()}
        return self.searcher.search(queries, width, probe=self.probe, min_candidates=max(self.min_candidates, width),
                                    encoder_inputs=inputs, exclude=exclude)

    def rank(self, histories: Sequence[np.ndarray], k: int) -> Ranked:
        """The pipeline per batch of histories (item indices); ``max(candidates, k)`` candidates per user."""
        from baselines.two_tower.user_history import encode_histories
        from mmq.recommenders.sequences import pad_histories

        totals = {"multiphase": 0.0, "encode": 0.0, "rerank": 0.0}
        ids = np.full((len(histories), k), -1, dtype=np.int64)
        scores = np.full((len(histories), k), -np.inf, dtype=np.float32)
        width = min(max(self.candidates, k), len(self.catalogue))
        for start in range(0, len(histories), CHUNK):
            batch = histories[start:start + CHUNK]
            rows = slice(start, start + len(batch))
            window, full = pad_histories(batch, self.window), pad_histories(batch)
            began = time.perf_counter()
            found = self.stage_one(window, full, width)
            encoded = time.perf_counter()
            users = encode_histories(self.model, window)
            reranked = time.perf_counter()
            ids[rows], scores[rows] = rerank(found.ids, users, self.item_embeddings, k, exclude=full)
            ended = time.perf_counter()
            for stage, seconds in (("multiphase", encoded - began), ("encode", reranked - encoded),
                                   ("rerank", ended - reranked)):
                totals[stage] += seconds * 1e3
        return Ranked(ids, scores, totals)


# --- loading (read-only: a missing run is an error naming the command, never a rebuild) ----------------------


def _report(config_path: str, seed: int = SEED) -> tuple[Path, dict[str, Any]]:
    from mmq import registry

    directory = registry.run_directory(config_path, seed)
    if not registry.is_done(config_path, seed):
        raise FileNotFoundError(f"{directory} is not a finished run; build it first: "
                                f"python scripts/run.py {config_path} --seeds {seed}")
    return directory, json.loads((directory / "report.json").read_text())


def _needs(directory: Path, name: str, config_path: str, seed: int = SEED) -> Path:
    path = directory / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is absent (git-ignored); rebuild the run: "
                                f"python scripts/run.py {config_path} --seeds {seed} --force")
    return path


def chapter6_setting() -> dict[str, Any]:
    """Chapter 6's VALID-selected MMQ multiphase setting, its decay and the MMQ table sha256 it ran with."""
    try:
        directory, report = _report(MULTIPHASE_RUN)
    except FileNotFoundError as error:
        LOGGER.warning("chapter-6 multiphase report unreadable (%s); using %s", error, FALLBACK_SETTING)
        return {**FALLBACK_SETTING, "mmq_sha256": None, "source": "fallback constants"}
    metrics = report["metrics"]
    chosen = metrics["selected_on_valid"]["mmq"]
    return {"probe": int(chosen["probe"]), "min_candidates": int(chosen["min_candidates"]),
            "decay": float(metrics["decay"]), "mmq_sha256": metrics["sources"]["mmq"]["sha256"],
            "source": str(directory / "report.json"), "chapter6_test": chosen.get("test", {}).get("task"),
            "chapter6_flat_test": metrics["flat"][0]["task"]}


@contextlib.contextmanager
def _chapter6_sid_table(accepted: dict[str, str | None], record: dict[str, Any]) -> Iterator[None]:
    """Chapter 6's SID tables: each run's table as its report records it, or the local table chapter 6 ran with
    when the committed report names another (a run rebuilt on this machine after its report was committed);
    never a rebuild (a missing run is an error). ``record`` gets each table's sha256 and which report it matches."""
    from mmq import registry
    from mmq.semantic_ids.dedup import sid_table_hash

    for config_path, digest in accepted.items():
        directory, report = _report(config_path, SEED)
        recorded = report["metrics"]["semantic_id_table"]
        local = sid_table_hash(np.load(_needs(directory, recorded["path"], config_path)))
        record[config_path] = {"sha256": local, "report_sha256": recorded["sha256"],
                               "matches_report": local == recorded["sha256"], "matches_chapter6": local == digest}
    with registry.accepting_sid_tables({(path, SEED): digest for path, digest in accepted.items() if digest}):
        yield


def load_mmq_task(setting: dict[str, Any] | None = None):
    """Chapter 6's Beauty task with MMQ alone (:func:`baselines.multiphase.tasks.beauty_task`) and the table record."""
    from baselines.multiphase.experiment import MultiphaseConfig
    from baselines.multiphase.tasks import beauty_task

    setting = setting or chapter6_setting()
    config = MultiphaseConfig(task="beauty", tokenizers=(MMQ_RUN,), tokenizer_seed=SEED, decay=setting["decay"])
    record: dict[str, Any] = {}
    with _chapter6_sid_table({MMQ_RUN: setting.get("mmq_sha256")}, record):
        task = beauty_task(config)
    agreement = task.info["sources"]["mmq"]["probe1_equals_item_codes"]
    if agreement != 1.0:
        raise ValueError(f"the MMQ tokenizer encodes only {agreement:.4f} of the items to their stored codes: "
                         "model.pt and semantic_ids.npy are from different fits")
    return task, config, record.get(MMQ_RUN, {})


def load_two_tower(seed: int = SEED):
    """The chapter-2 user-history two-tower (best.pt, eval mode), its config and run report."""
    from baselines.two_tower.user_history import UserHistoryTwoTower, load_best
    from mmq import registry
    from mmq.data import load_dataset
    from mmq.features import item_text_embeddings

    directory, report = _report(TWO_TOWER_RUN, seed)
    weights = _needs(directory, "best.pt", TWO_TOWER_RUN, seed)
    kind, config = registry.load_experiment(TWO_TOWER_RUN)
    if kind.name != "user_two_tower":
        raise ValueError(f"{TWO_TOWER_RUN} is a {kind.name!r} run, not a user_two_tower one")
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    text = item_text_embeddings(dataset, config.text, progress=False)
    model = load_best(UserHistoryTwoTower(text, **config.model_arguments()), weights).eval()
    return model, config, directory, report


def _catalogue() -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    from mmq.data import load_dataset

    items = load_dataset("beauty").items.sort_values("item_index")
    catalogue = tuple(items["item_id"].astype(str))
    return catalogue, {item: {"title": title} for item, title in zip(catalogue, items["title"].astype(str))}


def load_beauty_pipeline(candidates: int = DEFAULT_CANDIDATES, *, probe: int | None = None,
                         min_candidates: int | None = None, num_threads: int = 1,
                         max_history_items: int | None = None) -> BeautyPipelineRecommender:
    """The served capstone (``POST /recommend``) from the finished MMQ, chapter-6 and two-tower runs."""
    import faiss

    from baselines.multiphase.search import MultiphaseSearcher
    from baselines.serving.recommend import MAX_HISTORY_ITEMS
    from mmq import registry
    from mmq.features.modalities import load_item_modalities

    torch.set_num_threads(num_threads)
    faiss.omp_set_num_threads(num_threads)
    setting = chapter6_setting()
    task, config, table = load_mmq_task(setting)
    model, tower_config, _, _ = load_two_tower()
    if tower_config.max_history != config.max_history:
        raise ValueError(f"two-tower window {tower_config.max_history} != the multiphase history window "
                         f"{config.max_history}")
    source = task.sources[0]
    _, run_config = registry.load_experiment(MMQ_RUN)
    modalities, _ = load_item_modalities(run_config.inputs)
    catalogue, records = _catalogue()
    probe = setting["probe"] if probe is None else probe
    min_candidates = setting["min_candidates"] if min_candidates is None else min_candidates
    version = (f"capstone:{registry.run_name(MMQ_RUN)}-seed{SEED}[{table.get('sha256', '')[:8]}]"
               f"+{registry.run_name(TWO_TOWER_RUN)}-seed{SEED}:N{candidates}:p{probe}:m{min_candidates}")
    return BeautyPipelineRecommender(
        MultiphaseSearcher(task.item_vectors, source.item_codes, source.encoder), model, modalities=modalities,
        decay=task.info["decay"], candidates=candidates, probe=probe, min_candidates=min_candidates, version=version,
        catalogue=catalogue, records=records, max_history_items=max_history_items or MAX_HISTORY_ITEMS)


# --- the evaluation -------------------------------------------------------------------------------------------


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _multiphase(searcher, split, width: int, probe: int, min_candidates: int, progress: bool, label: str):
    """Top-``width`` multiphase ids ``[users, width]`` and pool sizes over a whole split, in chunks."""
    from baselines.multiphase.query_codes import take_rows

    ids, sizes = [], []
    inputs = split.inputs["mmq"]
    for start in tqdm(range(0, len(split.vectors), CHUNK), desc=f"mmq multiphase {label}", disable=not progress,
                      mininterval=5):
        rows = slice(start, start + CHUNK)
        found = searcher.search(split.vectors[rows], width, probe=probe, min_candidates=min_candidates,
                                encoder_inputs=take_rows(inputs, rows), exclude=split.exclude[rows])
        ids.append(found.ids)
        sizes.append(found.num_candidates)
    return np.concatenate(ids), np.concatenate(sizes)


@torch.no_grad()
def _two_tower_top(model, padded: np.ndarray, width: int, progress: bool, label: str):
    """The two-tower's full-catalogue top-``width`` (history masked, as its evaluation) and the user vectors."""
    from mmq.recommenders.evaluation import topk_excluding_history

    model.eval()
    items = model.all_items()
    ranked, users = [], []
    for start in tqdm(range(0, len(padded), 1024), desc=f"two-tower {label}", disable=not progress, mininterval=5):
        batch = torch.from_numpy(padded[start:start + 1024])
        vectors = model.encode_users(batch)
        users.append(vectors.numpy())
        ranked.append(topk_excluding_history(vectors @ items.T, batch, width).numpy())
    return np.concatenate(ranked), np.concatenate(users), items.numpy()


def _dense_flat(item_vectors: np.ndarray, split) -> np.ndarray:
    from baselines.faiss_ann.content_retrieval import build_flat, retrieve

    return retrieve(build_flat(item_vectors), split.vectors, split.exclude, K)[0]


def _generative_baseline(targets: np.ndarray, histories: list[np.ndarray], spot_check: int,
                         progress: bool) -> tuple[dict[str, np.ndarray] | None, dict[str, Any]]:
    """The generative run's recorded test ranks as per-user arrays, after checking they are our test users'."""
    from mmq.metrics.per_event import load_per_event
    from mmq.recommenders.evaluation import metrics_from_ranks

    try:
        directory, report = _report(GENERATIVE_RUN)
        arrays = load_per_event(directory, report["metrics"])
    except (FileNotFoundError, ValueError) as error:
        return None, {"aligned": False, "reason": str(error)}
    if arrays is None:
        return None, {"aligned": False, "reason": f"{directory} records no per_event.npz"}
    ranks, users, length = arrays["test_rank"], arrays["test_user"], int(arrays["k"])
    checks: dict[str, Any] = {"run": str(directory), "list_length": length}
    checks["same_count"] = len(ranks) == len(targets)
    checks["users_in_split_order"] = bool(checks["same_count"] and np.array_equal(users, np.arange(len(targets))))
    recomputed = metrics_from_ranks(ranks, length, ks=(K,))
    checks["ranks_reproduce_report"] = all(abs(recomputed[name] - report["metrics"]["test"][name]) < 1e-12
                                           for name in (f"ndcg@{K}", f"recall@{K}"))
    checks.update(_generative_spot_check(ranks, targets, histories, spot_check, progress)
                  if checks["users_in_split_order"] and spot_check > 0 else {"spot_check": "skipped"})
    checks["aligned"] = bool(checks["users_in_split_order"] and checks["ranks_reproduce_report"]
                             and checks.get("spot_check_mismatches", 0) == 0)
    checks["run_id"] = report.get("run_id")
    if not checks["aligned"]:
        return None, checks
    return from_ranks(ranks), checks


def _generative_spot_check(ranks: np.ndarray, targets: np.ndarray, histories: list[np.ndarray], count: int,
                           progress: bool) -> dict[str, Any]:
    """Re-run the generative model's evaluation beam on ``count`` users (half of them recorded hits) and compare
    the target ranks with ``per_event.npz``: a misaligned file cannot reproduce the hits' positions."""
    from baselines.multiphase.hybrid import load_generative_run
    from mmq.generative.sid_trie import SemanticIdTrie
    from mmq.generative.train import generate_topk, item_codes_lookup
    from mmq.recommenders.evaluation import drop_history_items, target_ranks
    from mmq.recommenders.sequences import pad_histories

    try:
        model, config, semantic_ids = load_generative_run(GENERATIVE_RUN, SEED)
    except (FileNotFoundError, ValueError) as error:
        return {"spot_check": f"not run: {error}"}
    rng = np.random.default_rng(0)
    hits, misses = np.flatnonzero(ranks > 0), np.flatnonzero(ranks == 0)
    chosen = np.sort(np.concatenate([rng.choice(hits, min(len(hits), count // 2), replace=False),
                                     rng.choice(misses, min(len(misses), count - count // 2), replace=False)]))
    padded = pad_histories([histories[user] for user in chosen], config.max_history)
    trie = SemanticIdTrie(semantic_ids, tuple(int(size) for size in semantic_ids.max(axis=0) + 1))
    beam = config.evaluation.beam_size
    found = generate_topk(model, item_codes_lookup(semantic_ids), trie, padded, beam_size=beam,
                          batch_size=config.evaluation.batch_size, device=torch.device("cpu"), progress=progress)
    again = target_ranks(drop_history_items(found, padded, beam), targets[chosen])
    return {"spot_check_users": int(len(chosen)), "spot_check_recorded_hits": int((ranks[chosen] > 0).sum()),
            "spot_check_mismatches": int((again != ranks[chosen]).sum())}


def _latency(task, searcher, model, item_embeddings: np.ndarray, setting: dict[str, Any], candidates: int,
             users: int, progress: bool) -> dict[str, Any]:
    """Single-user latency (1 thread) over the first ``users`` TEST users, per stage, for three systems."""
    import faiss

    from baselines.faiss_ann.content_retrieval import build_flat, drop_history, history_queries
    from baselines.two_tower.user_history import encode_histories

    test = task.splits["test"]
    padded = test.exclude[:users]
    modalities = {name: array for name, array in setting["modalities"].items()}
    vectors, decay = task.item_vectors, setting["decay"]
    flat_titles = build_flat(vectors)
    tower_index = faiss.IndexFlatIP(item_embeddings.shape[1])
    tower_index.add(np.ascontiguousarray(item_embeddings, dtype=np.float32))
    width, min_candidates = candidates, max(setting["min_candidates"], candidates)
    stages = {name: [] for name in ("capstone.multiphase", "capstone.encode", "capstone.rerank", "capstone.total",
                                    "two_tower.encode", "two_tower.search", "two_tower.total",
                                    "dense_flat.query", "dense_flat.search", "dense_flat.total")}
    for row in tqdm(range(len(padded)), desc="latency (1 thread)", disable=not progress, mininterval=5):
        history = padded[row:row + 1]
        clock = [time.perf_counter()]
        query = history_queries(history, vectors, decay)
        inputs = {name: history_queries(history, array, decay) for name, array in modalities.items()}
        found = searcher.search(query, width, probe=setting["probe"], min_candidates=min_candidates,
                                encoder_inputs=inputs, exclude=history)
        clock.append(time.perf_counter())
        user = encode_histories(model, history)
        clock.append(time.perf_counter())
        rerank(found.ids, user, item_embeddings, K, exclude=history)
        clock.append(time.perf_counter())
        for name, index in (("multiphase", 1), ("encode", 2), ("rerank", 3)):
            stages[f"capstone.{name}"].append(clock[index] - clock[index - 1])
        stages["capstone.total"].append(clock[3] - clock[0])

        began = time.perf_counter()
        user = encode_histories(model, history)
        encoded = time.perf_counter()
        extra = int((history >= 0).sum())
        _, found_ids = tower_index.search(user, K + extra)
        drop_history(found_ids, history, K)
        ended = time.perf_counter()
        stages["two_tower.encode"].append(encoded - began)
        stages["two_tower.search"].append(ended - encoded)
        stages["two_tower.total"].append(ended - began)

        began = time.perf_counter()
        query = history_queries(history, vectors, decay)
        built = time.perf_counter()
        _, found_ids = flat_titles.search(query, K + history.shape[1])
        drop_history(found_ids, history, K)
        ended = time.perf_counter()
        stages["dense_flat.query"].append(built - began)
        stages["dense_flat.search"].append(ended - built)
        stages["dense_flat.total"].append(ended - began)
    result: dict[str, Any] = {"num_users": int(len(padded)), "num_threads": 1, "candidates": int(candidates)}
    for name, seconds in stages.items():
        system, stage = name.split(".")
        result.setdefault(system, {})[stage] = percentiles(seconds)
    result["note"] = ("per user, answered alone; capstone.multiphase = history queries + MMQ query codes + prefix "
                      "candidates + phase-2 title inner product (top candidates); encode = user tower; rerank = "
                      "two-tower scores of the candidates + top 10; two_tower.search = faiss Flat IP over its item "
                      "tower; other jobs may share the 2 cores")
    return result


def run_beauty_track(candidates: int | None = None, probe: int | None = None, min_candidates: int | None = None,
                     latency_users: int = 500, progress: bool = True, *,
                     candidate_grid: Sequence[int] = CANDIDATE_GRID, generative_spot_check: int = 64) -> dict:
    """The Beauty capstone track on every VALID and TEST user beside each single system (module docstring).

    ``candidates`` None: chosen on VALID capstone NDCG@10 over ``candidate_grid``; TEST is scored once, at the
    chosen value. ``probe`` / ``min_candidates`` None: chapter 6's VALID choice for MMQ. Returns JSON-ready
    summaries plus ``per_user`` (numpy: per TEST user ``ndcg@10`` / ``hit@10`` float32 and ``rank`` int32 per
    system, in ``test_order``'s user order) for paired intervals.
    """
    import faiss

    from mmq import registry
    from mmq.data import leave_one_out, load_dataset
    from mmq.features.modalities import load_item_modalities
    from mmq.metrics.intervals import ndcg_at_k_per_event
    from mmq.recommenders.sequences import pad_histories

    from baselines.multiphase.search import MultiphaseSearcher

    started = time.perf_counter()
    timings: dict[str, float] = {}
    lap = [started]

    def mark(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - lap[0], 2)
        lap[0] = now

    threads = (torch.get_num_threads(), faiss.omp_get_max_threads())
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    try:
        grid = tuple(sorted({int(value) for value in candidate_grid}))
        if candidates is not None and candidates < K or any(value < K for value in grid):
            raise ValueError(f"candidates must be >= {K}, got {candidates} / grid {grid}")
        setting = chapter6_setting()
        probe = setting["probe"] if probe is None else int(probe)
        min_candidates = setting["min_candidates"] if min_candidates is None else int(min_candidates)
        task, config, table = load_mmq_task(setting)
        model, tower_config, tower_directory, tower_report = load_two_tower()
        _, run_config = registry.load_experiment(MMQ_RUN)
        modalities, _ = load_item_modalities(run_config.inputs)
        mark("load")

        # the two systems read the same users in the same order with the same history window
        if tower_config.max_history != config.max_history or tower_config.dataset != "beauty":
            raise ValueError(f"two-tower ({tower_config.dataset}, window {tower_config.max_history}) and multiphase "
                             f"(beauty, window {config.max_history}) disagree")
        split = leave_one_out(load_dataset("beauty", kcore=tower_config.kcore), max_history=tower_config.max_history)
        data: dict[str, dict[str, Any]] = {}
        for name in ("valid", "test"):
            histories, targets = split.history_and_target(name)
            padded = pad_histories(histories, tower_config.max_history)
            queries = task.splits[name]
            if not np.array_equal(padded, queries.exclude):
                raise AssertionError(f"{name}: the two-tower's padded histories differ from the multiphase task's")
            oracle = np.full((len(targets), K), -1, dtype=np.int64)
            oracle[:, 0] = targets
            if queries.score(oracle)[f"recall@{K}"] != 1.0:          # the task's own targets, in our order
                raise AssertionError(f"{name}: the multiphase task's targets are not the leave-one-out targets")
            data[name] = {"histories": histories, "targets": targets, "padded": padded}
        if model.num_items != len(task.item_vectors):
            raise AssertionError(f"two-tower items {model.num_items} != catalogue {len(task.item_vectors)}")
        source = task.sources[0]
        searcher = MultiphaseSearcher(task.item_vectors, source.item_codes, source.encoder)
        mark("checks")

        # VALID: every system, the capstone at every grid value (one top-max(grid) list, prefixes per value)
        valid, test = task.splits["valid"], task.splits["test"]
        valid_width = max(grid + ((candidates,) if candidates else ()))
        valid_ids, valid_pool = _multiphase(searcher, valid, valid_width, probe, max(min_candidates, valid_width),
                                            progress, "valid")
        mark("valid.multiphase")
        valid_tower, valid_users, item_embeddings = _two_tower_top(model, data["valid"]["padded"], valid_width,
                                                                   progress, "valid")
        mark("valid.two_tower")
        targets = data["valid"]["targets"]
        curve = []
        for value in sorted(set(grid + ((candidates,) if candidates else ()))):
            ranked, _ = rerank(valid_ids[:, :value], valid_users, item_embeddings, K, exclude=valid.exclude)
            curve.append({"candidates": value, **summary(per_user_metrics(ranked, targets)),
                          "candidate_recall": round(candidate_recall(valid_ids, targets, value), 6),
                          "two_tower_candidate_recall": round(candidate_recall(valid_tower, targets, value), 6)})
        chosen = int(candidates) if candidates else max(curve, key=lambda row: (row[f"ndcg@{K}"], -row["candidates"])
                                                         )["candidates"]
        valid_systems = {"dense_flat": per_user_metrics(_dense_flat(task.item_vectors, valid), targets),
                         "two_tower": per_user_metrics(valid_tower, targets)}
        own = min_candidates == max(min_candidates, valid_width)
        mmq_valid = valid_ids if own else _multiphase(searcher, valid, K, probe, min_candidates, False, "valid")[0]
        valid_systems["mmq_multiphase"] = per_user_metrics(mmq_valid, targets)
        valid_systems["capstone"] = per_user_metrics(
            rerank(valid_ids[:, :chosen], valid_users, item_embeddings, K, exclude=valid.exclude)[0], targets)
        mark("valid.systems")

        # TEST, read once at the chosen number of candidates
        targets = data["test"]["targets"]
        width = max(chosen, K)
        test_ids, test_pool = _multiphase(searcher, test, width, probe, max(min_candidates, width), progress, "test")
        mark("test.multiphase")
        test_tower, test_users, _ = _two_tower_top(model, data["test"]["padded"], max(chosen, 20), progress, "test")
        mark("test.two_tower")
        capstone_ids, _ = rerank(test_ids, test_users, item_embeddings, K, exclude=test.exclude)
        per_user = {"dense_flat": per_user_metrics(_dense_flat(task.item_vectors, test), targets),
                    "two_tower": per_user_metrics(test_tower, targets)}
        own = min_candidates == max(min_candidates, width)
        per_user["mmq_multiphase"] = per_user_metrics(
            test_ids if own else _multiphase(searcher, test, K, probe, min_candidates, False, "test")[0], targets)
        per_user["capstone"] = per_user_metrics(capstone_ids, targets)
        mark("test.systems")

        # alignment: the two-tower's recorded test ranks (top 20) against ours; the generative run's file
        from mmq.metrics.per_event import load_per_event
        from mmq.recommenders.evaluation import target_ranks

        recorded = load_per_event(tower_directory, tower_report["metrics"])
        tower_check: dict[str, Any] = {"run": str(tower_directory), "run_id": tower_report.get("run_id")}
        if recorded is not None:
            ours = target_ranks(test_tower[:, :int(recorded["k"])], targets)
            tower_check.update({"recorded_list_length": int(recorded["k"]),
                                "users_in_split_order": bool(np.array_equal(recorded["test_user"],
                                                                            np.arange(len(targets)))),
                                "rank_mismatches": int((ours != recorded["test_rank"]).sum()),
                                "recorded_hits": int((recorded["test_rank"] > 0).sum())})
            if tower_check["rank_mismatches"] or not tower_check["users_in_split_order"]:
                raise AssertionError(f"the two-tower scored here disagrees with its run's per_event.npz: {tower_check}")
        generative, generative_check = _generative_baseline(targets, data["test"]["histories"],
                                                            generative_spot_check, progress)
        if generative is not None:
            per_user["generative_rq_kmeans"] = generative
        mark("alignment")

        latency = _latency(task, searcher, model, item_embeddings,
                           {**setting, "probe": probe, "min_candidates": min_candidates, "modalities": modalities},
                           chosen, min(latency_users, len(test.vectors)), progress) if latency_users > 0 else {}
        mark("latency")
    finally:
        torch.set_num_threads(threads[0])
        faiss.omp_set_num_threads(threads[1])

    valid_targets, test_targets = data["valid"]["targets"], data["test"]["targets"]
    stage_report = {
        "valid": {"candidate_recall": round(candidate_recall(valid_ids, valid_targets, chosen), 6),
                  "two_tower_candidate_recall": round(candidate_recall(valid_tower, valid_targets, chosen), 6),
                  "before_rerank": summary(valid_systems["mmq_multiphase"]),
                  "after_rerank": summary(valid_systems["capstone"]),
                  "mean_phase1_pool": round(float(valid_pool.mean()), 1)},
        "test": {"candidate_recall": round(candidate_recall(test_ids, test_targets), 6),
                 "two_tower_candidate_recall": round(candidate_recall(test_tower, test_targets, chosen), 6),
                 "before_rerank": summary(per_user["mmq_multiphase"]), "after_rerank": summary(per_user["capstone"]),
                 "mean_phase1_pool": round(float(test_pool.mean()), 1),
                 "share_of_candidate_hits_ranked_top10": round(float(per_user["capstone"][f"hit@{K}"].sum()
                                                                     / max(candidate_hits(test_ids, test_targets).sum(),
                                                                           1)), 6)},
    }
    timings["total"] = round(time.perf_counter() - started, 2)
    return {
        "k": K,
        "settings": {"candidates": chosen, "candidates_chosen_on": "given" if candidates else "valid ndcg@10",
                     "candidate_grid": list(grid), "probe": probe, "min_candidates": min_candidates,
                     "min_candidates_used": max(min_candidates, chosen), "decay": task.info["decay"],
                     "chapter6": {key: value for key, value in setting.items() if key != "modalities"},
                     "batch_threads": 1},
        "valid_curve": curve,
        "valid": {name: summary(values) for name, values in valid_systems.items()},
        "test": {name: summary(values) for name, values in per_user.items()},
        "stages": stage_report,
        "per_user": per_user,
        "test_order": {"num_users": int(len(test_targets)), "user_index": np.arange(len(test_targets), dtype=np.int32),
                       "targets": test_targets.astype(np.int64), "targets_sha256": _sha(test_targets.astype(np.int64)),
                       "order": "mmq.data.leave_one_out(load_dataset('beauty'), max_history=20) user order "
                                "(user_index 0..n-1); every system's per_user arrays follow it"},
        "alignment": {"two_tower": tower_check, "generative_rq_kmeans": generative_check,
                      "histories_equal_multiphase_task": True, "targets_equal_multiphase_task": True},
        "runs": {"mmq": {"config": MMQ_RUN, "run_id": task.info["sources"]["mmq"]["run_id"], "table": table},
                 "two_tower": {"config": TWO_TOWER_RUN, "run_id": tower_report.get("run_id")},
                 "generative": {"config": GENERATIVE_RUN, "run_id": generative_check.get("run_id")},
                 "multiphase_setting": setting.get("source")},
        "latency": latency,
        "timings_s": timings,
        "paired_delta_capstone_minus_two_tower_ndcg@10": round(float(
            (ndcg_at_k_per_event(per_user["capstone"]["rank"], K)
             - ndcg_at_k_per_event(per_user["two_tower"]["rank"], K)).mean()), 6),
    }
