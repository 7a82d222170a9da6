"""Phase 1 lookup: the catalogue items under a semantic-ID prefix, as contiguous ranges of a sorted key array.

Each item's codes ``[L]`` are packed into one int64 key, level 0 in the most significant bits
(``bits_l = ceil(log2 K_l)``), and the items are sorted by key. The items whose codes start with a
length-``d`` prefix then form one contiguous run of the sorted keys, ``[prefix << s_d, (prefix + 1) << s_d)``
with ``s_d`` the bits of the levels after ``d``, found with two ``np.searchsorted`` calls.

Written by hand: faiss, scipy and the trie in :mod:`mmq.generative.sid_trie` answer "which item has this
exact ID" or "which code may follow", not "every item under this prefix, and how many", which is what a
coarse-to-fine candidate generator with backoff asks at every depth.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

MAX_KEY_BITS = 62  # int64 keys, with room for the (prefix + 1) upper bound


class Candidates(NamedTuple):
    """One query's phase-1 result."""

    items: np.ndarray  # [num_candidates] int64 item ids (each once)
    depth: int         # prefix length that produced them (0 = the whole catalogue)


def validate_codes(codes: np.ndarray, codebook_sizes: Sequence[int] | None = None, *,
                   name: str = "codes") -> tuple[np.ndarray, tuple[int, ...]]:
    """``codes`` as int64 ``[n, L]`` and the codebook sizes; ValueError on bad shape, dtype or range."""
    array = np.asarray(codes)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D array [n, code_length], got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if codebook_sizes is None:
        if array.shape[0] == 0:
            raise ValueError(f"{name} is empty and no codebook_sizes were given")
        codebook_sizes = (array.max(axis=0) + 1).tolist()
    sizes = tuple(int(size) for size in codebook_sizes)
    if len(sizes) != array.shape[1] or min(sizes) < 1:
        raise ValueError(f"codebook_sizes {sizes} must be positive, one per code position ({array.shape[1]})")
    if array.size and ((array < 0).any() or (array >= np.asarray(sizes)).any()):
        raise ValueError(f"{name} out of range: each column must lie in [0, K) for codebook_sizes {sizes} "
                         f"(min {array.min(axis=0).tolist()}, max {array.max(axis=0).tolist()})")
    return array, sizes


class PrefixIndex:
    """Items sorted by their packed semantic IDs; prefix -> item range lookups with hierarchical backoff."""

    def __init__(self, codes: np.ndarray, codebook_sizes: Sequence[int] | None = None) -> None:
        codes, self.codebook_sizes = validate_codes(codes, codebook_sizes)
        if codes.shape[0] == 0:
            raise ValueError("the catalogue is empty: PrefixIndex needs at least one item")
        self.num_items, self.code_length = codes.shape
        self.bits = tuple(max(1, math.ceil(math.log2(size))) for size in self.codebook_sizes)
        if sum(self.bits) > MAX_KEY_BITS:
            raise ValueError(f"codes need {sum(self.bits)} bits > {MAX_KEY_BITS}: too many levels to pack in int64")
        # shifts[d]: bits below a length-d prefix (shifts[L] = 0, shifts[0] = all bits)
        self.shifts = tuple(int(sum(self.bits[depth:])) for depth in range(self.code_length + 1))
        keys = self.pack(codes)
        self.order = np.argsort(keys, kind="stable")  # item ids in key order
        self.sorted_keys = keys[self.order]

    def pack(self, codes: np.ndarray) -> np.ndarray:
        """Full-length codes ``[n, L]`` -> int64 keys ``[n]`` (level 0 most significant)."""
        keys = np.zeros(codes.shape[0], dtype=np.int64)
        for level in range(self.code_length):
            keys = (keys << self.bits[level]) | codes[:, level]
        return keys

    def prefix_ranges(self, paths: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """``(start, stop)`` positions in key order of the distinct length-``depth`` prefixes of ``paths``."""
        if not 0 <= depth <= self.code_length:
            raise ValueError(f"depth must be in [0, {self.code_length}], got {depth}")
        prefixes = np.unique(self.pack(paths) >> self.shifts[depth])  # distinct prefixes -> disjoint ranges
        shift = self.shifts[depth]
        starts = np.searchsorted(self.sorted_keys, prefixes << shift, side="left")
        stops = np.searchsorted(self.sorted_keys, (prefixes + 1) << shift, side="left")
        return starts, stops

    def items_in(self, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """Item ids of the given key-order ranges (disjoint ranges: every item once)."""
        pieces = [self.order[start:stop] for start, stop in zip(starts.tolist(), stops.tolist()) if stop > start]
        return np.concatenate(pieces) if pieces else np.empty(0, dtype=np.int64)

    def candidates(self, paths: np.ndarray, min_candidates: int = 1,
                   first_order: np.ndarray | None = None) -> Candidates:
        """Items under the probed ``paths`` ``[P, L]`` (best first), backing off to shorter prefixes.

        All full-length paths first; while fewer than ``min_candidates`` items are collected, each path's prefix
        one level shorter is added, best path first, stopping as soon as ``min_candidates`` is reached (depth 0 =
        the whole catalogue, so ``min_candidates <= num_items`` is always met). Prefix ranges are nested or
        disjoint, so a shorter prefix's range replaces the ranges it contains and every item appears once.

        ``first_order`` (the query's level-0 codewords, nearest first) replaces the jump to depth 0 by the
        *ordered* backoff: the next-nearest level-0 cells are added one at a time until ``min_candidates`` is
        reached -- IVF's visiting order, with the level-0 codebook as the coarse quantizer.
        """
        paths, _ = validate_codes(paths, self.codebook_sizes, name="query paths")
        if paths.shape[0] == 0:
            raise ValueError("need at least one query path")
        if min_candidates < 0:
            raise ValueError(f"min_candidates must be >= 0, got {min_candidates}")
        full = self.pack(paths)
        cells = None
        if first_order is not None:                        # ordered backoff: never the whole catalogue at once
            cells = np.asarray(first_order, dtype=np.int64).reshape(-1)
            if cells.size and (cells.min() < 0 or cells.max() >= self.codebook_sizes[0]):
                raise ValueError(f"first_order codewords must lie in [0, {self.codebook_sizes[0]})")
        included: dict[int, int] = {}                      # start -> stop of the maximal ranges collected
        total = 0
        last_depth = 1 if cells is not None else 0
        for depth in range(self.code_length, last_depth - 1, -1):
            shift = self.shifts[depth]
            prefixes = full >> shift
            _, first = np.unique(prefixes, return_index=True)
            ordered = prefixes[np.sort(first)]             # distinct prefixes, best path first
            if depth == 1 and cells is not None:           # then the unprobed level-0 cells, nearest first
                ordered = np.concatenate([ordered, cells[~np.isin(cells, ordered)]])
            starts = np.searchsorted(self.sorted_keys, ordered << shift, side="left")
            stops = np.searchsorted(self.sorted_keys, (ordered + 1) << shift, side="left")
            for start, stop in zip(starts.tolist(), stops.tolist()):
                if stop <= start or included.get(start, -1) >= stop:
                    continue
                inner = [key for key in included if start <= key < stop]
                total += (stop - start) - sum(included.pop(key) - key for key in inner)
                included[start] = stop
                if total >= min_candidates and depth < self.code_length:
                    return Candidates(self.items_in(*self._ranges(included)), depth)
            if total >= min_candidates:
                return Candidates(self.items_in(*self._ranges(included)), depth)
        return Candidates(self.items_in(*self._ranges(included)), last_depth)

    @staticmethod
    def _ranges(included: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        starts = np.asarray(sorted(included), dtype=np.int64)
        return starts, np.asarray([included[start] for start in starts.tolist()], dtype=np.int64)

    def count_under(self, paths: np.ndarray, depth: int) -> int:
        """How many items lie under the length-``depth`` prefixes of ``paths`` (no materialisation)."""
        paths, _ = validate_codes(paths, self.codebook_sizes, name="query paths")
        starts, stops = self.prefix_ranges(paths, depth)
        return int((stops - starts).sum())
