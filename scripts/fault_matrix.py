"""Run the reliability matrix: fault-injection cases, each in its own temporary folder on synthetic data.

    python scripts/fault_matrix.py                     # every case -> reports/reliability.{csv,md}
    python scripts/fault_matrix.py --list              # the cases, their categories, which are fast
    python scripts/fault_matrix.py --case data_non_utf8 --case config_unknown_key
    python scripts/fault_matrix.py --category "exit codes" --out /tmp/reports

Each case states its contract (``expected``) and what happened (``observed``); the verdict is ``ok`` or
``FAIL``. Exit code 1 when any verdict is FAIL (2 on a usage error). Cases are defined in
reliability/ (reliability.cases); they need no data (MMQ_DATA_DIR is ignored) and write only
inside their own temporary folder. Some mount a small tmpfs (read-only / full-disk faults): run as root.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from reliability.runner import (CATEGORIES, all_cases, run_cases, select_cases, summary_line,
                                    write_reports)

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases, write the two reports, exit 1 if any case FAILs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", default=[], help="run only this case (repeatable)")
    parser.add_argument("--category", action="append", default=[], choices=CATEGORIES,
                        help="run only this category (repeatable)")
    parser.add_argument("--fast", action="store_true", help="only the fast in-process cases")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--inline", action="store_true", help="run cases in this process, not in forked children")
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder (default: reports/ for the full matrix; a subset writes none unless given)")
    parser.add_argument("--keep", action="store_true", help="keep each case's temporary folder (for debugging)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["MMQ_TENSORBOARD"] = "0"
    try:
        cases = select_cases(all_cases(), names=arguments.case, categories=arguments.category,
                             fast_only=arguments.fast)
    except ValueError as error:
        parser.error(str(error))
    if arguments.list:
        for case in cases:
            print(f"{case.name:40s} {case.category:30s} {'fast' if case.fast else f'{case.timeout_s:.0f}s':>5}  "
                  f"{case.expected}")
        return 0
    started = time.monotonic()

    def show(result) -> None:
        print(f"{result.verdict:4s} {result.seconds:6.1f}s {result.case.name}: {result.row()['observed']}", flush=True)

    results = run_cases(cases, jobs=arguments.jobs, isolation="inline" if arguments.inline else "fork",
                        keep=arguments.keep, progress=show)
    seconds = time.monotonic() - started
    subset = bool(arguments.case or arguments.category or arguments.fast)
    output = arguments.out or (None if subset else REPOSITORY_ROOT / "reports")
    print(f"\n{summary_line(results)}\nrun time {seconds:.0f} s", end="")
    if output is None:  # a subset never overwrites the committed full report
        print("; no report written (a subset; give --out to write one)")
    else:
        csv_path, md_path = write_reports(results, output, seconds=seconds)
        print(f"; wrote {csv_path} and {md_path}")
    return 1 if any(not result.outcome.ok for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
