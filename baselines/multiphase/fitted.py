"""Tokenizers fitted by this package (Myntra and synthetic tasks have no SID run), cached by content.

The cache key is :func:`mmq.semantic_ids.fitting.fit_key` (the unfitted tokenizer's class and settings, the
embeddings' bytes and the seed), so a changed catalogue or setting fits afresh; the fitted tokenizer is saved
with its own ``save`` under ``<cache>/multiphase/<method>-<key>/`` and read back with ``load``.
"""

from __future__ import annotations

import logging
import shutil
import time

import faiss
import numpy as np
import torch

from baselines.sid_tokenizers.modality import TOKENIZER_CLASSES, make_tokenizer
from mmq.data.paths import cache_dir
from mmq.semantic_ids.base import read_tokenizer_json
from mmq.semantic_ids.fitting import fit_key

LOGGER = logging.getLogger(__name__)
FITTED_METHODS = ("rq_kmeans", "rq_vae")


def tokenizer_arguments(method: str, config) -> dict:
    """Constructor arguments of ``method`` from the multiphase config (code length, K, RQ-VAE steps)."""
    if method not in FITTED_METHODS:
        raise ValueError(f"fit_methods must be among {FITTED_METHODS}, got {method!r}")
    arguments = {"code_length": config.code_length, "codebook_size": config.codebook_size}
    if method == "rq_vae":
        arguments.update(num_steps=config.rq_vae_steps, num_threads=config.num_threads, progress=False)
    return arguments


def fitted_tokenizer(method: str, vectors: np.ndarray, config):
    """``(tokenizer, cache key)``: loaded from the cache, or fitted on ``vectors`` (seed ``config.seed``) and saved."""
    tokenizer = make_tokenizer(method, **tokenizer_arguments(method, config))
    key = fit_key(tokenizer, vectors, config.seed)
    directory = cache_dir() / "multiphase" / f"{method}-{key}"
    try:
        read_tokenizer_json(directory, method)
        return TOKENIZER_CLASSES[method].load(directory), key
    except (FileNotFoundError, OSError, ValueError, KeyError, RuntimeError):
        pass
    torch.set_num_threads(config.num_threads)
    faiss.omp_set_num_threads(config.num_threads)
    started = time.perf_counter()
    tokenizer.fit(vectors, seed=config.seed)
    LOGGER.info("fitted %s on %s vectors in %.1f s (cached in %s)", method, vectors.shape, time.perf_counter() - started,
                directory)
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer.save(staging)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return tokenizer, key
