"""Training and evaluation loop shared by both generative backbones (accelerate; resumable).

Model selection: validation NDCG@10 every ``eval_every`` epochs, early stopping after
``patience`` evaluations without improvement; ``best.pt`` holds the chosen weights and the test
split is scored once, with them, by the caller. The loop itself is :func:`mmq.training.run_training`:
``state.pt`` (model, optimiser, progress, every RNG state) is rewritten atomically after every epoch,
so an interrupted run resumes there and ends as the uninterrupted run would.
With ``joint`` (MMQ stage 2, :mod:`mmq.generative.finetune`) the tokenizer trains with the model,
validation uses the SIDs it derives at that moment, and ``best_source.pt`` keeps its chosen weights.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from mmq.generative.beam_search import beam_search
from mmq.generative.sid_trie import SemanticIdTrie
from mmq.recommenders.evaluation import (NextItemEvaluation, NextItemEvaluationConfig, drop_history_items,
                                         score_ranked)
from mmq.recommenders.sequences import iterate_batches, length_bucketed_batches, pad_histories
from mmq.semantic_ids.base import load_torch_state, save_torch_state
from mmq.training import BEST_FILE, LoopSettings, TrainingTask, run_training

LOGGER = logging.getLogger(__name__)
SELECTION_METRIC = "ndcg@10"
BEST_SOURCE_FILE = "best_source.pt"   # stage 2: the tokenizer weights of the best epoch


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Optimisation and selection settings (defaults: the ``cpu`` profile)."""

    batch_size: int = 128            # training rows (windows for causal, samples for t5) per step
    learning_rate: float = 2e-3      # AdamW; 2e-3 / batch 128 beat 1e-3 / 256 on validation (see README)
    weight_decay: float = 0.01
    max_epochs: int = 24             # cpu profile: ~20-25 min per Beauty run on one shared core
    eval_every: int = 4              # epochs between validation beam searches (one costs ~an epoch on CPU)
    patience: int = 2                # evaluations without validation improvement before stopping
    grad_clip: float = 1.0
    cpu: bool = False                # force CPU even where an accelerator exists


def item_codes_lookup(semantic_ids: np.ndarray) -> torch.Tensor:
    """SID table with an extra all ``-1`` row, so ``lookup[item]`` maps padding (-1) to -1 codes."""
    table = np.vstack([semantic_ids, np.full((1, semantic_ids.shape[1]), -1)]).astype(np.int64)
    return torch.from_numpy(table)


@torch.no_grad()
def generate_topk(model, lookup: torch.Tensor, trie: SemanticIdTrie, histories: np.ndarray, *,
                  beam_size: int, batch_size: int, device: torch.device, progress: bool = False,
                  seen: np.ndarray | None = None) -> np.ndarray:
    """Beam-search items ``[users, beam_size]`` for right-aligned ``histories`` (``-1`` = none).

    ``seen`` ``[users, S]`` (``-1`` = padding): items excluded inside the beam search (each user's full history).
    """
    model.eval()
    outputs = []
    for rows in tqdm(list(iterate_batches(len(histories), batch_size, shuffle=False)), desc="beam search",
                     disable=not progress, mininterval=10):
        codes = lookup[torch.from_numpy(histories[rows])].to(device)              # [batch, H, levels]
        context = model.user_context(codes)
        excluded = None if seen is None else seen_mask(seen[rows], trie.num_items).to(device)
        outputs.append(beam_search(model, context, trie, beam_size=beam_size, excluded=excluded).items.cpu().numpy())
    return np.concatenate(outputs)


def seen_mask(seen: np.ndarray, num_items: int) -> torch.Tensor:
    """Bool ``[users, num_items]``: True at each user's ``seen`` items (``[users, S]``, ``-1`` = padding)."""
    seen = torch.as_tensor(np.asarray(seen, dtype=np.int64))
    if seen.numel() and int(seen.max()) >= num_items:
        raise ValueError(f"a seen item index {int(seen.max())} is outside the catalogue of {num_items} items")
    mask = torch.zeros(seen.shape[0], num_items + 1, dtype=torch.bool)
    mask.scatter_(1, torch.where(seen >= 0, seen, torch.full_like(seen, num_items)), True)
    return mask[:, :num_items]


def score_split(model, lookup: torch.Tensor, trie: SemanticIdTrie, histories: list[np.ndarray],
                targets: np.ndarray, *, max_history: int, evaluation: NextItemEvaluationConfig,
                device: torch.device, progress: bool = False, seen: list[np.ndarray] | None = None
                ) -> NextItemEvaluation:
    """Recall/NDCG@k of beam-search retrieval and each event's target rank in the ``beam_size`` list it was
    scored on, under ``evaluation.history_exclusion``: ``full_in_beam`` excludes each user's ``seen`` items (the
    full history before the target; required) inside the beam, ``recent_after_beam`` drops the last
    ``max_history`` items from the finished beam, ``none`` keeps the beam as it is."""
    padded = pad_histories(histories, max_history)
    in_beam = evaluation.history_exclusion == "full_in_beam"
    if in_beam and seen is None:
        raise ValueError("history_exclusion full_in_beam needs each user's full history (seen=...)")
    if in_beam and len(seen) != len(histories):
        raise ValueError(f"{len(seen)} full histories for {len(histories)} users")
    ranked = generate_topk(model, lookup, trie, padded, beam_size=evaluation.beam_size,
                           batch_size=evaluation.batch_size, device=device, progress=progress,
                           seen=pad_histories(seen) if in_beam else None)
    if evaluation.history_exclusion == "recent_after_beam":
        ranked = drop_history_items(ranked, padded, evaluation.beam_size)
    return score_ranked(ranked, targets, ks=evaluation.reported_ks)


def evaluate_split(model, lookup: torch.Tensor, trie: SemanticIdTrie, histories: list[np.ndarray],
                   targets: np.ndarray, *, max_history: int, evaluation: NextItemEvaluationConfig,
                   device: torch.device, progress: bool = False, seen: list[np.ndarray] | None = None
                   ) -> dict[str, float]:
    """Recall/NDCG@k of beam-search retrieval (the metrics of :func:`score_split`)."""
    return score_split(model, lookup, trie, histories, targets, max_history=max_history, evaluation=evaluation,
                       device=device, progress=progress, seen=seen).metrics


class GenerativeTask(TrainingTask):
    """One epoch of next-SID training and a validation beam search (MMQ stage 2 when ``joint`` is given)."""

    def __init__(self, model, optimizer, accelerator: Accelerator, config: TrainingConfig, *, inputs: np.ndarray,
                 targets: np.ndarray, semantic_ids: np.ndarray, trie: SemanticIdTrie, valid_histories: list[np.ndarray],
                 valid_targets: np.ndarray, max_history: int, seed: int, progress: bool, joint,
                 evaluation: NextItemEvaluationConfig, valid_seen: list[np.ndarray] | None = None) -> None:
        self.model, self.optimizer, self.accelerator, self.config = model, optimizer, accelerator, config
        self.inputs, self.targets, self.semantic_ids = inputs, targets, semantic_ids
        self.lookup, self.trie, self.table = item_codes_lookup(semantic_ids), trie, semantic_ids
        self.valid_histories, self.valid_targets, self.max_history = valid_histories, valid_targets, max_history
        self.valid_seen = valid_seen
        self.seed, self.progress, self.joint, self.evaluation = seed, progress, joint, evaluation

    def train_unit(self, index: int) -> dict[str, Any]:
        """One pass over length-bucketed batches shuffled by ``(seed, epoch)``; mean loss (and stage-2 terms)."""
        accelerator, inputs, targets, joint = self.accelerator, self.inputs, self.targets, self.joint
        self.model.train()
        if joint is not None:
            joint.source.train()
        losses, term_sums = [], {}
        rng = np.random.default_rng([self.seed, index])   # per epoch: resuming changes nothing
        batches = list(length_bucketed_batches(inputs, self.config.batch_size, rng=rng))
        batches = batches[accelerator.process_index::accelerator.num_processes]  # data-parallel shards
        for rows, first in tqdm(batches, desc=f"epoch {index + 1}", disable=not self.progress, mininterval=10,
                                leave=False):
            batch_targets = targets[rows, first:] if targets.ndim == 2 else targets[rows]
            if joint is not None:
                loss, terms = joint.loss(self.model, torch.from_numpy(inputs[rows, first:]).to(accelerator.device),
                                         torch.from_numpy(batch_targets).to(accelerator.device))
                for name, value in terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + float(value.detach())
            else:
                history_codes = self.lookup[torch.from_numpy(inputs[rows, first:])].to(accelerator.device)
                target_codes = self.lookup[torch.from_numpy(batch_targets)].to(accelerator.device)
                loss = self.model(history_codes, target_codes).loss
            self.optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if self.config.grad_clip:
                accelerator.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)  # the generator's only
            self.optimizer.step()
            losses.append(float(loss.detach()))
        if joint is not None:  # the SIDs the tokenizer derives now: next epoch's de-dup digits, validation's table
            self.table = joint.refresh()
        return {"loss": float(np.mean(losses)),
                **{f"train_{name}": round(value / len(losses), 5) for name, value in term_sums.items()}}

    def evaluate(self, index: int) -> dict[str, Any]:
        """Validation recall/NDCG of a constrained beam search over the current SIDs."""
        if self.joint is not None:
            self.lookup = item_codes_lookup(self.table)
            self.trie = self.joint.trie(self.table).to(self.accelerator.device)
        valid = evaluate_split(self.accelerator.unwrap_model(self.model), self.lookup, self.trie, self.valid_histories,
                               self.valid_targets, max_history=self.max_history, evaluation=self.evaluation,
                               seen=self.valid_seen,
                               device=self.accelerator.device)
        if self.joint is not None:
            changed = (self.table[:, :-1] != self.semantic_ids[:, :-1]).any(axis=1).mean()
            valid = {"changed_item_fraction": float(changed), **valid}
        return valid

    def evaluation_record(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The changed-SID fraction (stage 2) and every recall/NDCG, prefixed ``valid_``."""
        record = {name: value for name, value in metrics.items() if name == "changed_item_fraction"}
        return {**record, **{f"valid_{name}": value for name, value in metrics.items()
                             if name.startswith(("recall", "ndcg"))}}

    def save_best(self, path: Path, number: int, metrics: dict[str, Any]) -> None:
        """``best.pt`` (generator weights) and, in stage 2, ``best_source.pt`` (tokenizer weights)."""
        save_torch_state(path, self.accelerator.unwrap_model(self.model).state_dict())
        if self.joint is not None:
            save_torch_state(path.with_name(BEST_SOURCE_FILE), self.joint.source.state_dict())

    def checkpointed(self) -> dict[str, Any]:
        """Generator, optimiser and (stage 2) tokenizer."""
        parts = {"model": self.accelerator.unwrap_model(self.model), "optimizer": self.optimizer}
        return parts if self.joint is None else {**parts, "source": self.joint.source}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the checkpointed parts; a resumed tokenizer's de-dup digits are re-derived."""
        super().load_state_dict(state)
        if self.joint is not None:
            self.table = self.joint.refresh()


def fit(model, config: TrainingConfig, directory: Path, *, inputs: np.ndarray, targets: np.ndarray,
        semantic_ids: np.ndarray, trie: SemanticIdTrie, valid_histories: list[np.ndarray],
        valid_targets: np.ndarray, max_history: int, seed: int, progress: bool = True,
        joint=None, evaluation: NextItemEvaluationConfig = NextItemEvaluationConfig(),
        valid_seen: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Train on (``inputs`` item rows, ``targets`` next items), select on validation; returns a summary.

    ``joint``: a :class:`mmq.generative.finetune.JointTokenizer` trained with the model (``semantic_ids``
    and ``trie`` are then only the starting point; evaluations use the tokenizer's current SIDs).
    ``valid_seen``: each validation user's full history (items excluded in the beam under ``full_in_beam``).
    """
    accelerator = Accelerator(cpu=config.cpu)
    trie.to(accelerator.device)
    groups = [{"params": list(model.parameters())}]
    if joint is not None:
        if accelerator.num_processes > 1:  # the live tokenizer is not wrapped for gradient all-reduce
            raise ValueError("generative fine-tuning (finetune: true) runs in one process; launch it without "
                             "data parallelism")
        joint.to(accelerator.device)
        groups.append(joint.parameter_group(config.learning_rate))
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    task = GenerativeTask(model, optimizer, accelerator, config, inputs=inputs, targets=targets,
                          semantic_ids=semantic_ids, trie=trie, valid_histories=valid_histories,
                          valid_targets=valid_targets, max_history=max_history, seed=seed, progress=progress,
                          joint=joint, evaluation=evaluation, valid_seen=valid_seen)
    settings = LoopSettings(max_units=config.max_epochs, eval_every=config.eval_every, patience=config.patience,
                            selection_metric=SELECTION_METRIC, description="generative")
    result = run_training(task, settings, directory, seed=seed, accelerator=accelerator, progress=progress)
    best_path = directory / BEST_FILE
    if not best_path.exists():
        raise RuntimeError(f"no validation evaluation happened in {directory}; check max_epochs/eval_every")
    accelerator.unwrap_model(model).load_state_dict(load_torch_state(best_path))
    if joint is not None:
        joint.source.load_state_dict(load_torch_state(directory / BEST_SOURCE_FILE))
        joint.source.eval()
        joint.refresh()
    target_count = int((targets >= 0).sum()) if targets.ndim == 2 else len(targets)
    return {
        "best_epoch": result.best_unit,
        "best_valid_" + SELECTION_METRIC: result.best_score,
        "epochs_run": result.units_run,
        "train_seconds": round(result.train_seconds, 1),
        "train_targets_per_second": round(result.units_run * target_count / max(result.train_seconds, 1e-9), 1),
        "history": result.history,
        "device": str(accelerator.device),
    }
