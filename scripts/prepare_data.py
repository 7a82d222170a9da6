"""Import, k-core filter and cache datasets; print their statistics next to the published ones.

    python scripts/prepare_data.py --all                     # every known dataset found under MMQ_DATA_DIR
    python scripts/prepare_data.py beauty movielens
    python scripts/prepare_data.py path/to/my_dataset.yaml   # your own dataset (README: Add your own dataset)
    python scripts/prepare_data.py movielens --allow-mismatch

Exit codes: 0 ok; 1 a count differs from the published statistics (`expected:` in the dataset's
YAML; with --allow-mismatch the difference is printed and allowed); 2 a named dataset (or, with
--all, every dataset) is missing.
"""

from __future__ import annotations

import argparse
import json
import sys

from mmq.cli import setup

from mmq.data import DataMismatchError, MissingDataError, data_dir, dataset_spec, known_datasets, load_dataset
from mmq.data.expected import mismatch_allowed, statistics_differences


def main(argv: list[str] | None = None) -> int:
    """Print one statistics block per dataset; exit 1 if a count differs from the published one (unless
    --allow-mismatch), 2 if a named dataset (or, with --all, every dataset) is missing."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", help=f"dataset names ({', '.join(sorted(known_datasets()))}) "
                                                    "or paths of dataset YAMLs")
    parser.add_argument("--all", action="store_true", help="every known dataset (missing ones are skipped)")
    parser.add_argument("--no-cache", action="store_true", help="re-import even if a processed cache exists")
    parser.add_argument("--allow-mismatch", action="store_true",
                        help="load and cache a dataset whose counts differ from its published statistics "
                             "(runs then need MMQ_ALLOW_DATA_MISMATCH=1)")
    arguments = parser.parse_args(argv)
    setup()
    names = sorted(known_datasets()) if arguments.all or not arguments.datasets else arguments.datasets
    print(f"data directory: {data_dir().resolve()}")
    mismatches, missing = 0, []
    allowed = mismatch_allowed(arguments.allow_mismatch)  # the flag or MMQ_ALLOW_DATA_MISMATCH=1
    for name in names:
        try:
            dataset = load_dataset(name, use_cache=not arguments.no_cache, allow_mismatch=arguments.allow_mismatch)
        except MissingDataError as error:
            print(f"\n[{name}] skipped: {error}")
            missing.append(name)
            continue
        except DataMismatchError as error:
            print(f"\n[{name}] MISMATCH: {error}")
            mismatches += 1
            continue
        stats = dataset.statistics()
        expected = dataset_spec(name).expected
        differences = statistics_differences(dataset, expected)
        mismatches += bool(differences) and not allowed
        checks = [f"{key} {stats[key]:,} ({'EXPECTED ' + format(value, ',') if key in differences else 'matches'})"
                  for key, value in expected.items()]
        note = " (mismatch allowed)" if differences else ""
        print(f"\n[{name}] " + (" | ".join(checks) or "no published statistics") + note)
        print(json.dumps(stats, indent=None))
    if missing and (arguments.datasets or len(missing) == len(names)):
        print(f"\nerror: missing under {data_dir().resolve()}: {', '.join(missing)}", file=sys.stderr)
        return 2
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
