"""Chapter 7: train the image tower (Myntra, then MovieLens posters) and cache image features.

    python scripts/train_image_tower.py --config experiments/ch7/myntra_image_tower.yaml

Writes checkpoints/<experiment>/seed<k>/{myntra,movielens}/best.pt (+ state.pt for resuming) and
report.json; image features go to <MMQ_CACHE_DIR>/features/<dataset>/image-<checkpoint hash>-*.npy.
Rerunning an interrupted command resumes at the next epoch; a finished run is skipped unless --force.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts._common import setup  # noqa: E402

from mmq.config import load_config  # noqa: E402
from mmq.image_tower.experiment import ImageTowerExperimentConfig, run_image_tower_experiment  # noqa: E402
from mmq.runs import experiment_name, start_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Train (or resume) the run for each seed and write its report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/ch7/myntra_image_tower.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true", help="rerun a finished run (checkpoints resume)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars (logs only)")
    arguments = parser.parse_args(argv)
    setup()
    config = load_config(ImageTowerExperimentConfig, arguments.config)
    name = experiment_name(arguments.config)
    for seed in arguments.seeds:
        run = start_run(name, seed, config, force=arguments.force)
        if run.done:
            print(f"{run.directory} is done (use --force to rerun)")
            continue
        metrics = run_image_tower_experiment(config, run.directory, seed, progress=not arguments.no_progress)
        run.finish(metrics)
        print(f"wrote {run.report_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
