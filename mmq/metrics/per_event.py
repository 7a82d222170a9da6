"""Per-event results of a run's final evaluations, kept beside ``report.json`` for paired intervals.

A comparison between two runs is a paired interval over test events (bootstrap), so every run keeps,
for each validation and test event scored by its final chosen model (never the validations made
during training), what its metrics need. The file is ``<run folder>/per_event.npz``: a zip of
``.npy`` members, deflated (the layout ``np.savez_compressed`` writes; ``np.load`` reads it), with
fixed member timestamps so equal arrays give equal bytes. The run's metrics record it as::

    "per_event": {"path": "per_event.npz", "sha256": "<hex sha256 of the file bytes>",
                  "arrays": ["valid_rank", "valid_user", ...]}

Arrays by task (``<split>`` is ``valid`` and ``test``; events in the split's order):

Next-item retrieval (generative retrieval, SASRec; leave-one-out, one event per user, user order)
    ``<split>_rank``  int32 ``[events]``: 1-based rank of the target in the evaluated top-k list
                      after history exclusion; 0 = the target is not in the list.
    ``<split>_user``  int32 ``[events]``: the user index of the event.
    ``k``             int32 scalar: the length of the ranked list (beam size / largest cut-off).
    ``recall@c`` = mean(1 <= rank <= c); ``ndcg@c`` = mean(1 / log2(rank + 1) where 1 <= rank <= c,
    else 0), for c <= k (:func:`mmq.recommenders.evaluation.metrics_from_ranks` gives the report's
    values exactly).

Ranking (PPNet; chronological samples)
    ``<split>_score``  float32 ``[samples]``: the model's logit.
    ``<split>_label``  int8 ``[samples]``: 1 = positive (rating above the threshold).
    ``<split>_user``, ``<split>_item``  int32 ``[samples]``: user and item index.
    ``auc`` = :func:`mmq.metrics.auc` (label, score); ``gauc`` = :func:`mmq.metrics.gauc` (user, label, score).

A run whose re-scored validation differs from the validation metrics it reported (SASRec reports the
metrics of the training-time validation) lists that split under ``"differs_from_report"``.
Runs made before this file existed have no ``per_event`` entry; :func:`load_per_event` gives None.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmq.artifacts import atomic_path, sha256_of_file

PER_EVENT_FILE = "per_event.npz"
ALLOWED_DTYPES = (np.dtype(np.int8), np.dtype(np.int32), np.dtype(np.float32))
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)   # fixed member timestamps: same arrays -> same bytes -> same sha256


class PerEventError(ValueError):
    """A run's per-event file is missing, altered, or does not hold the arrays its report names."""


def save_per_event(directory: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Write ``arrays`` to ``directory/per_event.npz`` atomically; return the report entry (path, sha256, names)."""
    if not arrays:
        raise ValueError("no per-event arrays to save")
    for name, values in arrays.items():
        if not _NAME.match(name):
            raise ValueError(f"per-event array name {name!r} must be letters, digits and underscores")
        if not isinstance(values, np.ndarray) or values.dtype not in ALLOWED_DTYPES or values.ndim > 1:
            raise ValueError(f"per-event array {name!r} must be a 0-D or 1-D numpy array of int8, int32 or float32, "
                             f"got {type(values).__name__} {getattr(values, 'dtype', '')} "
                             f"{getattr(values, 'shape', '')}")
    path = Path(directory) / PER_EVENT_FILE
    with atomic_path(path) as temporary:
        with zipfile.ZipFile(temporary, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, values in arrays.items():
                member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
                member.compress_type = zipfile.ZIP_DEFLATED
                member.external_attr = 0o644 << 16
                with archive.open(member, mode="w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, values, allow_pickle=False)
    return {"path": PER_EVENT_FILE, "sha256": sha256_of_file(path), "arrays": list(arrays)}


def load_per_event(directory: str | os.PathLike, report_metrics: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The per-event arrays a run recorded (sha256-checked); None when its metrics have no ``per_event`` entry."""
    entry = report_metrics.get("per_event")
    if entry is None:
        return None
    path = Path(directory) / entry["path"]
    if not path.exists():
        raise PerEventError(f"{path} is missing but the run's report records it (sha256 {entry['sha256'][:12]}...); "
                            "rebuild the run (--force) to write it again")
    digest = sha256_of_file(path)
    if digest != entry["sha256"]:
        raise PerEventError(f"{path} has sha256 {digest[:12]}... but the run's report recorded "
                            f"{entry['sha256'][:12]}...: the file was changed or belongs to another run")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if sorted(arrays) != sorted(entry["arrays"]):
        raise PerEventError(f"{path} holds arrays {sorted(arrays)} but the report names {sorted(entry['arrays'])}")
    return arrays


def next_item_arrays(ranks: Mapping[str, np.ndarray], users: Mapping[str, np.ndarray],
                     list_length: int) -> dict[str, np.ndarray]:
    """The next-item format: ``<split>_rank`` and ``<split>_user`` per split, and the scalar ``k``."""
    if set(ranks) != set(users):
        raise ValueError(f"ranks cover splits {sorted(ranks)} but users cover {sorted(users)}")
    arrays: dict[str, np.ndarray] = {}
    for split, split_ranks in ranks.items():
        split_ranks, split_users = _as_int32(f"{split}_rank", split_ranks), _as_int32(f"{split}_user", users[split])
        if split_ranks.shape != split_users.shape or split_ranks.ndim != 1:
            raise ValueError(f"{split}: ranks {split_ranks.shape} and users {split_users.shape} must be equal 1-D")
        if split_ranks.size and (split_ranks.min() < 0 or split_ranks.max() > list_length):
            raise ValueError(f"{split}: ranks must lie in [0, {list_length}]")
        arrays[f"{split}_rank"], arrays[f"{split}_user"] = split_ranks, split_users
    arrays["k"] = np.array(list_length, dtype=np.int32)
    return arrays


def ranking_arrays(split: str, *, scores: np.ndarray, labels: np.ndarray, users: np.ndarray,
                   items: np.ndarray) -> dict[str, np.ndarray]:
    """The ranking format for one split: float32 ``score``, int8 ``label``, int32 ``user`` and ``item``."""
    scores = np.asarray(scores)
    stored = scores.astype(np.float32)
    if not np.array_equal(stored.astype(scores.dtype), scores):  # a lossy cast could move the recomputed AUC
        raise ValueError(f"{split}: scores are not exactly representable as float32 (dtype {scores.dtype})")
    labels = np.asarray(labels)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{split}: labels must be 0/1")
    arrays = {f"{split}_score": stored, f"{split}_label": labels.astype(np.int8),
              f"{split}_user": _as_int32(f"{split}_user", users), f"{split}_item": _as_int32(f"{split}_item", items)}
    lengths = {name: values.shape for name, values in arrays.items()}
    if len(set(lengths.values())) != 1 or stored.ndim != 1:
        raise ValueError(f"{split}: per-sample arrays must be 1-D of one length, got {lengths}")
    return arrays


def _as_int32(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` as int32, refusing non-integers and values outside the int32 range."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {values.dtype}")
    info = np.iinfo(np.int32)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise ValueError(f"{name} has values outside the int32 range")
    return values.astype(np.int32)


def save_chosen_next_item(directory: str | os.PathLike, valid, test, *,
                          reported_valid: Mapping[str, float], test_users: np.ndarray | None = None,
                          extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write a next-item model's per-event target ranks for valid and test (one event per user, in order).

    ``test_users``: each test event's user when a user has several (default: one event per user, in order).
    ``extra``: further scorings of the test events by split name (e.g. ``test_no_exclusion``), stored alike.
    ``valid`` / ``test`` are :class:`mmq.recommenders.evaluation.NextItemEvaluation` of the chosen (reloaded)
    weights. ``reported_valid`` is the training-time validation of the chosen epoch: the two agree (same weights,
    same batches); if a device ever made them differ, the entry says so rather than letting the file contradict
    the report. Returns the report entry.
    """
    import logging

    scorings = {"valid": valid, "test": test, **(extra or {})}
    users = {name: np.arange(len(scored.ranks)) for name, scored in scorings.items()}
    if test_users is not None:  # several test events per user (SequenceSplitConfig.test_events)
        users.update({name: np.asarray(test_users) for name in scorings if name.startswith("test")})
    entry = save_per_event(directory, next_item_arrays({name: scored.ranks for name, scored in scorings.items()},
                                                       users, test.list_length))
    if valid.metrics != dict(reported_valid):
        logging.getLogger(__name__).warning(
            "%s: the reloaded best weights score validation differently from the training-time validation (%s vs "
            "%s); per_event.npz holds the reloaded ones", directory, valid.metrics, reported_valid)
        entry["differs_from_report"] = ["valid"]
    return entry
