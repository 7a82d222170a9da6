"""Locked-text contrastive training of the image tower (open_clip ``ClipLoss``), resumable, via accelerate.

Each epoch shuffles the training items with ``(seed, epoch)``, augments uint8 pixels from the
in-memory cache, and scores the validation split (text->image Recall@k). ``best.pt`` keeps the
epoch with the best validation ``selection_metric``. The loop is :func:`mmq.training.run_training`:
``state.pt`` (model, optimiser, scheduler, progress, every RNG state) is written atomically after
every epoch, so a killed run resumes at the next epoch and ends as the uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from open_clip.loss import ClipLoss
from tqdm import tqdm

from mmq.config import to_dict
from mmq.features.text import TextFeatureConfig
from mmq.image_tower.checkpoint import save_checkpoint
from mmq.image_tower.data import ItemSplit, augment
from mmq.image_tower.evaluate import cross_modal_metrics, encode_pixels, encode_text_embeddings
from mmq.image_tower.model import ImageTextModel
from mmq.training import BEST_FILE, LoopSettings, TrainingTask, run_training

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training stage: data, split sizes, optimisation, augmentation, model selection."""

    dataset: str = "myntra"
    kcore: int | None = None            # None: the dataset's default
    text_recipe: tuple[str, ...] = ("title", "articleType", "baseColour", "gender", "usage")  # frozen MiniLM text
    label_field: str = "articleType"    # category precision: same label (comma lists: any shared label)
    label_separator: str = ""           # "," for label lists such as MovieLens genres
    valid_size: int = 2000              # items for checkpoint selection
    test_size: int = 5000               # held-out items, never trained on or selected with
    max_train_items: int = 0            # 0: all remaining items (smaller for smoke runs)
    epochs: int = 14
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 0.05          # not applied to biases, norms and the logit scale
    warmup_steps: int = 200
    augment_pad: int = 4                # random translation by up to this many pixels
    augment_flip: bool = True           # random horizontal flip
    selection_metric: str = "text_to_image/recall@10"
    init_from: str = ""                 # "" = random init; else a stage name whose best.pt starts this one
    cpu: bool = False                   # force CPU even when a GPU is present

    @property
    def text_config(self) -> TextFeatureConfig:
        """The cached MiniLM text features this stage aligns images with."""
        return TextFeatureConfig(recipe=self.text_recipe)


@dataclasses.dataclass(frozen=True)
class PosterTrainConfig(TrainConfig):
    """MovieLens poster stage: fine-tunes the Myntra tower on posters with title + year + genres.

    A subclass (not a ``TrainConfig(...)`` default instance) so that a YAML override of one field
    keeps these defaults: the config loader builds nested sections from the class defaults.
    """

    dataset: str = "movielens"
    kcore: int | None = 0               # every movie with a poster (9,718), not only the 5-core
    text_recipe: tuple[str, ...] = ("title", "year", "genres")
    label_field: str = "genres"
    label_separator: str = ","
    valid_size: int = 500
    test_size: int = 1500
    epochs: int = 10                    # posters overfit after ~8 epochs (valid-selected anyway)
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    init_from: str = "myntra"


class StageResult(NamedTuple):
    """What a finished stage leaves behind."""

    best_path: Path
    split: ItemSplit
    history: list[dict]
    best_epoch: int
    train_seconds: float


def _optimizer(model: ImageTextModel, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (decay if parameter.ndim >= 2 and "logit_scale" not in name else no_decay).append(parameter)
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.learning_rate)


def _warmup_cosine(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def validate(model: ImageTextModel, pixels: np.ndarray, texts: np.ndarray, labels: np.ndarray,
             device) -> dict[str, float]:
    """Cross-modal metrics of ``model`` on the given items (rows aligned)."""
    image_features = encode_pixels(model, pixels, device=device)
    text_features = encode_text_embeddings(model, texts, device=device)
    return cross_modal_metrics(image_features, text_features, labels)


class ImageTowerTask(TrainingTask):
    """One contrastive epoch over augmented training items and a cross-modal validation."""

    def __init__(self, model, optimizer, scheduler, accelerator: Accelerator, config: TrainConfig, *,
                 pixels: np.ndarray, texts: np.ndarray, labels: np.ndarray, split: ItemSplit,
                 train_items: np.ndarray, steps_per_epoch: int, seed: int, progress: bool) -> None:
        self.model, self.optimizer, self.scheduler, self.accelerator = model, optimizer, scheduler, accelerator
        self.config, self.split, self.seed, self.progress = config, split, seed, progress
        self.pixels, self.texts, self.valid_labels = pixels, texts, labels[split.valid]
        self.train_items, self.steps_per_epoch = train_items, steps_per_epoch
        self.loss_function = ClipLoss(rank=accelerator.process_index, world_size=accelerator.num_processes)
        self.pixels_tensor = torch.from_numpy(np.ascontiguousarray(pixels))     # [items, 3, H, W] uint8
        self.texts_tensor = torch.from_numpy(np.ascontiguousarray(texts, dtype=np.float32))

    def train_unit(self, index: int) -> dict[str, Any]:
        """One epoch in an order (and augmentations) drawn from a generator seeded by ``(seed, epoch)``."""
        accelerator, config = self.accelerator, self.config
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        order = torch.from_numpy(self.train_items)[torch.randperm(len(self.train_items), generator=generator)]
        order = order[accelerator.process_index::accelerator.num_processes]
        self.model.train()
        losses = []
        bar = tqdm(range(self.steps_per_epoch), desc=f"{config.dataset} epoch {index + 1}/{config.epochs}",
                   disable=not self.progress or not accelerator.is_main_process, mininterval=10, leave=False)
        for step in bar:
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            images = augment(self.pixels_tensor[batch], pad=config.augment_pad, flip=config.augment_flip,
                             generator=generator)
            output = self.model(images.to(accelerator.device), self.texts_tensor[batch].to(accelerator.device))
            loss = self.loss_function(output.image_features, output.text_features, output.logit_scale)
            accelerator.backward(loss)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", scale=f"{float(output.logit_scale.detach()):.1f}")
        return {"train_loss": float(np.mean(losses))}

    def unit_record(self, number: int, fields: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Epoch, mean loss, wall time, throughput and the learned temperature."""
        return {"epoch": number, **fields, "epoch_seconds": round(seconds, 1),
                "train_images_per_second": round(self.steps_per_epoch * self.config.batch_size / seconds, 1),
                "logit_scale": float(self.accelerator.unwrap_model(self.model).logit_scale.detach().exp())}

    def evaluate(self, index: int) -> dict[str, Any]:
        """Cross-modal metrics on the validation items."""
        valid = self.split.valid
        return validate(self.accelerator.unwrap_model(self.model), self.pixels[valid], self.texts[valid],
                        self.valid_labels, self.accelerator.device)

    def save_best(self, path: Path, number: int, metrics: dict[str, Any]) -> None:
        """A self-describing checkpoint (:func:`mmq.image_tower.checkpoint.save_checkpoint`)."""
        save_checkpoint(path, self.accelerator.unwrap_model(self.model), train_config=to_dict(self.config),
                        epoch=number, valid=metrics)

    def checkpointed(self) -> dict[str, Any]:
        """Model, optimiser and learning-rate scheduler."""
        return {"model": self.accelerator.unwrap_model(self.model), "optimizer": self.optimizer,
                "scheduler": self.scheduler}


def train_stage(model: ImageTextModel, config: TrainConfig, directory: Path, *, pixels: np.ndarray,
                texts: np.ndarray, labels: np.ndarray, split: ItemSplit, seed: int,
                progress: bool = True) -> StageResult:
    """Train ``model`` on ``split.train`` and keep the best validation epoch in ``directory/best.pt``."""
    accelerator = Accelerator(cpu=config.cpu)
    train_items = split.train[:config.max_train_items] if config.max_train_items else split.train
    steps_per_epoch = len(train_items) // accelerator.num_processes // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{len(train_items)} training items give no full batch of {config.batch_size}")
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(config.warmup_steps, config.epochs * steps_per_epoch))
    model, optimizer = accelerator.prepare(model, optimizer)
    task = ImageTowerTask(model, optimizer, scheduler, accelerator, config, pixels=pixels, texts=texts, labels=labels,
                          split=split, train_items=train_items, steps_per_epoch=steps_per_epoch, seed=seed,
                          progress=progress)
    settings = LoopSettings(max_units=config.epochs, selection_metric=config.selection_metric,
                            description=f"image tower {config.dataset}")
    result = run_training(task, settings, directory, seed=seed, accelerator=accelerator, progress=progress)
    return StageResult(directory / BEST_FILE, split, result.history, result.best_unit, result.train_seconds)
