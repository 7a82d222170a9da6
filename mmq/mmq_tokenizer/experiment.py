"""One config + seed -> one MMQ stage-1 run folder (registry kind ``mmq_tokenizer``).

The run folder ``checkpoints/<experiment>/seed<k>/`` holds ``tokenizer/`` (weights, git-ignored),
``semantic_ids.npy`` (+ de-dup digit; its sha256 is in the report), ``report.json`` (quality via
the shared :func:`~mmq.semantic_ids.base.quality_report`: L_recon, entropy, utilization, collision
rate) and ``DONE``. Stage 1 is content-only: no split is involved except inside the Beauty
collaborative embedding, which reads leave-one-out training sequences only. The MA/MS baselines on
the same inputs are the ``multimodal_sid_tokenizer`` kind of ``baselines.sid_tokenizers``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mmq.features.modalities import ItemModalitiesConfig, load_item_modalities
from mmq.mmq_tokenizer.config import MMQConfig
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer
from mmq.semantic_ids.fitting import fit_and_save_semantic_ids


@dataclasses.dataclass(frozen=True)
class MMQTokenizerConfig:
    """An MMQ stage-1 run: which item modalities, and MMQ's hyper-parameters (ablations live in ``mmq``)."""

    inputs: ItemModalitiesConfig = ItemModalitiesConfig()
    mmq: MMQConfig = MMQConfig()       # MMQ hyper-parameters (ablations live here)
    dedup: bool = True                 # append the de-dup digit to semantic_ids.npy
    num_threads: int = 1               # torch / faiss threads (2 shared cores)

    def __post_init__(self) -> None:
        if tuple(self.mmq.modalities) != self.inputs.modalities:
            raise ValueError(f"mmq.modalities {self.mmq.modalities} must equal the inputs' modalities "
                             f"{self.inputs.modalities}")


def build_mmq_semantic_ids(config: MMQTokenizerConfig, seed: int, run_directory: Path) -> dict[str, Any]:
    """Fit MMQ on the item modalities, write the SID table, return the metrics."""
    torch.set_num_threads(config.num_threads)
    embeddings, input_report = load_item_modalities(config.inputs)
    tokenizer = MMQTokenizer(config.mmq, num_threads=config.num_threads)
    _, metrics = fit_and_save_semantic_ids(tokenizer, embeddings, seed=seed, dedup=config.dedup,
                                           run_directory=run_directory, num_threads=config.num_threads)
    metrics["inputs"] = input_report
    gates = tokenizer.gates(embeddings)
    metrics["mmq"] = {
        "expert_names": list(tokenizer.expert_names),
        **tokenizer.gated_reconstruction_error(embeddings),
        "mean_gates": [round(float(value), 4) for value in gates.mean(axis=0)],
        "final_training_window": tokenizer.training_log[-1] if tokenizer.training_log else {},
    }
    return metrics


def run(config: MMQTokenizerConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``mmq_tokenizer`` kind."""
    return build_mmq_semantic_ids(config, seed, directory)
