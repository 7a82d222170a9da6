#!/usr/bin/env python
"""Benchmark faiss ANN indexes (Flat / IVF-Flat / HNSW32 / IVF-PQ): build s, q/s, recall@k vs Flat.

Synthetic clustered data by default; pass ``--vectors db.npy [--queries q.npy]`` for real
embeddings (without ``--queries`` the last ``--num-queries`` rows of ``--vectors`` are held out).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout w/o install

from baselines.faiss_ann import (
    benchmark_indexes,
    clustered_vectors,
    default_specs,
    format_benchmark,
)

logger = logging.getLogger("bench_faiss_ann")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-vectors", type=int, default=100_000, help="synthetic database size")
    p.add_argument("--dim", type=int, default=384, help="synthetic vector dim")
    p.add_argument("--num-queries", type=int, default=2000)
    p.add_argument("--num-clusters", type=int, default=256, help="synthetic gaussian-mixture clusters")
    p.add_argument("--spread", type=float, default=2.0,
                   help="synthetic noise/centre norm ratio (larger = less clustered, harder)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--metric", choices=("ip", "l2"), default="ip")
    p.add_argument("--threads", type=int, default=None, help="faiss OpenMP threads (default: faiss's)")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=3, help="search timing: best of this many runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vectors", type=Path, default=None, help="database .npy [n, dim]")
    p.add_argument("--queries", type=Path, default=None, help="queries .npy [m, dim]")
    p.add_argument("--normalize", action="store_true", help="L2-normalise loaded .npy vectors")
    return p.parse_args(argv)


def load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """Return (database, queries, description) from .npy files or the synthetic generator."""
    if args.vectors is None:
        if args.queries is not None:
            raise SystemExit("--queries needs --vectors")
        x = clustered_vectors(
            args.num_vectors + args.num_queries, args.dim, args.num_clusters, args.seed, spread=args.spread
        )
        desc = f"synthetic gaussian mixture ({args.num_clusters} clusters, spread {args.spread}, L2-normalised)"
        return x[: args.num_vectors], x[args.num_vectors :], desc
    db = np.load(args.vectors).astype(np.float32, copy=False)
    if args.queries is not None:
        q = np.load(args.queries).astype(np.float32, copy=False)
        desc = f"{args.vectors} + queries {args.queries}"
    else:
        if args.num_queries >= db.shape[0]:
            raise SystemExit(f"--num-queries {args.num_queries} >= {db.shape[0]} vectors")
        db, q = db[: -args.num_queries], db[-args.num_queries :]
        desc = f"{args.vectors} (last {args.num_queries} rows held out as queries)"
    if args.normalize:
        db = db / np.linalg.norm(db, axis=1, keepdims=True).clip(min=1e-12)
        q = q / np.linalg.norm(q, axis=1, keepdims=True).clip(min=1e-12)
    return np.ascontiguousarray(db), np.ascontiguousarray(q), desc


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the machine description and a markdown table."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.threads is not None:
        faiss.omp_set_num_threads(args.threads)
    t0 = time.perf_counter()
    db, q, desc = load_data(args)
    specs = default_specs(db.shape[0], db.shape[1], metric=args.metric, seed=args.seed)
    rows = benchmark_indexes(db, q, specs, args.k, batch_size=args.batch_size, repeats=args.repeats)
    print(
        f"machine: {platform.processor() or platform.machine()}, cpu_count={os.cpu_count()}, "
        f"faiss {faiss.__version__}, faiss.omp_get_max_threads()={faiss.omp_get_max_threads()}, "
        f"loadavg(1m) at end {os.getloadavg()[0]:.2f}"
    )
    print(f"data: {desc}; database {db.shape}, queries {q.shape}, metric={args.metric}, k={args.k}")
    print()
    print(format_benchmark(rows))
    print(f"\ntotal wall time {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
