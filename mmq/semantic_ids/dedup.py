"""De-duplication digit for semantic IDs, and a stable hash of a saved SID table.

Items that share a full SID get an extra trailing digit 0, 1, 2, ... in item order (TIGER's
collision handling); items with a unique SID get 0. Prefixes are never changed.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from mmq.metrics.semantic_ids import collision_rate

logger = logging.getLogger(__name__)


def _validate(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise ValueError(f"codes must be a 2-D array [num_items, code_length], got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be integers, got dtype {codes.dtype}")
    return codes.astype(np.int64, copy=False)


def sid_collision_rate(codes: np.ndarray) -> float:
    """Fraction of items whose full SID is shared with at least one other item."""
    return collision_rate(_validate(codes))


def dedup_digits(codes: np.ndarray) -> np.ndarray:
    """Rank of each item among the items sharing its SID, in item order, int64 ``[n]``."""
    codes = _validate(codes)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")  # groups contiguous, item order inside a group
    sorted_groups = inverse[order]
    group_start = np.searchsorted(sorted_groups, sorted_groups, side="left")
    digits = np.empty(codes.shape[0], dtype=np.int64)
    digits[order] = np.arange(order.size) - group_start
    return digits


def append_dedup_digit(codes: np.ndarray) -> np.ndarray:
    """Append the de-dup digit: ``[n, L] -> [n, L + 1]``, every row unique; logs collision rates."""
    codes = _validate(codes)
    deduplicated = np.concatenate([codes, dedup_digits(codes)[:, None]], axis=1)
    logger.info("SID collision rate %.4f -> %.4f after de-dup digit (max digit %d)",
                sid_collision_rate(codes), sid_collision_rate(deduplicated),
                int(deduplicated[:, -1].max()))
    return deduplicated


def dedup_report(codes: np.ndarray) -> dict:
    """Collision statistics of ``codes`` before and after :func:`append_dedup_digit`."""
    codes = _validate(codes)
    digits = dedup_digits(codes)
    after = np.concatenate([codes, digits[:, None]], axis=1)
    return {
        "collision_rate_before": sid_collision_rate(codes),
        "collision_rate_after": sid_collision_rate(after),
        "num_unique_sids_before": int(np.unique(codes, axis=0).shape[0]),
        "dedup_digit_size": int(digits.max()) + 1,  # codebook size the extra position needs
    }


def sid_table_hash(codes: np.ndarray) -> str:
    """sha256 hex of the SID table: shape, then the int64 little-endian C-order bytes."""
    codes = _validate(codes)
    digest = hashlib.sha256()
    digest.update(repr(tuple(int(size) for size in codes.shape)).encode("ascii"))
    digest.update(np.ascontiguousarray(codes, dtype="<i8").tobytes())
    return digest.hexdigest()


def stable_dedup_digits(codes: np.ndarray, previous_codes: np.ndarray, previous_digits: np.ndarray) -> np.ndarray:
    """De-dup digits that only change for items whose semantic code changed (stage 2, docs/method.md §4.6).

    Items with the same codes as before keep their digit (they stay unique: their (code, digit) pairs were);
    every other item, in item order, takes the smallest digit no item of its new code group holds yet.
    """
    codes, previous_codes = _validate(codes), _validate(previous_codes)
    previous_digits = np.asarray(previous_digits, dtype=np.int64)
    if codes.shape != previous_codes.shape or previous_digits.shape != (codes.shape[0],):
        raise ValueError(f"codes {codes.shape}, previous codes {previous_codes.shape} and previous digits "
                         f"{previous_digits.shape} must describe the same items")
    unchanged = (codes == previous_codes).all(axis=1)
    digits = np.where(unchanged, previous_digits, -1)
    taken: dict[tuple, set[int]] = {}
    for item in np.flatnonzero(unchanged):
        taken.setdefault(tuple(codes[item]), set()).add(int(digits[item]))
    for item in np.flatnonzero(~unchanged):
        used = taken.setdefault(tuple(codes[item]), set())
        digit = 0
        while digit in used:
            digit += 1
        used.add(digit)
        digits[item] = digit
    return digits
