"""Train a ranking model on frozen SIDs or jointly with a tokenizer (stage 2), select on validation AUC.

Joint training uses the stage-2 objective of :mod:`mmq.finetune.objective` (``L_rank + 0.5 L_recon +
0.5 L_aux``, tokenizer at ``tokenizer_lr_ratio`` x the ranking model's lr). ``state.pt`` (model, source,
optimiser, progress) is written after every epoch and the per-epoch shuffle is seeded by
``(seed, epoch)``, so a resumed run equals an uninterrupted one; ``best.pt`` keeps the epoch with
the best validation AUC.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mmq.finetune.objective import BehaviorFinetuneConfig, stage2_loss, tokenizer_parameter_group
from mmq.metrics import auc, gauc
from mmq.ranking.data import RankingData, RankingSplit
from mmq.semantic_ids.base import load_torch_state, save_torch_state

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
    """AUC, GAUC (per-user AUC weighted by samples) and, when given, AUC on head / tail items."""
    metrics: dict[str, Any] = {"auc": auc(split.labels, scores), **gauc(split.users, split.labels, scores),
                               "num_samples": len(split), "positive_rate": float(split.labels.mean())}
    for name, items in (long_tail or {}).items():
        rows = np.isin(split.items, items)
        labels = split.labels[rows]
        metrics[f"auc_{name}"] = auc(labels, scores[rows]) if 0 < labels.sum() < len(labels) else float("nan")
        metrics[f"num_samples_{name}"] = int(rows.sum())
    return metrics


def fit_ranking(model, source, data: RankingData, config: RankingTrainingConfig, directory: Path, *,
                seed: int, progress: bool = True,
                finetuning: BehaviorFinetuneConfig = BehaviorFinetuneConfig()) -> dict[str, Any]:
    """Train ``model`` (and ``source`` when it is trainable, with ``finetuning``); leave the best weights loaded."""
    state_path, best_path = directory / "state.pt", directory / "best.pt"
    groups = [{"params": list(model.parameters()), "lr": config.learning_rate}]
    if source.trainable:
        groups.append(tokenizer_parameter_group(source, config.learning_rate, finetuning))
    optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay)
    progress_state: dict[str, Any] = {"epoch": 0, "best": -1.0, "best_epoch": -1, "bad_epochs": 0,
                                      "history": [], "train_seconds": 0.0}
    if state_path.exists():
        saved = load_torch_state(state_path)
        model.load_state_dict(saved["model"])
        source.load_state_dict(saved["source"])
        optimizer.load_state_dict(saved["optimizer"])
        progress_state = saved["progress"]
        LOGGER.info("resuming %s after epoch %d", directory, progress_state["epoch"])
    train = data.splits["train"]
    bce = torch.nn.BCEWithLogitsLoss()
    while progress_state["epoch"] < config.max_epochs and progress_state["bad_epochs"] < config.patience:
        model.train()
        source.train()
        started = time.perf_counter()
        order = np.random.default_rng([seed, progress_state["epoch"]]).permutation(len(train))
        totals: dict[str, float] = {}
        batches = range(0, len(order), config.batch_size)
        for start in tqdm(batches, desc=f"ranking epoch {progress_state['epoch'] + 1}", disable=not progress,
                          mininterval=10, leave=False):
            rows = order[start: start + config.batch_size]
            users, items = torch.from_numpy(train.users[rows]), torch.from_numpy(train.items[rows])
            unique, inverse = torch.unique(items, return_inverse=True)
            output = source(unique, with_losses=source.trainable)
            logits = model(users, items, output.indices[inverse] if model.sid is not None else None)
            loss, terms = stage2_loss("ranking", bce(logits, torch.from_numpy(train.labels[rows])), output.losses,
                                      finetuning)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) * len(rows)
        progress_state["train_seconds"] += time.perf_counter() - started
        progress_state["epoch"] += 1
        valid = ranking_metrics(data.splits["valid"], predict(model, source, data.splits["valid"],
                                                             config.eval_batch_size))
        record = {"epoch": progress_state["epoch"], **{f"train_{k}": round(v / len(order), 5) for k, v in totals.items()},
                  "valid_auc": round(valid["auc"], 5), "valid_gauc": round(valid["gauc"], 5)}
        progress_state["history"].append(record)
        LOGGER.info("%s", record)
        if valid["auc"] > progress_state["best"]:
            progress_state.update(best=valid["auc"], best_epoch=progress_state["epoch"], bad_epochs=0)
            save_torch_state(best_path, {"model": model.state_dict(), "source": source.state_dict()})
        else:
            progress_state["bad_epochs"] += 1
        save_torch_state(state_path, {"model": model.state_dict(), "source": source.state_dict(),
                                      "optimizer": optimizer.state_dict(), "progress": progress_state})
    best = load_torch_state(best_path)
    model.load_state_dict(best["model"])
    source.load_state_dict(best["source"])
    return {"best_epoch": progress_state["best_epoch"], "best_valid_auc": progress_state["best"],
            "epochs_run": progress_state["epoch"], "train_seconds": round(progress_state["train_seconds"], 1),
            "history": progress_state["history"]}
