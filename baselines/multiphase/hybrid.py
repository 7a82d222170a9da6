"""The recommendation hybrid: generative beam -> candidate semantic IDs -> vector rerank by the history query.

A generative retriever (:mod:`mmq.generative`) proposes ranked code paths per user; every path (a full ID or
any prefix of one) names the items under it in the :class:`~baselines.multiphase.prefix_index.PrefixIndex`.
The union, in beam order, is reranked by inner product with the user's history query (chapter 1's
recency-weighted mean). Ties keep the beam order; when fewer than ``k`` items survive, the empty slots are
``-1``. :func:`beam_code_paths` is the glue that runs a trained generative run's beam search.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from baselines.multiphase.prefix_index import PrefixIndex
from baselines.multiphase.search import check_vectors


class HybridResult(NamedTuple):
    """Reranked items per user and the pool each was chosen from."""

    ids: np.ndarray             # [users, k] int64, -1 = empty slot
    scores: np.ndarray          # [users, k] float32 inner products, -inf for empty slots
    num_candidates: np.ndarray  # [users] distinct items the beam's paths name (before exclusion)


def beam_items(index: PrefixIndex, paths: np.ndarray) -> np.ndarray:
    """Distinct items under ``paths`` ``[beams, l]`` (``l <= L``; rows with a ``-1`` are skipped), in beam order."""
    paths = np.asarray(paths, dtype=np.int64)
    if paths.ndim != 2 or paths.shape[1] > index.code_length:
        raise ValueError(f"beam paths must be [beams, <= {index.code_length}], got shape {paths.shape}")
    depth = paths.shape[1]
    valid = (paths >= 0).all(axis=1)
    if depth and (paths[valid] >= np.asarray(index.codebook_sizes[:depth])).any():
        raise ValueError(f"beam codes out of range for codebook_sizes {index.codebook_sizes[:depth]}")
    full = np.zeros((int(valid.sum()), index.code_length), dtype=np.int64)
    full[:, :depth] = paths[valid]
    pieces = []
    for row in full:                                           # one range per beam, in beam order
        starts, stops = index.prefix_ranges(row[None, :], depth)
        pieces.append(index.items_in(starts, stops))
    if not pieces:
        return np.empty(0, dtype=np.int64)
    items = np.concatenate(pieces)
    _, first = np.unique(items, return_index=True)             # keep each item's earliest beam
    return items[np.sort(first)]


RRF_CONSTANT = 60  # reciprocal rank fusion's k (Cormack et al. 2009), the usual default


def hybrid_rerank(beam_paths: np.ndarray, index: PrefixIndex, item_vectors: np.ndarray, queries: np.ndarray,
                  k: int, *, exclude: np.ndarray | None = None, fusion: str = "vector") -> HybridResult:
    """Map each user's beam paths ``[users, beams, l]`` to items and rank them by ``item . query``.

    ``queries`` ``[users, d]``; ``exclude`` ``[users, H]`` (-1 padded) items never returned (the history).
    ``fusion="rrf"``: rank by reciprocal rank fusion of the beam order and the inner-product order instead
    (``1 / (60 + beam rank) + 1 / (60 + vector rank)``), so the generative order still counts.
    """
    if fusion not in ("vector", "rrf"):
        raise ValueError(f"fusion must be 'vector' or 'rrf', got {fusion!r}")
    vectors = check_vectors(item_vectors, name="item vectors")
    queries = check_vectors(queries, name="history queries")
    beam_paths = np.asarray(beam_paths)
    if beam_paths.ndim != 3 or beam_paths.shape[0] != queries.shape[0]:
        raise ValueError(f"beam paths must be [users={queries.shape[0]}, beams, levels], got {beam_paths.shape}")
    if vectors.shape[0] != index.num_items or queries.shape[1] != vectors.shape[1]:
        raise ValueError(f"{vectors.shape[0]} item vectors of dim {vectors.shape[1]} for an index of "
                         f"{index.num_items} items and queries of dim {queries.shape[1]}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    users = queries.shape[0]
    ids = np.full((users, k), -1, dtype=np.int64)
    scores = np.full((users, k), -np.inf, dtype=np.float32)
    sizes = np.zeros(users, dtype=np.int64)
    for user in range(users):
        pool = beam_items(index, beam_paths[user])
        sizes[user] = pool.size
        if exclude is not None:
            pool = pool[~np.isin(pool, exclude[user])]
        values = vectors[pool] @ queries[user]
        if fusion == "rrf":
            vector_rank = np.empty(pool.size, dtype=np.int64)
            vector_rank[np.lexsort((np.arange(pool.size), -values))] = np.arange(pool.size)
            values = (1.0 / (RRF_CONSTANT + 1 + np.arange(pool.size)) + 1.0 / (RRF_CONSTANT + 1 + vector_rank)
                      ).astype(np.float32)
        order = np.lexsort((np.arange(pool.size), -values))[:k]  # score desc, then beam order
        ids[user, :order.size], scores[user, :order.size] = pool[order], values[order]
    return HybridResult(ids, scores, sizes)


@torch.no_grad()
def beam_code_paths(model, semantic_ids: np.ndarray, histories: np.ndarray, *, beam_size: int,
                    batch_size: int = 256) -> np.ndarray:
    """Ranked SIDs ``[users, beam_size, L (+ de-dup digit)]`` from a generative model's trie-constrained beam.

    ``histories`` are right-aligned item ids ``[users, H]`` (-1 padded, :func:`mmq.recommenders.sequences.pad_histories`);
    the model is any :mod:`mmq.generative` backbone (``user_context`` + ``next_code_logits``). Unfilled beams are -1.
    """
    from mmq.generative.beam_search import beam_search
    from mmq.generative.sid_trie import SemanticIdTrie
    from mmq.generative.train import item_codes_lookup

    sizes = tuple(int(size) for size in semantic_ids.max(axis=0) + 1)
    trie = SemanticIdTrie(semantic_ids, sizes)
    lookup = item_codes_lookup(semantic_ids)
    model.eval()
    outputs = []
    for start in range(0, len(histories), batch_size):
        codes = lookup[torch.from_numpy(np.asarray(histories[start:start + batch_size], dtype=np.int64))]
        result = beam_search(model, model.user_context(codes), trie, beam_size=beam_size)
        paths = result.codes.numpy()
        paths[(result.items < 0).numpy()] = -1
        if paths.shape[1] < beam_size:                          # fewer valid SIDs than beams
            paths = np.concatenate([paths, np.full((paths.shape[0], beam_size - paths.shape[1], paths.shape[2]), -1)],
                                   axis=1)
        outputs.append(paths)
    return np.concatenate(outputs).astype(np.int64)


def load_generative_run(config_path: str, seed: int):
    """A finished generative run's model (``best.pt``), its config and SID table; FileNotFoundError without weights.

    The committed generative runs hold only ``report.json`` (weights are git-ignored): train one first with
    ``python scripts/run.py <config> --seeds <seed>`` (~20-25 min on 2 cores for Beauty).
    """
    from mmq import registry
    from mmq.generative.experiment import build_model
    from mmq.semantic_ids.base import load_torch_state

    _, config = registry.load_experiment(config_path)
    directory = registry.run_directory(config_path, seed)
    weights = Path(directory) / "best.pt"
    if not weights.exists():
        raise FileNotFoundError(f"{weights} is absent (weights are git-ignored); train the run first: "
                                f"python scripts/run.py {config_path} --seeds {seed}")
    if config.finetune:  # stage 2 re-derived the SIDs: the table the run's generator was chosen with
        semantic_ids = np.load(Path(directory) / "semantic_ids.npy")
    else:
        semantic_ids = registry.semantic_id_table(config.semantic_ids, seed if config.tokenizer_seed is None
                                                  else config.tokenizer_seed).table
    model = build_model(config, tuple(int(size) for size in semantic_ids.max(axis=0) + 1))
    model.load_state_dict(load_torch_state(weights))
    return model.eval(), config, semantic_ids
