"""Train the SASRec-CE baseline for one config and several seeds (skips finished runs).

    python scripts/train_sasrec.py --config experiments/generative/beauty_sasrec.yaml --seeds 0 1 2

Outputs land in checkpoints/<experiment>/seed<k>/: report.json (valid + test metrics at the
validation-selected epoch), best.pt and state.pt (git-ignored; state.pt resumes a killed run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts._common import setup  # noqa: E402

from baselines.sasrec.experiment import run_or_load  # noqa: E402

SHOWN = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def main(argv: list[str] | None = None) -> int:
    """Train (or reuse) each seed's run and print its valid/test summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true", help="retrain from scratch even when DONE exists")
    arguments = parser.parse_args(argv)
    setup()
    for seed in arguments.seeds:
        metrics = run_or_load(arguments.config, seed, force=arguments.force)["metrics"]
        print(json.dumps({"seed": seed, "best_epoch": metrics["best_epoch"], "epochs_run": metrics["epochs_run"],
                          "train_seconds": metrics["train_seconds"],
                          **{f"{split}/{name}": round(metrics[split][name], 4)
                             for split in ("valid", "test") for name in SHOWN}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
