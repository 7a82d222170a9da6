"""Chapter-6 recommendation hybrid on Beauty (kind ``generative_hybrid``): generative beam -> SIDs -> vector rerank.

A trained generative retriever (the upstream run) proposes ``beam`` items per user (trie-constrained beam search
over their semantic IDs); their SIDs -- the full ID, or its first ``depth`` codes, which adds every item sharing
that code prefix -- name the candidates; these are reranked by inner product with the user's chapter-1 history
query over MiniLM title embeddings (history items removed). Compared on the same users: the generative list
alone (beam order) and dense Flat retrieval alone. The rerank is the inner product alone, or its reciprocal rank
fusion with the beam order. (beam, depth, rerank) is chosen on VALID users; TEST is read once;
paired bootstrap intervals over test users compare the chosen hybrid with each single system.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.multiphase.hybrid import hybrid_rerank, load_generative_run
from baselines.multiphase.prefix_index import PrefixIndex
from mmq.registry import Upstream

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class HybridConfig:
    """The hybrid's settings (defaults: the committed chapter-6 row)."""

    generative: str = "experiments/ch6/beauty_generative_rq_kmeans.yaml"   # upstream generative run (weights needed)
    generative_seed: int = 0
    beams: tuple[int, ...] = (10, 20, 50)       # items proposed per user (one beam search of the largest width)
    depths: tuple[str, ...] = ("full", "code")  # full: the beam's own items; code: + items sharing its code (no digit)
    fusions: tuple[str, ...] = ("vector", "rrf")  # rerank by inner product alone, or fused with the beam order (RRF)
    decay: float = 0.0                          # history query decay (chapter 1's valid choice on Beauty)
    max_history: int = 20
    valid_users: int = 3000                     # VALID users scored per setting (first ones; 0 = all)
    k: int = 10
    batch_size: int = 1024
    num_threads: int = 2

    def __post_init__(self) -> None:
        if not self.beams or min(self.beams) < self.k:
            raise ValueError(f"every beam must be >= k={self.k} (a shorter list cannot fill the top k), got {self.beams}")
        unknown = set(self.depths) - {"full", "code"}
        if not self.depths or unknown:
            raise ValueError(f"depths must be among ['full', 'code'], got {list(self.depths)}")
        if not self.fusions or set(self.fusions) - {"vector", "rrf"}:
            raise ValueError(f"fusions must be among ['vector', 'rrf'], got {list(self.fusions)}")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {self.decay}")


def hybrid_upstream(config: HybridConfig) -> list[Upstream]:
    """The generative run whose weights the hybrid reads."""
    return [Upstream("generative", config.generative, config.generative_seed)]


def _ranks(ranked: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of each target in its row, 0 when absent."""
    hits = ranked == targets[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0).astype(np.int64)


def _metrics(ranks: np.ndarray, k: int) -> dict[str, float]:
    from mmq.metrics.intervals import ndcg_at_k_per_event, recall_at_k_per_event

    return {f"ndcg@{k}": float(ndcg_at_k_per_event(ranks, k).mean()),
            f"recall@{k}": float(recall_at_k_per_event(ranks, k).mean())}


def score_split(items: np.ndarray, padded: np.ndarray, targets: np.ndarray, queries: np.ndarray, vectors: np.ndarray,
                semantic_ids: np.ndarray, index: PrefixIndex, config: HybridConfig) -> dict[str, Any]:
    """Ranks of the target per user for every system on one split (``items`` = the widest beam)."""
    from baselines.faiss_ann.content_retrieval import build_flat, retrieve
    from mmq.recommenders.evaluation import drop_history_items

    code_length = semantic_ids.shape[1] - 1                         # last column = de-dup digit
    systems = {"generative": _ranks(drop_history_items(items, padded, config.k), targets)}
    dense, _ = retrieve(build_flat(vectors), queries, padded, config.k)
    systems["dense"] = _ranks(dense, targets)
    candidates = {}
    for beam in config.beams:
        top = items[:, :beam]
        for depth in config.depths:
            width = semantic_ids.shape[1] if depth == "full" else code_length
            paths = np.where(top[..., None] >= 0, semantic_ids[np.maximum(top, 0)][..., :width], -1)  # [u, beam, w]
            for fusion in config.fusions:
                name = f"hybrid beam={beam} depth={depth} rerank={fusion}"
                result = hybrid_rerank(paths, index, vectors, queries, config.k, exclude=padded, fusion=fusion)
                systems[name] = _ranks(result.ids, targets)
                candidates[name] = float(result.num_candidates.mean())
    return {"ranks": systems, "mean_candidates": candidates}


def run(config: HybridConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner: select (beam, depth) on VALID, score every system on TEST, paired intervals."""
    from baselines.faiss_ann.content_retrieval import history_queries
    from mmq import artifacts
    from mmq.data import leave_one_out, load_dataset
    from mmq.features import TextFeatureConfig, item_text_embeddings
    from mmq.generative.sid_trie import SemanticIdTrie
    from mmq.generative.train import generate_topk, item_codes_lookup
    from mmq.metrics.intervals import ndcg_at_k_per_event, paired_bootstrap, verdict
    from mmq.recommenders.sequences import pad_histories

    torch.set_num_threads(config.num_threads)
    model, generative_config, semantic_ids = load_generative_run(config.generative, config.generative_seed)
    dataset = load_dataset(generative_config.dataset)
    split = leave_one_out(dataset, max_history=config.max_history)
    vectors = item_text_embeddings(dataset, TextFeatureConfig(recipe=("title",)), progress=progress)
    if len(vectors) != len(semantic_ids):
        raise ValueError(f"{len(vectors)} item vectors but {len(semantic_ids)} semantic IDs: not the same catalogue")
    index = PrefixIndex(semantic_ids)
    trie = SemanticIdTrie(semantic_ids, tuple(int(s) for s in semantic_ids.max(axis=0) + 1))
    lookup = item_codes_lookup(semantic_ids)
    results = {}
    for name in ("valid", "test"):
        histories, targets = split.history_and_target(name)
        if name == "valid" and config.valid_users:
            histories, targets = histories[:config.valid_users], targets[:config.valid_users]
        padded = pad_histories(histories, config.max_history)
        items = generate_topk(model, lookup, trie, padded, beam_size=max(config.beams), batch_size=config.batch_size,
                              device=torch.device("cpu"), progress=progress)
        queries = history_queries(padded, vectors, config.decay)
        results[name] = score_split(items, padded, np.asarray(targets), queries, vectors, semantic_ids, index, config)
    k = config.k
    hybrids = [name for name in results["valid"]["ranks"] if name.startswith("hybrid")]
    chosen = max(hybrids, key=lambda name: ndcg_at_k_per_event(results["valid"]["ranks"][name], k).mean())
    test = results["test"]["ranks"]
    comparisons = {}
    for other in ("generative", "dense"):
        interval = paired_bootstrap(ndcg_at_k_per_event(test[chosen], k)[None], ndcg_at_k_per_event(test[other], k)[None])
        comparisons[other] = {**interval._asdict(), "verdict": verdict(interval)}
    artifacts.save_npy(directory / "test_ranks.npy", np.stack([test[name] for name in sorted(test)]))
    return {
        "generative_run": {"config": config.generative, "seed": config.generative_seed},
        "selected_on_valid": chosen,
        "valid": {name: _metrics(ranks, k) for name, ranks in results["valid"]["ranks"].items()},
        "test": {name: _metrics(ranks, k) for name, ranks in results["test"]["ranks"].items()},
        "mean_candidates": results["test"]["mean_candidates"],
        "chosen_vs": comparisons, "num_test_users": int(len(test["dense"])),
        "num_valid_users": int(len(results["valid"]["ranks"]["dense"])), "systems_in_test_ranks": sorted(test),
    }
