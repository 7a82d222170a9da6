"""RQ-KMeans: residual k-means semantic IDs (one faiss k-means per level on the residuals)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faiss
import numpy as np

from baselines.sid_tokenizers.common import UniformCodebookTokenizer
from mmq.semantic_ids.base import (
    load_array,
    read_tokenizer_json,
    require_fitted,
    save_array,
    validate_codes,
    validate_embeddings,
    write_tokenizer_json,
)

logger = logging.getLogger(__name__)

ENCODE_CHUNK = 8_192  # rows per encode chunk (score block [chunk, L*K] stays cache-friendly)


def balanced_assignment(
    points: np.ndarray, centroids: np.ndarray, *, capacity: int | None = None
) -> np.ndarray:
    """Capacity-constrained greedy assignment: no centroid receives more than ``capacity`` points.

    Hand-written because faiss has no balanced k-means. Each round, every unassigned point
    proposes its nearest centroid that still has room; each centroid accepts its closest
    proposers up to its remaining capacity. Repeats until every point is assigned (at most
    ``num_centroids`` rounds, usually a handful). ``capacity`` defaults to ceil(n / K).
    """
    num_points, num_centroids = points.shape[0], centroids.shape[0]
    capacity = capacity if capacity is not None else -(-num_points // num_centroids)
    if capacity * num_centroids < num_points:
        raise ValueError(f"capacity {capacity} x {num_centroids} centroids < {num_points} points")
    distances = squared_distances(points, centroids)  # [n, K]
    assignment = np.full(num_points, -1, dtype=np.int64)
    remaining = np.full(num_centroids, capacity, dtype=np.int64)
    while (unassigned := np.flatnonzero(assignment < 0)).size:
        block = distances[unassigned]  # [u, K]
        block[:, remaining == 0] = np.inf
        proposal = block.argmin(axis=1)  # [u]
        proposal_distance = block[np.arange(unassigned.size), proposal]
        order = np.lexsort((proposal_distance, proposal))  # by centroid, then distance
        sorted_centroids = proposal[order]
        group_start = np.searchsorted(sorted_centroids, sorted_centroids, side="left")
        rank_in_group = np.arange(order.size) - group_start
        accepted = rank_in_group < remaining[sorted_centroids]
        assignment[unassigned[order[accepted]]] = sorted_centroids[accepted]
        remaining -= np.bincount(sorted_centroids[accepted], minlength=num_centroids)
    return assignment


def squared_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared L2 distances ``[n, K]`` (float32, via the ||a||^2 - 2ab + ||b||^2 expansion)."""
    return (
        np.square(points).sum(axis=1, keepdims=True)
        - 2.0 * points @ centroids.T
        + np.square(centroids).sum(axis=1)[None, :]
    )


class RQKMeansTokenizer(UniformCodebookTokenizer):
    """Residual k-means: level l clusters the residual left by levels < l into ``codebook_size``."""

    kind = "rq_kmeans"

    def __init__(
        self,
        *,
        num_levels: int = 3,  # code length L
        codebook_size: int = 256,  # K codes per level
        num_iterations: int = 25,  # k-means (Lloyd) iterations per level
        balanced: bool = False,  # refine centroids with capacity-constrained assignments
        balanced_rounds: int = 5,  # balanced assign -> centroid update rounds per level
        max_points_per_centroid: int = 256,  # faiss k-means subsamples above K x this
    ) -> None:
        if num_levels < 1 or codebook_size < 2:
            raise ValueError("num_levels must be >= 1 and codebook_size >= 2")
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.num_iterations = num_iterations
        self.balanced = balanced
        self.balanced_rounds = balanced_rounds
        self.max_points_per_centroid = max_points_per_centroid
        self.codebooks: np.ndarray | None = None  # [L, K, d]

    @property
    def dim(self) -> int:
        require_fitted(self.codebooks is not None, self)
        return int(self.codebooks.shape[2])

    def fit(self, embeddings: np.ndarray, *, seed: int = 0,
            checkpoint_directory: Path | None = None) -> "RQKMeansTokenizer":
        """Fit one k-means per level on the residuals of the previous levels.

        ``checkpoint_directory`` is ignored: there are no gradient steps to resume.
        """
        residual = validate_embeddings(embeddings).copy()
        num_items, dim = residual.shape
        if num_items < self.codebook_size:
            raise ValueError(f"need >= codebook_size={self.codebook_size} items, got {num_items}")
        codebooks = np.empty((self.num_levels, self.codebook_size, dim), dtype=np.float32)
        for level in range(self.num_levels):
            kmeans = faiss.Kmeans(
                dim,
                self.codebook_size,
                niter=self.num_iterations,
                seed=seed * 1_000 + level,
                max_points_per_centroid=self.max_points_per_centroid,
                verbose=False,
            )
            kmeans.train(residual)
            centroids = kmeans.centroids.astype(np.float32)
            if self.balanced:
                centroids, codes = self._balanced_refine(residual, centroids)
            else:
                codes = _nearest(_flat_index(centroids), residual)
            codebooks[level] = centroids
            residual -= centroids[codes]
            logger.debug("rq_kmeans level %d: residual mse %.5f", level, float(np.mean(residual**2)))
        self.codebooks = codebooks
        self._build_search_tables()
        return self

    def _balanced_refine(self, residual: np.ndarray, centroids: np.ndarray):
        """Alternate balanced assignment and centroid means; empty centroids keep their place."""
        codes = balanced_assignment(residual, centroids)
        for _ in range(self.balanced_rounds):
            sums = np.zeros_like(centroids, dtype=np.float64)
            np.add.at(sums, codes, residual)
            counts = np.bincount(codes, minlength=centroids.shape[0])
            filled = counts > 0
            centroids = centroids.copy()
            centroids[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
            codes = balanced_assignment(residual, centroids)
        return centroids, codes

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """Per level, the nearest centroid to the current residual; int64 ``[n, num_levels]``.

        Vectorised without materialising residuals: with r_l = x - sum_{j<l} C_j[a_j],
        argmin_c ||r_l - c||^2 = argmin_c (||c||^2 / 2 - x.c + sum_{j<l} C_j[a_j].c), so one GEMM
        x @ [C_0; ..; C_{L-1}]^T per chunk plus gathers from the precomputed cross-level inner
        products C_j C_l^T give every level. Measured ~1.5x faster here than one faiss
        IndexFlatL2 search per level; equal codes up to float32 near-ties.
        """
        require_fitted(self.codebooks is not None, self)
        embeddings = validate_embeddings(embeddings, expected_dim=self.dim)
        num_levels, codebook_size, _ = self.codebooks.shape
        codes = np.empty((embeddings.shape[0], num_levels), dtype=np.int64)
        for start in range(0, embeddings.shape[0], ENCODE_CHUNK):
            block = embeddings[start : start + ENCODE_CHUNK]
            block_codes = codes[start : start + block.shape[0]]
            scores = (block @ self._stacked_transposed).reshape(block.shape[0], num_levels, codebook_size)
            for level in range(num_levels):
                distances = self._half_norms[level] - scores[:, level]  # [b, K], up to ||r||^2/2
                for previous in range(level):
                    distances += self._cross_products[previous, level][block_codes[:, previous]]
                block_codes[:, level] = distances.argmin(axis=1)
        return codes

    def _build_search_tables(self) -> None:
        """Precompute what :meth:`encode` needs from the fitted codebooks."""
        num_levels, codebook_size, dim = self.codebooks.shape
        stacked = self.codebooks.reshape(num_levels * codebook_size, dim)
        self._stacked_transposed = np.ascontiguousarray(stacked.T)  # [d, L*K]
        self._half_norms = 0.5 * np.square(self.codebooks).sum(axis=2)  # [L, K]
        self._cross_products = np.einsum("jkd,lmd->jlkm", self.codebooks, self.codebooks)  # [L, L, K, K]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Sum of the chosen centroids of every level, float32 ``[n, d]``."""
        require_fitted(self.codebooks is not None, self)
        codes = validate_codes(codes, self.codebook_sizes)
        reconstruction = np.zeros((codes.shape[0], self.dim), dtype=np.float32)
        for level in range(self.num_levels):
            reconstruction += self.codebooks[level][codes[:, level]]
        return reconstruction

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``codebooks.npy`` and ``tokenizer.json`` under ``directory``."""
        require_fitted(self.codebooks is not None, self)
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_array(directory, "codebooks", self.codebooks)
        write_tokenizer_json(directory, self.kind, {"hyper": self.hyper_parameters(), "dim": self.dim})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "RQKMeansTokenizer":
        """Rebuild a fitted tokenizer from :meth:`save` output."""
        payload = read_tokenizer_json(directory, cls.kind)
        tokenizer = cls(**payload["hyper"])
        tokenizer.codebooks = load_array(directory, "codebooks").astype(np.float32)
        tokenizer._build_search_tables()
        return tokenizer


def _flat_index(centroids: np.ndarray) -> faiss.IndexFlatL2:
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index


def _nearest(index: faiss.IndexFlatL2, points: np.ndarray) -> np.ndarray:
    _, labels = index.search(np.ascontiguousarray(points), 1)
    return labels[:, 0].astype(np.int64)
