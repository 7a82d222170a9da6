"""Phase 1 encoding: a query -> its ``probe`` best semantic-ID code paths (multi-probe beam over levels).

Two code structures:

- **residual** (RQ-KMeans, RQ-VAE): level l quantizes the residual left by levels < l. A beam keeps the
  ``probe`` best partial paths by their residual distance ``||r_l - c||^2`` (the squared error left after the
  level, i.e. the accumulated quantization error of the path); each is expanded by its ``probe`` nearest
  codewords of the next level (faiss ``IndexFlatL2`` per level), and the best ``probe`` of the ``probe^2``
  children survive. ``probe = 1`` is the tokenizer's own greedy encoding.
- **parallel** (MMQ): every position is an independent expert with its own codebook, matched by cosine; a
  path's distance is the sum of ``1 - cos(z_i, q_c)`` over its positions, and the same beam runs over the
  positions in SID order. ``probe = 1`` is MMQ's argmax per expert. Multi-probe is well defined (the
  distances are additive), but MMQ's positions have no coarse-to-fine order (shared experts first, then each
  modality's), so a prefix of an MMQ ID is "agrees on the first experts", not "a coarser cluster".
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import faiss
import numpy as np
import torch

from mmq.arrays import check_finite_rows


class ProbePaths(NamedTuple):
    """Each query's probed code paths, best first, and its first-level codewords nearest first."""

    paths: np.ndarray        # [n, P, L] int64
    distances: np.ndarray    # [n, P] float32, ascending per row
    first_order: np.ndarray  # [n, K_0] int64: level-0 codewords by distance (the ordered backoff's visiting order)


def take_rows(inputs: Any, rows: np.ndarray | slice) -> Any:
    """Rows of encoder inputs: an array or a ``{modality: array}`` dict."""
    if isinstance(inputs, Mapping):
        return {name: array[rows] for name, array in inputs.items()}
    return inputs[rows]


def num_rows(inputs: Any) -> int:
    """Number of queries in encoder inputs (array or dict of arrays)."""
    return len(next(iter(inputs.values()))) if isinstance(inputs, Mapping) else len(inputs)


def beam_select(scores: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``width`` of ``scores`` ``[n, m]`` (lowest first): ``(columns [n, w], values [n, w])``."""
    width = min(width, scores.shape[1])
    if width < scores.shape[1]:
        columns = np.argpartition(scores, width - 1, axis=1)[:, :width]
    else:
        columns = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    values = np.take_along_axis(scores, columns, axis=1)
    order = np.argsort(values, axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)


def _check_probe(probe: int) -> int:
    if int(probe) < 1:
        raise ValueError(f"probe must be >= 1, got {probe}")
    return int(probe)


class ResidualCodeEncoder:
    """Multi-probe encoder of a residual quantizer: ``latent(inputs) -> [n, d]`` and codebooks ``[L, K, d]``."""

    structure = "residual"

    def __init__(self, codebooks: np.ndarray, latent: Callable[[Any], np.ndarray] | None = None) -> None:
        codebooks = np.ascontiguousarray(codebooks, dtype=np.float32)
        if codebooks.ndim != 3 or 0 in codebooks.shape:
            raise ValueError(f"codebooks must be [levels, K, dim], got shape {codebooks.shape}")
        self.codebooks = codebooks
        self.codebook_sizes = (codebooks.shape[1],) * codebooks.shape[0]
        self.latent = latent or (lambda inputs: np.asarray(inputs, dtype=np.float32))
        self.indexes = []
        for level_codebook in codebooks:
            index = faiss.IndexFlatL2(codebooks.shape[2])
            index.add(level_codebook)
            self.indexes.append(index)

    def probe(self, inputs: Any, probe: int = 1) -> ProbePaths:
        """The ``probe`` best paths per query by residual distance (beam over levels)."""
        probe = _check_probe(probe)
        latent = np.ascontiguousarray(self.latent(inputs), dtype=np.float32)
        if latent.ndim != 2 or latent.shape[1] != self.codebooks.shape[2]:
            raise ValueError(f"query latents must be [n, {self.codebooks.shape[2]}], got {latent.shape}")
        check_finite_rows(latent, name="query latents")
        count, dim = latent.shape
        _, first_order = self.indexes[0].search(latent, self.indexes[0].ntotal)   # [n, K_0] nearest first
        residual = latent[:, None, :]                              # [n, beams, d]
        paths = np.zeros((count, 1, 0), dtype=np.int64)           # [n, beams, level]
        distances = np.zeros((count, 1), dtype=np.float32)
        for level, index in enumerate(self.indexes):
            beams, width = residual.shape[1], min(probe, index.ntotal)
            child_distances, child_codes = index.search(residual.reshape(count * beams, dim), width)  # [n*b, w]
            columns, distances = beam_select(child_distances.reshape(count, beams * width), probe)
            parent, codes = columns // width, child_codes.reshape(count, beams * width)
            codes = np.take_along_axis(codes, columns, axis=1)   # [n, new beams]
            paths = np.concatenate([np.take_along_axis(paths, parent[..., None], axis=1), codes[..., None]], axis=2)
            residual = np.take_along_axis(residual, parent[..., None], axis=1) - self.codebooks[level][codes]
        return ProbePaths(paths, distances.astype(np.float32), first_order.astype(np.int64))

    def encode(self, inputs: Any) -> np.ndarray:
        """Greedy codes ``[n, L]`` (= ``probe(inputs, 1)``)."""
        return self.probe(inputs, 1).paths[:, 0]


class ParallelCodeEncoder:
    """Multi-probe encoder of parallel per-position codebooks: ``distances(inputs) -> [n, L, K]`` (additive)."""

    structure = "parallel"

    def __init__(self, distances: Callable[[Any], np.ndarray], codebook_sizes: tuple[int, ...]) -> None:
        self.distances = distances
        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)

    def probe(self, inputs: Any, probe: int = 1) -> ProbePaths:
        """The ``probe`` best paths per query by summed per-position distance (beam over positions)."""
        probe = _check_probe(probe)
        table = np.asarray(self.distances(inputs), dtype=np.float32)  # [n, L, K]
        if table.ndim != 3 or table.shape[1] != len(self.codebook_sizes):
            raise ValueError(f"per-position distances must be [n, {len(self.codebook_sizes)}, K], got {table.shape}")
        if not np.isfinite(table).all():
            raise ValueError("per-position distances contain NaN or inf (NaN query rows?)")
        count = table.shape[0]
        paths = np.zeros((count, 1, 0), dtype=np.int64)
        totals = np.zeros((count, 1), dtype=np.float32)
        for position in range(table.shape[1]):
            width = min(probe, table.shape[2])
            nearest, nearest_distance = beam_select(table[:, position], width)         # [n, w]
            candidates = totals[:, :, None] + nearest_distance[:, None, :]             # [n, b, w]
            beams = totals.shape[1]
            columns, totals = beam_select(candidates.reshape(count, beams * width), probe)
            parent, codes = columns // width, np.take_along_axis(nearest, columns % width, axis=1)
            paths = np.concatenate([np.take_along_axis(paths, parent[..., None], axis=1), codes[..., None]], axis=2)
        first_order = np.argsort(table[:, 0], axis=1, kind="stable")                    # [n, K_0]
        return ProbePaths(paths, totals, first_order.astype(np.int64))

    def encode(self, inputs: Any) -> np.ndarray:
        """Argmax codes ``[n, L]`` (= ``probe(inputs, 1)``)."""
        return self.probe(inputs, 1).paths[:, 0]


def encoder_for(tokenizer) -> ResidualCodeEncoder | ParallelCodeEncoder:
    """The multi-probe encoder of a fitted RQ-KMeans, RQ-VAE or MMQ tokenizer (by its ``kind``)."""
    kind = getattr(tokenizer, "kind", None)
    if kind == "rq_kmeans":
        if tokenizer.codebooks is None:
            raise ValueError("the RQ-KMeans tokenizer is not fitted")
        return ResidualCodeEncoder(tokenizer.codebooks)
    if kind == "rq_vae":
        if tokenizer.model is None:
            raise ValueError("the RQ-VAE tokenizer is not fitted")
        model = tokenizer.model.eval()

        def latent(inputs: Any) -> np.ndarray:
            data = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
            with torch.inference_mode():
                return model.encoder(data).numpy()

        return ResidualCodeEncoder(model.quantizer.codebooks.detach().numpy(), latent)
    if kind == "mmq":
        if tokenizer.model is None:
            raise ValueError("the MMQ tokenizer is not fitted")
        if tokenizer.config.lookup != "cosine":
            # L2 logits are -||z - q||^2: the distance is their negation, still additive over positions
            return ParallelCodeEncoder(lambda inputs: -tokenizer.expert_logits(inputs), tokenizer.codebook_sizes)
        return ParallelCodeEncoder(lambda inputs: 1.0 - tokenizer.expert_logits(inputs), tokenizer.codebook_sizes)
    raise ValueError(f"no multi-probe encoder for tokenizer kind {kind!r}; supported: rq_kmeans, rq_vae, mmq")
