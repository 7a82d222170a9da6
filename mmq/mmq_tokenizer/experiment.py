"""One config + seed -> one tokenizer run folder: MMQ stage 1 or an MA/MS baseline on two modalities.

The run folder ``checkpoints/<experiment>/seed<k>/`` holds ``tokenizer/`` (weights, git-ignored),
``semantic_ids.npy`` (+ de-dup digit; its sha256 is in the report), ``report.json`` (quality via
the shared :func:`~mmq.tokenizers.base.quality_report`: L_recon, entropy, utilization, collision
rate) and ``DONE``. Stage 1 is content-only: no split is involved except inside the Beauty
collaborative embedding, which reads leave-one-out training sequences only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mmq.mmq_tokenizer.config import MMQConfig
from mmq.mmq_tokenizer.inputs import ItemModalitiesConfig, load_item_modalities
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer
from mmq.tokenizers.experiment import fit_and_save_semantic_ids
from mmq.tokenizers.modality import make_modality_tokenizer

METHODS = ("mmq", "rq_vae", "rq_kmeans", "opq")


@dataclasses.dataclass(frozen=True)
class MultimodalTokenizerConfig:
    """A multimodal tokenizer run: MMQ (``method: mmq``) or an MA/MS baseline, K and length matched."""

    inputs: ItemModalitiesConfig = ItemModalitiesConfig()
    method: str = "mmq"                # mmq | rq_vae | rq_kmeans | opq
    fusion: str = "ma"                 # baselines only: ma (fuse then quantize) | ms (quantize each modality)
    code_length: int = 6               # baselines only (MMQ: num_shared + sum(num_specific) experts)
    codebook_size: int = 100           # baselines only (MMQ: mmq.codebook_size)
    rq_vae_steps: int = 800            # baselines' RQ-VAE steps, matched to MMQ's num_steps [choice]
    rq_vae_batch_size: int = 256       # baselines' RQ-VAE batch, matched to MMQ's batch_size [choice]
    mmq: MMQConfig = MMQConfig()       # MMQ hyper-parameters (ablations live here)
    dedup: bool = True                 # append the de-dup digit to semantic_ids.npy
    num_threads: int = 1               # torch / faiss threads (2 shared cores)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.fusion not in ("ma", "ms"):
            raise ValueError(f"fusion must be 'ma' or 'ms', got {self.fusion!r}")
        if self.method == "mmq" and tuple(self.mmq.modalities) != self.inputs.modalities:
            raise ValueError(f"mmq.modalities {self.mmq.modalities} must equal the inputs' modalities "
                             f"{self.inputs.modalities}")

    def make_tokenizer(self):
        """The unfitted tokenizer this config describes."""
        if self.method == "mmq":
            return MMQTokenizer(self.mmq, num_threads=self.num_threads)
        hyper: dict[str, Any] = {"code_length": self.code_length, "codebook_size": self.codebook_size,
                                 "modalities": self.inputs.modalities}
        if self.method == "rq_vae":
            hyper.update(num_steps=self.rq_vae_steps, batch_size=self.rq_vae_batch_size, num_threads=self.num_threads)
        return make_modality_tokenizer(self.fusion, self.method, **hyper)


def build_multimodal_semantic_ids(config: MultimodalTokenizerConfig, seed: int, run_directory: Path) -> dict[str, Any]:
    """Fit the tokenizer on the item modalities, write the SID table, return the metrics."""
    torch.set_num_threads(config.num_threads)
    embeddings, input_report = load_item_modalities(config.inputs)
    tokenizer = config.make_tokenizer()
    _, metrics = fit_and_save_semantic_ids(tokenizer, embeddings, seed=seed, dedup=config.dedup,
                                           run_directory=run_directory, num_threads=config.num_threads)
    metrics["inputs"] = input_report
    if isinstance(tokenizer, MMQTokenizer):
        gates = tokenizer.gates(embeddings)
        metrics["mmq"] = {
            "expert_names": list(tokenizer.expert_names),
            **tokenizer.gated_reconstruction_error(embeddings),
            "mean_gates": [round(float(value), 4) for value in gates.mean(axis=0)],
            "final_training_window": tokenizer.training_log[-1] if tokenizer.training_log else {},
        }
    return metrics


def run_or_load(config_path: str | Path, seed: int, *, force: bool = False) -> dict[str, Any]:
    """Build the run for a YAML config unless its folder is done; return its report."""
    from mmq.runs import run_or_load_config

    return run_or_load_config(MultimodalTokenizerConfig, config_path, seed, build_multimodal_semantic_ids, force=force)
