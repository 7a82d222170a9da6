"""The one processed form every importer produces: an item table, interactions, an import report.

items:        item_index (0..n-1), item_id (publisher's id as string), text fields (str, may be
              empty), image (``archive.zip:member`` reference or ``""``)
interactions: user_index, user_id, item_index, position (order within the user, 0-based),
              timestamp (float seconds, NaN when the source has none), rating (float, NaN when unknown)
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

LOGGER = logging.getLogger(__name__)

INTERACTION_COLUMNS = ("user_index", "user_id", "item_index", "position", "timestamp", "rating")


class DataFormatError(ValueError):
    """A data file does not have the format its importer expects."""


@dataclasses.dataclass
class ImportReport:
    """Counts of everything an importer dropped, repaired or flagged, so nothing goes silently."""

    dataset: str
    counts: Counter = dataclasses.field(default_factory=Counter)
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def add(self, kind: str, count: int = 1, example: str | None = None) -> None:
        """Count ``count`` occurrences of ``kind`` (e.g. ``malformed_rows``), keeping a few examples."""
        if count <= 0:
            return
        self.counts[kind] += count
        if example is not None:
            bucket = self.examples.setdefault(kind, [])
            if len(bucket) < 3:
                bucket.append(example[:200])

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"dataset": self.dataset, "counts": dict(self.counts), "examples": self.examples}

    def log(self) -> None:
        """Log every non-zero count at WARNING level."""
        for kind, count in sorted(self.counts.items()):
            LOGGER.warning("%s: %d %s (e.g. %s)", self.dataset, count, kind, self.examples.get(kind, []))


@dataclasses.dataclass
class InteractionDataset:
    """Items + interactions + import report for one dataset (interactions may be empty)."""

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    report: ImportReport
    text_fields: tuple[str, ...]

    @property
    def num_items(self) -> int:
        """Number of items in the item table."""
        return len(self.items)

    @property
    def num_users(self) -> int:
        """Number of distinct users with interactions."""
        return int(self.interactions["user_index"].nunique()) if len(self.interactions) else 0

    def statistics(self) -> dict[str, Any]:
        """Users, items, interactions, density, sequence lengths, empty texts, images."""
        interactions = self.interactions
        stats: dict[str, Any] = {
            "dataset": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": int(len(interactions)),
        }
        if len(interactions):
            lengths = interactions.groupby("user_index").size()
            stats["density"] = float(len(interactions) / (stats["users"] * max(stats["items"], 1)))
            stats["mean_sequence_length"] = float(lengths.mean())
            stats["has_timestamps"] = bool(interactions["timestamp"].notna().any())
            stats["has_ratings"] = bool(interactions["rating"].notna().any())
        for field in self.text_fields:
            stats[f"empty_{field}"] = int((self.items[field].str.strip() == "").sum())
        if "image" in self.items:
            stats["items_with_image"] = int((self.items["image"] != "").sum())
        stats["import_report"] = dict(self.report.counts)
        return stats

    def sequences(self) -> list[np.ndarray]:
        """Each user's item indices in interaction order, indexed by ``user_index``."""
        ordered = self.interactions.sort_values(["user_index", "position"], kind="stable")
        boundaries = np.flatnonzero(np.diff(ordered["user_index"].to_numpy())) + 1
        return np.split(ordered["item_index"].to_numpy(dtype=np.int64), boundaries)


def build_dataset(
    name: str,
    items: pd.DataFrame,
    user_ids: list[str] | np.ndarray,
    item_ids: list[str] | np.ndarray,
    *,
    report: ImportReport,
    text_fields: tuple[str, ...],
    timestamps: np.ndarray | None = None,
    ratings: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> InteractionDataset:
    """Assemble the processed form from raw id columns; unknown item ids are counted and dropped."""
    if items["item_id"].duplicated().any():
        duplicated = items.loc[items["item_id"].duplicated(), "item_id"].head(3).tolist()
        raise DataFormatError(f"{name}: duplicated item ids in the item table, e.g. {duplicated}")
    items = items.reset_index(drop=True).copy()
    items.insert(0, "item_index", np.arange(len(items), dtype=np.int64))
    for field in text_fields:
        items[field] = items[field].fillna("").astype(str)
    frame = pd.DataFrame({"user_id": np.asarray(user_ids, dtype=object).astype(str),
                          "item_id": np.asarray(item_ids, dtype=object).astype(str)})
    frame["timestamp"] = np.nan if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    frame["rating"] = np.nan if ratings is None else np.asarray(ratings, dtype=np.float64)
    if positions is not None:
        frame["position"] = np.asarray(positions, dtype=np.int64)
    index_of_item = pd.Series(items["item_index"].to_numpy(), index=items["item_id"].to_numpy())
    frame["item_index"] = frame["item_id"].map(index_of_item)
    unknown = frame["item_index"].isna()
    if unknown.any():
        report.add("unknown_item_ids", int(unknown.sum()), example=str(frame.loc[unknown, "item_id"].iloc[0]))
        frame = frame.loc[~unknown]
    frame["item_index"] = frame["item_index"].astype(np.int64)
    return InteractionDataset(name, items, finalize_interactions(frame), report, text_fields)


def finalize_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Assign dense user indices (order of first appearance) and per-user positions."""
    frame = frame.copy()
    codes, _ = pd.factorize(frame["user_id"], sort=False)
    frame["user_index"] = codes.astype(np.int64)
    if "position" in frame:  # given order (e.g. P5 sequences); renumbered below to close gaps
        order = ["user_index", "position"]
    else:  # order within a user: by timestamp when known (stable, so file order breaks ties)
        order = ["user_index", "timestamp"] if frame["timestamp"].notna().all() else ["user_index"]
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    frame["position"] = frame.groupby("user_index").cumcount().astype(np.int64)
    return frame[list(INTERACTION_COLUMNS)]
