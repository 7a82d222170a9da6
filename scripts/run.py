"""Run any experiment YAML by path, or validate every YAML under experiments/ (--check).

    python scripts/run.py experiments/ranking/movielens_mmq.yaml --seeds 0 1 2
    python scripts/run.py experiments/mmq/movielens_mmq.yaml experiments/tokenizers/beauty_rq_vae.yaml
    python scripts/run.py --check            # load + validate every YAML, train nothing
    python scripts/run.py --list-kinds       # the registry: kind -> config class -> what it runs

The YAML's ``kind:`` line picks the runner (mmq/registry.py, baselines/registry.py). One config +
seed -> one folder checkpoints/<path under experiments/>/seed<k>/ (report.json, DONE last); a
finished run is only read unless --force. A run's folder is named by its content identity
(checkpoints/<path under experiments/>-<run id>/seed<k>/): editing a YAML makes a new run. Upstream runs
(the SID run a ranking row names, the image tower, ...) are built first when missing or when their
git-ignored files are absent (a fresh clone), after printing what and roughly how long; --no-train
refuses instead. Prints one JSON summary line per run.
"""

from __future__ import annotations

import argparse
import json
import sys

import baselines  # noqa: F401  (registers the baseline kinds)
from mmq import registry
from mmq.cli import run_summary, setup
from mmq.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Run each config for each seed (or check all YAMLs); non-zero exit when anything failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", help="experiment YAML files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true", help="retrain finished runs (the old run stays until the new "
                        "one has finished)")
    parser.add_argument("--no-train", action="store_true", help="only read finished runs; say what is missing")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars (logs only)")
    parser.add_argument("--check", action="store_true", help="validate every YAML under experiments/ and exit")
    parser.add_argument("--list-kinds", action="store_true", help="print the registered experiment kinds")
    arguments = parser.parse_args(argv)
    if arguments.list_kinds:
        for name, kind in sorted(registry.kinds().items()):
            print(f"{name:26s} {kind.config_class.__module__}.{kind.config_class.__name__}: {kind.description}")
        return 0
    if arguments.check:
        return _check(arguments.configs)
    if not arguments.configs:
        parser.error("name at least one experiment YAML (or --check / --list-kinds)")
    if any(seed < 0 for seed in arguments.seeds):
        parser.error(f"seeds must be >= 0, got {arguments.seeds}")
    setup()
    try:
        for config in arguments.configs:
            registry.check_upstream(config)  # every config (and its upstream) is validated before any training
        for config in arguments.configs:
            for seed in arguments.seeds:
                report = registry.run_or_load(config, seed, force=arguments.force, progress=not arguments.no_progress,
                                              no_train=arguments.no_train)
                print(json.dumps(run_summary(report)))
    except (ConfigError, registry.MissingRunsError, registry.DataChangedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _check(paths: list[str]) -> int:
    """Validate the named YAMLs (default: all under experiments/); print one line each."""
    results = ([(path, _error_of(path)) for path in paths] if paths else
               [(str(path), error) for path, error in registry.check_all()])
    for path, error in results:
        print(f"{'ok  ' if error is None else 'FAIL'} {path}" + (f": {error}" if error else ""))
    failed = sum(error is not None for _, error in results)
    print(f"{len(results) - failed} ok, {failed} failed")
    return 1 if failed else 0


def _error_of(path: str) -> str | None:
    try:
        registry.check_upstream(path)  # loads the YAML and every upstream config it names
    except (ConfigError, ValueError, TypeError, OSError) as error:
        return str(error)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
