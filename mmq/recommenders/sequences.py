"""Batching for sequential recommenders trained on *all positions of a sequence in one pass*.

SASRec, HeterRec and our generative retriever read a user's training prefix once and predict the
next item at every position (causal attention), instead of one sliding-window sample per target.
Sequences longer than ``max_length + 1`` are cut into consecutive windows (from the end), so every
training target appears exactly once, with up to ``max_length`` items of context.

Padding is ``-1`` everywhere; inputs are right-aligned (the most recent item in the last column).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

PAD = -1


def pad_histories(histories: Sequence[np.ndarray], max_history: int | None = None) -> np.ndarray:
    """Right-aligned ``[num_users, H]`` matrix of item indices, ``-1`` where shorter."""
    width = max_history or max((len(history) for history in histories), default=1)
    padded = np.full((len(histories), max(width, 1)), PAD, dtype=np.int64)
    for row, history in enumerate(histories):
        history = np.asarray(history, dtype=np.int64)[-width:]
        if len(history):
            padded[row, width - len(history):] = history
    return padded


@dataclasses.dataclass(frozen=True)
class TrainingWindows:
    """Right-aligned training windows: ``targets[:, t]`` is the item after ``inputs[:, :t+1]``."""

    inputs: np.ndarray    # [num_windows, max_length] item indices, -1 = padding
    targets: np.ndarray   # [num_windows, max_length] next item at each position, -1 = no target

    @property
    def num_targets(self) -> int:
        """Number of (position, next item) training pairs."""
        return int((self.targets >= 0).sum())

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


def training_windows(sequences: Sequence[np.ndarray], max_length: int = 20) -> TrainingWindows:
    """Cut each training sequence into right-aligned ``(inputs, next-item targets)`` windows.

    A sequence ``s`` of length ``n`` yields targets ``s[1:]``; windows of ``max_length`` targets are
    taken from the end, so the last window carries the most recent context. Sequences of length
    < 2 contribute nothing.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    inputs, targets = [], []
    for sequence in sequences:
        sequence = np.asarray(sequence, dtype=np.int64)
        if sequence.ndim != 1:
            raise ValueError(f"each sequence must be 1-D, got shape {sequence.shape}")
        for end in range(len(sequence), 1, -max_length):   # end = one past the last target
            start = max(1, end - max_length)                  # first target of this window
            window_targets = sequence[start:end]
            window_inputs = sequence[start - 1:end - 1]
            row_inputs = np.full(max_length, PAD, dtype=np.int64)
            row_targets = np.full(max_length, PAD, dtype=np.int64)
            row_inputs[max_length - len(window_inputs):] = window_inputs
            row_targets[max_length - len(window_targets):] = window_targets
            inputs.append(row_inputs)
            targets.append(row_targets)
    if not inputs:
        raise ValueError("no training targets: every sequence has fewer than 2 items")
    return TrainingWindows(inputs=np.stack(inputs), targets=np.stack(targets))


def iterate_batches(num_rows: int, batch_size: int, *, shuffle: bool, rng: np.random.Generator | None = None):
    """Yield index arrays of at most ``batch_size`` rows (shuffled with ``rng`` when asked)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = (rng or np.random.default_rng()).permutation(num_rows) if shuffle else np.arange(num_rows)
    for start in range(0, num_rows, batch_size):
        yield order[start:start + batch_size]


def next_item_samples(sequences: Sequence[np.ndarray], max_history: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """One (right-aligned history, next item) sample per target: TIGER's sliding-window samples.

    Returns ``histories`` ``[num_samples, max_history]`` (``-1`` padded) and ``targets``
    ``[num_samples]``; a sequence of length ``n`` gives ``n - 1`` samples.
    """
    histories, targets = [], []
    for sequence in sequences:
        sequence = np.asarray(sequence, dtype=np.int64)
        for end in range(1, len(sequence)):
            histories.append(sequence[max(0, end - max_history):end])
            targets.append(sequence[end])
    if not targets:
        raise ValueError("no training targets: every sequence has fewer than 2 items")
    return pad_histories(histories, max_history), np.asarray(targets, dtype=np.int64)


def length_bucketed_batches(inputs: np.ndarray, batch_size: int, *, rng: np.random.Generator):
    """Shuffled batches of rows with similar history lengths, each trimmed to its longest row.

    Rows are right-aligned with ``-1`` padding on the left; sorting by length (random tie order)
    and cutting the all-padding columns makes a batch cost what its sequences need, which on
    short-history data (Beauty: ~7 training items per user) roughly halves the transformer's work.
    Yields ``(row indices, first column to keep)``.
    """
    lengths = (inputs >= 0).sum(axis=1)
    order = np.lexsort((rng.random(len(lengths)), lengths))    # by length, random among equals
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    for index in rng.permutation(len(batches)):
        rows = batches[index]
        yield rows, inputs.shape[1] - int(lengths[rows].max())
