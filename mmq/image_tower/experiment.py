"""Chapter-7 image tower experiment: Myntra training, MovieLens poster fine-tuning, held-out evaluation.

Per stage: load items, cached MiniLM text embeddings and uint8 pixels -> split items by seed ->
train (``train_stage``) -> test metrics of the selected checkpoint, of the same architecture at
random init and of a text-only reference (MiniLM text->text label precision) -> image features of
every item cached for MMQ and the baselines.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmq import artifacts
from mmq.data import load_dataset
from mmq.features.images import item_image_pixels
from mmq.features.text import item_text_embeddings, recipe_name
from mmq.image_tower.checkpoint import checkpoint_hash, load_checkpoint
from mmq.image_tower.data import split_items
from mmq.image_tower.evaluate import label_matrix, same_modality_precision
from mmq.image_tower.features import image_feature_path, item_image_embeddings
from mmq.image_tower.model import ImageTextModel, ImageTowerConfig
from mmq.image_tower.train import PosterTrainConfig, TrainConfig, train_stage, validate

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ImageTowerExperimentConfig:
    """The chapter-7 run: one tower architecture, two training stages, feature extraction."""

    tower: ImageTowerConfig = ImageTowerConfig()
    myntra: TrainConfig = TrainConfig()
    movielens: PosterTrainConfig = PosterTrainConfig()
    stages: tuple[str, ...] = ("myntra", "movielens")   # run in this order
    # (dataset, kcore or -1 for the default, stage whose checkpoint encodes it)
    feature_datasets: tuple[tuple[str, int, str], ...] = (("myntra", -1, "myntra"), ("movielens", -1, "movielens"),
                                                          ("movielens", 0, "movielens"))
    num_threads: int = 2                                   # torch CPU threads


def run_stage(config: ImageTowerExperimentConfig, name: str, directory: Path, seed: int,
              progress: bool = True) -> dict[str, Any]:
    """Train one stage (resuming if interrupted) and score it on its held-out test items."""
    stage: TrainConfig = getattr(config, name)
    dataset = load_dataset(stage.dataset, kcore=stage.kcore)
    texts = item_text_embeddings(dataset, stage.text_config, progress=progress)
    decoded = item_image_pixels(dataset, config.tower.image_size, progress=progress)
    pixels = np.array(decoded.pixels)  # load the memmapped cache into memory (writable)
    labels = label_matrix(dataset, stage.label_field, separator=stage.label_separator or None)
    split = split_items(decoded.valid, valid_size=stage.valid_size, test_size=stage.test_size, seed=seed)
    stage_dir = directory / name
    artifacts.save_npy(stage_dir / "test_items.npy", split.test)

    torch.manual_seed(seed)
    random_model = ImageTextModel(config=config.tower)
    model = ImageTextModel(config=config.tower)
    model.load_state_dict(random_model.state_dict())
    if stage.init_from:
        initial, _ = load_checkpoint(directory / stage.init_from / "best.pt")
        model.load_state_dict(initial.state_dict())
    result = train_stage(model, stage, stage_dir, pixels=pixels, texts=texts, labels=labels, split=split,
                         seed=seed, progress=progress)

    best, payload = load_checkpoint(result.best_path)
    test = split.test
    rows = {
        "trained": validate(best, pixels[test], texts[test], labels[test], "cpu"),
        "random_init": validate(random_model, pixels[test], texts[test], labels[test], "cpu"),
    }
    if stage.init_from:
        rows[f"{stage.init_from}_tower_zero_shot"] = validate(initial, pixels[test], texts[test], labels[test], "cpu")
    text_reference = {"text_to_text/category_precision@10": same_modality_precision(texts[test], labels[test])}
    LOGGER.info("%s test: trained %s", name, {k: round(v, 4) for k, v in rows["trained"].items()})
    return {
        "dataset": stage.dataset, "num_items": dataset.num_items, "image_read_report": decoded.report.as_dict(),
        "text_recipe": recipe_name(stage.text_recipe), "label_field": stage.label_field,
        "split_sizes": {"train": int(len(split.train)), "valid": int(len(split.valid)), "test": int(len(test)),
                        "trained_on": int(min(len(split.train), stage.max_train_items or len(split.train)))},
        "test": rows, "text_only_reference": text_reference,
        "best_epoch": result.best_epoch, "history": result.history,
        "train_seconds": round(result.train_seconds, 1), "checkpoint": str(result.best_path),
        "checkpoint_sha256_12": checkpoint_hash(result.best_path), "selected_valid": payload["valid"],
    }


def run_image_tower_experiment(config: ImageTowerExperimentConfig, directory: Path, seed: int,
                               progress: bool = True) -> dict[str, Any]:
    """All stages, then image features for ``feature_datasets``; returns the report metrics."""
    torch.set_num_threads(config.num_threads)
    metrics: dict[str, Any] = {"stages": {}, "features": {}}
    for name in config.stages:
        metrics["stages"][name] = run_stage(config, name, directory, seed, progress)
    for dataset_name, kcore, stage_name in config.feature_datasets:
        dataset = load_dataset(dataset_name, kcore=None if kcore < 0 else kcore)
        checkpoint = directory / stage_name / "best.pt"
        features = item_image_embeddings(dataset, checkpoint, progress=progress)
        meta = artifacts.read_json(image_feature_path(dataset, checkpoint).with_suffix(".json"))
        metrics["features"][dataset_name if kcore < 0 else f"{dataset_name}-kcore{kcore}"] = {
            "path": str(image_feature_path(dataset, checkpoint)), "shape": list(features.embeddings.shape),
            "num_valid": int(features.valid.sum()), "checkpoint": str(checkpoint),
            "encode_images_per_second": meta["images_per_second"]}
    return metrics


def run(config: ImageTowerExperimentConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``image_tower`` kind."""
    return run_image_tower_experiment(config, directory, seed, progress=progress)
