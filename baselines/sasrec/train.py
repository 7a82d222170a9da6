"""Resumable SASRec training via accelerate, with validation-selected weights and early stopping.

Every epoch shuffles the training windows with ``(seed, epoch)`` and trains on all positions of
each window at once. Every ``eval_every`` epochs the model ranks the full catalogue for every
validation user (history items excluded); ``best.pt`` keeps the weights with the best
``selection_metric`` and ``state.pt`` (model, optimiser, epoch, best, history, torch RNG) is written
atomically after each evaluation, so a killed run resumes from its last evaluation. Training stops
after ``patience`` evaluations without improvement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from baselines.sasrec.model import SASRec, next_item_loss
from mmq import artifacts
from mmq.recommenders.evaluation import METRIC_KS, next_item_metrics, topk_excluding_history
from mmq.recommenders.sequences import TrainingWindows, iterate_batches, pad_histories

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
                    batch_size: int = 1024, device: torch.device | str = "cpu") -> np.ndarray:
    """Top-``k`` full-catalogue items ``[users, k]`` after each history, history items excluded."""
    was_training = model.training
    model.eval()
    padded = torch.from_numpy(pad_histories(histories, max_length))       # [users, max_length]
    ranked = []
    for start in range(0, len(padded), batch_size):
        batch = padded[start:start + batch_size].to(device)
        scores = model.score_histories(batch)                               # [batch, num_items]
        ranked.append(topk_excluding_history(scores, batch, k).cpu())
    model.train(was_training)
    return torch.cat(ranked).numpy()


def evaluate(model: SASRec, histories: Sequence[np.ndarray], targets: np.ndarray, *, max_length: int,
             ks: tuple[int, ...] = METRIC_KS, device: torch.device | str = "cpu") -> dict[str, float]:
    """Next-item metrics (``recall@k``, ``ndcg@k``, ...) of ``model`` on (histories, targets)."""
    ranked = rank_next_items(model, histories, max_length=max_length, k=max(ks), device=device)
    return next_item_metrics(ranked, targets, ks=ks)


def train_sasrec(model: SASRec, windows: TrainingWindows, valid: tuple[Sequence[np.ndarray], np.ndarray],
                 config: SASRecConfig, directory: Path, *, seed: int, progress: bool = True) -> TrainingResult:
    """Train ``model`` on ``windows``; keep the best validation weights in ``directory/best.pt``."""
    directory.mkdir(parents=True, exist_ok=True)
    state_path, best_path = directory / "state.pt", directory / "best.pt"
    accelerator = Accelerator(cpu=config.cpu)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    history: list[dict[str, Any]] = []
    best_score, best_epoch, start_epoch, train_seconds, train_targets = -1.0, 0, 0, 0.0, 0
    if state_path.exists():  # resume after an interruption
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history, best_score, best_epoch = state["history"], state["best_score"], state["best_epoch"]
        start_epoch, train_seconds, train_targets = state["epoch"], state["train_seconds"], state["train_targets"]
        LOGGER.info("resuming %s after epoch %d (best %s %.4f at epoch %d)", directory, start_epoch,
                    config.selection_metric, best_score, best_epoch)
    model, optimizer = accelerator.prepare(model, optimizer)
    inputs, targets = torch.from_numpy(windows.inputs), torch.from_numpy(windows.targets)
    valid_histories, valid_targets = valid
    epoch = start_epoch
    while epoch < config.epochs and not _patience_exhausted(history, best_epoch, config.patience):
        order = np.random.default_rng([seed, epoch]).permutation(len(windows))
        order = order[accelerator.process_index::accelerator.num_processes]
        model.train()
        started, losses, epoch_targets = time.perf_counter(), [], 0
        batches = list(iterate_batches(len(order), config.batch_size, shuffle=False))
        bar = tqdm(batches, desc=f"sasrec epoch {epoch + 1}/{config.epochs}", mininterval=10,
                   disable=not progress or not accelerator.is_main_process)
        for rows in bar:
            batch_inputs = inputs[order[rows]].to(accelerator.device)
            batch_targets = targets[order[rows]].to(accelerator.device)
            loss = next_item_loss(accelerator.unwrap_model(model), model(batch_inputs).hidden, batch_targets)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            epoch_targets += int((batch_targets >= 0).sum())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
        seconds = time.perf_counter() - started
        train_seconds, train_targets, epoch = train_seconds + seconds, train_targets + epoch_targets, epoch + 1
        entry: dict[str, Any] = {"epoch": epoch, "train_loss": round(float(np.mean(losses)), 5),
                                 "epoch_seconds": round(seconds, 2),
                                 "train_targets_per_second": round(epoch_targets / seconds, 1)}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            unwrapped = accelerator.unwrap_model(model)
            entry["valid"] = evaluate(unwrapped, valid_histories, valid_targets, max_length=config.max_history,
                                      device=accelerator.device)
            score = entry["valid"][config.selection_metric]
            LOGGER.info("sasrec epoch %d: loss %.4f, valid %s %.4f, %.0f targets/s", epoch, entry["train_loss"],
                        config.selection_metric, score, entry["train_targets_per_second"])
            history.append(entry)
            if accelerator.is_main_process:
                if score > best_score:
                    best_score, best_epoch = score, epoch
                    weights = {key: value.cpu() for key, value in unwrapped.state_dict().items()}
                    _save_torch(best_path, {"model": weights, "epoch": epoch, "valid": entry["valid"]})
                _save_torch(state_path, {
                    "model": unwrapped.state_dict(), "optimizer": optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(), "history": history, "best_score": best_score,
                    "best_epoch": best_epoch, "epoch": epoch, "train_seconds": train_seconds,
                    "train_targets": train_targets})
            accelerator.wait_for_everyone()
        else:
            history.append(entry)
    best_valid = next(item["valid"] for item in history if item["epoch"] == best_epoch) if best_epoch else {}
    return TrainingResult(best_path, best_epoch, best_valid, epoch, train_seconds, train_targets, history)


def load_best(model: SASRec, best_path: Path) -> SASRec:
    """Load the validation-selected weights written by :func:`train_sasrec` into ``model``."""
    model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["model"])
    return model


def _patience_exhausted(history: list[dict[str, Any]], best_epoch: int, patience: int) -> bool:
    """Whether the last ``patience`` evaluations all came after the best one (0 = never stop early)."""
    evaluations_since_best = sum(1 for item in history if "valid" in item and item["epoch"] > best_epoch)
    return patience > 0 and evaluations_since_best >= patience


def _save_torch(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` through a temporary file so a killed run never leaves a truncated file."""
    with artifacts.atomic_path(path) as temporary:
        torch.save(payload, temporary)
