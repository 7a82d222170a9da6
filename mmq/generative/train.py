"""Training and evaluation loop shared by both generative backbones (accelerate; resumable).

Model selection: validation NDCG@10 every ``eval_every`` epochs, early stopping after
``patience`` evaluations without improvement; ``best.pt`` holds the chosen weights and the test
split is scored once, with them, by the caller. ``state.pt`` (model, optimiser, epoch, best so far,
RNG) is rewritten atomically after every evaluation, so an interrupted run resumes there.
With ``joint`` (MMQ stage 2, :mod:`mmq.generative.finetune`) the tokenizer trains with the model,
validation uses the SIDs it derives at that moment, and ``best_source.pt`` keeps its chosen weights.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from mmq.generative.beam_search import beam_search
from mmq.generative.sid_trie import SemanticIdTrie
from mmq.recommenders.evaluation import NextItemEvaluationConfig, drop_history_items, next_item_metrics
from mmq.recommenders.sequences import iterate_batches, length_bucketed_batches, pad_histories
from mmq.semantic_ids.base import load_torch_state, save_torch_state

LOGGER = logging.getLogger(__name__)
SELECTION_METRIC = "ndcg@10"


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
                  beam_size: int, batch_size: int, device: torch.device, progress: bool = False) -> np.ndarray:
    """Beam-search items ``[users, beam_size]`` for right-aligned ``histories`` (``-1`` = none)."""
    model.eval()
    outputs = []
    for rows in tqdm(list(iterate_batches(len(histories), batch_size, shuffle=False)), desc="beam search",
                     disable=not progress, mininterval=10):
        codes = lookup[torch.from_numpy(histories[rows])].to(device)              # [batch, H, levels]
        context = model.user_context(codes)
        outputs.append(beam_search(model, context, trie, beam_size=beam_size).items.cpu().numpy())
    return np.concatenate(outputs)


def evaluate_split(model, lookup: torch.Tensor, trie: SemanticIdTrie, histories: list[np.ndarray],
                   targets: np.ndarray, *, max_history: int, evaluation: NextItemEvaluationConfig,
                   device: torch.device, progress: bool = False) -> dict[str, float]:
    """Recall/NDCG@k of beam-search retrieval (history items removed when ``evaluation`` asks)."""
    padded = pad_histories(histories, max_history)
    ranked = generate_topk(model, lookup, trie, padded, beam_size=evaluation.beam_size,
                           batch_size=evaluation.batch_size, device=device, progress=progress)
    if evaluation.exclude_history:
        ranked = drop_history_items(ranked, padded, evaluation.beam_size)
    return next_item_metrics(ranked, targets, ks=evaluation.reported_ks)


def fit(model, config: TrainingConfig, directory: Path, *, inputs: np.ndarray, targets: np.ndarray,
        semantic_ids: np.ndarray, trie: SemanticIdTrie, valid_histories: list[np.ndarray],
        valid_targets: np.ndarray, max_history: int, seed: int, progress: bool = True,
        joint=None, evaluation: NextItemEvaluationConfig = NextItemEvaluationConfig()) -> dict[str, Any]:
    """Train on (``inputs`` item rows, ``targets`` next items), select on validation; returns a summary.

    ``joint``: a :class:`mmq.generative.finetune.JointTokenizer` trained with the model (``semantic_ids``
    and ``trie`` are then only the starting point; evaluations use the tokenizer's current SIDs).
    """
    state_path, best_path, best_source_path = directory / "state.pt", directory / "best.pt", directory / "best_source.pt"
    accelerator = Accelerator(cpu=config.cpu)
    lookup = item_codes_lookup(semantic_ids)
    trie.to(accelerator.device)
    groups = [{"params": list(model.parameters())}]
    if joint is not None:
        if accelerator.num_processes > 1:  # the live tokenizer is not wrapped for gradient all-reduce
            raise ValueError("generative fine-tuning (finetune: true) runs in one process; launch it without "
                             "data parallelism")
        joint.to(accelerator.device)
        groups.append(joint.parameter_group(config.learning_rate))
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay)
    progress_state = {"epoch": 0, "best": -1.0, "best_epoch": -1, "bad_evals": 0, "history": [],
                      "train_seconds": 0.0, "train_targets": 0}
    if state_path.exists():  # resume
        saved = load_torch_state(state_path)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        progress_state = saved["progress"]
        if joint is not None:
            joint.source.load_state_dict(saved["source"])
            joint.refresh()  # de-dup digits of the resumed tokenizer's codes
        LOGGER.info("resuming %s at epoch %d", directory, progress_state["epoch"])
    model, optimizer = accelerator.prepare(model, optimizer)
    target_count = int((targets >= 0).sum()) if targets.ndim == 2 else len(targets)
    while progress_state["epoch"] < config.max_epochs and progress_state["bad_evals"] < config.patience:
        model.train()
        if joint is not None:
            joint.source.train()
        started, losses, term_sums = time.perf_counter(), [], {}
        rng = np.random.default_rng([seed, progress_state["epoch"]])   # per epoch: resuming changes nothing
        batches = list(length_bucketed_batches(inputs, config.batch_size, rng=rng))
        batches = batches[accelerator.process_index::accelerator.num_processes]  # data-parallel shards
        for rows, first in tqdm(batches, desc=f"epoch {progress_state['epoch'] + 1}", disable=not progress,
                                mininterval=10):
            batch_targets = targets[rows, first:] if targets.ndim == 2 else targets[rows]
            if joint is not None:
                loss, terms = joint.loss(model, torch.from_numpy(inputs[rows, first:]).to(accelerator.device),
                                         torch.from_numpy(batch_targets).to(accelerator.device))
                for name, value in terms.items():
                    term_sums[name] = term_sums.get(name, 0.0) + float(value.detach())
            else:
                history_codes = lookup[torch.from_numpy(inputs[rows, first:])].to(accelerator.device)
                target_codes = lookup[torch.from_numpy(batch_targets)].to(accelerator.device)
                loss = model(history_codes, target_codes).loss
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if config.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)  # the generator's only
            optimizer.step()
            losses.append(float(loss.detach()))
        progress_state["train_seconds"] += time.perf_counter() - started
        progress_state["train_targets"] += target_count
        progress_state["epoch"] += 1
        epoch = progress_state["epoch"]
        record = {"epoch": epoch, "loss": float(np.mean(losses)),
                  **{f"train_{name}": round(value / len(losses), 5) for name, value in term_sums.items()}}
        progress_state["history"].append(record)   # validation numbers are added to this record below
        if joint is not None:  # the SIDs the tokenizer derives now: next epoch's de-dup digits, validation's table
            table = joint.refresh()
        if epoch % config.eval_every == 0 or epoch == config.max_epochs:
            unwrapped = accelerator.unwrap_model(model)
            if joint is not None:
                lookup, trie = item_codes_lookup(table), joint.trie(table).to(accelerator.device)
                record["changed_item_fraction"] = float((table[:, :-1] != semantic_ids[:, :-1]).any(axis=1).mean())
            valid = evaluate_split(unwrapped, lookup, trie, valid_histories, valid_targets, max_history=max_history,
                                   evaluation=evaluation, device=accelerator.device)
            record.update({f"valid_{name}": value for name, value in valid.items() if name.startswith(("recall", "ndcg"))})
            improved = valid[SELECTION_METRIC] > progress_state["best"]
            if improved:
                progress_state.update(best=valid[SELECTION_METRIC], best_epoch=epoch, bad_evals=0)
            else:
                progress_state["bad_evals"] += 1
            if accelerator.is_main_process:
                if improved:
                    save_torch_state(best_path, unwrapped.state_dict())
                    if joint is not None:
                        save_torch_state(best_source_path, joint.source.state_dict())
                state = {"model": unwrapped.state_dict(), "optimizer": optimizer.state_dict(), "progress": progress_state}
                if joint is not None:
                    state["source"] = joint.source.state_dict()
                save_torch_state(state_path, state)
            accelerator.wait_for_everyone()
        LOGGER.info("%s", record)
    if not best_path.exists():
        raise RuntimeError(f"no validation evaluation happened in {directory}; check max_epochs/eval_every")
    accelerator.unwrap_model(model).load_state_dict(load_torch_state(best_path))
    if joint is not None:
        joint.source.load_state_dict(load_torch_state(best_source_path))
        joint.source.eval()
        joint.refresh()
    return {
        "best_epoch": progress_state["best_epoch"],
        "best_valid_" + SELECTION_METRIC: progress_state["best"],
        "epochs_run": progress_state["epoch"],
        "train_seconds": round(progress_state["train_seconds"], 1),
        "train_targets_per_second": round(progress_state["train_targets"] / max(progress_state["train_seconds"], 1e-9), 1),
        "history": progress_state["history"],
        "device": str(accelerator.device),
    }
