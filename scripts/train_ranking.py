"""Train a PPNet ranking run (item ID, frozen SIDs, or MMQ stage 2 fine-tuning) for several seeds.

    python scripts/train_ranking.py --config experiments/ranking/movielens_mmq.yaml --seeds 0 1 2

Finished runs are skipped (``--force`` retrains: a run with ``state.pt`` resumes from it). Outputs
land in checkpoints/<experiment>/seed<k>/: report.json (valid + test AUC / GAUC / long-tail AUC at
the validation-selected epoch; for fine-tuning runs also the re-derived SID table's quality),
semantic_ids.npy (fine-tuning runs), best.pt / state.pt and tokenizer/ weights (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts._common import setup  # noqa: E402

from mmq.ranking.experiment import run_or_load  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Train (or reuse) each seed's run and print its valid/test summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true", help="rerun even when DONE exists")
    parser.add_argument("--no-progress", action="store_true")
    arguments = parser.parse_args(argv)
    setup()
    for seed in arguments.seeds:
        metrics = run_or_load(arguments.config, seed, force=arguments.force, progress=not arguments.no_progress)["metrics"]
        summary = {"seed": seed, "best_epoch": metrics["training"]["best_epoch"],
                   "train_seconds": metrics["training"]["train_seconds"]}
        for split in ("valid", "test"):
            summary.update({f"{split}/{name}": round(metrics[split][name], 4)
                            for name in ("auc", "gauc", "auc_head", "auc_tail")})
        if "finetuned" in metrics:
            summary["changed_item_fraction"] = round(metrics["finetuned"]["changed_item_fraction"], 3)
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
