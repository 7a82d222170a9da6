"""Quality diagnostics for semantic IDs (SIDs): entropy, codebook utilisation and collisions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _validate_codes(codes: np.ndarray) -> np.ndarray:
    """Check codes form a non-empty 2-D array of non-negative integers."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D array [num_items, code_length], got shape {codes.shape}")
    if codes.shape[0] == 0 or codes.shape[1] == 0:
        raise ValueError(f"codes is empty (shape {codes.shape})")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
    if codes.min() < 0:
        raise ValueError(f"codes must be non-negative, found {int(codes.min())}")
    return codes.astype(np.int64)


def _codebook_sizes(codes: np.ndarray, codebook_size: int | Sequence[int]) -> np.ndarray:
    """Broadcast codebook_size to one size per position and check every code is below it."""
    sizes = np.asarray(codebook_size, dtype=np.int64)
    if sizes.ndim == 0:
        sizes = np.full(codes.shape[1], int(sizes), dtype=np.int64)
    if sizes.shape != (codes.shape[1],):
        raise ValueError(f"codebook_size has {sizes.size} entries but codes have {codes.shape[1]} positions")
    if (sizes <= 0).any():
        raise ValueError(f"codebook sizes must be positive, got {sizes.tolist()}")
    out_of_range = codes >= sizes[None, :]
    if out_of_range.any():
        position = int(np.nonzero(out_of_range.any(axis=0))[0][0])
        raise ValueError(
            f"code {int(codes[:, position].max())} at position {position} is out of range "
            f"for codebook size {int(sizes[position])}"
        )
    return sizes


def items_per_code(codes: np.ndarray, position: int, codebook_size: int | None = None) -> np.ndarray:
    """Count items assigned to each code value at one position (length codebook_size if given)."""
    codes = _validate_codes(codes)
    if not -codes.shape[1] <= position < codes.shape[1]:
        raise ValueError(f"position {position} out of range for code length {codes.shape[1]}")
    column = codes[:, position]
    if codebook_size is not None and column.max() >= codebook_size:
        raise ValueError(f"code {int(column.max())} at position {position} >= codebook size {codebook_size}")
    return np.bincount(column, minlength=codebook_size or 0)


def code_entropy(codes: np.ndarray) -> np.ndarray:
    """Natural-log entropy of the code distribution at each position, shape [code_length]."""
    codes = _validate_codes(codes)
    entropies = np.empty(codes.shape[1])
    for position in range(codes.shape[1]):
        counts = np.bincount(codes[:, position])
        probabilities = counts[counts > 0] / codes.shape[0]
        entropies[position] = -np.sum(probabilities * np.log(probabilities))
    return entropies


def codebook_utilization(codes: np.ndarray, codebook_size: int | Sequence[int]) -> np.ndarray:
    """Fraction of each position's codebook that is used by at least one item, shape [code_length]."""
    codes = _validate_codes(codes)
    sizes = _codebook_sizes(codes, codebook_size)
    used = np.array([np.unique(codes[:, position]).size for position in range(codes.shape[1])])
    return used / sizes


def num_unique_ids(codes: np.ndarray) -> int:
    """Number of distinct full semantic IDs (rows) among the items."""
    codes = _validate_codes(codes)
    return int(np.unique(codes, axis=0).shape[0])


def collision_rate(codes: np.ndarray) -> float:
    """Fraction of items whose full semantic ID is shared with at least one other item."""
    codes = _validate_codes(codes)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float(np.mean(counts[inverse.ravel()] > 1))


def semantic_id_quality(codes: np.ndarray, codebook_size: int | Sequence[int]) -> dict[str, float | int | list]:
    """JSON-serialisable summary of entropy, utilisation and collisions for a set of semantic IDs."""
    codes = _validate_codes(codes)
    entropy = code_entropy(codes)
    utilization = codebook_utilization(codes, codebook_size)
    return {
        "entropy_mean": float(entropy.mean()),
        "entropy_per_position": [float(value) for value in entropy],
        "utilization_mean": float(utilization.mean()),
        "utilization_per_position": [float(value) for value in utilization],
        "collision_rate": collision_rate(codes),
        "unique_ids": num_unique_ids(codes),
        "num_items": int(codes.shape[0]),
    }
