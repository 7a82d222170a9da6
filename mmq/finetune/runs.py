"""Stage-2 plumbing shared by every downstream task (ranking, generative retrieval).

- :func:`live_source`: a trainable source (MMQ or MA-RQ-VAE) rebuilt from that run, checked to
  reproduce the run's SID table before any training.
- :func:`save_finetuned`: after training, re-derive the SIDs (+ de-dup digit), save them, the
  fine-tuned tokenizer and its quality into the stage-2 run folder, so a later run can read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmq import artifacts
from mmq.features.modalities import load_item_modalities
from mmq import registry
from mmq.semantic_ids.base import quality_report
from mmq.semantic_ids.dedup import append_dedup_digit, dedup_report, sid_table_hash


def live_source(config_path: str, run_directory: Path, stage1_codes: np.ndarray, tau: float):
    """A trainable source from a finished SID run, plus its tokenizer and content embeddings.

    The tokenizer is loaded through the registry (any kind) and asked for its ``stage2_source``:
    MMQ and the MA-RQ-VAE baseline provide one; a tokenizer without a trainable lookup does not.
    """
    _, sid_config = registry.load_experiment(config_path)
    inputs = getattr(sid_config, "inputs", None)
    if inputs is None:
        raise ValueError(f"{config_path}: behavior fine-tuning needs a multimodal SID run (MMQ or MA-RQ-VAE)")
    embeddings, _ = load_item_modalities(inputs)
    tokenizer = registry.load_tokenizer(run_directory / "tokenizer")
    if not hasattr(tokenizer, "stage2_source"):
        raise ValueError(f"{config_path}: behavior fine-tuning needs an MMQ or MA-RQ-VAE tokenizer "
                         f"(k-means / OPQ codebooks and MS wrappers have no trainable lookup); got "
                         f"{type(tokenizer).__name__}")
    try:
        source = tokenizer.stage2_source(embeddings, tau)
    except ValueError as error:
        raise ValueError(f"{config_path}: {error}") from None
    if not np.array_equal(source.codes(), stage1_codes):
        raise ValueError(f"{run_directory}: the saved tokenizer does not reproduce its semantic_ids.npy on the "
                         "current content features (stale feature cache?); rebuild the SID run")
    return source, tokenizer, embeddings


def save_finetuned(tokenizer, source, embeddings, stage1_codes: np.ndarray, directory: Path) -> dict[str, Any]:
    """Re-derive SIDs with the fine-tuned tokenizer; save it, the table and its quality."""
    source.eval()
    codes = source.codes()
    table = append_dedup_digit(codes)
    artifacts.save_npy(directory / "semantic_ids.npy", table.astype(np.int64))
    tokenizer.save(directory / "tokenizer")
    return {"quality": quality_report(tokenizer, embeddings), "dedup": dedup_report(codes),
            "semantic_id_table": {"path": "semantic_ids.npy", "shape": list(table.shape),
                                  "sha256": sid_table_hash(table)},
            "changed_item_fraction": float((codes != stage1_codes).any(axis=1).mean()),
            "changed_code_fraction": float((codes != stage1_codes).mean())}
