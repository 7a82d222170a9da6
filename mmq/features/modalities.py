"""The modality embeddings every multimodal tokenizer reads (MMQ and the MA/MS baselines alike).

- ``text``: cached MiniLM item text embeddings (:mod:`mmq.features.text`).
- ``image``: cached poster features of the trained image tower (:mod:`mmq.image_tower.features`);
  items without a readable poster keep a zero row (counted in the input report).
- ``collaborative``: PPMI-SVD item vectors from leave-one-out TRAINING sequences only
  (:mod:`mmq.features.collaborative`), the offline second modality of Amazon Beauty.

A config names any non-empty subset of these, in the order the tokenizer reads them
(``modalities: [text, collaborative]``, ``[image]``, ``[text, image, collaborative]``, ...).

``shuffled: [image]`` is the control that asks what a modality adds: its rows are permuted across items
by a permutation seeded with ``shuffle_seed`` (item i reads item pi(i)'s poster features), so the
modality keeps its distribution but loses its link to the item.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mmq import registry
from mmq.features.collaborative import CollaborativeConfig, item_collaborative_embeddings
from mmq.features.text import TextFeatureConfig, item_text_embeddings
from mmq.image_tower.features import item_image_embeddings

MODALITIES = ("text", "image", "collaborative")  # every modality load_item_modalities can build


@dataclasses.dataclass(frozen=True)
class ItemModalitiesConfig:
    """Which dataset and which item modalities, in input (= SID) order."""

    dataset: str = "movielens"
    kcore: int | None = None                       # None: the dataset's default
    text: TextFeatureConfig = TextFeatureConfig(recipe=("title", "year", "genres"))  # as the ch7 poster runs
    modalities: tuple[str, ...] = ("text", "image")  # any order, no duplicates; names from MODALITIES
    image_tower: str = "experiments/ch7/myntra_image_tower.yaml"  # the image tower run (an upstream run) ...
    image_tower_seed: int = 0                      # ... of this seed ...
    tower_stage: str = "movielens"                 # ... and the stage whose best.pt encodes posters
    collaborative: CollaborativeConfig = CollaborativeConfig()
    shuffled: tuple[str, ...] = ()                 # modalities whose rows are permuted across items (a control)
    shuffle_seed: int = 0                          # ... by this seeded permutation

    def __post_init__(self) -> None:
        if isinstance(self.modalities, str):
            raise ValueError(f"modalities must be a list of names from {MODALITIES}, got the string {self.modalities!r}")
        object.__setattr__(self, "modalities", tuple(self.modalities))
        if not self.modalities:
            raise ValueError(f"modalities must name at least one of {MODALITIES}")
        unknown = [name for name in self.modalities if name not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modalities {unknown} in {self.modalities}; valid modalities: {MODALITIES}")
        duplicates = sorted({name for name in self.modalities if self.modalities.count(name) > 1})
        if duplicates:
            raise ValueError(f"modalities {self.modalities} name {duplicates} more than once")
        if isinstance(self.shuffled, str):
            raise ValueError(f"shuffled must be a list of modality names, got the string {self.shuffled!r}")
        object.__setattr__(self, "shuffled", tuple(self.shuffled))
        stray = [name for name in self.shuffled if name not in self.modalities]
        if stray:
            raise ValueError(f"shuffled names {stray}, which are not among the modalities {self.modalities}")


def _features(dataset, name: str, config: ItemModalitiesConfig):
    """The non-text modality ``name`` of ``dataset``: features with ``.embeddings`` and ``.valid``."""
    if name == "image":
        registry.run_or_load(config.image_tower, config.image_tower_seed, progress=False, consumed=True)
        tower = registry.run_directory(config.image_tower, config.image_tower_seed)
        return item_image_embeddings(dataset, tower / config.tower_stage)
    return item_collaborative_embeddings(dataset, config.collaborative)


def load_item_modalities(config: ItemModalitiesConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``({modality: [n, d_m]} in config order, report)``; the report counts zero (missing) rows.

    The report holds ``num_items_without_<name>`` for every non-text modality.
    """
    from mmq.data import load_dataset

    dataset = load_dataset(config.dataset, kcore=config.kcore)
    embeddings, missing = {}, {}
    for name in config.modalities:
        if name == "text":
            embeddings[name] = item_text_embeddings(dataset, config.text)
        else:
            features = _features(dataset, name, config)
            embeddings[name] = features.embeddings
            missing[f"num_items_without_{name}"] = int((~features.valid).sum())
    report = {"dataset": dataset.name, "num_items": dataset.num_items,
              "dims": {name: int(array.shape[1]) for name, array in embeddings.items()},
              **missing, "missing_rows": "zero vectors (stay zero after L2 normalisation)"}
    if config.shuffled:
        permutation = np.random.default_rng(config.shuffle_seed).permutation(dataset.num_items)
        for name in config.shuffled:
            embeddings[name] = embeddings[name][permutation]
        report["shuffled"] = {"modalities": list(config.shuffled), "seed": config.shuffle_seed,
                              "fixed_points": int((permutation == np.arange(dataset.num_items)).sum())}
    return embeddings, report
