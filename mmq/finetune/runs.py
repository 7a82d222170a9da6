"""Stage-2 plumbing shared by every downstream task (ranking, generative retrieval).

- :func:`stage1_run`: the finished SID run a stage-2 run starts from (built if missing).
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
from mmq.finetune.sources import MMQCodes, RQVAECodes
from mmq.runs import checkpoints_root, experiment_name


def stage1_run(config_path: str, seed: int) -> tuple[dict[str, Any], Path]:
    """Report and run folder of the SID run of ``config_path`` for ``seed`` (built if missing)."""
    from mmq.tokenizers.experiment import run_semantic_id_config

    report = run_semantic_id_config(config_path, seed)
    return report, checkpoints_root() / experiment_name(config_path) / f"seed{seed}"


def live_source(config_path: str, run_directory: Path, stage1_codes: np.ndarray, tau: float):
    """A trainable source from a finished SID run, plus its tokenizer and content embeddings."""
    from mmq.config import load_config
    from mmq.mmq_tokenizer.experiment import MultimodalTokenizerConfig
    from mmq.mmq_tokenizer.inputs import load_item_modalities
    from mmq.mmq_tokenizer.tokenizer import MMQTokenizer
    from mmq.tokenizers.base import read_tokenizer_json
    from mmq.tokenizers.modality import ModalityAlignedTokenizer, load_tokenizer

    sid_config = load_config(MultimodalTokenizerConfig, config_path)
    embeddings, _ = load_item_modalities(sid_config.inputs)
    kind = read_tokenizer_json(run_directory / "tokenizer")["kind"]
    if kind == "mmq":
        tokenizer = MMQTokenizer.load(run_directory / "tokenizer")
        source = MMQCodes(tokenizer.model, tokenizer.prepare(embeddings), tau)
    else:
        tokenizer = load_tokenizer(run_directory / "tokenizer")
        if not (isinstance(tokenizer, ModalityAlignedTokenizer) and tokenizer.method == "rq_vae"):
            raise ValueError(f"{config_path}: behavior fine-tuning needs an MMQ or MA-RQ-VAE tokenizer "
                             f"(k-means / OPQ codebooks and MS wrappers have no trainable lookup); got {kind}")
        prepared = tokenizer.prepare(embeddings)
        concatenated = np.concatenate([prepared[name] for name in tokenizer.modalities], axis=1)
        source = RQVAECodes(tokenizer.tokenizer.model, concatenated, tau)
    if not np.array_equal(source.codes(), stage1_codes):
        raise ValueError(f"{run_directory}: the saved tokenizer does not reproduce its semantic_ids.npy on the "
                         "current content features (stale feature cache?); rebuild the SID run")
    return source, tokenizer, embeddings


def save_finetuned(tokenizer, source, embeddings, stage1_codes: np.ndarray, directory: Path) -> dict[str, Any]:
    """Re-derive SIDs with the fine-tuned tokenizer; save it, the table and its quality."""
    from mmq.tokenizers.base import quality_report
    from mmq.tokenizers.dedup import append_dedup_digit, dedup_report, sid_table_hash

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
