"""Ranking samples on the paper's protocol: rating > 3 positive, chronological 90/10 (docs/method.md §5.1).

Validation is the last 10% (by time) of the 90% training part, so model selection never sees the
test period. Long-tail buckets ([choice]): the items that occur in the test split, ranked by their
training exposure (number of training interactions); the top and bottom 25% of them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmq.data.schema import InteractionDataset
from mmq.data.splits import chronological_split

SPLITS = ("train", "valid", "test")


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

    def long_tail_items(self, fraction: float = 0.25) -> dict[str, np.ndarray]:
        """``{"head": items, "tail": items}``: top / bottom ``fraction`` of test items by exposure."""
        if not 0.0 < fraction <= 0.5:
            raise ValueError(f"long-tail fraction must be in (0, 0.5], got {fraction}")
        test_items = np.unique(self.splits["test"].items)
        order = test_items[np.argsort(self.train_exposure[test_items], kind="stable")]
        size = max(1, int(round(len(order) * fraction)))
        return {"head": order[-size:], "tail": order[:size]}


def ranking_data(dataset: InteractionDataset, *, test_fraction: float = 0.1, valid_fraction: float = 0.1,
                 positive_threshold: float = 3.0) -> RankingData:
    """Chronological split of ``dataset`` into labelled ranking samples."""
    split = chronological_split(dataset, test_fraction=test_fraction, valid_fraction=valid_fraction,
                                positive_threshold=positive_threshold)
    splits = {}
    for name in SPLITS:
        frame = getattr(split, name)
        splits[name] = RankingSplit(frame["user_index"].to_numpy(np.int64, copy=True),
                                    frame["item_index"].to_numpy(np.int64, copy=True),
                                    frame["label"].to_numpy(np.float32, copy=True))
        if len(np.unique(splits[name].labels)) < 2:
            raise ValueError(f"{dataset.name}: the {name} split has a single label class; AUC is undefined")
    num_users = int(dataset.interactions["user_index"].max()) + 1
    exposure = np.bincount(splits["train"].items, minlength=dataset.num_items).astype(np.int64)
    return RankingData(splits, num_users, dataset.num_items, exposure)
