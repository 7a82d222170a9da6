"""One generative-retrieval run: SIDs from a tokenizer run + backbone training + test read once.

``semantic_ids`` names the YAML config of the run that produced the SID table (e.g.
``experiments/tokenizers/beauty_rq_vae.yaml``); that run is built first if missing, with the same
seed as this run unless ``tokenizer_seed`` fixes one, and the table's sha256 is recorded.

With ``finetune: true`` (MMQ stage 2 on this task; causal backbone, MMQ or MA-RQ-VAE SIDs) the
tokenizer of that run trains jointly with the generator (:mod:`mmq.generative.finetune`); the run
folder then also receives the fine-tuned tokenizer, the re-derived SID table and its quality.
Every run keeps each valid / test event's target rank in ``per_event.npz`` (:mod:`mmq.metrics.per_event`),
under the configured history exclusion (``valid`` / ``test``) and without any (``valid_no_exclusion`` /
``test_no_exclusion``; docs/method.md §5.1).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmq import registry
from mmq.data import load_dataset
from mmq.data.splits import SequenceSplitConfig, leave_one_out
from mmq.finetune.runs import live_source, save_finetuned
from mmq.generative.causal import CausalSidRecommender
from mmq.generative.finetune import GenerativeFinetuneConfig, JointTokenizer, default_dedup_capacity, load_resized
from mmq.generative.sid_trie import SemanticIdTrie
from mmq.generative.t5_backbone import T5SidRecommender
from mmq.generative.train import TrainingConfig, fit, item_codes_lookup, score_split
from mmq.metrics.per_event import next_item_arrays, save_per_event
from mmq.recommenders.evaluation import NextItemEvaluationConfig
from mmq.recommenders.sequences import next_item_samples, training_windows
from mmq.semantic_ids.base import load_torch_state

NO_EXCLUSION = "_no_exclusion"   # suffix of the splits scored without history exclusion (valid_no_exclusion, ...)


@dataclasses.dataclass(frozen=True)
class CausalConfig:
    """Causal backbone sizes ([choice]; SASRec-like widths that train in minutes on 2 cores)."""

    dim: int = 128
    num_layers: int = 2
    num_heads: int = 2
    ffn_multiplier: int = 2          # FFN width = 2 x dim (speed on 2 cores)
    dropout: float = 0.2             # embeddings, residual branches, decoder heads
    attention_dropout: float = 0.0   # off by default: CPU dropout masks cost ~1/4 of a step here
    decoder_hidden: int = 256


@dataclasses.dataclass(frozen=True)
class T5Config:
    """TIGER's T5 sizes: 4 + 4 layers, d_model 128, 6 heads of 64, FFN 1024, dropout 0.1."""

    dim: int = 128
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    num_heads: int = 6
    head_dim: int = 64
    ffn_dim: int = 1024
    dropout: float = 0.1


@dataclasses.dataclass(frozen=True)
class GenerativeConfig:
    """A generative retriever on one SID table (defaults: the ``cpu`` profile on Beauty RQ-VAE SIDs)."""

    dataset: str = "beauty"
    kcore: int | None = None
    max_history: int = 20                    # [paper] docs/method.md §5.1
    split: SequenceSplitConfig = SequenceSplitConfig()   # test events per user, equal-timestamp order (§5.1)
    semantic_ids: str = "experiments/tokenizers/beauty_rq_vae.yaml"   # config of the SID run
    tokenizer_seed: int | None = None        # None: same seed as this run (seed spread covers the SIDs too)
    backbone: str = "causal"                 # causal (all positions per pass) | t5 (TIGER encoder-decoder)
    causal: CausalConfig = CausalConfig()
    t5: T5Config = T5Config()
    training: TrainingConfig = TrainingConfig()
    evaluation: NextItemEvaluationConfig = NextItemEvaluationConfig()   # beam size, k, history exclusion
    finetune: bool = False                   # stage 2: train the SID run's tokenizer with the generator
    finetuning: GenerativeFinetuneConfig = GenerativeFinetuneConfig()
    init_from: str | None = None             # generative config whose run (same seed) gives the start weights
    num_threads: int = 1                     # torch threads on CPU
    profile: str = "cpu"                     # label recorded in the report and the table

    def __post_init__(self) -> None:
        if self.backbone not in ("causal", "t5"):
            raise ValueError(f"backbone must be 'causal' or 't5', got {self.backbone!r}")
        if self.finetune and self.backbone != "causal":
            raise ValueError("finetune: true is implemented for the causal backbone only")


def load_semantic_ids(config_path: str, seed: int) -> tuple[np.ndarray, str]:
    """The SID table of ``config_path``'s run for ``seed`` (built if missing) and its sha256.

    Any SID config works: text-only tokenizers, multimodal MA/MS baselines and MMQ stage 1.
    """
    loaded = registry.semantic_id_table(config_path, seed)
    return loaded.table, loaded.sha256


def build_model(config: GenerativeConfig, codebook_sizes: tuple[int, ...]) -> torch.nn.Module:
    """The configured backbone for a SID table with ``codebook_sizes``."""
    if config.backbone == "causal":
        return CausalSidRecommender(codebook_sizes=codebook_sizes, max_length=config.max_history,
                                    **dataclasses.asdict(config.causal))
    return T5SidRecommender(codebook_sizes=codebook_sizes, max_length=config.max_history,
                            **dataclasses.asdict(config.t5))


def training_rows(config: GenerativeConfig, train_sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Causal: all-position windows ``[N, H]`` -> ``[N, H]``; t5: one sample per target ``[N, H]`` -> ``[N]``."""
    if config.backbone == "causal":
        windows = training_windows(train_sequences, config.max_history)
        return windows.inputs, windows.targets
    return next_item_samples(train_sequences, config.max_history)


def run_generative(config: GenerativeConfig, seed: int, directory: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train with validation selection, then score the test split once; returns the metrics."""
    torch.set_num_threads(config.num_threads)
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    split = leave_one_out(dataset, max_history=config.max_history, config=config.split)
    tokenizer_seed = seed if config.tokenizer_seed is None else config.tokenizer_seed
    semantic_ids, digest = load_semantic_ids(config.semantic_ids, tokenizer_seed)
    if len(semantic_ids) != dataset.num_items:
        raise ValueError(f"SID table has {len(semantic_ids)} rows but {config.dataset} has {dataset.num_items} items")
    joint = stage1 = None
    if config.finetune:
        joint, stage1 = _joint_tokenizer(config, semantic_ids, tokenizer_seed)
        codebook_sizes = joint.codebook_sizes
    else:
        codebook_sizes = tuple(int(size) for size in semantic_ids.max(axis=0) + 1)
    trie = SemanticIdTrie(semantic_ids, codebook_sizes)
    torch.manual_seed(seed)
    model = build_model(config, codebook_sizes)
    initialised = _initialise(model, config, seed, digest) if config.init_from else None
    inputs, targets = training_rows(config, split.train_sequences)
    valid_history, valid_target = split.history_and_target("valid")
    summary = fit(model, config.training, directory, inputs=inputs, targets=targets, semantic_ids=semantic_ids,
                  trie=trie, valid_histories=valid_history, valid_targets=valid_target,
                  max_history=config.max_history, seed=seed, progress=progress, joint=joint,
                  evaluation=config.evaluation, valid_seen=split.seen_items("valid"))
    device = next(model.parameters()).device
    finetuned = None
    if joint is not None:  # evaluate with the SIDs the chosen tokenizer derives, and save them
        tokenizer, embeddings, stage1_codes = stage1
        finetuned = save_finetuned(tokenizer, joint.source, embeddings, stage1_codes, directory)
        semantic_ids = np.load(directory / "semantic_ids.npy")  # the table the chosen epoch validated with
        trie = SemanticIdTrie(semantic_ids, codebook_sizes).to(device)
    lookup = item_codes_lookup(semantic_ids)
    evaluation, ranks, users = {}, {}, {}
    protocols = {"": config.evaluation}   # the configured exclusion, and (when it excludes) the lists without it
    if config.evaluation.history_exclusion != "none":
        protocols[NO_EXCLUSION] = dataclasses.replace(config.evaluation, history_exclusion="none")
    for suffix, protocol in protocols.items():
        for split_name in ("valid", "test"):  # test is read once, at the checkpoint chosen on validation
            histories, split_targets = split.history_and_target(split_name)
            started = time.perf_counter()
            scored = score_split(model, lookup, trie, histories, split_targets, max_history=config.max_history,
                                 evaluation=protocol, device=device, seen=split.seen_items(split_name))
            name = split_name + suffix
            evaluation[name] = scored.metrics
            evaluation[f"{name}_users_per_second"] = round(len(histories) / (time.perf_counter() - started), 1)
            ranks[name], users[name] = scored.ranks, split.event_users(split_name)
    evaluation["history_exclusion"] = config.evaluation.history_exclusion
    per_event = save_per_event(directory, next_item_arrays(ranks, users, scored.list_length))
    return {
        **evaluation,
        "training": summary,
        "profile": config.profile,
        "backbone": config.backbone,
        "num_params": int(sum(parameter.numel() for parameter in model.parameters())),
        "num_training_rows": int(len(inputs)),
        "semantic_ids": {"config": config.semantic_ids, "seed": tokenizer_seed, "sha256": digest,
                         "codebook_sizes": list(codebook_sizes)},
        **({"finetuned": finetuned} if finetuned is not None else {}),
        **({"init_from": initialised} if initialised is not None else {}),
        "per_event": per_event,
    }


def _initialise(model: torch.nn.Module, config: GenerativeConfig, seed: int, digest: str) -> dict[str, Any]:
    """Load the chosen weights of ``init_from``'s run (same seed, same starting SIDs) into ``model``."""
    report = registry.run_or_load(config.init_from, seed, progress=False, consumed=True)  # rebuilt without weights
    if report["metrics"]["semantic_ids"]["sha256"] != digest:
        raise ValueError(f"init_from {config.init_from} seed {seed} was trained on other SIDs than {config.semantic_ids}")
    weights = registry.run_directory(config.init_from, seed) / "best.pt"
    resized = load_resized(model, load_torch_state(weights))
    return {"config": config.init_from, "seed": seed, "best_epoch": report["metrics"]["training"]["best_epoch"],
            "valid_ndcg@10": report["metrics"]["valid"]["ndcg@10"], "resized": resized}


def _joint_tokenizer(config: GenerativeConfig, semantic_ids: np.ndarray, tokenizer_seed: int):
    """The live tokenizer of the SID run (checked to reproduce its table) wrapped for joint training."""
    run_directory = registry.run_directory(config.semantic_ids, tokenizer_seed)  # built above
    stage1_codes = semantic_ids[:, :-1]  # the semantic codes; the de-dup digit is recomputed, not learned
    source, tokenizer, embeddings = live_source(config.semantic_ids, run_directory, stage1_codes,
                                                config.finetuning.tau)
    capacity = config.finetuning.dedup_capacity or default_dedup_capacity(int(semantic_ids[:, -1].max()) + 1)
    return (JointTokenizer(source, config.finetuning, capacity, anchor_codes=stage1_codes),
            (tokenizer, embeddings, stage1_codes))


def run(config: GenerativeConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``generative`` kind."""
    return run_generative(config, seed, directory, progress=progress)
