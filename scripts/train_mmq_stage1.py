"""Train MMQ stage 1 (or an MA/MS multimodal baseline) for one config and write its run folders.

    python scripts/train_mmq_stage1.py --config experiments/mmq/movielens_mmq.yaml --seeds 0 1 2

Each seed lands in checkpoints/<experiment>/seed<k>/: report.json (quality: L_recon, entropy,
utilization, collision rate; fit seconds), semantic_ids.npy (+ de-dup digit, sha256 in the
report), tokenizer/ and DONE. Finished seeds are reused unless --force.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts._common import setup  # noqa: E402

from mmq.mmq_tokenizer.experiment import run_or_load  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Train (or reuse) every seed and print one JSON summary line per seed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true")
    arguments = parser.parse_args(argv)
    setup()
    for seed in arguments.seeds:
        metrics = run_or_load(arguments.config, seed, force=arguments.force)["metrics"]
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
