"""Re-key committed run folders to their content identity: ``<experiment>[-<old id>]/seedK`` -> ``<experiment>-<run id>/seedK``.

    python scripts/migrate_run_folders.py            # dry run: what would move, what does not match
    python scripts/migrate_run_folders.py --apply    # move the folders (git mv) and update their reports

Used once when run identities were introduced (folders had no id), and whenever a config class gains a
field whose default keeps the old behaviour (every run id changes; the runs themselves do not).

A run folder moves only when its recorded config, after this project's known field renames, equals
the config its YAML resolves to today; otherwise it stays where it is and is listed as stale (a YAML
edited after its run). Each migrated report gains ``run_id``, ``config_path``, ``upstream``, the
fingerprints of the datasets its config names (``datasets``, computed from the data directory at
migration time) and ``migration`` (the old folder and, when it differed in form, the recorded config).
"""

from __future__ import annotations

import argparse
import copy
import subprocess
from typing import Any

import baselines  # noqa: F401  (registers the baseline kinds)
from mmq import artifacts, registry
from mmq.cli import setup
from mmq.config import to_dict
from mmq.data.fingerprint import current_fingerprint, dataset_key
from mmq.runs import REPOSITORY_ROOT, checkpoints_root, experiment_name

TOWER_RUN = "ch7/myntra_image_tower/seed0"
TOWER_CONFIG = "experiments/ch7/myntra_image_tower.yaml"
STAGE2_FIELDS = ("tau", "tokenizer_lr_ratio", "reconstruction_weight", "auxiliary_weight")
BASELINE_FIELDS = ("method", "fusion", "code_length", "codebook_size", "rq_vae_steps", "rq_vae_batch_size")


def renamed(kind: str, recorded: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``recorded`` in today's field layout (the renames made when the registry and run identities landed);
    a config already in today's layout is returned as it is."""
    config = copy.deepcopy(recorded)
    inputs = config.get("inputs")
    if isinstance(inputs, dict):
        if "second_modality" in inputs:
            inputs["modalities"] = ["text", inputs.pop("second_modality")]
        if "tower_run" in inputs and inputs.pop("tower_run") == TOWER_RUN:
            inputs.update(image_tower=TOWER_CONFIG, image_tower_seed=0)
    if kind == "mmq_tokenizer":
        if config.get("method", "mmq") == "mmq":
            for name in BASELINE_FIELDS:
                config.pop(name, None)
        config.get("mmq", {}).setdefault("expert_type", "mlp")
    if kind == "multimodal_sid_tokenizer":
        config.pop("mmq", None)
    if kind == "ranking" and any(name in config.get("training", {}) for name in STAGE2_FIELDS):
        training = config["training"]
        config["finetuning"] = {name: training.pop(name) for name in STAGE2_FIELDS if name in training}
    if kind == "generative" and "evaluation" not in config:
        training = config.get("training", {})
        config["evaluation"] = {"beam_size": training.pop("beam_size", 20),
                                "batch_size": training.pop("eval_batch_size", 1024),
                                "exclude_history": config.pop("exclude_history", True),
                                "ks": current["evaluation"]["ks"]}
    evaluation = config.get("evaluation") if kind == "generative" else None
    if isinstance(evaluation, dict) and "exclude_history" in evaluation:  # before in-beam exclusion (2026-12)
        evaluation["history_exclusion"] = "recent_after_beam" if evaluation.pop("exclude_history") else "none"
    if kind == "clip_retrieval" and str(config.pop("tower_run", "")).startswith("ch7/myntra_image_tower/seed"):
        config.update(image_tower=TOWER_CONFIG, tower_seed=None)
    return config


def fill_added_defaults(recorded: dict[str, Any], current: dict[str, Any], default: dict[str, Any],
                        prefix: str = "") -> list[str]:
    """Fields added to a config class after the run, whose value today is their default: record them as such.

    Such fields were added as opt-in features (their default reproduces the old behaviour), so a run made
    before they existed is the same run. Returns the names filled.
    """
    filled = []
    for key, value in current.items():
        if key not in recorded and isinstance(default, dict) and default.get(key) == value:
            recorded[key] = copy.deepcopy(value)
            filled.append(prefix + key)
        elif isinstance(value, dict) and isinstance(recorded.get(key), dict):
            filled += fill_added_defaults(recorded[key], value, default.get(key, {}) if isinstance(default, dict)
                                          else {}, prefix=f"{prefix}{key}.")
    return filled


def dataset_keys(config: dict[str, Any]) -> set[str]:
    """Every ``dataset`` (with its ``kcore`` sibling) named anywhere in a resolved config."""
    keys = set()
    if isinstance(config, dict):
        if isinstance(config.get("dataset"), str):
            keys.add(dataset_key(config["dataset"], config.get("kcore")))
        for value in config.values():
            keys |= dataset_keys(value)
    elif isinstance(config, list):
        for value in config:
            keys |= dataset_keys(value)
    return keys


def main(argv: list[str] | None = None) -> int:
    """List (and with --apply perform) the moves; exit 1 when a committed run does not match its YAML."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apply", action="store_true")
    arguments = parser.parse_args(argv)
    setup()
    stale = 0
    for path in sorted((REPOSITORY_ROOT / "experiments").rglob("*.yaml")):
        kind, config = registry.load_experiment(path)
        current = to_dict(config)
        name = experiment_name(path)
        candidates = [*checkpoints_root().glob(f"{name}/seed*"), *checkpoints_root().glob(f"{name}-*/seed*")]
        for old in sorted(candidates):
            if not (old / "report.json").exists() or old == registry.run_directory(path, int(old.name[4:])):
                continue
            report = artifacts.read_json(old / "report.json")
            recorded = renamed(kind.name, report["config"], current)
            filled = fill_added_defaults(recorded, current, to_dict(kind.config_class()))
            if recorded != current:
                stale += 1
                differing = sorted(key for key in set(recorded) | set(current) if recorded.get(key) != current.get(key))
                print(f"STALE {old.relative_to(REPOSITORY_ROOT)}: recorded config differs in {differing}")
                continue
            new = registry.run_directory(path, report["seed"])
            print(f"move  {old.relative_to(REPOSITORY_ROOT)} -> {new.relative_to(REPOSITORY_ROOT)}")
            if not arguments.apply:
                continue
            seed = report["seed"]
            report["run_id"] = registry.run_id(path)
            report["config_path"] = str(path.relative_to(REPOSITORY_ROOT))
            report["upstream"] = {item.field: {"config": item.config, "run_id": registry.run_id(item.config),
                                               "seed": seed if item.seed is None else item.seed}
                                  for item in kind.upstream(config)}
            report["datasets"] = {key: current_fingerprint(key) for key in sorted(dataset_keys(current))}
            migration: dict[str, Any] = {"from": str(old.relative_to(REPOSITORY_ROOT))}
            if "migration" in report:  # an earlier re-keying: keep its record
                migration["previous"] = report["migration"]
            if report["config"] != current:
                migration["recorded_config"] = report["config"]
            if filled:
                migration["fields_added_later_at_their_default"] = filled
            report["config"], report["migration"] = current, migration
            artifacts.write_json(old / "report.json", report)
            new.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "mv", str(old), str(new)], cwd=REPOSITORY_ROOT, check=True)
    print(f"{stale} stale run(s)")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
