"""One ranking run: PPNet on MovieLens (rating > 3; ``protocol`` global 90/10 as the paper, per-user, or
cold items: :mod:`mmq.ranking.data`), optionally with SIDs and MMQ stage 2 (behavior-aware fine-tuning of
the tokenizer through soft indices).

``semantic_ids`` names the YAML config of the SID run (MA/MS baselines, MMQ stage 1 or an
ablation); that run is built first if missing, with the same seed unless ``tokenizer_seed`` fixes
one. With ``finetune: true`` the run folder also receives the fine-tuned tokenizer
(``tokenizer/``, weights git-ignored), the re-derived SID table (``semantic_ids.npy`` + de-dup
digit, sha256 in the report) and its quality, so a later downstream run can read those SIDs.
Every run keeps each valid / test sample's logit, label, user and item in ``per_event.npz``
(:mod:`mmq.metrics.per_event`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from mmq.finetune.objective import BehaviorFinetuneConfig
from mmq import registry
from mmq.finetune.runs import live_source, save_finetuned
from mmq.finetune.sources import FrozenCodes, NoCodes
from mmq.metrics.per_event import save_per_event
from mmq.ranking.data import PROTOCOLS, ranking_data
from mmq.ranking.ppnet import ITEM_FEATURES, PPNet, PPNetConfig
from mmq.ranking.train import RankingTrainingConfig, fit_ranking, predict, ranking_metrics, ranking_split_arrays


@dataclasses.dataclass(frozen=True)
class RankingConfig:
    """A PPNet ranking run (defaults: the item-ID-only baseline on MovieLens)."""

    dataset: str = "movielens"
    kcore: int | None = None
    test_fraction: float = 0.1               # [paper] chronological 90/10
    valid_fraction: float = 0.1              # tail of the 90% part, for model selection [choice]
    positive_threshold: float = 3.0          # [paper] rating > 3 positive
    item_features: str = "id"                # id | sid | id+sid
    semantic_ids: str | None = None          # config of the SID run (needed for sid features)
    tokenizer_seed: int | None = None        # None: the SID run of this run's seed
    finetune: bool = False                   # stage 2: train the tokenizer jointly (MMQ or MA-RQ-VAE)
    finetuning: BehaviorFinetuneConfig = BehaviorFinetuneConfig()   # stage-2 settings (used with finetune)
    ppnet: PPNetConfig = PPNetConfig()
    training: RankingTrainingConfig = RankingTrainingConfig()
    long_tail_fraction: float = 0.25         # head / tail buckets of test items by training exposure
    num_threads: int = 1
    profile: str = "cpu"
    protocol: str = "global"                 # global [paper] | per_user | cold_items (mmq.ranking.data)
    cold_fraction: float = 0.2               # cold_items: share of movies held out of training
    split_seed: int = 0                      # per_user tie order and the cold items; fixed across run seeds

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not 0.0 < self.cold_fraction < 1.0:
            raise ValueError(f"cold_fraction must be in (0, 1), got {self.cold_fraction}")
        if self.item_features not in ITEM_FEATURES:
            raise ValueError(f"item_features must be one of {ITEM_FEATURES}, got {self.item_features!r}")
        if "sid" in self.item_features and not self.semantic_ids:
            raise ValueError(f"item_features={self.item_features!r} needs semantic_ids (a SID run config)")
        if self.finetune and "sid" not in self.item_features:
            raise ValueError("finetune: true needs SID item features (item_features sid or id+sid)")


def run_ranking(config: RankingConfig, seed: int, directory: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train, select on validation AUC, read the test split once; return the metrics."""
    from mmq.data import load_dataset

    torch.set_num_threads(config.num_threads)
    torch.manual_seed(seed)
    dataset = load_dataset(config.dataset, kcore=config.kcore)
    data = ranking_data(dataset, test_fraction=config.test_fraction, valid_fraction=config.valid_fraction,
                        positive_threshold=config.positive_threshold, protocol=config.protocol,
                        cold_fraction=config.cold_fraction, split_seed=config.split_seed)
    metrics: dict[str, Any] = {"profile": config.profile, "num_samples": {k: len(v) for k, v in data.splits.items()}}
    if config.protocol != "global":
        metrics["protocol"] = {"name": config.protocol, "split_seed": config.split_seed,
                               "num_test_users": int(len(set(data.splits["test"].users.tolist())))}
        if config.protocol == "cold_items":
            metrics["protocol"].update(num_cold_items=int(len(data.cold_items)), cold_fraction=config.cold_fraction,
                                       id_fallback="cold items share one unknown-item ID embedding (never trained)")
    source, codebook_sizes, tokenizer = NoCodes(data.num_items), None, None
    if config.semantic_ids:
        tokenizer_seed = seed if config.tokenizer_seed is None else config.tokenizer_seed
        loaded = registry.semantic_id_table(config.semantic_ids, tokenizer_seed)  # built if missing, sha256-checked
        sid_report, table, sid_directory = loaded.report, loaded.table, loaded.directory
        quality = sid_report["metrics"]["quality"]
        codebook_sizes = tuple(quality["codebook_sizes"])
        if table.shape[0] != data.num_items:
            raise ValueError(f"{sid_directory}: SID table has {table.shape[0]} rows, dataset has {data.num_items} items")
        stage1_codes = table[:, :len(codebook_sizes)]  # the semantic codes; the de-dup digit is not learned
        metrics["semantic_ids"] = {"config": config.semantic_ids, "tokenizer_seed": tokenizer_seed,
                                   "sha256": sid_report["metrics"]["semantic_id_table"]["sha256"],
                                   "stage1_quality": quality}
        if config.finetune:
            source, tokenizer, embeddings = live_source(config.semantic_ids, sid_directory, stage1_codes,
                                                         config.finetuning.tau)
        else:
            source = FrozenCodes(stage1_codes, codebook_sizes)
    torch.manual_seed(seed)
    model = PPNet(num_users=data.num_users, num_items=data.num_items, item_features=config.item_features,
                  codebook_sizes=codebook_sizes, config=config.ppnet,
                  unknown_items=data.cold_items if len(data.cold_items) else None)
    metrics["num_params"] = sum(p.numel() for p in model.parameters())
    long_tail = data.item_buckets(config.long_tail_fraction)
    metrics["training"] = fit_ranking(model, source, data, config.training, directory, seed=seed, progress=progress,
                                      finetuning=config.finetuning)
    scores = {"valid": predict(model, source, data.splits["valid"])}
    metrics["valid"] = ranking_metrics(data.splits["valid"], scores["valid"], long_tail)
    started = time.perf_counter()
    scores["test"] = predict(model, source, data.splits["test"])
    metrics["test"] = ranking_metrics(data.splits["test"], scores["test"], long_tail)
    metrics["test_seconds"] = round(time.perf_counter() - started, 2)
    arrays = {}
    for split_name, split_scores in scores.items():
        arrays.update(ranking_split_arrays(data.splits[split_name], split_scores, split_name, long_tail))
    metrics["per_event"] = save_per_event(directory, arrays)
    metrics["long_tail"] = {"fraction": config.long_tail_fraction, "num_head_items": len(long_tail["head"]),
                            "num_tail_items": len(long_tail["tail"]),
                            "max_tail_exposure": int(data.train_exposure[long_tail["tail"]].max()),
                            "min_head_exposure": int(data.train_exposure[long_tail["head"]].min())}
    if config.finetune:
        metrics["finetuned"] = save_finetuned(tokenizer, source, embeddings, stage1_codes, directory)
    return metrics


def run(config: RankingConfig, seed: int, directory: Path, progress: bool = True) -> dict[str, Any]:
    """Registry runner of the ``ranking`` kind."""
    return run_ranking(config, seed, directory, progress=progress)
