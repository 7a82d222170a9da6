"""The modality embeddings every multimodal tokenizer reads (MMQ and the MA/MS baselines alike).

- ``text``: cached MiniLM item text embeddings (:mod:`mmq.features.text`).
- ``image``: cached poster features of the trained image tower (:mod:`mmq.image_tower.features`);
  items without a readable poster keep a zero row (counted in the input report).
- ``collaborative``: PPMI-SVD item vectors from leave-one-out TRAINING sequences only
  (:mod:`mmq.features.collaborative`), the offline second modality of Amazon Beauty.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mmq.features.collaborative import CollaborativeConfig, item_collaborative_embeddings
from mmq.features.text import TextFeatureConfig, item_text_embeddings

SECOND_MODALITIES = ("image", "collaborative")


@dataclasses.dataclass(frozen=True)
class ItemModalitiesConfig:
    """Which dataset and which two item modalities (text + image or text + collaborative)."""

    dataset: str = "movielens"
    kcore: int | None = None                       # None: the dataset's default
    text: TextFeatureConfig = TextFeatureConfig(recipe=("title", "year", "genres"))  # as the ch7 poster runs
    second_modality: str = "image"                 # "image" (posters) | "collaborative" (train-only PPMI-SVD)
    tower_run: str = "ch7/myntra_image_tower/seed0"  # image tower run folder under checkpoints/ ...
    tower_stage: str = "movielens"                 # ... and the stage whose best.pt encodes posters
    collaborative: CollaborativeConfig = CollaborativeConfig()

    def __post_init__(self) -> None:
        if self.second_modality not in SECOND_MODALITIES:
            raise ValueError(f"second_modality must be one of {SECOND_MODALITIES}, got {self.second_modality!r}")

    @property
    def modalities(self) -> tuple[str, str]:
        """Input dict keys in order: ``("text", second_modality)``."""
        return ("text", self.second_modality)


def load_item_modalities(config: ItemModalitiesConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``({"text": [n, d_t], second: [n, d_2]}, report)``; the report counts zero (missing) rows."""
    from mmq.data import load_dataset

    dataset = load_dataset(config.dataset, kcore=config.kcore)
    embeddings = {"text": item_text_embeddings(dataset, config.text)}
    if config.second_modality == "image":
        from mmq.image_tower.features import item_image_embeddings
        from mmq.runs import checkpoints_root

        features = item_image_embeddings(dataset, checkpoints_root() / config.tower_run / config.tower_stage)
    else:
        features = item_collaborative_embeddings(dataset, config.collaborative)
    embeddings[config.second_modality] = features.embeddings
    report = {"dataset": dataset.name, "num_items": dataset.num_items,
              "dims": {name: int(array.shape[1]) for name, array in embeddings.items()},
              f"num_items_without_{config.second_modality}": int((~features.valid).sum()),
              "missing_rows": "zero vectors (stay zero after L2 normalisation)"}
    return embeddings, report
