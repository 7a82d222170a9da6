"""The recommendation backends behind ``POST /recommend``: a user's history of item ids -> the top-k unseen items.

Every backend is loaded once from a finished run folder (:mod:`mmq.registry`) and answers through one interface,
:class:`Recommender`:

- ``generative``: the chapter-6 generative retriever (RQ-KMeans SIDs, causal backbone). The history's SIDs give
  the user context, a trie-constrained beam search (:mod:`mmq.generative.beam_search`) returns ranked SIDs, and
  the trie maps each SID to its item, as the evaluation does. History items are then dropped with the
  evaluation's :func:`~mmq.recommenders.evaluation.drop_history_items`. The evaluation searches a fixed beam
  (20) and keeps what survives, fewer than k when the beam re-finds history items; here each user's beam is
  ``max(evaluation beam, k + distinct history items)`` wide, which guarantees k unseen items whenever the
  catalogue holds them (a constrained beam of width B always yields ``min(B, catalogue)`` distinct items) and
  equals the evaluation's list whenever the evaluation's beam was wide enough. Score: the SID's summed
  log-probability.
- ``two_tower``: the chapter-2 user-history two-tower: its user tower encodes the history, a faiss inner-product
  index over its item tower's vectors returns ``k + distinct history items`` neighbours, history items are
  dropped. Score: cosine.
- ``sasrec``: SASRec-CE's full-catalogue dot-product scores with the history masked
  (:func:`~mmq.recommenders.evaluation.topk_excluding_history`). Score: the logit.

Histories are raw item ids, oldest first, 1..``max_history_items`` of them. A model reads only the most recent
``window`` items (its run's ``max_history``, 20 here); the FULL history is excluded from the results. A user's
results depend only on that user's history and ``k`` (batch composition never changes a beam width), so
:meth:`Recommender.recommend` and :meth:`Recommender.recommend_batch` (internal item indices, for offline
replay) run the same code and agree.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from baselines.serving.engine import UnknownItemError, build_version
from mmq.recommenders.evaluation import drop_history_items, topk_excluding_history
from mmq.recommenders.sequences import pad_histories

LOGGER = logging.getLogger(__name__)

DEFAULT_RUNS = {   # backend -> (the run it serves by default, the experiment kind that run must be)
    "generative": ("experiments/ch6/beauty_generative_rq_kmeans.yaml", "generative"),
    "two_tower": ("experiments/ch2/beauty_user_two_tower.yaml", "user_two_tower"),
    "sasrec": ("experiments/generative/beauty_sasrec.yaml", "sasrec"),
}
BACKENDS = tuple(DEFAULT_RUNS)
MAX_HISTORY_ITEMS = 200   # longest history a request may carry (all of it is excluded from the results)


@dataclasses.dataclass(frozen=True)
class RecommendResult:
    """Top-k unseen items (``{"item_id", "score", **record}``), the serving run, stage timings and completeness."""

    items: list[dict[str, Any]]
    version: str
    timings_ms: dict[str, float]   # backend stages ("encode", "retrieve") and "total"
    complete: bool                 # False when fewer than k unseen items could be returned
    note: str | None = None        # why the list is short, when it is


class Ranked(NamedTuple):
    """Ranked unseen items of a batch of users."""

    items: np.ndarray              # [users, k] int64 item indices, -1 = empty slot
    scores: np.ndarray             # [users, k] float32, -inf for empty slots
    timings_ms: dict[str, float]   # summed over the batch's stages


class Recommender(abc.ABC):
    """A next-item backend over a fixed catalogue; subclasses implement :meth:`rank` on item indices."""

    name = "recommender"

    def __init__(self, *, version: str, catalogue: Sequence[str], records: dict[str, dict[str, Any]] | None = None,
                 window: int, max_history_items: int = MAX_HISTORY_ITEMS) -> None:
        if window < 1 or max_history_items < 1:
            raise ValueError(f"window and max_history_items must be >= 1, got {window}, {max_history_items}")
        self.version = version
        self.catalogue: tuple[str, ...] = tuple(str(item) for item in catalogue)
        self.records: dict[str, dict[str, Any]] = records or {item: {} for item in self.catalogue}
        self.window, self.max_history_items = window, max_history_items
        self._rows = {item: row for row, item in enumerate(self.catalogue)}
        if len(self._rows) != len(self.catalogue) or not self.catalogue:
            raise ValueError(f"{self.name}: the catalogue must be non-empty without duplicate item ids")

    @abc.abstractmethod
    def rank(self, histories: Sequence[np.ndarray], k: int) -> Ranked:
        """Top-``k`` unseen items of each (validated) history of item indices (each backend implements it)."""

    def recommend(self, history: Sequence[str], k: int) -> RecommendResult:
        """Top-``k`` items after ``history`` (item ids, oldest first), history items excluded.

        ValueError: empty or overlong history, ``k < 1``; UnknownItemError (``args[0]`` = the unknown ids):
        ids outside the catalogue.
        """
        started = time.perf_counter()
        if isinstance(history, str):
            raise ValueError("history must be a list of item ids, not one string")
        self._check(len(history), k)
        unknown = [item for item in history if item not in self._rows]
        if unknown:
            raise UnknownItemError(list(dict.fromkeys(unknown)))
        ranked = self.rank([np.array([self._rows[item] for item in history], dtype=np.int64)], int(k))
        rows, scores = ranked.items[0], ranked.scores[0]
        items = [{"item_id": self.catalogue[row], "score": float(score), **self.records[self.catalogue[row]]}
                 for row, score in zip(rows.tolist(), scores.tolist()) if row >= 0]
        complete = len(items) == k
        note = None if complete else (f"only {len(items)} of the {len(self.catalogue)} catalogue items are not in "
                                      f"the history")
        return RecommendResult(items, self.version, {**ranked.timings_ms,
                                                     "total": (time.perf_counter() - started) * 1e3}, complete, note)

    def recommend_batch(self, histories: Sequence[Sequence[int]], k: int) -> np.ndarray:
        """Top-``k`` item indices ``[n, k]`` (-1 padded) after each history of item indices (offline replay)."""
        arrays = [np.asarray(history, dtype=np.int64).reshape(-1) for history in histories]
        for history in arrays:
            self._check(len(history), k)
            if history.min() < 0 or history.max() >= len(self.catalogue):
                raise ValueError(f"history item indices must lie in [0, {len(self.catalogue)}), got "
                                 f"{history.min()}..{history.max()}")
        if not arrays:
            return np.empty((0, int(k)), dtype=np.int64)
        return self.rank(arrays, int(k)).items

    def _check(self, length: int, k: int) -> None:
        if length == 0:
            raise ValueError("history is empty: a recommendation needs at least one item the user interacted with")
        if length > self.max_history_items:
            raise ValueError(f"history holds {length} items; at most {self.max_history_items} are accepted")
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")


def drop_history(ranked: np.ndarray, scores: np.ndarray, histories: Sequence[np.ndarray], k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` candidates ``[users, C]`` outside each full history, with their scores (-1 / -inf pad)."""
    kept = drop_history_items(ranked, pad_histories(histories), k)                 # [users, k]
    position = (kept[:, :, None] == ranked[:, None, :]).argmax(axis=2)              # [users, k] column in ranked
    kept_scores = np.where(kept >= 0, np.take_along_axis(scores, position, axis=1), -np.inf)
    return kept, kept_scores.astype(np.float32)


def distinct_counts(histories: Sequence[np.ndarray]) -> np.ndarray:
    """Distinct items per history ``[users]``: how many candidates exclusion can remove."""
    return np.array([np.unique(history).size for history in histories], dtype=np.int64)


class _Clock:
    """Sums named stage times in milliseconds."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.totals[stage] = self.totals.get(stage, 0.0) + (now - self._last) * 1e3
        self._last = now


class GenerativeRecommender(Recommender):
    """Trie-constrained beam search over SIDs, ``k + distinct history items`` beams per user (module docstring)."""

    name = "generative"

    def __init__(self, model: torch.nn.Module, semantic_ids: np.ndarray, *, min_beam_size: int = 1,
                 batch_rows: int = 16384, **kwargs: Any) -> None:
        from mmq.generative.sid_trie import SemanticIdTrie
        from mmq.generative.train import item_codes_lookup

        super().__init__(window=model.max_length, **kwargs)
        if len(semantic_ids) != len(self.catalogue):
            raise ValueError(f"{len(semantic_ids)} semantic IDs for a catalogue of {len(self.catalogue)} items")
        self.model = model.eval()
        self.trie = SemanticIdTrie(semantic_ids, tuple(model.codebook_sizes))
        self.lookup = item_codes_lookup(semantic_ids)
        self.min_beam_size = min_beam_size           # the run's evaluation beam: narrower beams are never used
        self.batch_rows = batch_rows                 # users x beams decoded at once

    @torch.no_grad()
    def rank(self, histories: Sequence[np.ndarray], k: int) -> Ranked:
        """Users grouped by beam width (``max(min_beam_size, k + distinct history)``), beam-searched in batches."""
        from mmq.generative.beam_search import beam_search

        items = np.full((len(histories), k), -1, dtype=np.int64)
        scores = np.full((len(histories), k), -np.inf, dtype=np.float32)
        widths = np.minimum(np.maximum(k + distinct_counts(histories), self.min_beam_size), len(self.catalogue))
        clock = _Clock()
        for width in np.unique(widths).tolist():
            users = np.flatnonzero(widths == width)
            step = max(1, self.batch_rows // width)
            for start in range(0, len(users), step):
                chunk = users[start:start + step]
                batch = [histories[user] for user in chunk]
                codes = self.lookup[torch.from_numpy(pad_histories(batch, self.window))]   # [users, window, L]
                context = self.model.user_context(codes)
                clock.lap("encode")
                found = beam_search(self.model, context, self.trie, beam_size=width)     # items [users, <= width]
                items[chunk], scores[chunk] = drop_history(found.items.numpy(), found.scores.numpy(), batch, k)
                clock.lap("retrieve")
        return Ranked(items, scores, clock.totals)


class TwoTowerRecommender(Recommender):
    """User tower over the history -> faiss inner-product search over the item tower's vectors."""

    name = "two_tower"

    def __init__(self, model: torch.nn.Module, *, batch_size: int = 4096, **kwargs: Any) -> None:
        super().__init__(window=model.max_history, **kwargs)
        self.model = model.eval()
        with torch.no_grad():
            vectors = model.all_items().numpy()                                        # [items, d], unit norm
        if len(vectors) != len(self.catalogue):
            raise ValueError(f"{len(vectors)} item vectors for a catalogue of {len(self.catalogue)} items")
        self.index = build_version(self.version, vectors, self.catalogue, self.records).index
        self.batch_size = batch_size

    def rank(self, histories: Sequence[np.ndarray], k: int) -> Ranked:
        """Encode, search ``k + most distinct history items in the batch`` neighbours, drop history items."""
        from baselines.two_tower.user_history import encode_histories

        items = np.full((len(histories), k), -1, dtype=np.int64)
        scores = np.full((len(histories), k), -np.inf, dtype=np.float32)
        clock = _Clock()
        for start in range(0, len(histories), self.batch_size):
            batch = histories[start:start + self.batch_size]
            queries = encode_histories(self.model, pad_histories(batch, self.window))  # [users, d]
            clock.lap("encode")
            width = min(len(self.catalogue), k + int(distinct_counts(batch).max()))
            found_scores, found = self.index.search(queries, width)                  # [users, width]
            rows = slice(start, start + len(batch))
            items[rows], scores[rows] = drop_history(found, found_scores, batch, k)
            clock.lap("retrieve")
        return Ranked(items, scores, clock.totals)


class SASRecRecommender(Recommender):
    """SASRec's full-catalogue scores after the history window, history items masked."""

    name = "sasrec"

    def __init__(self, model: torch.nn.Module, *, batch_size: int = 1024, **kwargs: Any) -> None:
        super().__init__(window=model.max_length, **kwargs)
        if model.num_items != len(self.catalogue):
            raise ValueError(f"SASRec scores {model.num_items} items for a catalogue of {len(self.catalogue)}")
        self.model = model.eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def rank(self, histories: Sequence[np.ndarray], k: int) -> Ranked:
        """Transformer state after the window, dot product with every item, top-k outside the full history."""
        width = min(k, len(self.catalogue))
        items = np.full((len(histories), k), -1, dtype=np.int64)
        scores = np.full((len(histories), k), -np.inf, dtype=np.float32)
        clock = _Clock()
        for start in range(0, len(histories), self.batch_size):
            batch = histories[start:start + self.batch_size]
            hidden = self.model(torch.from_numpy(pad_histories(batch, self.window))).hidden[:, -1]   # [users, d]
            clock.lap("encode")
            logits = self.model.item_scores(hidden)                                    # [users, items]
            exclude = torch.from_numpy(pad_histories(batch))
            top = topk_excluding_history(logits, exclude, width)                       # [users, width]
            seen = (top[:, :, None] == exclude[:, None, :]).any(dim=2)                 # masked picks: too few left
            rows = slice(start, start + len(batch))
            items[rows, :width] = torch.where(seen, -1, top).numpy()
            scores[rows, :width] = torch.where(seen, float("-inf"), logits.gather(1, top)).numpy()
            clock.lap("retrieve")
        return Ranked(items, scores, clock.totals)


# --- loading from run folders ---------------------------------------------------------------------


def load_recommender(backend: str, run: str | None = None, seed: int = 0, num_threads: int = 1, *,
                     max_history_items: int = MAX_HISTORY_ITEMS) -> Recommender:
    """The ``backend`` recommender of a finished run (default: :data:`DEFAULT_RUNS`), loaded once.

    Sets torch and faiss to ``num_threads``. FileNotFoundError (naming the command that trains it) when the run
    is not finished or its git-ignored weights are absent; ValueError for an unknown backend or a run of
    another kind.
    """
    import faiss

    from mmq import registry
    from mmq.data import load_dataset

    if backend not in DEFAULT_RUNS:
        raise ValueError(f"unknown recommendation backend {backend!r}; choices: {list(BACKENDS)}")
    torch.set_num_threads(num_threads)
    faiss.omp_set_num_threads(num_threads)
    default_run, expected_kind = DEFAULT_RUNS[backend]
    run = run or default_run
    kind, config = registry.load_experiment(run)
    if kind.name != expected_kind:
        raise ValueError(f"{run} is a {kind.name!r} run; the {backend} backend serves {expected_kind!r} runs")
    directory = registry.run_directory(run, seed)
    weights = directory / "best.pt"
    if not registry.is_done(run, seed):
        raise FileNotFoundError(f"{directory} is not a finished run; train it first: "
                                f"python scripts/run.py {run} --seeds {seed}")
    if not weights.exists():
        raise FileNotFoundError(f"{weights} is absent (weights are git-ignored); retrain the finished run: "
                                f"python scripts/run.py {run} --seeds {seed} --force")
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    items = dataset.items.sort_values("item_index")
    catalogue = tuple(items["item_id"].astype(str))
    records = {item: {"title": title} for item, title in zip(catalogue, items["title"].astype(str))}
    common = {"version": f"{registry.run_name(run)}-seed{seed}", "catalogue": catalogue, "records": records,
              "max_history_items": max_history_items}
    recommender = _LOADERS[backend](run, seed, config, dataset, weights, common)
    LOGGER.info("recommender %s: %s, %d items, window %d", backend, recommender.version, len(catalogue),
                recommender.window)
    return recommender


def _load_generative(run: str, seed: int, config, dataset, weights: Path, common: dict) -> Recommender:
    from baselines.multiphase.hybrid import load_generative_run

    model, _, semantic_ids = load_generative_run(run, seed)
    return GenerativeRecommender(model, semantic_ids, min_beam_size=config.evaluation.beam_size, **common)


def _load_two_tower(run: str, seed: int, config, dataset, weights: Path, common: dict) -> Recommender:
    from baselines.two_tower.user_history import UserHistoryTwoTower, load_best
    from mmq.features import item_text_embeddings

    text = item_text_embeddings(dataset, config.text, progress=False)
    return TwoTowerRecommender(load_best(UserHistoryTwoTower(text, **config.model_arguments()), weights), **common)


def _load_sasrec(run: str, seed: int, config, dataset, weights: Path, common: dict) -> Recommender:
    from baselines.sasrec.model import SASRec
    from baselines.sasrec.train import load_best

    return SASRecRecommender(load_best(SASRec(**config.model_arguments(dataset.num_items)), weights), **common)


_LOADERS = {"generative": _load_generative, "two_tower": _load_two_tower, "sasrec": _load_sasrec}
