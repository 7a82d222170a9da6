"""The semantic-ID table as a prefix trie in dense per-level transition tables.

Beam search needs, for a batch of partial IDs, (a) which next codes keep the prefix valid and
(b) the id of the extended prefix. Both are table lookups here: level ``l`` has one row per
distinct length-``l`` prefix (row 0 at level 0 is the empty prefix) and one column per code;
``next_prefix[l][row, code]`` is the extended prefix's row (``-1`` = not in the table). After the
last level the row is an item index (the table must be collision-free, i.e. carry the de-dup
digit). Written here because no library provides a batched tensor trie for beam search.
"""

from __future__ import annotations

import numpy as np
import torch


class SemanticIdTrie:
    """Dense prefix trie over ``semantic_ids`` ``[num_items, code_length]`` (unique rows)."""

    def __init__(self, semantic_ids: np.ndarray, codebook_sizes: tuple[int, ...] | None = None) -> None:
        codes = np.asarray(semantic_ids)
        if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
            raise ValueError(f"semantic_ids must be a non-empty [num_items, code_length] array, got {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
            raise ValueError("semantic_ids must be non-negative integers")
        codes = codes.astype(np.int64)
        sizes = tuple(int(size) for size in (codebook_sizes or (codes.max(axis=0) + 1)))
        if len(sizes) != codes.shape[1] or (codes >= np.asarray(sizes)).any():
            raise ValueError(f"codebook_sizes {sizes} do not cover the codes (max {codes.max(axis=0).tolist()})")
        unique = np.unique(codes, axis=0)
        if len(unique) != len(codes):
            raise ValueError(f"{len(codes) - len(unique)} items share a semantic ID; add the de-dup digit "
                             "(SemanticIdConfig.dedup: true) so every generated ID names one item")
        self.semantic_ids = codes
        self.codebook_sizes = sizes
        self.code_length = codes.shape[1]
        self.num_items = codes.shape[0]
        tables, item_rows = [], []
        rows = np.zeros(self.num_items, dtype=np.int64)        # every item starts at the empty prefix
        num_rows = 1
        for level, size in enumerate(sizes):
            last = level == self.code_length - 1
            keys = rows * size + codes[:, level]
            if last:
                child = np.arange(self.num_items, dtype=np.int64)  # the final "prefix" is the item
            else:
                _, child = np.unique(keys, return_inverse=True)
            table = np.full((num_rows, size), -1, dtype=np.int64)
            table[rows, codes[:, level]] = child
            tables.append(torch.from_numpy(table))
            rows, num_rows = child, int(child.max()) + 1
            item_rows.append(torch.from_numpy(child))
        self.next_prefix = tables                               # level l: [prefixes_l, K_l]
        self.item_rows = item_rows                              # level l: each item's row in next_prefix[l]'s output
        self.subtree_sizes = [torch.bincount(rows_l) for rows_l in item_rows]  # items under each such row

    def to(self, device: torch.device | str) -> "SemanticIdTrie":
        """Move the transition tables to ``device``."""
        self.next_prefix = [table.to(device) for table in self.next_prefix]
        self.item_rows = [rows.to(device) for rows in self.item_rows]
        self.subtree_sizes = [sizes.to(device) for sizes in self.subtree_sizes]
        return self

    def exhausted(self, excluded: torch.Tensor) -> list[torch.Tensor]:
        """Per level ``l``, bool ``[users, rows]`` over the rows ``next_prefix[l]`` leads to: True where every item
        under that prefix is ``excluded`` (bool ``[users, num_items]``), i.e. the prefix can yield no allowed item.

        The last level's rows are the items, so its mask is ``excluded`` itself.
        """
        if excluded.ndim != 2 or excluded.shape[1] != self.num_items or excluded.dtype != torch.bool:
            raise ValueError(f"excluded must be a bool [users, {self.num_items}] mask, got {excluded.dtype} "
                             f"{tuple(excluded.shape)}")
        masks = []
        counts_source = excluded.to(torch.int32)
        for level, (rows, sizes) in enumerate(zip(self.item_rows, self.subtree_sizes)):
            if level == self.code_length - 1:
                masks.append(excluded)
                continue
            counts = torch.zeros(excluded.shape[0], len(sizes), dtype=torch.int32, device=excluded.device)
            counts.index_add_(1, rows, counts_source)
            masks.append(counts >= sizes)
        return masks

    def num_prefixes(self, level: int) -> int:
        """Number of distinct valid prefixes of length ``level``."""
        return int(self.next_prefix[level].shape[0])

    def contains(self, codes: np.ndarray) -> np.ndarray:
        """Whether each row of ``codes`` ``[n, code_length]`` is an item's SID (bool ``[n]``)."""
        return self.lookup(codes) >= 0

    def lookup(self, codes: np.ndarray) -> np.ndarray:
        """Item index of each full SID row (``-1`` when the SID is not in the table)."""
        codes = np.asarray(codes, dtype=np.int64)
        rows = np.zeros(len(codes), dtype=np.int64)
        for level, table in enumerate(self.next_prefix):
            table = table.cpu().numpy()
            level_codes = codes[:, level]
            ok = (rows >= 0) & (level_codes >= 0) & (level_codes < table.shape[1])
            rows = np.where(ok, table[np.where(ok, rows, 0), np.where(ok, level_codes, 0)], -1)
        return rows
