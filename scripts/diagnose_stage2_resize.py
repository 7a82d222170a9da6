"""Diagnostic: how much of stage 2's first-epoch generator-loss jump the resized de-dup head alone causes.

    python scripts/diagnose_stage2_resize.py

Stage 2 widens the generator's de-dup position (stage 1's size -> 2 x + 4, docs/method.md §4.6) and the new head rows
keep their random init. This loads the matched Beauty MMQ generator (seed 0, experiments/generative/beauty_matched/
mmq.yaml, weights must exist locally) twice - as trained, and resized the way stage 2 loads it - and prints the
teacher-forced L_gen of both on the same 4,096 training windows with the stage-1 SIDs unchanged (eval mode, 1 thread).
"""
from __future__ import annotations

import numpy as np
import torch

import baselines  # noqa: F401  (registers the baseline kinds)
from mmq import registry
from mmq.cli import setup
from mmq.data import load_dataset
from mmq.data.splits import leave_one_out
from mmq.generative.experiment import build_model, load_semantic_ids, training_rows
from mmq.generative.finetune import default_dedup_capacity, load_resized
from mmq.generative.train import item_codes_lookup
from mmq.semantic_ids.base import load_torch_state

CONFIG = "experiments/generative/beauty_matched/mmq.yaml"
WINDOWS = 4096


def main() -> int:
    """Print L_gen of the stage-1 generator with its own de-dup head and with stage 2's widened one."""
    setup()
    torch.set_num_threads(1)
    weights = registry.run_directory(CONFIG, 0) / "best.pt"
    if not weights.exists():
        raise SystemExit(f"{weights} is missing: run `python scripts/run.py {CONFIG} --seeds 0` first")
    _, config = registry.load_experiment(CONFIG)
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    split = leave_one_out(dataset, max_history=config.max_history, config=config.split)
    table, _ = load_semantic_ids(config.semantic_ids, 0)
    sizes = tuple(int(size) for size in table.max(axis=0) + 1)
    widened = (*sizes[:-1], default_dedup_capacity(sizes[-1]))   # the de-dup position stage 2 trains with
    state = load_torch_state(weights)
    models = {}
    for name, codebook_sizes in ((f"stage-1 head ({sizes[-1]} de-dup slots)", sizes),
                                 (f"stage-2 widened head ({widened[-1]} slots)", widened)):
        torch.manual_seed(0)
        model = build_model(config, codebook_sizes)
        load_resized(model, state)
        models[name] = model.eval()
    inputs, targets = training_rows(config, split.train_sequences)
    lookup = item_codes_lookup(table)
    rows = np.random.default_rng(0).choice(len(inputs), WINDOWS, replace=False)
    with torch.no_grad():
        for name, model in models.items():
            losses = [float(model(lookup[torch.from_numpy(inputs[chunk])], lookup[torch.from_numpy(targets[chunk])]).loss)
                      for chunk in np.array_split(rows, 16)]
            print(f"{name}: L_gen {np.mean(losses):.4f} nats (eval mode, {WINDOWS:,} training windows, stage-1 SIDs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
