"""Dataset fingerprints: a short content hash of a processed dataset, recorded by every run.

``load_dataset`` reports each dataset it returns to :func:`note_loaded`; a run opened with
:func:`recording_datasets` collects ``{"<name>[@kcore<k>]": fingerprint}`` of everything it loaded,
so its report says exactly which data it saw, and a later reuse of the run can check that the data is
still the same (:func:`current_fingerprint`).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import pandas as pd

from mmq.data.schema import InteractionDataset

_RECORDERS: list[dict[str, str]] = []


def dataset_fingerprint(dataset: InteractionDataset) -> str:
    """sha256 (first 16 hex digits) of the processed items and interactions: values, columns, dtypes."""
    digest = hashlib.sha256()
    for frame in (dataset.items, dataset.interactions):
        digest.update(repr([(str(column), str(dtype)) for column, dtype in frame.dtypes.items()]).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def dataset_key(name: str, kcore: int | None) -> str:
    """How a loaded dataset is named in reports: ``beauty`` (default k-core) or ``beauty@kcore0``."""
    return name if kcore is None else f"{name}@kcore{kcore}"


def note_loaded(name: str, kcore: int | None, dataset: InteractionDataset) -> None:
    """Called by ``load_dataset``: record ``dataset`` in every open :func:`recording_datasets`."""
    if _RECORDERS:
        fingerprint = dataset_fingerprint(dataset)
        for recorder in _RECORDERS:
            recorder[dataset_key(name, kcore)] = fingerprint


@contextlib.contextmanager
def recording_datasets() -> Iterator[dict[str, str]]:
    """Collect the fingerprint of every dataset loaded inside the block."""
    recorder: dict[str, str] = {}
    _RECORDERS.append(recorder)
    try:
        yield recorder
    finally:
        _RECORDERS.remove(recorder)


def current_fingerprint(key: str) -> str:
    """The fingerprint the data directory gives ``key`` now (loads the dataset; raises MissingDataError)."""
    from mmq.data.registry import load_dataset

    name, _, kcore = key.partition("@kcore")
    return dataset_fingerprint(load_dataset(name, kcore=int(kcore) if kcore else None))
