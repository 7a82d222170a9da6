"""Benchmark SID assignment (encode) throughput of RQ-KMeans, OPQ and RQ-VAE.

Fits each tokenizer (num_levels x codebook_size, default 3 x 256) on a sample of synthetic
clustered L2-normalised vectors, then times batched ``encode`` on ``--num-items`` items next to a
plain per-item Python loop (one ``encode`` call per item, measured on ``--loop-items`` items and
extrapolated), and prints items/s and the speed-up ratio.

    python scripts/bench_tokenizers.py                    # 1,000,000 items
    python scripts/bench_tokenizers.py --num-items 100000 --methods rq_kmeans
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from baselines.sid_tokenizers import make_tokenizer, quality_report


def clustered_embeddings(num_items: int, dim: int, *, num_clusters: int = 2000, latent_rank: int = 32,
                         seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """Synthetic item embeddings, L2-normalised: cluster centre + sub-cluster offset + a low-rank
    continuous component (random ``latent_rank``-d factors) + small isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_clusters // 10, dim), dtype=np.float32)
    offsets = 0.6 * rng.standard_normal((num_clusters, dim), dtype=np.float32)
    loadings = rng.standard_normal((latent_rank, dim), dtype=np.float32) * (0.7 / latent_rank**0.5)
    output = np.empty((num_items, dim), dtype=np.float32)
    for start in range(0, num_items, chunk):
        size = min(chunk, num_items - start)
        labels = rng.integers(0, num_clusters, size)
        block = centres[labels // 10] + offsets[labels]
        block += rng.standard_normal((size, latent_rank), dtype=np.float32) @ loadings
        block += 0.1 * rng.standard_normal((size, dim), dtype=np.float32)
        output[start : start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-items", type=int, default=1_000_000, help="items to encode (batched)")
    parser.add_argument("--fit-items", type=int, default=50_000, help="items to fit each tokenizer on")
    parser.add_argument("--loop-items", type=int, default=2_000, help="items for the per-item loop")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--num-levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--rq-vae-steps", type=int, default=300, help="training steps (speed, not quality)")
    parser.add_argument("--methods", nargs="+", default=["rq_kmeans", "opq", "rq_vae"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch + faiss threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads)  # numpy's OpenBLAS (RQ-KMeans encode) and OpenMP pools
    print(f"machine: {platform.processor() or platform.machine()}, cpu_count={os.cpu_count()}, "
          f"torch_threads={torch.get_num_threads()}, faiss_threads={faiss.omp_get_max_threads()}, "
          f"load_average={os.getloadavg()[0]:.2f}, torch {torch.__version__}, faiss {faiss.__version__}")
    started = time.perf_counter()
    items = clustered_embeddings(max(args.num_items, args.fit_items), args.dim, seed=args.seed)
    print(f"generated {items.shape[0]:,} x {args.dim} clustered vectors in {time.perf_counter() - started:.1f}s")
    fit_sample = items[: args.fit_items]

    header = (f"{'method':<10} {'fit_s':>7} {'min_util':>8} {'collide':>8} {'batched items/s':>16} "
              f"{'loop items/s':>13} {'ratio':>7}")
    rows = []
    for method in args.methods:
        hyper = {"codebook_size": args.codebook_size}
        if method == "rq_vae":
            hyper.update(num_steps=args.rq_vae_steps, progress=False)
        tokenizer = make_tokenizer(method, code_length=args.num_levels, **hyper)
        started = time.perf_counter()
        tokenizer.fit(fit_sample, seed=args.seed)
        fit_seconds = time.perf_counter() - started
        quality = quality_report(tokenizer, fit_sample)["semantic_id_quality"]  # on the fit sample

        tokenizer.encode(items[:4096])  # warm-up (thread pools, allocations)
        started = time.perf_counter()
        codes = tokenizer.encode(items[: args.num_items])
        batched = args.num_items / (time.perf_counter() - started)

        loop_items = items[: args.loop_items]
        started = time.perf_counter()
        looped = np.stack([tokenizer.encode(loop_items[index : index + 1])[0] for index in range(len(loop_items))])
        per_item = args.loop_items / (time.perf_counter() - started)
        agreement = float((looped == codes[: args.loop_items]).all(axis=1).mean())
        rows.append(
            f"{method:<10} {fit_seconds:>7.1f} {min(quality['utilization_per_position']):>8.3f} "
            f"{quality['collision_rate']:>8.4f} {batched:>16,.0f} {per_item:>13,.0f} {batched / per_item:>6.0f}x"
            f"   (loop == batched on {agreement:.2%} of items)"
        )
        print(rows[-1], flush=True)
    print(f"\n{args.num_levels} x {args.codebook_size} codes, {args.num_items:,} items encoded, "
          f"per-item loop on {args.loop_items:,} items (extrapolated)")
    print(header)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
