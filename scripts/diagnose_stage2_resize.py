"""Diagnostic: how much of stage 2's first-epoch generator-loss jump the resized de-dup head alone causes.

    python scripts/diagnose_stage2_resize.py

Stage 2 widens the generator's de-dup position (stage 1's size -> 2 x + 4, docs/method.md §4.6) and the new head rows
keep their random init. This loads the matched Beauty MMQ generator (seed 0, experiments/generative/beauty_matched/
mmq.yaml, weights must exist locally) twice - as trained, and resized the way stage 2 loads it - and prints the
teacher-forced L_gen of both on the same 4,096 training windows with the stage-1 SIDs unchanged (eval mode, 1 thread).
"""
import numpy as np
import torch
torch.set_num_threads(1)
import baselines  # noqa
from mmq import registry
from mmq.data import load_dataset
from mmq.data.splits import leave_one_out
from mmq.generative.experiment import build_model, training_rows, load_semantic_ids
from mmq.generative.finetune import load_resized
from mmq.generative.train import item_codes_lookup
from mmq.semantic_ids.base import load_torch_state
cfgp = "experiments/generative/beauty_matched/mmq.yaml"
_, config = registry.load_experiment(cfgp)
dataset = load_dataset(config.dataset, kcore=config.kcore)
split = leave_one_out(dataset, max_history=config.max_history, config=config.split)
table, _ = load_semantic_ids(config.semantic_ids, 0)
sizes = tuple(int(s) for s in table.max(axis=0) + 1)
state = load_torch_state(registry.run_directory(cfgp, 0) / "best.pt")
torch.manual_seed(0); base = build_model(config, sizes); base.load_state_dict(state)
big = (*sizes[:-1], 2 * sizes[-1] + 4)
torch.manual_seed(0); resized = build_model(config, big); load_resized(resized, state)
inputs, targets = training_rows(config, split.train_sequences)
lookup = item_codes_lookup(table)
rng = np.random.default_rng(0); rows = rng.choice(len(inputs), 4096, replace=False)
base.eval(); resized.eval()
with torch.no_grad():
    for name, model in (("stage-1 head (%d de-dup slots)" % sizes[-1], base), ("resized head (%d slots)" % big[-1], resized)):
        losses = []
        for chunk in np.array_split(rows, 16):
            h = lookup[torch.from_numpy(inputs[chunk])]; t = lookup[torch.from_numpy(targets[chunk])]
            losses.append(float(model(h, t).loss))
        print(name, "L_gen (eval mode, 4096 training windows):", round(float(np.mean(losses)), 4))
