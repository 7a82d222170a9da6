"""The two evaluation protocols of docs/method.md §5.1.

* Leave-one-out (TIGER / P5, generative retrieval): per user, the last item is the test target,
  the second-last the validation target, the rest is training; histories keep the last
  ``max_history`` items (20).
* Chronological (ranking, PPNet): all interactions sorted by time; the first 90% train, the last
  10% test; label = rating > 3. [choice] validation = the last ``valid_fraction`` of the training
  part by time (so selection never sees test).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mmq.data.schema import InteractionDataset


@dataclasses.dataclass
class LeaveOneOutSplit:
    """Per-user sequences: training prefix, validation and test (history, target) pairs."""

    train_sequences: list[np.ndarray]   # seq[:-2], full length (training windows are cut later)
    valid_history: list[np.ndarray]     # seq[:-2][-max_history:]
    valid_target: np.ndarray            # seq[-2]   [num_users]
    test_history: list[np.ndarray]      # seq[:-1][-max_history:]
    test_target: np.ndarray             # seq[-1]   [num_users]
    num_items: int
    max_history: int

    def history_and_target(self, split: str) -> tuple[list[np.ndarray], np.ndarray]:
        """(histories, targets) of ``"valid"`` or ``"test"``."""
        if split == "valid":
            return self.valid_history, self.valid_target
        if split == "test":
            return self.test_history, self.test_target
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")


def leave_one_out(dataset: InteractionDataset, max_history: int = 20, min_length: int = 3) -> LeaveOneOutSplit:
    """Leave-one-out split; users shorter than ``min_length`` (default 3) are an error."""
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    sequences = dataset.sequences()
    short = [index for index, sequence in enumerate(sequences) if len(sequence) < min_length]
    if short:
        raise ValueError(f"{dataset.name}: {len(short)} users have fewer than {min_length} interactions "
                         f"(e.g. user_index {short[0]}); apply a k-core filter first")
    return LeaveOneOutSplit(
        train_sequences=[sequence[:-2] for sequence in sequences],
        valid_history=[sequence[:-2][-max_history:] for sequence in sequences],
        valid_target=np.array([sequence[-2] for sequence in sequences], dtype=np.int64),
        test_history=[sequence[:-1][-max_history:] for sequence in sequences],
        test_target=np.array([sequence[-1] for sequence in sequences], dtype=np.int64),
        num_items=dataset.num_items,
        max_history=max_history,
    )


@dataclasses.dataclass
class ChronologicalSplit:
    """Time-ordered train / valid / test interaction tables with binary labels."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    train_end_time: float
    test_start_time: float


def chronological_split(dataset: InteractionDataset, *, test_fraction: float = 0.1,
                        valid_fraction: float = 0.1, positive_threshold: float = 3.0) -> ChronologicalSplit:
    """Global time split 90/10 (validation = tail of train); label = rating > ``positive_threshold``."""
    interactions = dataset.interactions
    if interactions["timestamp"].isna().any() or interactions["rating"].isna().any():
        raise ValueError(f"{dataset.name}: the chronological split needs timestamps and ratings for every "
                         "interaction (P5-format Amazon data has neither; use leave_one_out)")
    for name, fraction in (("test_fraction", test_fraction), ("valid_fraction", valid_fraction)):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {fraction}")
    ordered = interactions.sort_values(["timestamp", "user_index", "position"], kind="stable").reset_index(drop=True)
    ordered["label"] = (ordered["rating"] > positive_threshold).astype(np.int8)
    timestamps = ordered["timestamp"].to_numpy()
    # cut at a time boundary: interactions sharing the cut's timestamp all go to the later part,
    # so no training interaction is as late as a test one
    test_start = int(np.searchsorted(timestamps, timestamps[int(round(len(ordered) * (1.0 - test_fraction)))]))
    valid_start = int(np.searchsorted(timestamps, timestamps[int(round(test_start * (1.0 - valid_fraction)))]))
    if valid_start == 0 or test_start == valid_start or test_start == len(ordered):
        raise ValueError(f"{dataset.name}: too few distinct timestamps for a {1 - test_fraction:.0%} / "
                         f"{test_fraction:.0%} chronological split with validation")
    return ChronologicalSplit(
        train=ordered.iloc[:valid_start].reset_index(drop=True),
        valid=ordered.iloc[valid_start:test_start].reset_index(drop=True),
        test=ordered.iloc[test_start:].reset_index(drop=True),
        train_end_time=float(ordered["timestamp"].iloc[test_start - 1]),
        test_start_time=float(ordered["timestamp"].iloc[test_start]),
    )
