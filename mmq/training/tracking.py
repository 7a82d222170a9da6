"""TensorBoard scalars for every training loop, through accelerate's tracker.

:func:`open_tracker` gives a tracker writing ``<run directory>/tensorboard/<name>/`` (git-ignored)
unless ``MMQ_TENSORBOARD=0`` (the test suite sets it); :func:`scalars` flattens one history record
(``{"epoch": 3, "loss": 6.8, "valid": {"ndcg@10": 0.04}}``) into named scalars
(``{"loss": 6.8, "valid/ndcg@10": 0.04}``). View with ``tensorboard --logdir checkpoints``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

TENSORBOARD_DIRECTORY = "tensorboard"


def tensorboard_enabled() -> bool:
    """Whether loops write TensorBoard scalars (``MMQ_TENSORBOARD`` unset or not ``0``)."""
    return os.environ.get("MMQ_TENSORBOARD", "1") != "0"


def scalars(record: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of ``record`` (nested mappings joined with ``/``), bools and the unit counter left out."""
    values: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            values.update(scalars(value, prefix=f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch" and math.isfinite(value):
            values[name] = float(value)
    return values


def open_tracker(directory: Path | None, name: str):
    """An accelerate ``TensorBoardTracker`` for ``directory`` (None without a directory or when disabled)."""
    if directory is None or not tensorboard_enabled():
        return None
    from accelerate.tracking import TensorBoardTracker  # imports tensorboard: only when scalars are written

    tracker = TensorBoardTracker(name.replace(" ", "_"), Path(directory) / TENSORBOARD_DIRECTORY)
    tracker.start()
    return tracker
