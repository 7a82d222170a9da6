"""Shared command-line pieces for scripts: logging and offline defaults, a run's one-line summary."""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping


def setup() -> None:
    """Configure logging and default to offline Hugging Face loading."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers of any run's report: scalar valid/test metrics, SID quality, timings."""
    metrics = report["metrics"]
    summary: dict[str, Any] = {"experiment": report["experiment"], "seed": report["seed"]}
    for split in ("valid", "test"):
        values = metrics.get(split)
        if isinstance(values, Mapping):
            summary.update({f"{split}/{name}": round(value, 4) for name, value in values.items()
                            if isinstance(value, float)})
    quality = metrics.get("quality")
    if isinstance(quality, Mapping):
        summary["reconstruction_l2_sq"] = round(quality["reconstruction_l2_sq"], 4)
        summary["entropy_mean"] = round(quality["semantic_id_quality"]["entropy_mean"], 4)
        summary["utilization_per_position"] = quality["semantic_id_quality"]["utilization_per_position"]
    if "dedup" in metrics:
        summary["collision_rate"] = metrics["dedup"]["collision_rate_before"]
    if "semantic_id_table" in metrics:
        summary["sha256"] = metrics["semantic_id_table"]["sha256"]
    training = metrics.get("training")
    if isinstance(training, Mapping):
        summary.update({name: training[name] for name in ("best_epoch", "train_seconds") if name in training})
    for name in ("fit_seconds", "train_seconds", "best_epoch"):
        if name in metrics and not isinstance(metrics[name], Mapping):
            summary[name] = metrics[name]
    if isinstance(metrics.get("finetuned"), Mapping):
        summary["changed_item_fraction"] = round(metrics["finetuned"]["changed_item_fraction"], 3)
    return summary
