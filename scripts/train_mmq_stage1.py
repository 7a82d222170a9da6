"""Train MMQ stage 1 (or an MA/MS multimodal baseline) for one config and write its run folders.

    python scripts/train_mmq_stage1.py --config experiments/mmq/movielens_mmq.yaml --seeds 0 1 2

The same command as ``scripts/build_semantic_ids.py`` (which handles every tokenizer config).
Each seed lands in checkpoints/<experiment>/seed<k>/: report.json (quality: L_recon, entropy,
utilization, collision rate; fit seconds), semantic_ids.npy (+ de-dup digit, sha256 in the
report), tokenizer/ and DONE. Finished seeds are reused unless --force.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.build_semantic_ids import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
