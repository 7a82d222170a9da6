"""MA / MS baseline tokenizers on the same item modalities as MMQ (registry kind ``multimodal_sid_tokenizer``).

MA fuses the L2-normalised modalities and quantizes once; MS quantizes each modality separately
(:mod:`baselines.sid_tokenizers.modality`). K and code length default to MMQ's (6 x 100) so the rows match.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from baselines.sid_tokenizers.modality import make_modality_tokenizer
from mmq.features.modalities import ItemModalitiesConfig, load_item_modalities
from mmq.semantic_ids.fitting import fit_and_save_semantic_ids

METHODS = ("rq_vae", "rq_kmeans", "opq")


@dataclasses.dataclass(frozen=True)
class MultimodalBaselineConfig:
    """An MA/MS baseline run, K and length matched to MMQ."""

    inputs: ItemModalitiesConfig = ItemModalitiesConfig()
    method: str = "rq_vae"             # rq_vae | rq_kmeans | opq
    fusion: str = "ma"                 # ma (fuse then quantize) | ms (quantize each modality)
    code_length: int = 6               # matched to MMQ's num_shared + sum(num_specific) experts
    codebook_size: int = 100           # matched to MMQ's K
    rq_vae_steps: int = 800            # RQ-VAE steps, matched to MMQ's num_steps [choice]
    rq_vae_batch_size: int = 256       # RQ-VAE batch, matched to MMQ's batch_size [choice]
    dedup: bool = True                 # append the de-dup digit to semantic_ids.npy
    num_threads: int = 1               # torch / faiss threads (2 shared cores)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.fusion not in ("ma", "ms"):
            raise ValueError(f"fusion must be 'ma' or 'ms', got {self.fusion!r}")

    def make_tokenizer(self):
        """The unfitted MA/MS tokenizer this config describes."""
        hyper: dict[str, Any] = {"code_length": self.code_length, "codebook_size": self.codebook_size,
                                 "modalities": self.inputs.modalities}
        if self.method == "rq_vae":
            hyper.update(num_steps=self.rq_vae_steps, batch_size=self.rq_vae_batch_size, num_threads=self.num_threads)
        return make_modality_tokenizer(self.fusion, self.method, **hyper)


def build_multimodal_semantic_ids(config: MultimodalBaselineConfig, seed: int, run_directory: Path) -> dict[str, Any]:
    """Fit the MA/MS tokenizer on the item modalities, write the SID table, return the metrics."""
    torch.set_num_threads(config.num_threads)
    embeddings, input_report = load_item_modalities(config.inputs)
    tokenizer = config.make_tokenizer()
    _, metrics = fit_and_save_semantic_ids(tokenizer, embeddings, seed=seed, dedup=config.dedup,
                                           run_directory=run_directory, num_threads=config.num_threads)
    metrics["inputs"] = input_report
    return metrics


def run(config: MultimodalBaselineConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``multimodal_sid_tokenizer`` kind."""
    return build_multimodal_semantic_ids(config, seed, directory)
