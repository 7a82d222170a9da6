"""Multimodal FAISS index over items: fused text+image vectors and cross-modal search.

Three item matrices share one item order: ``text`` (frozen MiniLM, L2-normalised), ``image``
(image tower, joint space) and ``text_joint`` (MiniLM projected by the tower's text head into the
same joint space). Fusion concatenates the normalised modalities scaled by sqrt(weight), so the
inner product of two fused vectors is ``w_text * cos_text + w_image * cos_image`` (or sums them
when both live in the joint space, ``mode="sum"``).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from baselines.faiss_ann.index import IndexSpec, build_index, search


@dataclasses.dataclass(frozen=True)
class FusionConfig:
    """How text and image item vectors are combined into one index vector."""

    image_weight: float = 0.5        # text weight = 1 - image_weight
    mode: str = "concat"             # "concat": [sqrt(w_t) t, sqrt(w_i) i]; "sum": w_t t_joint + w_i i
    factory: str = "Flat"            # faiss index factory string (see baselines/faiss_ann)

    def __post_init__(self) -> None:
        if not 0.0 <= self.image_weight <= 1.0:
            raise ValueError(f"image_weight must be in [0, 1], got {self.image_weight}")
        if self.mode not in ("concat", "sum"):
            raise ValueError(f"mode must be 'concat' or 'sum', got {self.mode!r}")


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def fuse(text: np.ndarray, image: np.ndarray, config: FusionConfig) -> np.ndarray:
    """Fused, L2-normalised item vectors ``[num_items, dim]`` (image-less rows fall back to text)."""
    text, image = normalize_rows(text), normalize_rows(image)
    text_weight, image_weight = 1.0 - config.image_weight, config.image_weight
    if config.mode == "sum":
        if text.shape[1] != image.shape[1]:
            raise ValueError(f"mode='sum' needs joint-space vectors of equal size, got {text.shape}, {image.shape}")
        return normalize_rows(text_weight * text + image_weight * image)
    fused = np.concatenate([np.sqrt(text_weight) * text, np.sqrt(image_weight) * image], axis=1)
    return normalize_rows(fused)


class SearchResult(NamedTuple):
    """Top-k item indices and their inner-product scores."""

    items: np.ndarray   # [queries, k] int64, -1 where fewer results
    scores: np.ndarray  # [queries, k] float32


class MultimodalIndex:
    """Item->similar items (fused), text->items by image, image->items by text, all in FAISS."""

    def __init__(self, *, text: np.ndarray, image: np.ndarray, text_joint: np.ndarray | None = None,
                 config: FusionConfig = FusionConfig()):
        if len(text) != len(image) or (text_joint is not None and len(text_joint) != len(text)):
            raise ValueError("text, image and text_joint must have one row per item")
        self.config = config
        spec = IndexSpec(factory=config.factory, metric="ip")
        self.fused_vectors = fuse(text_joint if config.mode == "sum" else text, image, config)
        self.fused = build_index(self.fused_vectors, spec)
        self.image = build_index(normalize_rows(image), spec)
        self.text_joint = build_index(normalize_rows(text_joint), spec) if text_joint is not None else None

    def similar_items(self, item_indices: np.ndarray, k: int, *, exclude_self: bool = True) -> SearchResult:
        """Nearest items to each given item in the fused space (the item itself removed)."""
        item_indices = np.asarray(item_indices, dtype=np.int64)
        scores, ids = search(self.fused, self.fused_vectors[item_indices], k + int(exclude_self))
        if exclude_self:
            keep = ids != item_indices[:, None]
            order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
            ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
        return SearchResult(ids, scores)

    def text_to_items(self, text_joint_queries: np.ndarray, k: int) -> SearchResult:
        """Cross-modal: joint-space text queries against the items' images."""
        scores, ids = search(self.image, normalize_rows(text_joint_queries), k)
        return SearchResult(ids, scores)

    def image_to_items(self, image_queries: np.ndarray, k: int) -> SearchResult:
        """Cross-modal: image queries against the items' projected texts."""
        if self.text_joint is None:
            raise ValueError("image_to_items needs text_joint item vectors")
        scores, ids = search(self.text_joint, normalize_rows(image_queries), k)
        return SearchResult(ids, scores)
