"""Loaded data is checked against the dataset's published statistics (``expected:`` in its YAML).

A truncated ``ratings.csv`` or a half-copied ``user_sequence.txt`` imports without any parse error
and would train silently on part of the data. ``load_dataset`` therefore compares users, items and
interactions with the published counts whenever the dataset is loaded at its default k-core (other
k-cores have no published numbers) and raises :class:`DataMismatchError` on any difference, unless
the caller allows it: ``allow_mismatch=True``, ``MMQ_ALLOW_DATA_MISMATCH=1`` in the environment, or
``scripts/prepare_data.py --allow-mismatch``.
"""

from __future__ import annotations

import logging
import os

from mmq.data.schema import InteractionDataset

LOGGER = logging.getLogger(__name__)
ALLOW_ENVIRONMENT_VARIABLE = "MMQ_ALLOW_DATA_MISMATCH"


class DataMismatchError(ValueError):
    """A dataset loaded with other users / items / interactions than its published statistics."""

    def __init__(self, message: str, differences: dict[str, tuple[int, int]]):
        super().__init__(message)
        self.differences = differences  # count name -> (got, expected)


def mismatch_allowed(allow_mismatch: bool = False) -> bool:
    """True when the caller or ``MMQ_ALLOW_DATA_MISMATCH`` (1 / true / yes) allows a mismatch."""
    flag = os.environ.get(ALLOW_ENVIRONMENT_VARIABLE, "").strip().lower()
    return allow_mismatch or flag in ("1", "true", "yes")


def observed_counts(dataset: InteractionDataset) -> dict[str, int]:
    """Users, items and interactions of a processed dataset."""
    return {"users": dataset.num_users, "items": dataset.num_items, "interactions": int(len(dataset.interactions))}


def statistics_differences(dataset: InteractionDataset, expected: dict[str, int]) -> dict[str, tuple[int, int]]:
    """``{count: (got, expected)}`` for every published count the dataset does not match."""
    observed = observed_counts(dataset)
    return {key: (observed[key], value) for key, value in expected.items() if observed[key] != value}


def check_expected(name: str, dataset: InteractionDataset, expected: dict[str, int], *, config_path=None,
                   source_files: tuple[str, ...] = (), allow_mismatch: bool = False) -> None:
    """Raise DataMismatchError (or only warn, when allowed) if ``dataset`` differs from ``expected``."""
    differences = statistics_differences(dataset, expected)
    if not differences:
        return
    lines = [f"  {key}: got {got:,}, expected {want:,}" for key, (got, want) in differences.items()]
    where = f" (published statistics from {config_path})" if config_path else ""
    if mismatch_allowed(allow_mismatch):
        LOGGER.warning("dataset %r differs from its published statistics%s, allowed:\n%s", name, where,
                       "\n".join(lines))
        return
    files = ", ".join(source_files) or "its source files"
    raise DataMismatchError(
        f"dataset {name!r} does not match its published statistics{where}:\n" + "\n".join(lines) + "\n"
        f"A truncated, partly copied or edited source file ({files}) would train silently on other data. "
        "Check the files (python scripts/download_data.py --verify). If the difference is intended, allow it: "
        "load_dataset(..., allow_mismatch=True) in code, MMQ_ALLOW_DATA_MISMATCH=1 in the environment (runs), "
        "or python scripts/prepare_data.py --allow-mismatch; for your own dataset, correct `expected:` in its YAML.",
        differences)
