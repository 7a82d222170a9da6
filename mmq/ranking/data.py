"""Ranking samples: rating > 3 positive, under one of three protocols (docs/method.md §5.1).

- ``global`` (the paper's): chronological 90/10 over all ratings; validation is the last 10% (by time) of
  the 90% training part, so model selection never sees the test period.
- ``per_user``: each user's last 10% of ratings (by time) is test, the 10% before it validation, so every
  test user has training history (:func:`mmq.data.splits.per_user_chronological_split`).
- ``cold_items``: the per-user split, then a seeded 20% of the movies, stratified by popularity, are
  removed from training (their validation and test ratings stay); a model can score them only through
  content and SIDs. Their ID embeddings fall back to one shared unknown-item row.

Item buckets ([choice]): ``head`` / ``tail`` = the top / bottom 25% of the test items by training exposure
(number of training interactions); under ``cold_items`` also ``cold`` (the held-out movies) and ``warm``.
The split never depends on the run seed (``split_seed`` fixes it), so every run scores the same events.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmq.data.schema import InteractionDataset
from mmq.data.splits import chronological_split, per_user_chronological_split, popularity_stratified_items

SPLITS = ("train", "valid", "test")
PROTOCOLS = ("global", "per_user", "cold_items")


@dataclasses.dataclass
class RankingSplit:
    """One split's (user, item, label) arrays."""

    users: np.ndarray   # int64 [n]
    items: np.ndarray   # int64 [n]
    labels: np.ndarray  # float32 [n], 1 = rating > threshold

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass
class RankingData:
    """Train / valid / test samples plus catalogue sizes and training exposure per item."""

    splits: dict[str, RankingSplit]
    num_users: int
    num_items: int
    train_exposure: np.ndarray  # int64 [num_items]: training interactions per item
    cold_items: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def long_tail_items(self, fraction: float = 0.25) -> dict[str, np.ndarray]:
        """``{"head": items, "tail": items}``: top / bottom ``fraction`` of test items by exposure."""
        if not 0.0 < fraction <= 0.5:
            raise ValueError(f"long-tail fraction must be in (0, 0.5], got {fraction}")
        test_items = np.unique(self.splits["test"].items)
        order = test_items[np.argsort(self.train_exposure[test_items], kind="stable")]
        size = max(1, int(round(len(order) * fraction)))
        return {"head": order[-size:], "tail": order[:size]}

    def item_buckets(self, fraction: float = 0.25) -> dict[str, np.ndarray]:
        """The item sets AUC is also reported on: head / tail, plus cold / warm under ``cold_items``."""
        buckets = self.long_tail_items(fraction)
        if len(self.cold_items):
            buckets["cold"] = self.cold_items
            buckets["warm"] = np.setdiff1d(np.arange(self.num_items), self.cold_items)
        return buckets


def ranking_data(dataset: InteractionDataset, *, test_fraction: float = 0.1, valid_fraction: float = 0.1,
                 positive_threshold: float = 3.0, protocol: str = "global", cold_fraction: float = 0.2,
                 split_seed: int = 0) -> RankingData:
    """``dataset`` split into labelled ranking samples under ``protocol`` (module docstring)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    cold = np.zeros(0, dtype=np.int64)
    if protocol == "global":
        split = chronological_split(dataset, test_fraction=test_fraction, valid_fraction=valid_fraction,
                                    positive_threshold=positive_threshold)
    else:
        split = per_user_chronological_split(dataset, test_fraction=test_fraction, valid_fraction=valid_fraction,
                                             positive_threshold=positive_threshold, split_seed=split_seed)
    frames = {name: getattr(split, name) for name in SPLITS}
    if protocol == "cold_items":
        popularity = np.bincount(dataset.interactions["item_index"].to_numpy(), minlength=dataset.num_items)
        cold = popularity_stratified_items(popularity, cold_fraction, split_seed)
        train = frames["train"]
        frames["train"] = train.loc[~train["item_index"].isin(cold)].reset_index(drop=True)
        if not frames["test"]["item_index"].isin(cold).any():
            raise ValueError(f"{dataset.name}: no test rating falls on the {len(cold)} cold items")
    splits = {}
    for name in SPLITS:
        frame = frames[name]
        splits[name] = RankingSplit(frame["user_index"].to_numpy(np.int64, copy=True),
                                    frame["item_index"].to_numpy(np.int64, copy=True),
                                    frame["label"].to_numpy(np.float32, copy=True))
        if len(np.unique(splits[name].labels)) < 2:
            raise ValueError(f"{dataset.name}: the {name} split has a single label class; AUC is undefined")
    num_users = int(dataset.interactions["user_index"].max()) + 1
    exposure = np.bincount(splits["train"].items, minlength=dataset.num_items).astype(np.int64)
    return RankingData(splits, num_users, dataset.num_items, exposure, cold_items=cold)
