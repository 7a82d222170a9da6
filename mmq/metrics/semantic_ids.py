"""Quality diagnostics for semantic IDs (SIDs): entropy, utilisation, balance and collisions (docs/method.md §3.3)."""

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


def code_perplexity(codes: np.ndarray) -> np.ndarray:
    """exp(entropy) of each position's code distribution, shape [code_length]: the effective number of codes."""
    return np.exp(code_entropy(codes))


def largest_bucket(codes: np.ndarray) -> np.ndarray:
    """Items holding each position's most common code, shape [code_length] (int64)."""
    codes = _validate_codes(codes)
    return np.array([np.bincount(codes[:, position]).max() for position in range(codes.shape[1])], dtype=np.int64)


def gini_coefficient(sizes: np.ndarray) -> float:
    """Gini coefficient of non-negative bucket sizes: 0 for equal buckets, (n-1)/n for one full bucket of n.

    Mean absolute difference over all ordered pairs divided by twice the mean,
    ``sum_ij |x_i - x_j| / (2 n^2 mean(x))``, computed from the sorted sizes.
    """
    sizes = np.sort(np.asarray(sizes, dtype=np.float64))
    if sizes.ndim != 1 or sizes.size == 0 or (sizes < 0).any() or sizes.sum() == 0:
        raise ValueError("gini_coefficient needs a non-empty 1-D array of non-negative sizes with a positive sum")
    count = sizes.size
    ranks = np.arange(1, count + 1)
    return float(2.0 * np.sum(ranks * sizes) / (count * sizes.sum()) - (count + 1) / count)


def bucket_gini(codes: np.ndarray, codebook_size: int | Sequence[int]) -> np.ndarray:
    """Gini coefficient of each position's bucket sizes over all K codes (unused codes count as 0), [code_length]."""
    codes = _validate_codes(codes)
    sizes = _codebook_sizes(codes, codebook_size)
    return np.array([gini_coefficient(np.bincount(codes[:, position], minlength=int(sizes[position])))
                     for position in range(codes.shape[1])])


def largest_prefix_bucket(codes: np.ndarray) -> np.ndarray:
    """Items sharing the most common prefix of length 1, 2, ..., code_length, shape [code_length] (int64).

    The last entry is the largest group of items with the same full SID; the values never increase.
    """
    codes = _validate_codes(codes)
    return np.array([np.unique(codes[:, :level], axis=0, return_counts=True)[1].max()
                     for level in range(1, codes.shape[1] + 1)], dtype=np.int64)


def semantic_id_quality(codes: np.ndarray, codebook_size: int | Sequence[int]) -> dict[str, float | int | list]:
    """JSON-serialisable summary of entropy, utilisation, bucket balance and collisions for a set of semantic IDs.

    Balance keys (per position and their mean over positions): ``perplexity`` = exp(entropy),
    ``largest_bucket`` (items holding the most common code; ``_fraction`` of all items) and ``gini``
    (of bucket sizes over all K codes); per prefix level 1..L, ``largest_prefix_bucket``.
    """
    codes = _validate_codes(codes)
    entropy = code_entropy(codes)
    utilization = codebook_utilization(codes, codebook_size)
    perplexity = np.exp(entropy)
    largest = largest_bucket(codes)
    largest_fraction = largest / codes.shape[0]
    gini = bucket_gini(codes, codebook_size)
    largest_prefix = largest_prefix_bucket(codes)
    return {
        "entropy_mean": float(entropy.mean()),
        "entropy_per_position": [float(value) for value in entropy],
        "utilization_mean": float(utilization.mean()),
        "utilization_per_position": [float(value) for value in utilization],
        "collision_rate": collision_rate(codes),
        "unique_ids": num_unique_ids(codes),
        "num_items": int(codes.shape[0]),
        "perplexity_mean": float(perplexity.mean()),
        "perplexity_per_position": [float(value) for value in perplexity],
        "largest_bucket_mean": float(largest.mean()),
        "largest_bucket_per_position": [int(value) for value in largest],
        "largest_bucket_fraction_mean": float(largest_fraction.mean()),
        "largest_bucket_fraction_per_position": [float(value) for value in largest_fraction],
        "gini_mean": float(gini.mean()),
        "gini_per_position": [float(value) for value in gini],
        "largest_prefix_bucket_per_level": [int(value) for value in largest_prefix],
        "largest_prefix_bucket_fraction_per_level": [float(value) / codes.shape[0] for value in largest_prefix],
    }


BALANCE_COLUMNS = ("perplexity_min", "largest_bucket_max", "gini_mean", "largest_sid_bucket")


def balance_columns(quality: dict) -> dict[str, float]:
    """The balance columns of the tokenizer-quality tables from a :func:`semantic_id_quality` summary: the worst
    position's perplexity and largest bucket (items holding one code), the mean Gini of bucket sizes, and the
    most items sharing one full SID before the de-dup digit. {} for summaries made before these keys existed."""
    if "perplexity_per_position" not in quality:
        return {}
    return {"perplexity_min": float(min(quality["perplexity_per_position"])),
            "largest_bucket_max": float(max(quality["largest_bucket_per_position"])),
            "gini_mean": float(quality["gini_mean"]),
            "largest_sid_bucket": float(quality["largest_prefix_bucket_per_level"][-1])}


def position_mutual_information(codes: np.ndarray) -> np.ndarray:
    """Normalised mutual information between every pair of SID positions, ``[L, L]`` (diagonal 1).

    0 = the positions carry independent information, 1 = one position determines the other (redundant codes).
    scikit-learn's ``normalized_mutual_info_score`` (arithmetic normalisation) on the per-item codes.
    """
    from sklearn.metrics import normalized_mutual_info_score

    codes = _validate_codes(codes)
    length = codes.shape[1]
    matrix = np.eye(length)
    for first in range(length):
        for second in range(first + 1, length):
            value = normalized_mutual_info_score(codes[:, first], codes[:, second])
            matrix[first, second] = matrix[second, first] = value
    return matrix
