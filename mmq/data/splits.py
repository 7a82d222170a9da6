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


@dataclasses.dataclass(frozen=True)
class SequenceSplitConfig:
    """How the per-user sequences are cut for next-item tasks (docs/method.md §5.1).

    ``test_events``: the last ``test_events`` items of each user are test events (1 = leave-one-out, the paper's
    protocol); each is predicted from everything before it, and the item before them is the validation target.
    ``tie_shuffle_seed``: order a user's interactions with equal timestamps by a shuffle seeded with this value
    instead of the file order (MovieLens: by movieId); None keeps the dataset's order (P5 Beauty has no times).
    """

    test_events: int = 1
    tie_shuffle_seed: int | None = None

    def __post_init__(self) -> None:
        if self.test_events < 1:
            raise ValueError(f"test_events must be >= 1, got {self.test_events}")


@dataclasses.dataclass
class LeaveOneOutSplit:
    """Per-user sequences: training prefix, validation and test (history, target) pairs.

    With one test event per user (the default) ``test_*`` has one entry per user; with ``test_events`` = m it has m
    per user, user by user (``test_user`` names each event's user; ``test_seen`` its full history).
    """

    train_sequences: list[np.ndarray]   # seq[:-(m+1)], full length (training windows are cut later)
    valid_history: list[np.ndarray]     # train[-max_history:]
    valid_target: np.ndarray            # seq[-(m+1)]   [num_users]
    test_history: list[np.ndarray]      # seq[:t][-max_history:] per test event t
    test_target: np.ndarray             # seq[t]   [num_test_events]
    num_items: int
    max_history: int
    test_user: np.ndarray | None = None         # [num_test_events] user index; None = one event per user
    test_seen: list[np.ndarray] | None = None   # seq[:t] per test event; None = train + valid target

    def history_and_target(self, split: str) -> tuple[list[np.ndarray], np.ndarray]:
        """(histories, targets) of ``"valid"`` or ``"test"``."""
        if split == "valid":
            return self.valid_history, self.valid_target
        if split == "test":
            return self.test_history, self.test_target
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")

    def event_users(self, split: str) -> np.ndarray:
        """The user index of every ``"valid"`` / ``"test"`` event (one validation event per user)."""
        if split == "test" and self.test_user is not None:
            return self.test_user
        return np.arange(len(self.history_and_target(split)[1]))

    def seen_items(self, split: str) -> list[np.ndarray]:
        """Each event's full history before its ``"valid"`` or ``"test"`` target (every earlier item, not only
        the last ``max_history``): what history exclusion removes from the ranked list."""
        if split == "valid":
            return self.train_sequences
        if split == "test":
            if self.test_seen is not None:
                return self.test_seen
            return [np.append(sequence, target) for sequence, target in zip(self.train_sequences, self.valid_target)]
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")


def leave_one_out(dataset: InteractionDataset, max_history: int = 20, min_length: int = 3,
                  config: SequenceSplitConfig | None = None) -> LeaveOneOutSplit:
    """Leave-one-out split (``config.test_events`` = m > 1: the last m items are test events); users shorter than
    ``min_length`` (``max(min_length, m + 2)`` when m > 1) are an error."""
    config = config or SequenceSplitConfig()
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    sequences = dataset.sequences() if config.tie_shuffle_seed is None else \
        tie_shuffled_sequences(dataset, config.tie_shuffle_seed)
    events = config.test_events
    needed = min_length if events == 1 else max(min_length, events + 2)
    short = [index for index, sequence in enumerate(sequences) if len(sequence) < needed]
    if short:
        raise ValueError(f"{dataset.name}: {len(short)} users have fewer than {needed} interactions "
                         f"(e.g. user_index {short[0]}); apply a k-core filter first"
                         + (f" or use fewer test_events than {events}" if events > 1 else ""))
    train = [sequence[:-(events + 1)] for sequence in sequences]
    common = dict(train_sequences=train, valid_history=[sequence[-max_history:] for sequence in train],
                  valid_target=np.array([sequence[-(events + 1)] for sequence in sequences], dtype=np.int64),
                  num_items=dataset.num_items, max_history=max_history)
    if events == 1:
        return LeaveOneOutSplit(**common, test_history=[sequence[:-1][-max_history:] for sequence in sequences],
                                test_target=np.array([sequence[-1] for sequence in sequences], dtype=np.int64))
    positions = [(user, len(sequence) - events + offset) for user, sequence in enumerate(sequences)
                 for offset in range(events)]
    return LeaveOneOutSplit(
        **common,
        test_history=[sequences[user][:position][-max_history:] for user, position in positions],
        test_target=np.array([sequences[user][position] for user, position in positions], dtype=np.int64),
        test_user=np.array([user for user, _ in positions], dtype=np.int64),
        test_seen=[sequences[user][:position] for user, position in positions],
    )


def tie_shuffled_sequences(dataset: InteractionDataset, seed: int) -> list[np.ndarray]:
    """Each user's items by timestamp, equal timestamps ordered by a shuffle seeded with ``seed`` (not file order)."""
    interactions = dataset.interactions
    if interactions["timestamp"].isna().any():
        raise ValueError(f"{dataset.name}: tie_shuffle_seed needs a timestamp on every interaction "
                         "(P5-format data has none: its order is given)")
    frame = interactions[["user_index", "timestamp", "item_index"]].copy()
    frame["tiebreak"] = np.random.default_rng(seed).permutation(len(frame))
    frame = frame.sort_values(["user_index", "timestamp", "tiebreak"], kind="stable")
    boundaries = np.flatnonzero(np.diff(frame["user_index"].to_numpy())) + 1
    return np.split(frame["item_index"].to_numpy(dtype=np.int64), boundaries)


@dataclasses.dataclass
class ChronologicalSplit:
    """Time-ordered train / valid / test interaction tables with binary labels."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    train_end_time: float
    test_start_time: float


def _check_timed_split(dataset: InteractionDataset, name: str, test_fraction: float, valid_fraction: float, *,
                       upper: float) -> None:
    """Every interaction has a timestamp and a rating, and both fractions lie in (0, ``upper``)."""
    interactions = dataset.interactions
    if interactions["timestamp"].isna().any() or interactions["rating"].isna().any():
        raise ValueError(f"{dataset.name}: the {name} split needs timestamps and ratings for every interaction "
                         "(P5-format Amazon data has neither; use leave_one_out)")
    for field, fraction in (("test_fraction", test_fraction), ("valid_fraction", valid_fraction)):
        if not 0.0 < fraction < upper:
            raise ValueError(f"{field} must be in (0, {upper:g}), got {fraction}")


def chronological_split(dataset: InteractionDataset, *, test_fraction: float = 0.1,
                        valid_fraction: float = 0.1, positive_threshold: float = 3.0) -> ChronologicalSplit:
    """Global time split 90/10 (validation = tail of train); label = rating > ``positive_threshold``."""
    _check_timed_split(dataset, "chronological", test_fraction, valid_fraction, upper=1.0)
    interactions = dataset.interactions
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


def per_user_chronological_split(dataset: InteractionDataset, *, test_fraction: float = 0.1,
                                 valid_fraction: float = 0.1, positive_threshold: float = 3.0,
                                 split_seed: int = 0) -> ChronologicalSplit:
    """Per-user time split: each user's last ``test_fraction`` of ratings (by time) is test, the
    ``valid_fraction`` before them validation, the rest training, so every test user has training history.

    Counts per user of ``n`` ratings: ``max(1, round(test_fraction * n))`` test and ``max(1, round(valid_fraction
    * n))`` validation; a user with fewer than 3 ratings keeps all of them in training. [choice] Ratings with
    equal timestamps are ordered by a shuffle seeded with ``split_seed`` (not by item id), the same for every
    run seed, so every run scores the same events. ``train_end_time`` / ``test_start_time`` are NaN: the cut
    differs per user.
    """
    _check_timed_split(dataset, "per-user chronological", test_fraction, valid_fraction, upper=0.5)
    frame = dataset.interactions.copy()
    frame["label"] = (frame["rating"] > positive_threshold).astype(np.int8)
    frame["tiebreak"] = np.random.default_rng(split_seed).permutation(len(frame))
    frame = frame.sort_values(["user_index", "timestamp", "tiebreak"], kind="stable").reset_index(drop=True)
    sizes = frame.groupby("user_index", sort=False)["user_index"].transform("size").to_numpy()
    rank = frame.groupby("user_index", sort=False).cumcount().to_numpy()  # 0-based position in time
    num_test = np.maximum(1, np.rint(test_fraction * sizes)).astype(np.int64)
    num_valid = np.maximum(1, np.rint(valid_fraction * sizes)).astype(np.int64)
    eligible = sizes >= 3
    is_test = eligible & (rank >= sizes - num_test)
    is_valid = eligible & ~is_test & (rank >= sizes - num_test - num_valid)
    parts = {}
    for name, rows in (("train", ~is_test & ~is_valid), ("valid", is_valid), ("test", is_test)):
        part = frame.loc[rows].drop(columns="tiebreak")
        parts[name] = part.sort_values(["timestamp", "user_index", "position"], kind="stable").reset_index(drop=True)
        if parts[name].empty:
            raise ValueError(f"{dataset.name}: the per-user split leaves the {name} part empty")
    return ChronologicalSplit(train=parts["train"], valid=parts["valid"], test=parts["test"],
                              train_end_time=float("nan"), test_start_time=float("nan"))


def popularity_stratified_items(counts: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` of the items, stratified by popularity: items sorted by ``counts`` (ties by index)
    fall into consecutive strata of ``round(1 / fraction)`` items, and one item is drawn from each stratum
    (a last, partial stratum gives one item with probability size / stratum). Sorted item indices."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    counts = np.asarray(counts)
    stride = max(1, int(round(1.0 / fraction)))
    order = np.lexsort((np.arange(len(counts)), counts))  # by popularity, ties by item index
    rng = np.random.default_rng(seed)
    chosen = []
    for start in range(0, len(order), stride):
        pick = int(rng.integers(0, stride))
        if start + pick < len(order):
            chosen.append(order[start + pick])
    return np.sort(np.asarray(chosen, dtype=np.int64))
