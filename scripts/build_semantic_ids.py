"""Build semantic IDs for one config (fit, encode, de-dup digit, quality report, figures): text-only
tokenizers, multimodal MA/MS baselines and MMQ stage 1 alike.

    python scripts/build_semantic_ids.py --config experiments/tokenizers/beauty_rq_kmeans.yaml
    python scripts/build_semantic_ids.py --config experiments/mmq/movielens_mmq.yaml --seeds 0 1 2

Outputs land in checkpoints/<experiment>/seed<k>/: report.json, semantic_ids.npy (hash in the
report), tokenizer/, hierarchy.{png,txt}, codebook_usage.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts._common import setup  # noqa: E402

from mmq.tokenizers.experiment import run_semantic_id_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the run and print its quality summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true")
    arguments = parser.parse_args(argv)
    setup()
    for seed in arguments.seeds:
        metrics = run_semantic_id_config(arguments.config, seed, force=arguments.force)["metrics"]
        quality = metrics["quality"]
        print(json.dumps({"config": arguments.config, "seed": seed, "fit_seconds": metrics["fit_seconds"],
                          "reconstruction_l2_sq": round(quality["reconstruction_l2_sq"], 4),
                          "entropy_mean": round(quality["semantic_id_quality"]["entropy_mean"], 4),
                          "utilization_per_position": quality["semantic_id_quality"]["utilization_per_position"],
                          "collision_rate": metrics["dedup"]["collision_rate_before"],
                          "sha256": metrics["semantic_id_table"]["sha256"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
