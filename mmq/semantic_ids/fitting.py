"""Fit any tokenizer and save what a SID-producing run leaves behind: tokenizer, SID table, quality.

The SID table (``semantic_ids.npy``, + de-dup digit) is saved with its sha256 in the report, so
downstream runs and servers use exactly these IDs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

from mmq import artifacts
from mmq.semantic_ids.base import quality_report
from mmq.semantic_ids.dedup import append_dedup_digit, dedup_report, sid_table_hash


def fit_and_save_semantic_ids(tokenizer, embeddings: Any, *, seed: int, dedup: bool, run_directory: Path,
                              num_threads: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit ``tokenizer``, save it and the SID table (+ de-dup digit) in ``run_directory``.

    Returns the raw codes and the shared report part (timings, quality, de-dup, table hash);
    used by every SID-producing run (MMQ stage 1, the text and multimodal baseline tokenizers).
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
