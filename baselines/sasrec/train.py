"""Resumable SASRec training via accelerate, with validation-selected weights and early stopping.

Every epoch shuffles the training windows with ``(seed, epoch)`` and trains on all positions of
each window at once. Every ``eval_every`` epochs the model ranks the full catalogue for every
validation user (history items excluded); ``best.pt`` keeps the weights with the best
``selection_metric``. Training stops after ``patience`` evaluations without improvement. The loop is
:func:`mmq.training.run_training`: ``state.pt`` (model, optimiser, progress, every RNG state) is
written atomically after each epoch, so a killed run resumes there and ends as an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from baselines.sasrec.model import SASRec, next_item_loss
from mmq.recommenders.evaluation import METRIC_KS, NextItemEvaluation, score_ranked, topk_excluding_history
from mmq.recommenders.sequences import TrainingWindows, iterate_batches, pad_histories
from mmq.semantic_ids.base import save_torch_state
from mmq.training import BEST_FILE, LoopSettings, TrainingTask, run_training

if TYPE_CHECKING:
    from baselines.sasrec.experiment import SASRecConfig

LOGGER = logging.getLogger(__name__)


class TrainingResult(NamedTuple):
    """What a finished training leaves behind (``best.pt`` holds the selected weights)."""

    best_path: Path
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    train_seconds: float
    train_targets: int          # (position, next item) pairs seen, over all epochs run
    history: list[dict[str, Any]]


@torch.no_grad()
def rank_next_items(model: SASRec, histories: Sequence[np.ndarray], *, max_length: int, k: int,
                    batch_size: int = 1024, device: torch.device | str = "cpu",
                    seen: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Top-``k`` full-catalogue items ``[users, k]`` after each history, history items excluded: the model's input
    window (the last ``max_length`` items) by default, or each event's ``seen`` items (e.g. its full history;
    empty arrays = no exclusion) when given."""
    if seen is not None and len(seen) != len(histories):
        raise ValueError(f"seen has {len(seen)} entries for {len(histories)} histories")
    was_training = model.training
    model.eval()
    padded = torch.from_numpy(pad_histories(histories, max_length))       # [users, max_length]
    ranked = []
    for start in range(0, len(padded), batch_size):
        batch = padded[start:start + batch_size].to(device)
        scores = model.score_histories(batch)                               # [batch, num_items]
        mask = batch if seen is None else torch.from_numpy(pad_histories(seen[start:start + batch_size])).to(device)
        ranked.append(topk_excluding_history(scores, mask, k).cpu())
    model.train(was_training)
    return torch.cat(ranked).numpy()


def score(model: SASRec, histories: Sequence[np.ndarray], targets: np.ndarray, *, max_length: int,
          ks: tuple[int, ...] = METRIC_KS, device: torch.device | str = "cpu",
          seen: Sequence[np.ndarray] | None = None) -> NextItemEvaluation:
    """Next-item metrics of ``model`` on (histories, targets) and each event's target rank in its top ``max(ks)``
    (``seen``: the items excluded per event, see :func:`rank_next_items`)."""
    ranked = rank_next_items(model, histories, max_length=max_length, k=max(ks), device=device, seen=seen)
    return score_ranked(ranked, targets, ks=ks)


def evaluate(model: SASRec, histories: Sequence[np.ndarray], targets: np.ndarray, *, max_length: int,
             ks: tuple[int, ...] = METRIC_KS, device: torch.device | str = "cpu",
             seen: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """Next-item metrics (``recall@k``, ``ndcg@k``, ...) of ``model`` on (histories, targets)."""
    return score(model, histories, targets, max_length=max_length, ks=ks, device=device, seen=seen).metrics


class SASRecTask(TrainingTask):
    """One SASRec epoch over shuffled windows and a full-catalogue validation ranking."""

    def __init__(self, model, optimizer, accelerator: Accelerator, windows: TrainingWindows,
                 valid: tuple[Sequence[np.ndarray], np.ndarray], config: SASRecConfig, *, seed: int,
                 progress: bool, valid_seen: Sequence[np.ndarray] | None = None) -> None:
        self.model, self.optimizer, self.accelerator, self.config = model, optimizer, accelerator, config
        self.inputs, self.targets = torch.from_numpy(windows.inputs), torch.from_numpy(windows.targets)
        self.valid_histories, self.valid_targets = valid
        self.valid_seen = valid_seen    # items excluded per validation user; None = the input window
        self.seed, self.progress = seed, progress
        self.train_targets = 0          # (position, next item) pairs seen, over all epochs run
        self.epoch_targets = 0          # the same, in the last epoch

    def train_unit(self, index: int) -> dict[str, Any]:
        """All positions of every window, in an order shuffled by ``(seed, epoch)``; mean loss."""
        accelerator, config = self.accelerator, self.config
        order = np.random.default_rng([self.seed, index]).permutation(len(self.inputs))
        order = order[accelerator.process_index::accelerator.num_processes]
        self.model.train()
        losses, self.epoch_targets = [], 0
        batches = list(iterate_batches(len(order), config.batch_size, shuffle=False))
        bar = tqdm(batches, desc=f"sasrec epoch {index + 1}/{config.epochs}", mininterval=10, leave=False,
                   disable=not self.progress or not accelerator.is_main_process)
        for rows in bar:
            batch_inputs = self.inputs[order[rows]].to(accelerator.device)
            batch_targets = self.targets[order[rows]].to(accelerator.device)
            loss = next_item_loss(accelerator.unwrap_model(self.model), self.model(batch_inputs).hidden, batch_targets)
            accelerator.backward(loss)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            self.epoch_targets += int((batch_targets >= 0).sum())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
        self.train_targets += self.epoch_targets
        return {"train_loss": round(float(np.mean(losses)), 5)}

    def unit_record(self, number: int, fields: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Epoch, mean loss, wall time and training throughput."""
        return {"epoch": number, **fields, "epoch_seconds": round(seconds, 2),
                "train_targets_per_second": round(self.epoch_targets / seconds, 1)}

    def evaluate(self, index: int) -> dict[str, Any]:
        """Validation next-item metrics (history items excluded)."""
        return evaluate(self.accelerator.unwrap_model(self.model), self.valid_histories, self.valid_targets,
                        max_length=self.config.max_history, device=self.accelerator.device, seen=self.valid_seen)

    def save_best(self, path: Path, number: int, metrics: dict[str, Any]) -> None:
        """CPU weights, their epoch and validation metrics (read by :func:`load_best`)."""
        weights = {key: value.cpu() for key, value in self.accelerator.unwrap_model(self.model).state_dict().items()}
        save_torch_state(path, {"model": weights, "epoch": number, "valid": metrics})

    def checkpointed(self) -> dict[str, Any]:
        """Model and optimiser."""
        return {"model": self.accelerator.unwrap_model(self.model), "optimizer": self.optimizer}

    def state_dict(self) -> dict[str, Any]:
        """The checkpointed parts and the targets-seen counter."""
        return {**super().state_dict(), "train_targets": self.train_targets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        super().load_state_dict(state)
        self.train_targets = state["train_targets"]


def train_sasrec(model: SASRec, windows: TrainingWindows, valid: tuple[Sequence[np.ndarray], np.ndarray],
                 config: SASRecConfig, directory: Path, *, seed: int, progress: bool = True,
                 valid_seen: Sequence[np.ndarray] | None = None) -> TrainingResult:
    """Train ``model`` on ``windows``; keep the best validation weights in ``directory/best.pt`` (validation excludes
    ``valid_seen`` per user when given, else the input window)."""
    accelerator = Accelerator(cpu=config.cpu)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    task = SASRecTask(model, optimizer, accelerator, windows, valid, config, seed=seed, progress=progress,
                      valid_seen=valid_seen)
    settings = LoopSettings(max_units=config.epochs, eval_every=config.eval_every, patience=config.patience,
                            selection_metric=config.selection_metric, description="sasrec")
    result = run_training(task, settings, directory, seed=seed, accelerator=accelerator, progress=progress)
    return TrainingResult(directory / BEST_FILE, result.best_unit, result.best_metrics, result.units_run,
                          result.train_seconds, task.train_targets, result.history)


def load_best(model: SASRec, best_path: Path) -> SASRec:
    """Load the validation-selected weights written by :func:`train_sasrec` into ``model``."""
    model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["model"])
    return model
