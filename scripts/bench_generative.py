"""Benchmark generative retrieval on CPU (or GPU when present): training throughput of both backbones
and trie-constrained beam search (beam 20) against the naive alternatives, measured in one run.

    python scripts/bench_generative.py [--items 12101] [--users 2000] [--threads 1]

Synthetic Beauty-shaped data: 12,101 items with unique 3 x 256 (+ de-dup digit) SIDs, user
sequences with Beauty's length profile (5-core, mean ~9). Prints:
- training targets/s: causal backbone (all positions of a sequence per pass) vs TIGER-style T5
  (one sliding-window sample per target), same SID table, batch 256 rows;
- beam search users/s at beam 20: batched + trie-constrained vs one user at a time, and vs
  unconstrained batched decoding whose invalid IDs are filtered afterwards (with how many of the 20
  returned IDs were real items).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mmq.generative.beam_search import beam_search
from mmq.generative.experiment import CausalConfig, T5Config
from mmq.generative.causal import CausalSidRecommender
from mmq.generative.sid_trie import SemanticIdTrie
from mmq.generative.t5_backbone import T5SidRecommender
from mmq.generative.train import item_codes_lookup
from mmq.recommenders.evaluation import NextItemEvaluationConfig
from mmq.recommenders.sequences import length_bucketed_batches, next_item_samples, pad_histories, training_windows
from mmq.semantic_ids.dedup import append_dedup_digit


def synthetic_data(num_items: int, num_users: int, seed: int = 0):
    """Clustered SIDs (so prefixes are shared, as in real tables) and Beauty-like sequences."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 256, size=num_items)
    codes = np.stack([first, (first * 7 + rng.integers(0, 40, size=num_items)) % 256,
                      rng.integers(0, 256, size=num_items)], axis=1)
    semantic_ids = append_dedup_digit(codes)
    lengths = 5 + rng.geometric(0.25, size=num_users)
    sequences = [rng.integers(0, num_items, size=length) for length in lengths]
    return semantic_ids, sequences


def train_throughput(model, lookup, inputs, targets, *, batch_size: int, steps: int, bucketed: bool) -> float:
    """Training targets per second over ``steps`` optimiser steps (after one warm-up step)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    rng = np.random.default_rng(0)
    if bucketed:
        batches = list(length_bucketed_batches(inputs, batch_size, rng=rng))
    else:
        batches = [(rows, 0) for rows in np.array_split(rng.permutation(len(inputs)), max(1, len(inputs) // batch_size))]
    counted, started = 0, None
    for step, (rows, first) in enumerate(batches[:steps + 1]):
        if step == 1:
            started = time.perf_counter()
        history = lookup[torch.from_numpy(inputs[rows, first:])]
        batch_targets = targets[rows, first:] if targets.ndim == 2 else targets[rows]
        loss = model(history, lookup[torch.from_numpy(batch_targets)]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 1:
            counted += int((batch_targets >= 0).sum())
    return counted / (time.perf_counter() - started)


def beam_throughput(model, lookup, trie, histories, *, batch_size: int, constrained: bool = True) -> tuple[float, float]:
    """(users/s, mean number of real items among the returned beams)."""
    model.eval()
    started, valid = time.perf_counter(), []
    with torch.no_grad():
        for start in range(0, len(histories), batch_size):
            codes = lookup[torch.from_numpy(histories[start:start + batch_size])]
            output = beam_search(model, model.user_context(codes), trie, beam_size=NextItemEvaluationConfig().beam_size,
                                 constrained=constrained)
            valid.append((output.items >= 0).sum(dim=1).float())
    return len(histories) / (time.perf_counter() - started), float(torch.cat(valid).mean())


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=12101)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=10)
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    torch.manual_seed(0)
    semantic_ids, sequences = synthetic_data(arguments.items, arguments.users)
    sizes = tuple(int(size) for size in semantic_ids.max(axis=0) + 1)
    trie, lookup = SemanticIdTrie(semantic_ids, sizes), item_codes_lookup(semantic_ids)
    causal = CausalSidRecommender(codebook_sizes=sizes, max_length=20, **CausalConfig().__dict__)
    t5 = T5SidRecommender(codebook_sizes=sizes, max_length=20, **T5Config().__dict__)
    print(f"machine: {torch.get_num_threads()} torch thread(s), device cpu, {arguments.items} items, "
          f"{arguments.users} users; SIDs {sizes}")

    windows = training_windows(sequences, 20)
    histories, targets = next_item_samples(sequences, 20)
    causal_rate = train_throughput(causal, lookup, windows.inputs, windows.targets, batch_size=256,
                                   steps=arguments.train_steps, bucketed=True)
    causal_unbucketed = train_throughput(causal, lookup, windows.inputs, windows.targets, batch_size=256,
                                         steps=arguments.train_steps, bucketed=False)
    t5_rate = train_throughput(t5, lookup, histories, targets, batch_size=256, steps=max(2, arguments.train_steps // 3),
                               bucketed=False)
    print(f"train causal (all positions, length-bucketed): {causal_rate:,.0f} targets/s")
    print(f"train causal (all positions, unbucketed):      {causal_unbucketed:,.0f} targets/s "
          f"(bucketing {causal_rate / causal_unbucketed:.2f}x)")
    print(f"train t5 (TIGER sliding-window samples):       {t5_rate:,.0f} targets/s "
          f"(causal {causal_rate / t5_rate:.1f}x faster)")
    epoch_targets = 176_139  # Beauty's leave-one-out training targets
    print(f"  -> one Beauty epoch: causal {epoch_targets / causal_rate / 60:.1f} min, t5 {epoch_targets / t5_rate / 60:.1f} min")

    eval_histories = pad_histories([sequence[:-1] for sequence in sequences], 20)
    batched, _ = beam_throughput(causal, lookup, trie, eval_histories, batch_size=1024)
    subset = eval_histories[:100]
    single, _ = beam_throughput(causal, lookup, trie, subset, batch_size=1)
    free, free_valid = beam_throughput(causal, lookup, trie, eval_histories, batch_size=1024, constrained=False)
    _, constrained_valid = beam_throughput(causal, lookup, trie, subset, batch_size=1024)
    print(f"beam 20 causal, batched + trie-constrained: {batched:,.0f} users/s, {constrained_valid:.1f}/20 real items")
    print(f"beam 20 causal, one user at a time:         {single:,.0f} users/s (batched {batched / single:.1f}x)")
    print(f"beam 20 causal, unconstrained then filtered: {free:,.0f} users/s, {free_valid:.1f}/20 real items "
          f"(constrained/unconstrained speed {batched / free:.2f}x)")
    t5_batched, _ = beam_throughput(t5, lookup, trie, eval_histories[:64], batch_size=64)
    print(f"beam 20 t5, batched + trie-constrained:     {t5_batched:,.0f} users/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
