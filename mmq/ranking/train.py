"""Train a ranking model on frozen SIDs or jointly with a tokenizer (stage 2), select on validation AUC.

Joint training uses the stage-2 objective of :mod:`mmq.finetune.objective` (``L_rank + 0.5 L_recon +
0.5 L_aux``, tokenizer at ``tokenizer_lr_ratio`` x the ranking model's lr). The loop is
:func:`mmq.training.run_training`: ``state.pt`` (model, source, optimiser, progress, every RNG state)
is written after every epoch and the per-epoch shuffle is seeded by ``(seed, epoch)``, so a resumed
run equals an uninterrupted one, dropout included; ``best.pt`` keeps the epoch with the best
validation AUC and training stops after ``patience`` epochs without improvement.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mmq.finetune.objective import BehaviorFinetuneConfig, stage2_loss, tokenizer_parameter_group
from mmq.metrics import auc, gauc
from mmq.metrics.per_event import ranking_arrays
from mmq.ranking.data import RankingData, RankingSplit
from mmq.semantic_ids.base import load_torch_state, save_torch_state
from mmq.training import BEST_FILE, LoopSettings, TrainingTask, run_training

LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RankingTrainingConfig:
    """Optimisation and selection [choice]; the stage-2 settings are ``RankingConfig.finetuning``."""

    batch_size: int = 512
    learning_rate: float = 1e-3          # Adam, ranking model
    weight_decay: float = 0.0
    max_epochs: int = 20
    patience: int = 3                    # epochs without validation-AUC improvement
    eval_batch_size: int = 8192

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1 or self.learning_rate <= 0:
            raise ValueError("batch_size, max_epochs, patience >= 1 and learning_rate > 0 required")


@torch.no_grad()
def predict(model, source, split: RankingSplit, batch_size: int = 8192) -> np.ndarray:
    """Scores (logits) of every sample of ``split``."""
    model.eval()
    source.eval()
    indices = source(torch.arange(source.num_items)).indices if model.sid is not None else None
    scores = []
    for start in range(0, len(split), batch_size):
        users = torch.from_numpy(split.users[start: start + batch_size])
        items = torch.from_numpy(split.items[start: start + batch_size])
        scores.append(model(users, items, None if indices is None else indices[items]))
    return torch.cat(scores).numpy().astype(np.float64)


def ranking_metrics(split: RankingSplit, scores: np.ndarray, long_tail: dict[str, np.ndarray] | None = None) -> dict:
    """AUC, GAUC (per-user AUC weighted by samples) and, when given, AUC on each item bucket (head, tail, ...)."""
    metrics: dict[str, Any] = {"auc": auc(split.labels, scores), **gauc(split.users, split.labels, scores),
                               "num_samples": len(split), "positive_rate": float(split.labels.mean())}
    for name, items in (long_tail or {}).items():
        rows = np.isin(split.items, items)
        labels = split.labels[rows]
        metrics[f"auc_{name}"] = auc(labels, scores[rows]) if 0 < labels.sum() < len(labels) else float("nan")
        metrics[f"num_samples_{name}"] = int(rows.sum())
    return metrics


def ranking_split_arrays(split: RankingSplit, scores: np.ndarray, name: str,
                         buckets: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-sample logits, labels, users and items of ``split`` in the per-event format (``<name>_score``, ...),
    plus an int8 mask ``<name>_in_<bucket>`` per item bucket (head, tail, cold, ...) when ``buckets`` are given."""
    arrays = ranking_arrays(name, scores=scores, labels=split.labels, users=split.users, items=split.items)
    for bucket, items in (buckets or {}).items():
        arrays[f"{name}_in_{bucket}"] = np.isin(split.items, items).astype(np.int8)
    return arrays


class RankingTask(TrainingTask):
    """One epoch of (stage-2) ranking training and a validation AUC."""

    def __init__(self, model, source, optimizer, data: RankingData, config: RankingTrainingConfig, *, seed: int,
                 progress: bool, finetuning: BehaviorFinetuneConfig) -> None:
        self.model, self.source, self.optimizer, self.data, self.config = model, source, optimizer, data, config
        self.seed, self.progress, self.finetuning = seed, progress, finetuning
        self.bce = torch.nn.BCEWithLogitsLoss()

    def train_unit(self, index: int) -> dict[str, Any]:
        """One pass in an order shuffled by ``(seed, epoch)``; sample-weighted mean of every loss term."""
        model, source, train, batch_size = self.model, self.source, self.data.splits["train"], self.config.batch_size
        model.train()
        source.train()
        order = np.random.default_rng([self.seed, index]).permutation(len(train))
        totals: dict[str, float] = {}
        for start in tqdm(range(0, len(order), batch_size), desc=f"ranking epoch {index + 1}",
                          disable=not self.progress, mininterval=10, leave=False):
            rows = order[start: start + batch_size]
            users, items = torch.from_numpy(train.users[rows]), torch.from_numpy(train.items[rows])
            unique, inverse = torch.unique(items, return_inverse=True)
            output = source(unique, with_losses=source.trainable)
            logits = model(users, items, output.indices[inverse] if model.sid is not None else None)
            loss, terms = stage2_loss("ranking", self.bce(logits, torch.from_numpy(train.labels[rows])), output.losses,
                                      self.finetuning)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) * len(rows)
        return {f"train_{name}": round(value / len(order), 5) for name, value in totals.items()}

    def evaluate(self, index: int) -> dict[str, Any]:
        """Validation AUC / GAUC."""
        valid = self.data.splits["valid"]
        return ranking_metrics(valid, predict(self.model, self.source, valid, self.config.eval_batch_size))

    def evaluation_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Validation AUC and GAUC, rounded."""
        return {"valid_auc": round(metrics["auc"], 5), "valid_gauc": round(metrics["gauc"], 5)}

    def save_best(self, path: Path, number: int, metrics: dict[str, Any]) -> None:
        """Ranking model and SID source weights."""
        save_torch_state(path, {"model": self.model.state_dict(), "source": self.source.state_dict()})

    def checkpointed(self) -> dict[str, Any]:
        """Ranking model, SID source and optimiser."""
        return {"model": self.model, "source": self.source, "optimizer": self.optimizer}


def fit_ranking(model, source, data: RankingData, config: RankingTrainingConfig, directory: Path, *,
                seed: int, progress: bool = True,
                finetuning: BehaviorFinetuneConfig = BehaviorFinetuneConfig()) -> dict[str, Any]:
    """Train ``model`` (and ``source`` when it is trainable, with ``finetuning``); leave the best weights loaded."""
    groups = [{"params": list(model.parameters()), "lr": config.learning_rate}]
    if source.trainable:
        groups.append(tokenizer_parameter_group(source, config.learning_rate, finetuning))
    optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay)
    task = RankingTask(model, source, optimizer, data, config, seed=seed, progress=progress, finetuning=finetuning)
    settings = LoopSettings(max_units=config.max_epochs, patience=config.patience, selection_metric="auc",
                            description="ranking")
    result = run_training(task, settings, directory, seed=seed, progress=progress)
    best = load_torch_state(directory / BEST_FILE)
    model.load_state_dict(best["model"])
    source.load_state_dict(best["source"])
    return {"best_epoch": result.best_unit, "best_valid_auc": result.best_score, "epochs_run": result.units_run,
            "train_seconds": round(result.train_seconds, 1), "history": result.history}
