"""Iterated k-core filtering: drop users and items with fewer than k interactions until stable."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from mmq.data.schema import InteractionDataset, finalize_interactions

LOGGER = logging.getLogger(__name__)


def kcore_mask(user_index: np.ndarray, item_index: np.ndarray, k: int, max_rounds: int = 100) -> np.ndarray:
    """Boolean mask of interactions kept by the iterated ``k``-core on users and items."""
    keep = np.ones(len(user_index), dtype=bool)
    for _ in range(max_rounds):
        user_counts = np.bincount(user_index[keep], minlength=user_index.max(initial=-1) + 1)
        item_counts = np.bincount(item_index[keep], minlength=item_index.max(initial=-1) + 1)
        new_keep = keep & (user_counts[user_index] >= k) & (item_counts[item_index] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep
    raise RuntimeError(f"k-core did not converge in {max_rounds} rounds")


def apply_kcore(dataset: InteractionDataset, k: int) -> InteractionDataset:
    """Filter to the ``k``-core and re-index users and items densely (removals are reported)."""
    if k <= 1 or len(dataset.interactions) == 0:
        return dataset
    interactions = dataset.interactions
    keep = kcore_mask(interactions["user_index"].to_numpy(), interactions["item_index"].to_numpy(), k)
    kept = interactions.loc[keep]
    kept_items = np.unique(kept["item_index"].to_numpy())
    report = dataset.report
    report.add(f"interactions_removed_by_{k}core", int((~keep).sum()))
    report.add(f"users_removed_by_{k}core", dataset.num_users - int(kept["user_index"].nunique()))
    report.add(f"items_removed_by_{k}core", dataset.num_items - len(kept_items))
    items = dataset.items.iloc[kept_items].reset_index(drop=True)
    new_index = np.full(dataset.num_items, -1, dtype=np.int64)
    new_index[kept_items] = np.arange(len(kept_items))
    items["item_index"] = np.arange(len(items), dtype=np.int64)
    frame = kept.drop(columns=["user_index"]).copy()
    frame["item_index"] = new_index[frame["item_index"].to_numpy()]
    frame = frame.drop(columns=["position"])
    # positions are re-numbered 0..n-1 within each user, keeping the original order
    frame["position"] = frame.groupby("user_id", sort=False).cumcount().astype(np.int64)
    LOGGER.info("%s: %d-core kept %d/%d interactions", dataset.name, k, len(frame), len(interactions))
    return InteractionDataset(dataset.name, items, finalize_interactions(pd.DataFrame(frame)), report,
                              dataset.text_fields)
