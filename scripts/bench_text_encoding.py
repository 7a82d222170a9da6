"""Benchmark: item-text encoding throughput (items/s) of all-MiniLM-L6-v2 on this machine.

    python scripts/bench_text_encoding.py --dataset beauty --num-items 2000

Encodes the dataset's item texts in batches of several sizes and one item at a time (the naive
alternative), in the same run, and prints items/s and the ratio. Uses real titles when the data is
present, otherwise synthetic product-like titles.
"""

from __future__ import annotations

import argparse
import os
import time

from mmq.cli import setup

from mmq.data import MissingDataError, load_dataset
from mmq.features.text import TextFeatureConfig, build_item_texts, load_text_encoder


def main(argv: list[str] | None = None) -> int:
    """Print items/s per batch size and for one-at-a-time encoding."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--num-items", type=int, default=2000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 256])
    parser.add_argument("--naive-items", type=int, default=200, help="items encoded one at a time")
    arguments = parser.parse_args(argv)
    setup()
    import torch

    config = TextFeatureConfig()
    try:
        texts = build_item_texts(load_dataset(arguments.dataset), config)[: arguments.num_items]
        source = f"{arguments.dataset} titles"
    except MissingDataError:
        colours, kinds = ["red", "blue", "matte", "organic", "travel"], ["lipstick", "shampoo", "serum", "mascara"]
        texts = [f"{colours[i % 5]} {kinds[i % 4]} {i} ml pack of {1 + i % 3}" for i in range(arguments.num_items)]
        source = "synthetic titles"
    encoder = load_text_encoder(config.encoder)
    encoder.max_seq_length = config.max_seq_length
    encoder.encode(texts[:64], batch_size=64)  # warm-up
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"{len(texts)} {source}")
    print("| mode | items/s | ratio vs one-at-a-time |\n|---|---|---|")
    naive = texts[: arguments.naive_items]
    started = time.perf_counter()
    for text in naive:
        encoder.encode([text], batch_size=1)
    naive_rate = len(naive) / (time.perf_counter() - started)
    for batch_size in arguments.batch_sizes:
        started = time.perf_counter()
        encoder.encode(texts, batch_size=batch_size, normalize_embeddings=True)
        rate = len(texts) / (time.perf_counter() - started)
        print(f"| batched, batch_size={batch_size} | {rate:,.0f} | {rate / naive_rate:.2f}x |")
    print(f"| one at a time ({len(naive)} items) | {naive_rate:,.0f} | 1.00x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
