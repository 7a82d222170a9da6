"""Collaborative item embeddings from TRAINING interactions only: windowed co-occurrence -> PPMI -> SVD.

The second MMQ "modality" on Amazon Beauty, where no images are available offline (docs/method.md §1.2, §6.2):
a real behavioural item vector, never a fake one. Recipe [choice, every step a config field]:

1. co-occurrence counts C[i, j] of items at most ``window`` positions apart inside each user's
   leave-one-out *training* sequence (``split.train_sequences`` = the sequence without its last
   two items, so validation and test targets never enter);
2. PPMI(i, j) = max(0, log(C_ij * sum(C) / (C_i * C_j^alpha_norm))) with context smoothing
   ``alpha`` (Levy et al. 2015, alpha = 0.75);
3. truncated SVD (scikit-learn, fixed ``random_state``) to ``dim`` dimensions, item vector
   U * S^``singular_power``, L2-normalised.

Items with no training co-occurrence (they only appear as validation/test targets or in
length-1 training sequences) get a ZERO vector and ``valid=False``; the count is written to the
sidecar JSON and logged. Results are cached atomically under
``<cache>/features/<dataset>/collaborative-<items>-<train>-<config>.npy`` (+ ``.valid.npy``).
That key is already CONTENT: the embedding is a function of the item list, the training
sequences (hashed value by value) and the config alone, and all three are in the key, so edited
interactions give a new key and unchanged data a cache hit (no dataset fingerprint needed).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from scipy import sparse

from mmq import artifacts
from mmq.data.paths import cache_dir
from mmq.data.schema import InteractionDataset

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CollaborativeConfig:
    """How the collaborative item embedding is built (all [choice]: the paper has none offline)."""

    dim: int = 256               # output width, matching the paper's 256-d modality embeddings
    window: int = 5              # co-occurrence window (positions apart) inside a training sequence
    alpha: float = 0.75          # context-distribution smoothing of PPMI (Levy et al. 2015)
    singular_power: float = 0.5  # item vector = U * S^power (0.5: symmetric split of S)
    svd_iterations: int = 7      # randomized SVD power iterations
    random_state: int = 0        # fixed: the embedding is data, not a per-seed model
    max_history: int = 20        # leave-one-out history cap (only the split's train part is used)


class CollaborativeEmbeddings(NamedTuple):
    """Item vectors (zero rows where ``valid`` is False) and the validity mask."""

    embeddings: np.ndarray  # [num_items, dim] float32, L2-normalised where valid
    valid: np.ndarray       # [num_items] bool: the item co-occurs with another in training


def cooccurrence_matrix(train_sequences: Sequence[np.ndarray], num_items: int, window: int) -> sparse.csr_matrix:
    """Symmetric counts of item pairs at most ``window`` positions apart (diagonal zero), CSR."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    rows, columns = [], []
    for sequence in train_sequences:
        sequence = np.asarray(sequence, dtype=np.int64)
        for offset in range(1, min(window, len(sequence) - 1) + 1):
            rows.append(sequence[:-offset])
            columns.append(sequence[offset:])
    if not rows:
        return sparse.csr_matrix((num_items, num_items), dtype=np.float64)
    left, right = np.concatenate(rows), np.concatenate(columns)
    if left.size and (max(left.max(), right.max()) >= num_items or min(left.min(), right.min()) < 0):
        raise ValueError(f"training sequences hold item indices outside [0, {num_items})")
    keep = left != right  # a repeated item is not its own context
    left, right = left[keep], right[keep]
    counts = sparse.coo_matrix((np.ones(left.size), (left, right)), shape=(num_items, num_items)).tocsr()
    return (counts + counts.T).tocsr()


def ppmi(counts: sparse.csr_matrix, alpha: float) -> sparse.csr_matrix:
    """Positive pointwise mutual information with context smoothing ``alpha`` (zeros stay zero)."""
    counts = counts.tocoo()
    total = counts.sum()
    if total == 0:
        return sparse.csr_matrix(counts.shape)
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    context = np.power(np.asarray(counts.sum(axis=0)).ravel(), alpha)
    context = context / context.sum()
    values = np.log(counts.data / total) - np.log(row_sums[counts.row] / total) - np.log(context[counts.col])
    values = np.maximum(values, 0.0)
    return sparse.coo_matrix((values, (counts.row, counts.col)), shape=counts.shape).tocsr()


def collaborative_embeddings(train_sequences: Sequence[np.ndarray], num_items: int,
                             config: CollaborativeConfig = CollaborativeConfig()) -> CollaborativeEmbeddings:
    """PPMI-SVD item vectors from training sequences only (see module docstring)."""
    from sklearn.decomposition import TruncatedSVD

    matrix = ppmi(cooccurrence_matrix(train_sequences, num_items, config.window), config.alpha)
    valid = np.asarray(matrix.getnnz(axis=1) > 0)
    components = min(config.dim, max(1, num_items - 1))
    svd = TruncatedSVD(n_components=components, n_iter=config.svd_iterations, random_state=config.random_state)
    left = svd.fit_transform(matrix)  # [n, k] = U * S
    singular = np.maximum(svd.singular_values_, 1e-12)
    vectors = left * np.power(singular, config.singular_power - 1.0)[None, :]  # U * S^power
    vectors = np.pad(vectors, ((0, 0), (0, config.dim - components)))
    vectors[~valid] = 0.0
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0)
    return CollaborativeEmbeddings(np.ascontiguousarray(vectors, dtype=np.float32), valid)


def collaborative_feature_path(dataset: InteractionDataset, train_sequences: Sequence[np.ndarray],
                               config: CollaborativeConfig) -> Path:
    """Cache path keyed by dataset, its item list, the training sequences and the config."""
    item_key = artifacts.short_hash(dataset.items["item_id"].tolist())
    train_key = artifacts.short_hash([np.asarray(sequence).tolist() for sequence in train_sequences])
    config_key = artifacts.short_hash(dataclasses.asdict(config))
    return cache_dir() / "features" / dataset.name / f"collaborative-{item_key}-{train_key}-{config_key}.npy"


def item_collaborative_embeddings(dataset: InteractionDataset, config: CollaborativeConfig = CollaborativeConfig(),
                                  *, force: bool = False) -> CollaborativeEmbeddings:
    """Cached collaborative embeddings of ``dataset`` from its leave-one-out training part."""
    from mmq.data.splits import leave_one_out

    train_sequences = leave_one_out(dataset, max_history=config.max_history).train_sequences
    path = collaborative_feature_path(dataset, train_sequences, config)
    valid_path = path.with_suffix(".valid.npy")
    if path.exists() and valid_path.exists() and not force:
        return CollaborativeEmbeddings(np.load(path), np.load(valid_path))
    started = time.perf_counter()
    result = collaborative_embeddings(train_sequences, dataset.num_items, config)
    artifacts.save_npy(path, result.embeddings)
    artifacts.save_npy(valid_path, result.valid)
    num_invalid = int((~result.valid).sum())
    artifacts.write_json(path.with_suffix(".json"), {
        "dataset": dataset.name, "num_items": dataset.num_items, "config": dataclasses.asdict(config),
        "source": "leave-one-out train_sequences only (last two items of every user excluded)",
        "num_items_without_cooccurrence": num_invalid, "fallback": "zero vector, valid=False",
        "seconds": round(time.perf_counter() - started, 3),
    })
    LOGGER.info("%s: collaborative embeddings %s, %d items without training co-occurrence (zero rows) -> %s",
                dataset.name, result.embeddings.shape, num_invalid, path)
    return result
