"""Optional stages behind POST /search: multiphase retrieval (chapter 6) and reranking (chapter 4).

- **Multiphase retrieval**: the served catalogue's vectors are tokenized into semantic IDs (RQ-KMeans fitted on
  the served product embeddings through :func:`baselines.multiphase.fitted.fitted_tokenizer`, cached by content);
  a query's vector is encoded into its ``probe`` nearest code paths, their prefix cells give the candidates
  (backing off to shorter prefixes, nearest level-0 cells first, until ``min_candidates``), and the candidates are
  ranked by exact inner product (:class:`baselines.multiphase.search.MultiphaseSearcher`).
- **Rerankers** (loaded from a finished chapter-4 ``rerank`` run): ``lightgbm`` = the LightGBM lambdarank model over
  the stage-1 top ``depth`` (its features: :class:`baselines.reranker.rerank.FeatureBuilder`); ``lightgbm_ce`` = the
  cross-encoder scores the top ``depth`` and LightGBM + CE orders them. Each reranker returns one score per
  candidate; the engine sorts by it (stable: ties keep the retrieval order).

Both are bound to one catalogue (row order = the run's product order), so they live in an
:class:`~baselines.serving.engine.IndexVersion` and a hot swap carries its own.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

LOGGER = logging.getLogger(__name__)
RERANKERS = ("lightgbm", "lightgbm_ce")


class Reranker(Protocol):
    """Scores the retrieved candidates of one query (higher = better)."""

    name: str
    depth: int          # how many retrieved candidates it reorders

    def score(self, query: str, rows: np.ndarray, scores: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass
class LightGBMReranker:
    """The chapter-4 LightGBM lambdarank model over hand-made (query, product) features."""

    booster: object                      # lightgbm.Booster
    builder: object                      # baselines.reranker.rerank.FeatureBuilder over the served catalogue
    depth: int = 100
    name: str = "lightgbm"

    def score(self, query: str, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        features = self.builder.build(query, rows, scores)
        return np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float32)


@dataclasses.dataclass
class CrossEncoderStackReranker:
    """Cross-encoder scores of the top ``depth`` + the LightGBM-with-CE model of chapter 4."""

    booster: object                      # the lightgbm_ce booster (features + one cross-encoder column)
    builder: object
    cross_encoder: object                # sentence_transformers.CrossEncoder
    texts: Sequence[str]                 # product texts, row order
    depth: int = 50
    name: str = "lightgbm_ce"

    def score(self, query: str, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        pairs = [(query, self.texts[row]) for row in rows.tolist()]
        ce = np.asarray(self.cross_encoder.predict(pairs, batch_size=64, show_progress_bar=False,
                                                   convert_to_numpy=True), dtype=np.float32)
        features = np.concatenate([self.builder.build(query, rows, scores), ce[:, None]], axis=1)
        return np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float32)


def load_rerankers(rerank_run: str, seed: int, names: Sequence[str], attributes, texts: Sequence[str]
                   ) -> dict[str, Reranker]:
    """The requested rerankers of a finished chapter-4 run (``names`` among :data:`RERANKERS`)."""
    import lightgbm

    from baselines.reranker import rerank
    from mmq import registry

    unknown = sorted(set(names) - set(RERANKERS))
    if unknown:
        raise ValueError(f"unknown rerankers {unknown}; choose among {list(RERANKERS)}")
    if not names:
        return {}
    kind, config = registry.load_experiment(rerank_run)
    if kind.name != "rerank":
        raise ValueError(f"{rerank_run} is a {kind.name!r} run; rerankers need a rerank run")
    directory = registry.run_directory(rerank_run, seed)
    needed = {"lightgbm": [rerank.LIGHTGBM_FILE], "lightgbm_ce": [rerank.LIGHTGBM_CE_FILE, rerank.CROSS_ENCODER_DIR]}
    missing = [name for reranker in names for name in needed[reranker] if not (directory / name).exists()]
    if not registry.is_done(rerank_run, seed) or missing:
        raise FileNotFoundError(f"{directory} lacks {missing or 'a finished run'}; train it first: "
                                f"python scripts/run.py {rerank_run} --seeds {seed}")
    builder = rerank.FeatureBuilder(attributes, list(texts))
    loaded: dict[str, Reranker] = {}
    if "lightgbm" in names:
        loaded["lightgbm"] = LightGBMReranker(lightgbm.Booster(model_file=str(directory / rerank.LIGHTGBM_FILE)),
                                              builder, depth=config.candidates)
    if "lightgbm_ce" in names:
        from sentence_transformers import CrossEncoder

        cross_encoder = CrossEncoder(str(directory / rerank.CROSS_ENCODER_DIR), device="cpu",
                                     max_length=config.ce_max_length)
        loaded["lightgbm_ce"] = CrossEncoderStackReranker(
            lightgbm.Booster(model_file=str(directory / rerank.LIGHTGBM_CE_FILE)), builder, cross_encoder,
            list(texts), depth=config.ce_candidates)
    return loaded


@dataclasses.dataclass
class MultiphaseRetriever:
    """Semantic-ID candidates + exact inner-product ranking over one catalogue."""

    searcher: object                     # baselines.multiphase.search.MultiphaseSearcher
    probe: int = 8
    min_candidates: int = 1000
    description: str = ""

    def search(self, vector: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [1, depth], rows [1, depth])`` like a faiss search (-1 rows when fewer candidates)."""
        result = self.searcher.search(vector, depth, probe=self.probe, min_candidates=max(self.min_candidates, depth))
        return result.scores, result.ids


def fit_multiphase(vectors: np.ndarray, *, code_length: int = 3, codebook_size: int = 256, seed: int = 0,
                   probe: int = 8, min_candidates: int = 1000, num_threads: int = 1) -> MultiphaseRetriever:
    """RQ-KMeans semantic IDs of ``vectors`` (fitted once, cached by content) behind a multiphase searcher."""
    from baselines.multiphase.experiment import MultiphaseConfig
    from baselines.multiphase.fitted import fitted_tokenizer
    from baselines.multiphase.query_codes import encoder_for
    from baselines.multiphase.search import MultiphaseSearcher

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    settings = MultiphaseConfig(task="myntra", code_length=code_length, codebook_size=codebook_size, seed=seed,
                                num_threads=num_threads)
    tokenizer, key = fitted_tokenizer("rq_kmeans", vectors, settings)
    searcher = MultiphaseSearcher(vectors, tokenizer.encode(vectors), encoder_for(tokenizer))
    return MultiphaseRetriever(searcher, probe, min_candidates,
                               f"rq_kmeans {code_length}x{codebook_size} (cache key {key}), probe {probe}, "
                               f"min_candidates {min_candidates}")
