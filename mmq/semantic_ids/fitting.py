"""Fit any tokenizer and save what a SID-producing run leaves behind: tokenizer, SID table, quality.

The SID table (``semantic_ids.npy``, + de-dup digit) is saved with its sha256 in the report, so
downstream runs and servers use exactly these IDs.

Fits are resumable: a tokenizer trained by gradient steps (MMQ stage 1, RQ-VAE and the MA/MS
wrappers around it) writes its training state to ``<run>/tokenizer_fit/<fit key>/state.pt`` after
every window of steps, and a run killed mid-fit and restarted continues where it stopped, to the
same semantic IDs as an uninterrupted fit. The fit key names the seed and hashes the unfitted
tokenizer's settings and the embeddings, so a state is only ever resumed by the fit that wrote it:
another seed, a changed config or changed features start afresh in a folder of their own. Once the
tokenizer and the SID table are saved, every state under ``tokenizer_fit/`` is deleted (TensorBoard
scalars of the fit stay).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any, Mapping

import faiss
import numpy as np
import torch

from mmq import artifacts
from mmq.semantic_ids.base import quality_report
from mmq.semantic_ids.dedup import append_dedup_digit, dedup_report, sid_table_hash
from mmq.training import STATE_FILE

FIT_DIRECTORY = "tokenizer_fit"   # <run>/tokenizer_fit/<fit key>/: resumable states while a fit runs


def fit_and_save_semantic_ids(tokenizer, embeddings: Any, *, seed: int, dedup: bool, run_directory: Path,
                              num_threads: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit ``tokenizer`` (resumably), save it and the SID table (+ de-dup digit) in ``run_directory``.

    Returns the raw codes and the shared report part (timings, quality, de-dup, table hash);
    used by every SID-producing run (MMQ stage 1, the text and multimodal baseline tokenizers).
    """
    torch.set_num_threads(num_threads)
    faiss.omp_set_num_threads(num_threads)
    checkpoint_directory = Path(run_directory) / FIT_DIRECTORY / fit_key(tokenizer, embeddings, seed)
    started = time.perf_counter()
    tokenizer.fit(embeddings, seed=seed, checkpoint_directory=checkpoint_directory)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    quality = quality_report(tokenizer, embeddings)
    codes = tokenizer.encode(embeddings)
    encode_seconds = time.perf_counter() - started
    tokenizer.save(run_directory / "tokenizer")
    semantic_ids = append_dedup_digit(codes) if dedup else codes
    artifacts.save_npy(run_directory / "semantic_ids.npy", semantic_ids.astype(np.int64))
    remove_fit_states(run_directory)
    return codes, {
        "fit_seconds": round(fit_seconds, 2),
        "encode_and_report_seconds": round(encode_seconds, 2),
        "quality": quality,
        "dedup": dedup_report(codes),
        "semantic_id_table": {"path": "semantic_ids.npy", "shape": list(semantic_ids.shape),
                              "sha256": sid_table_hash(semantic_ids)},
        "num_threads": num_threads,
    }


def fit_key(tokenizer, embeddings: Any, seed: int) -> str:
    """``seed<k>-<hash>``: names the fit of unfitted ``tokenizer`` on ``embeddings`` with ``seed``.

    The hash covers the tokenizer's class and settings (nested tokenizers included) and the
    embeddings' names, shapes, dtypes and bytes: equal keys mean the same fit.
    """
    digest = artifacts.short_hash(tokenizer_settings(tokenizer), embeddings_digest(embeddings), length=16)
    return f"seed{seed}-{digest}"


def tokenizer_settings(value: Any) -> Any:
    """A JSON-able description of an unfitted tokenizer: its class and attributes, nested tokenizers and
    config dataclasses expanded; anything else non-plain (a model left by an earlier fit) by its type only."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, Mapping):
        return {str(key): tokenizer_settings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [tokenizer_settings(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"class": type(value).__qualname__,
                **{field.name: tokenizer_settings(getattr(value, field.name)) for field in dataclasses.fields(value)}}
    if hasattr(value, "fit") and hasattr(value, "__dict__"):   # a tokenizer (or one wrapped by it)
        return {"class": type(value).__qualname__,
                **{name: tokenizer_settings(item) for name, item in sorted(vars(value).items())}}
    return type(value).__qualname__


def embeddings_digest(embeddings: Any) -> str:
    """sha256 hex of an array ``[n, d]`` or a dict of named arrays: names, dtypes, shapes, then bytes."""
    named = embeddings if isinstance(embeddings, Mapping) else {"": embeddings}
    digest = hashlib.sha256()
    for name in sorted(named):
        array = np.ascontiguousarray(named[name])
        digest.update(repr((name, array.dtype.str, array.shape)).encode("utf-8"))
        digest.update(array.tobytes())
    return digest.hexdigest()


def remove_fit_states(run_directory: Path) -> None:
    """Delete every resumable fit state under ``run_directory/tokenizer_fit`` and the folders left empty."""
    root = Path(run_directory) / FIT_DIRECTORY
    if not root.exists():
        return
    for state in root.rglob(STATE_FILE):
        state.unlink()
    for folder in sorted((path for path in root.rglob("*") if path.is_dir()), key=lambda path: -len(path.parts)):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not any(root.iterdir()):
        root.rmdir()
