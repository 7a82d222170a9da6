"""Named-modality inputs shared by every multimodal tokenizer (MMQ and the MA/MS baselines).

Inputs are dicts of named modality embeddings ``{"text": [n, d_t], "image": [n, d_v], ...}`` with any
number of modalities; :class:`ModalityInputs` validates them, keeps their order and L2-normalises each.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mmq.semantic_ids.base import validate_embeddings


def l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, 1e-12)).astype(np.float32)


class ModalityInputs:
    """Base of every multimodal tokenizer (MMQ, MA/MS): modality order, per-modality validation, normalisation."""

    def __init__(self, *, modalities: Sequence[str], normalise: bool) -> None:
        if len(modalities) == 0 or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be distinct and non-empty, got {modalities}")
        self.modalities = tuple(modalities)
        self.normalise = normalise
        self.dims: dict[str, int] | None = None  # per-modality input dims, set by fit

    def prepare(self, embeddings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validated (and, if enabled, L2-normalised) modality arrays in ``modalities`` order."""
        if not isinstance(embeddings, Mapping):
            raise ValueError(f"expected a dict of modality embeddings, got {type(embeddings).__name__}")
        missing = [name for name in self.modalities if name not in embeddings]
        if missing:
            raise ValueError(f"missing modalities {missing}; got {sorted(embeddings)}")
        prepared = {}
        for name in self.modalities:
            expected = self.dims[name] if self.dims is not None else None
            array = validate_embeddings(embeddings[name], expected_dim=expected, name=name)
            prepared[name] = l2_normalise(array) if self.normalise else array
        counts = {name: array.shape[0] for name, array in prepared.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"modalities disagree on the number of items: {counts}")
        return prepared
