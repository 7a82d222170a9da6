"""Title-only semantic IDs (RQ-VAE / RQ-KMeans / OPQ on MiniLM item text): fit, encode, de-dup, figures.

One config + seed -> one run folder holding the tokenizer, the SID table (``semantic_ids.npy``
with its sha256 in the report, so downstream runs and servers use exactly these IDs), the
quality report and the hierarchy / codebook-usage figures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from baselines.sid_tokenizers.modality import make_tokenizer
from mmq import artifacts
from mmq.data import load_dataset
from mmq.features import TextFeatureConfig, item_text_embeddings
from mmq.semantic_ids.fitting import fit_and_save_semantic_ids
from mmq.semantic_ids.hierarchy import hierarchy_text, plot_codebook_usage, plot_hierarchy


@dataclasses.dataclass(frozen=True)
class SemanticIdConfig:
    """Which embeddings to tokenize and how (code length and K matched across methods)."""

    dataset: str = "beauty"
    kcore: int | None = None              # None: the dataset's default
    text: TextFeatureConfig = TextFeatureConfig()
    method: str = "rq_kmeans"             # rq_vae | rq_kmeans | opq
    code_length: int = 3                  # levels (RQ) or sub-spaces (OPQ)
    codebook_size: int = 256              # K per position
    dedup: bool = True                    # append the de-dup digit so every item's ID is unique
    num_threads: int = 1                  # torch/faiss threads: 1 is faster for these small fits on 2 cores
    rq_vae_steps: int = 3000              # RQ-VAE optimisation steps
    balanced: bool = False                # RQ-KMeans balanced assignment

    def __post_init__(self) -> None:
        if self.method not in ("rq_vae", "rq_kmeans", "opq"):
            raise ValueError(f"method must be rq_vae, rq_kmeans or opq, got {self.method!r}")

    def tokenizer_arguments(self) -> dict[str, Any]:
        """Constructor arguments of the chosen tokenizer."""
        arguments: dict[str, Any] = {"code_length": self.code_length, "codebook_size": self.codebook_size}
        if self.method == "rq_vae":
            arguments.update(num_steps=self.rq_vae_steps, num_threads=self.num_threads)
        if self.method == "rq_kmeans":
            arguments.update(balanced=self.balanced)
        return arguments


def build_semantic_ids(config: SemanticIdConfig, seed: int, run_directory: Path) -> dict[str, Any]:
    """Fit the tokenizer on the item text embeddings, write SIDs + figures, return the metrics."""
    torch.set_num_threads(config.num_threads)
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    embeddings = item_text_embeddings(dataset, config.text)
    tokenizer = make_tokenizer(config.method, **config.tokenizer_arguments())
    codes, metrics = fit_and_save_semantic_ids(tokenizer, embeddings, seed=seed, dedup=config.dedup,
                                               run_directory=run_directory, num_threads=config.num_threads)
    titles = dataset.items[dataset.text_fields[0]].tolist() if dataset.text_fields else dataset.items["item_id"].tolist()
    plot_hierarchy(codes, titles, run_directory / "hierarchy.png", title=f"{config.dataset} {config.method}")
    artifacts.write_text(run_directory / "hierarchy.txt", hierarchy_text(codes, titles))
    plot_codebook_usage(codes, tokenizer.codebook_sizes, run_directory / "codebook_usage.png",
                        title=f"{config.dataset} {config.method}")
    return metrics


def run(config: SemanticIdConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``text_sid_tokenizer`` kind."""
    return build_semantic_ids(config, seed, directory)
