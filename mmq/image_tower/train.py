"""Locked-text contrastive training of the image tower (open_clip ``ClipLoss``), resumable, via accelerate.

Each epoch shuffles the training items with ``(seed, epoch)``, augments uint8 pixels from the
in-memory cache, and scores the validation split (text->image Recall@k). ``best.pt`` keeps the
epoch with the best validation ``selection_metric``; ``state.pt`` (model, optimiser, scheduler,
history) is written atomically after every epoch, so a killed run resumes at the next epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from open_clip.loss import ClipLoss
from tqdm import tqdm

from mmq import artifacts
from mmq.config import to_dict
from mmq.features.text import TextFeatureConfig
from mmq.image_tower.checkpoint import save_checkpoint
from mmq.image_tower.data import ItemSplit, augment
from mmq.image_tower.evaluate import cross_modal_metrics, encode_pixels, encode_text_embeddings
from mmq.image_tower.model import ImageTextModel

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


def train_stage(model: ImageTextModel, config: TrainConfig, directory: Path, *, pixels: np.ndarray,
                texts: np.ndarray, labels: np.ndarray, split: ItemSplit, seed: int,
                progress: bool = True) -> StageResult:
    """Train ``model`` on ``split.train`` and keep the best validation epoch in ``directory/best.pt``."""
    directory.mkdir(parents=True, exist_ok=True)
    state_path, best_path = directory / "state.pt", directory / "best.pt"
    accelerator = Accelerator(cpu=config.cpu)
    train_items = split.train[:config.max_train_items] if config.max_train_items else split.train
    steps_per_epoch = len(train_items) // accelerator.num_processes // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"{len(train_items)} training items give no full batch of {config.batch_size}")
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(config.warmup_steps, config.epochs * steps_per_epoch))
    history, best_score, start_epoch, train_seconds = [], -1.0, 0, 0.0
    if state_path.exists():  # resume after an interruption
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best_score, start_epoch = state["history"], state["best_score"], state["epoch"] + 1
        train_seconds = state["train_seconds"]
        LOGGER.info("resuming %s at epoch %d (best %s %.4f)", directory, start_epoch, config.selection_metric,
                    best_score)
    model, optimizer = accelerator.prepare(model, optimizer)
    loss_fn = ClipLoss(rank=accelerator.process_index, world_size=accelerator.num_processes)
    pixels_tensor = torch.from_numpy(np.ascontiguousarray(pixels))     # [items, 3, H, W] uint8
    texts_tensor = torch.from_numpy(np.ascontiguousarray(texts, dtype=np.float32))
    valid_labels = labels[split.valid]
    for epoch in range(start_epoch, config.epochs):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.from_numpy(train_items)[torch.randperm(len(train_items), generator=generator)]
        order = order[accelerator.process_index::accelerator.num_processes]
        model.train()
        started, losses = time.perf_counter(), []
        bar = tqdm(range(steps_per_epoch), desc=f"{config.dataset} epoch {epoch + 1}/{config.epochs}",
                   disable=not progress or not accelerator.is_main_process, mininterval=10)
        for step in bar:
            batch = order[step * config.batch_size:(step + 1) * config.batch_size]
            images = augment(pixels_tensor[batch], pad=config.augment_pad, flip=config.augment_flip,
                             generator=generator)
            output = model(images.to(accelerator.device), texts_tensor[batch].to(accelerator.device))
            loss = loss_fn(output.image_features, output.text_features, output.logit_scale)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", scale=f"{float(output.logit_scale.detach()):.1f}")
        seconds = time.perf_counter() - started
        train_seconds += seconds
        unwrapped = accelerator.unwrap_model(model)
        valid = validate(unwrapped, pixels[split.valid], texts[split.valid], valid_labels, accelerator.device)
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "epoch_seconds": round(seconds, 1),
                 "train_images_per_second": round(steps_per_epoch * config.batch_size / seconds, 1),
                 "logit_scale": float(unwrapped.logit_scale.detach().exp()), "valid": valid}
        history.append(entry)
        LOGGER.info("%s epoch %d: loss %.4f, valid %s %.4f, %.0f img/s", config.dataset, epoch + 1,
                    entry["train_loss"], config.selection_metric, valid[config.selection_metric],
                    entry["train_images_per_second"])
        if accelerator.is_main_process:
            if valid[config.selection_metric] > best_score:
                best_score = valid[config.selection_metric]
                save_checkpoint(best_path, unwrapped, train_config=to_dict(config), epoch=epoch + 1, valid=valid)
            with artifacts.atomic_path(state_path) as temporary:
                torch.save({"model": unwrapped.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "history": history, "best_score": best_score,
                            "epoch": epoch, "train_seconds": train_seconds}, temporary)
        accelerator.wait_for_everyone()
    best_epoch = max(history, key=lambda item: item["valid"][config.selection_metric])["epoch"] if history else 0
    return StageResult(best_path, split, history, best_epoch, train_seconds)
