"""Cached item image features ``[num_items, dim]`` keyed by content: the encoder checkpoint's sha256,
the item list and the images' content key (references + each archive member's CRC-32 and size,
:func:`mmq.features.images.image_content_key`), so a new checkpoint or a replaced photo recomputes.

MMQ and every baseline read the same file. Items whose image is missing or unreadable get a zero
row and ``valid=False`` (counted in the sidecar JSON), never a silent substitute.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mmq import artifacts
from mmq.data.paths import cache_dir
from mmq.data.schema import InteractionDataset
from mmq.features.images import image_content_key, item_image_pixels
from mmq.features.text import validate_embeddings
from mmq.image_tower.checkpoint import checkpoint_hash, load_checkpoint
from mmq.image_tower.evaluate import encode_pixels

LOGGER = logging.getLogger(__name__)


class ImageEmbeddings(NamedTuple):
    """Joint-space image features (zero rows where ``valid`` is False)."""

    embeddings: np.ndarray  # [num_items, embed_dim] float32, L2-normalised where valid
    valid: np.ndarray       # [num_items] bool


def resolve_checkpoint(checkpoint: str | Path) -> Path:
    """A checkpoint file, or a stage folder holding ``best.pt``."""
    path = Path(checkpoint)
    return path / "best.pt" if path.is_dir() else path


def image_feature_path(dataset: InteractionDataset, checkpoint: str | Path) -> Path:
    """Cache path keyed by the checkpoint's content hash, the item list and the images' content."""
    item_key = artifacts.short_hash(dataset.items["item_id"].tolist(), image_content_key(dataset))
    name = f"image-{checkpoint_hash(resolve_checkpoint(checkpoint))}-{item_key}.npy"
    return cache_dir() / "features" / dataset.name / name


def item_image_embeddings(dataset: InteractionDataset, checkpoint_dir: str | Path, *, force: bool = False,
                          progress: bool = True) -> ImageEmbeddings:
    """Cached image features of every item for the encoder in ``checkpoint_dir`` (computed on first use)."""
    checkpoint = resolve_checkpoint(checkpoint_dir)
    path = image_feature_path(dataset, checkpoint)
    valid_path = path.with_suffix(".valid.npy")
    if path.exists() and valid_path.exists() and not force:
        embeddings = np.load(path)
        validate_embeddings(embeddings, dataset.num_items, source=str(path))
        return ImageEmbeddings(embeddings, np.load(valid_path))
    model, payload = load_checkpoint(checkpoint)
    decoded = item_image_pixels(dataset, model.config.image_size, progress=progress)
    started = time.perf_counter()
    embeddings = encode_pixels(model, decoded.pixels, progress=progress)
    seconds = time.perf_counter() - started
    embeddings[~decoded.valid] = 0.0
    validate_embeddings(embeddings, dataset.num_items, source=str(checkpoint))
    artifacts.save_npy(path, embeddings)
    artifacts.save_npy(valid_path, decoded.valid)
    artifacts.write_json(path.with_suffix(".json"), {
        "dataset": dataset.name, "num_items": dataset.num_items, "dim": int(embeddings.shape[1]),
        "checkpoint": str(checkpoint), "checkpoint_sha256_12": checkpoint_hash(checkpoint),
        "tower_config": payload["tower_config"], "num_valid": int(decoded.valid.sum()),
        "image_read_report": decoded.report.as_dict(), "encode_seconds": round(seconds, 3),
        "images_per_second": round(len(embeddings) / max(seconds, 1e-9), 1),
    })
    LOGGER.info("%s: image features %s in %.1fs -> %s", dataset.name, embeddings.shape, seconds, path)
    return ImageEmbeddings(embeddings, decoded.valid)
