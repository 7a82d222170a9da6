"""Benchmark MMQ SID assignment throughput next to RQ-VAE's, plus the vectorised-vs-naive-loop ratio.

    python scripts/bench_mmq_tokenizer.py [--num-items 1000000] [--chunk 100000] [--naive-items 2000]

Both tokenizers are fitted briefly on synthetic clustered text (384-d) + image (256-d) vectors
(throughput does not depend on training), then encode ``--num-items`` fresh synthetic items in
chunks (only the encode calls are timed; chunks keep memory small) in the same process with one
torch thread. RQ-VAE (baselines.sid_tokenizers) encodes the normalised concatenation with 6 levels x K=100,
i.e. the MA-RQ-VAE baseline at matched SID length. The naive reference encodes items one at a
time through the same MMQ model and must give identical codes.
"""

from __future__ import annotations

import argparse
import json
import time

from mmq.cli import setup

import numpy as np
import torch

from mmq.mmq_tokenizer import MMQConfig, MMQTokenizer
from mmq.semantic_ids.modalities import l2_normalise
from baselines.sid_tokenizers.rq_vae import RQVAETokenizer

DIMS = {"text": 384, "image": 256}


def synthetic(num_items: int, seed: int) -> dict[str, np.ndarray]:
    """Clustered synthetic modality vectors (64 shared clusters)."""
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, 64, num_items)
    centres = np.random.default_rng(12345)
    return {name: (centres.normal(size=(64, dim))[clusters]
                   + 0.5 * rng.normal(size=(num_items, dim))).astype(np.float32) for name, dim in DIMS.items()}


def concatenated(data: dict[str, np.ndarray]) -> np.ndarray:
    """MA input: normalised modalities side by side."""
    return np.concatenate([l2_normalise(data[name]) for name in DIMS], axis=1)


def throughput(encode, num_items: int, chunk: int) -> float:
    """Items per second of ``encode`` over ``num_items`` items generated chunk by chunk."""
    seconds = 0.0
    for index, start in enumerate(range(0, num_items, chunk)):
        data = synthetic(min(chunk, num_items - start), seed=100 + index)
        started = time.perf_counter()
        encode(data)
        seconds += time.perf_counter() - started
    return num_items / seconds


def main(argv: list[str] | None = None) -> int:
    """Fit both tokenizers briefly, time encoding, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-items", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--naive-items", type=int, default=2_000)
    parser.add_argument("--fit-steps", type=int, default=50)
    arguments = parser.parse_args(argv)
    setup()
    torch.set_num_threads(1)
    train = synthetic(5_000, seed=0)
    mmq = MMQTokenizer(MMQConfig(num_steps=arguments.fit_steps, progress=False)).fit(train, seed=0)
    rq_vae = RQVAETokenizer(num_levels=6, codebook_size=100, num_steps=arguments.fit_steps, num_threads=1,
                            progress=False).fit(concatenated(train), seed=0)
    mmq_rate = throughput(mmq.encode, arguments.num_items, arguments.chunk)
    rq_vae_rate = throughput(lambda data: rq_vae.encode(concatenated(data)), arguments.num_items, arguments.chunk)
    subset = synthetic(arguments.naive_items, seed=7)
    started = time.perf_counter()
    vectorised = mmq.encode(subset)
    vectorised_seconds = time.perf_counter() - started
    started = time.perf_counter()
    naive = np.concatenate([mmq.encode({name: array[row: row + 1] for name, array in subset.items()})
                            for row in range(arguments.naive_items)])
    naive_seconds = time.perf_counter() - started
    if not np.array_equal(naive, vectorised):
        raise AssertionError("naive per-item codes differ from the vectorised ones")
    print(json.dumps({
        "num_items": arguments.num_items, "torch_threads": torch.get_num_threads(),
        "mmq_items_per_s": round(mmq_rate), "rq_vae_items_per_s": round(rq_vae_rate),
        "mmq_over_rq_vae": round(mmq_rate / rq_vae_rate, 3),
        "naive_items": arguments.naive_items, "naive_items_per_s": round(arguments.naive_items / naive_seconds),
        "vectorised_over_naive": round(naive_seconds / vectorised_seconds, 1), "naive_codes_identical": True,
        "sid_length": mmq.code_length, "codebook_size": mmq.config.codebook_size,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
