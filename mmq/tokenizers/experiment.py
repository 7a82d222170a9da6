"""Build semantic IDs for a dataset's item embeddings: fit, encode, de-dup, quality report, figures.

One config + seed -> one run folder holding the tokenizer, the SID table (``semantic_ids.npy``
with its sha256 in the report, so downstream runs and servers use exactly these IDs), the
quality report and the hierarchy / codebook-usage figures.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from mmq import artifacts
from mmq.data import load_dataset
from mmq.features import TextFeatureConfig, item_text_embeddings
from mmq.tokenizers.dedup import append_dedup_digit, dedup_report, sid_table_hash
from mmq.tokenizers.base import quality_report
from mmq.tokenizers.hierarchy import hierarchy_text, plot_codebook_usage, plot_hierarchy
from mmq.tokenizers.modality import make_tokenizer


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


def fit_and_save_semantic_ids(tokenizer, embeddings: Any, *, seed: int, dedup: bool, run_directory: Path,
                              num_threads: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit ``tokenizer``, save it and the SID table (+ de-dup digit) in ``run_directory``.

    Returns the raw codes and the shared report part (timings, quality, de-dup, table hash);
    used by every SID-producing run (text tokenizers here, multimodal MA/MS/MMQ in mmq_tokenizer).
    """
    torch.set_num_threads(num_threads)
    faiss.omp_set_num_threads(num_threads)
    started = time.perf_counter()
    tokenizer.fit(embeddings, seed=seed)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    quality = quality_report(tokenizer, embeddings)
    codes = tokenizer.encode(embeddings)
    encode_seconds = time.perf_counter() - started
    tokenizer.save(run_directory / "tokenizer")
    semantic_ids = append_dedup_digit(codes) if dedup else codes
    artifacts.save_npy(run_directory / "semantic_ids.npy", semantic_ids.astype(np.int64))
    return codes, {
        "fit_seconds": round(fit_seconds, 2),
        "encode_and_report_seconds": round(encode_seconds, 2),
        "quality": quality,
        "dedup": dedup_report(codes),
        "semantic_id_table": {"path": "semantic_ids.npy", "shape": list(semantic_ids.shape),
                              "sha256": sid_table_hash(semantic_ids)},
        "num_threads": num_threads,
    }


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


def run_or_load(config_path: str | Path, seed: int, *, force: bool = False) -> dict[str, Any]:
    """Run ``build_semantic_ids`` for a YAML config unless its run folder is done; return the report."""
    from mmq.runs import run_or_load_config

    return run_or_load_config(SemanticIdConfig, config_path, seed, build_semantic_ids, force=force)


def run_semantic_id_config(config_path: str | Path, seed: int, *, force: bool = False) -> dict[str, Any]:
    """Build (or reuse) the SID run of any tokenizer config and return its report.

    A config whose keys all belong to :class:`SemanticIdConfig` is a text-only run. A stage-2 config
    (``finetune`` set: a ranking run when it has ``item_features``, else a generative one) gives the SIDs
    its run re-derived, with the report's ``finetuned`` part lifted to the top of ``metrics``. Anything
    else (``inputs``, ``fusion``, MMQ fields) is a multimodal MA/MS or MMQ run of ``mmq.mmq_tokenizer``.
    """
    import importlib

    import yaml

    keys = set(yaml.safe_load(Path(config_path).read_text()) or {})
    if "finetune" in keys or "item_features" in keys:  # SIDs re-derived by a stage-2 (fine-tuning) run
        task = "ranking" if "item_features" in keys else "generative"
        report = importlib.import_module(f"mmq.{task}.experiment").run_or_load(config_path, seed, force=force)
        if "finetuned" not in report["metrics"]:
            raise ValueError(f"{config_path}: a {task} run yields SIDs only with finetune: true")
        return {**report, "metrics": {**report["metrics"], **report["metrics"]["finetuned"]}}
    if keys <= {field.name for field in dataclasses.fields(SemanticIdConfig)}:
        return run_or_load(config_path, seed, force=force)
    from mmq.mmq_tokenizer.experiment import run_or_load as multimodal_run_or_load

    return multimodal_run_or_load(config_path, seed, force=force)
