"""Import, k-core filter and cache datasets; print their statistics next to the published ones.

    python scripts/prepare_data.py --all            # every dataset found under MMQ_DATA_DIR
    python scripts/prepare_data.py beauty movielens
"""

from __future__ import annotations

import argparse
import json
import sys

from mmq.cli import setup

from mmq.data import DATASETS, MissingDataError, data_dir, load_dataset

DEFAULT_DATASETS = ("beauty", "sports", "toys", "office", "movielens", "movielens_all", "myntra")


def main(argv: list[str] | None = None) -> int:
    """Print one statistics block per dataset; exit 1 if a count differs from the published one, 2 if a
    named dataset (or, with --all, every dataset) is missing."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", help=f"any of {sorted(DATASETS)}")
    parser.add_argument("--all", action="store_true", help=f"all of {', '.join(DEFAULT_DATASETS)}")
    parser.add_argument("--no-cache", action="store_true", help="re-import even if a processed cache exists")
    arguments = parser.parse_args(argv)
    setup()
    names = list(DEFAULT_DATASETS) if arguments.all or not arguments.datasets else arguments.datasets
    print(f"data directory: {data_dir().resolve()}")
    mismatches, missing = 0, []
    for name in names:
        try:
            dataset = load_dataset(name, use_cache=not arguments.no_cache)
        except MissingDataError as error:
            print(f"\n[{name}] skipped: {error}")
            missing.append(name)
            continue
        stats = dataset.statistics()
        expected = DATASETS[name].expected
        checks = []
        for key, value in expected.items():
            ok = stats[key] == value
            mismatches += not ok
            checks.append(f"{key} {stats[key]:,} ({'matches' if ok else 'EXPECTED ' + format(value, ',')})")
        print(f"\n[{name}] " + " | ".join(checks))
        print(json.dumps(stats, indent=None))
    if missing and (arguments.datasets or len(missing) == len(names)):
        print(f"\nerror: missing under {data_dir().resolve()}: {', '.join(missing)}", file=sys.stderr)
        return 2
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
