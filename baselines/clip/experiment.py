"""MovieLens next-item retrieval with text-only, image-only and fused item vectors (chapter-1 protocol).

Leave-one-out split; query = recency-weighted mean of the history's item vectors; history items
removed from the results. For each index the history decay and (for the fused index) the image
weight are chosen on the validation split, then the test split is scored once.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from baselines.clip.index import FusionConfig, MultimodalIndex
from baselines.faiss_ann.content_retrieval import build_flat, evaluate_split
from mmq import registry
from mmq.data import leave_one_out, load_dataset
from mmq.features.text import TextFeatureConfig, item_text_embeddings, recipe_name
from mmq.image_tower.checkpoint import checkpoint_hash, load_checkpoint
from mmq.image_tower.evaluate import encode_text_embeddings
from mmq.image_tower.features import item_image_embeddings

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ClipRetrievalConfig:
    """Which items, which encoders, which fusions; selection on the validation split."""

    dataset: str = "movielens"
    text_recipe: tuple[str, ...] = ("title", "year", "genres")   # MiniLM text, as in the poster stage
    image_tower: str = "experiments/ch7/myntra_image_tower.yaml"   # the image tower run (upstream) ...
    tower_seed: int | None = None                      # ... of this seed (None: this run's seed) ...
    tower_stage: str = "movielens"                     # ... and the stage whose best.pt encodes images
    image_weights: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75)   # fused-index grid, chosen on valid
    fusion_modes: tuple[str, ...] = ("concat",)
    decay_grid: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 1.0)
    selection_metric: str = "ndcg@10"
    ks: tuple[int, ...] = (5, 10, 20)
    max_history: int = 20


def _evaluate(vectors: np.ndarray, split, config: ClipRetrievalConfig, name: str) -> dict[str, Any]:
    """Select the decay on valid, score test, for one item-vector matrix (exact inner product)."""
    index = build_flat(vectors)
    common = dict(ks=config.ks, max_history=config.max_history)
    valid = {decay: evaluate_split(index, vectors, *split.history_and_target("valid"), decay=decay, **common)[0]
             for decay in config.decay_grid}
    decay = max(config.decay_grid, key=lambda value: valid[value][config.selection_metric])
    test = evaluate_split(index, vectors, *split.history_and_target("test"), decay=decay, **common)[0]
    LOGGER.info("%s: decay %.2f, valid %s %.4f, test %.4f", name, decay, config.selection_metric,
                valid[decay][config.selection_metric], test[config.selection_metric])
    return {"decay": decay, "valid": valid[decay], "test": test}


def run_clip_retrieval(config: ClipRetrievalConfig, checkpoint: Path) -> dict[str, Any]:
    """Text-only, image-only and fused next-item retrieval on ``config.dataset`` with the tower ``checkpoint``."""
    dataset = load_dataset(config.dataset)
    split = leave_one_out(dataset, max_history=config.max_history)
    text = item_text_embeddings(dataset, TextFeatureConfig(recipe=config.text_recipe))
    images = item_image_embeddings(dataset, checkpoint)
    if not images.valid.all():
        LOGGER.warning("%d items have no readable image; image-only rows score them as zero vectors",
                       int((~images.valid).sum()))
    model, _ = load_checkpoint(checkpoint)
    text_joint = encode_text_embeddings(model, text)
    results: dict[str, Any] = {
        "text only (MiniLM)": _evaluate(text, split, config, "text"),
        "image only (tower)": _evaluate(images.embeddings, split, config, "image"),
        "text only (tower text head)": _evaluate(text_joint, split, config, "text_joint"),
    }
    fused_valid: dict[str, Any] = {}
    for mode in config.fusion_modes:
        for weight in tqdm(config.image_weights, desc=f"fusion {mode}"):
            fusion = FusionConfig(image_weight=weight, mode=mode)
            index = MultimodalIndex(text=text, image=images.embeddings, text_joint=text_joint, config=fusion)
            fused_valid[f"{mode} w_image={weight:g}"] = _evaluate(index.fused_vectors, split, config,
                                                                  f"fused {mode} {weight}")
    best = max(fused_valid, key=lambda key: fused_valid[key]["valid"][config.selection_metric])
    results[f"fused ({best}, valid-selected)"] = fused_valid[best]
    return {
        "dataset": dataset.statistics(), "text_recipe": recipe_name(config.text_recipe),
        "checkpoint": str(checkpoint), "checkpoint_sha256_12": checkpoint_hash(checkpoint),
        "num_items_with_image": int(images.valid.sum()), "num_queries": int(len(split.test_target)),
        "indexes": results, "fusion_grid": fused_valid, "selected_fusion": best,
    }


def run(config: ClipRetrievalConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``clip_retrieval`` kind: reads the image tower run of ``tower_seed`` (or ``seed``)."""
    tower = registry.run_or_load(config.image_tower, seed if config.tower_seed is None else config.tower_seed,
                                 progress=progress, consumed=True)
    tower_directory = registry.run_directory(config.image_tower, tower["seed"])
    return run_clip_retrieval(config, tower_directory / config.tower_stage / "best.pt")
