"""SASRec-CE baseline on a leave-one-out split: train, select on validation, score test once.

One config + seed -> one run folder (``checkpoints/<experiment>/seed<k>/``) with ``best.pt`` and
``state.pt`` (git-ignored) and ``report.json``: valid and test next-item metrics at the
validation-selected epoch, training speed and the evaluation history; ``per_event.npz`` keeps each
valid / test event's target rank under the chosen weights (:mod:`mmq.metrics.per_event`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from baselines.sasrec.model import SASRec
from baselines.sasrec.train import load_best, score, train_sasrec
from mmq.data import leave_one_out, load_dataset
from mmq.data.splits import SequenceSplitConfig
from mmq.metrics.per_event import save_chosen_next_item
from mmq.recommenders.sequences import training_windows

LOGGER = logging.getLogger(__name__)


HISTORY_EXCLUSIONS = ("recent", "full")


@dataclasses.dataclass(frozen=True)
class SASRecConfig:
    """SASRec with full-softmax cross-entropy (defaults: genrec's SASRec-CE on Beauty)."""

    dataset: str = "beauty"
    kcore: int | None = None            # None: the dataset's default (5-core)
    max_history: int = 20               # TIGER protocol; also the training window length
    split: SequenceSplitConfig = SequenceSplitConfig()   # test events per user, equal-timestamp order
    hidden_size: int = 64               # item / position embedding and transformer width
    num_layers: int = 2                 # causal transformer blocks
    num_heads: int = 1                  # attention heads per block
    feedforward_size: int = 256         # inner width of the position-wise feed-forward
    dropout: float = 0.5                # embedding, attention and feed-forward dropout
    learning_rate: float = 1e-3         # Adam
    weight_decay: float = 0.0           # Adam L2 (SASRec-CE uses none)
    batch_size: int = 256               # training windows per step
    epochs: int = 60                    # upper bound; early stopping usually ends sooner
    eval_every: int = 2                 # epochs between validation passes
    patience: int = 5                   # evaluations without improvement before stopping (0: never)
    selection_metric: str = "ndcg@10"   # validation metric that picks the checkpoint
    num_threads: int = 1                # torch CPU threads (1 is fastest for this size on 2 shared cores)
    cpu: bool = False                   # force CPU even when a GPU is present
    profile: str = "cpu"                # label recorded in the report: "cpu" or "gpu" settings
    history_exclusion: str = "recent"   # items masked from the ranking: "recent" = the input window (the last
    #                                     max_history items; runs before 2026-12), "full" = every earlier item,
    #                                     as the generative rows' full_in_beam (docs/method.md §5.3)

    def __post_init__(self) -> None:
        if self.profile not in ("cpu", "gpu"):
            raise ValueError(f"profile must be 'cpu' or 'gpu', got {self.profile!r}")
        if self.eval_every < 1 or self.epochs < 1:
            raise ValueError(f"epochs and eval_every must be >= 1, got {self.epochs}, {self.eval_every}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.history_exclusion not in HISTORY_EXCLUSIONS:
            raise ValueError(f"history_exclusion must be one of {HISTORY_EXCLUSIONS}, got {self.history_exclusion!r}")

    def model_arguments(self, num_items: int) -> dict[str, Any]:
        """Keyword arguments of :class:`SASRec` for a catalogue of ``num_items``."""
        return {"num_items": num_items, "max_length": self.max_history, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "num_heads": self.num_heads,
                "feedforward_size": self.feedforward_size, "dropout": self.dropout}


def run_sasrec(config: SASRecConfig, seed: int, run_directory: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train SASRec, pick the best validation epoch, score test once; return the metrics dict."""
    torch.set_num_threads(config.num_threads)
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    split = leave_one_out(dataset, max_history=config.max_history, config=config.split)
    windows = training_windows(split.train_sequences, max_length=config.max_history)
    model = SASRec(**config.model_arguments(dataset.num_items))
    num_params = sum(parameter.numel() for parameter in model.parameters())
    LOGGER.info("sasrec on %s: %d items, %d users, %d windows, %d targets, %d parameters", config.dataset,
                dataset.num_items, len(split.train_sequences), len(windows), windows.num_targets, num_params)
    full = config.history_exclusion == "full"
    seen = {name: split.seen_items(name) if full else None for name in ("valid", "test")}
    result = train_sasrec(model, windows, split.history_and_target("valid"), config, run_directory, seed=seed,
                          progress=progress, valid_seen=seen["valid"])
    best = load_best(SASRec(**config.model_arguments(dataset.num_items)), result.best_path)
    device = "cuda" if torch.cuda.is_available() and not config.cpu else "cpu"
    best.to(device)
    valid = score(best, *split.history_and_target("valid"), max_length=config.max_history, device=device,
                  seen=seen["valid"])
    started = time.perf_counter()
    scored_test = score(best, *split.history_and_target("test"), max_length=config.max_history, device=device,
                        seen=seen["test"])
    test, test_eval_seconds = scored_test.metrics, round(time.perf_counter() - started, 2)
    extra = {}
    if full:   # the same weights' lists with nothing excluded (the generative rows' second protocol)
        test_histories, test_targets = split.history_and_target("test")
        extra["test_no_exclusion"] = score(best, test_histories, test_targets, max_length=config.max_history,
                                           device=device, seen=[np.empty(0, dtype=np.int64)] * len(test_targets))
    per_event = save_chosen_next_item(run_directory, valid, scored_test, reported_valid=result.best_valid,
                                      test_users=split.event_users("test"), extra=extra)
    evaluated_epochs = sum(1 for entry in result.history if "valid" in entry)
    LOGGER.info("sasrec best epoch %d: valid %s %.4f, test %.4f", result.best_epoch, config.selection_metric,
                result.best_valid[config.selection_metric], test[config.selection_metric])
    return {
        "valid": result.best_valid,
        "test": test,
        **{name: scored.metrics for name, scored in extra.items()},
        "history_exclusion": config.history_exclusion,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "evaluations": evaluated_epochs,
        "train_seconds": round(result.train_seconds, 2),
        "seconds_per_epoch": round(result.train_seconds / max(result.epochs_run, 1), 2),
        "train_targets_per_second": round(result.train_targets / max(result.train_seconds, 1e-9), 1),
        "test_eval_seconds": test_eval_seconds,
        "profile": config.profile,
        "device": device,
        "num_params": num_params,
        "num_train_windows": len(windows),
        "num_train_targets": windows.num_targets,
        "num_threads": config.num_threads,
        "dataset": dataset.statistics(),
        "history": result.history,
        "per_event": per_event,
    }


def run(config: SASRecConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``sasrec`` kind (a forced rerun starts fresh: the registry deletes its state)."""
    return run_sasrec(config, seed, directory, progress=progress)
