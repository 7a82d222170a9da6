"""The reliability matrix (reliability, scripts/fault_matrix.py): its fast in-process cases must hold.

Each fast case runs in its own sandbox (own data / cache / checkpoint folders) on synthetic data.
Cases whose contract is not implemented yet are strict xfails: they flip loudly once it lands (then
delete their PENDING line). The subprocess / SIGKILL / tmpfs cases run only in the full matrix.
"""

from __future__ import annotations

import csv
import subprocess
import time
from collections import Counter

import pytest

from reliability import all_cases, run_cases, run_inline
from reliability.core import Case, Outcome
from reliability.runner import CATEGORIES, COLUMNS, Result, summary_line, write_reports

PENDING: dict[str, str] = {}  # case -> the contract it still lacks (strict xfail until it holds)
CASES = all_cases()
FAST = [case for case in CASES if case.fast]


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=PENDING[case.name])] if case.name in PENDING else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in FAST])
def test_fast_case_holds(case, tmp_path):
    result = run_inline(case, base=tmp_path)
    assert result.outcome.ok, f"{case.name}: expected {case.expected!r}; observed {result.outcome.observed!r}"


def test_the_matrix_covers_every_category():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)) >= 30
    counts = Counter(case.category for case in CASES)
    assert set(counts) == set(CATEGORIES)
    assert min(counts.values()) >= 3, counts
    assert all(case.expected and "\n" not in case.expected for case in CASES)
    assert set(PENDING) <= {case.name for case in FAST}  # only fast cases run here


def test_reports_have_the_exact_columns_and_a_summary(tmp_path):
    results = [Result(CASES[0], Outcome(True, "fine, with a | pipe"), 0.1),
               Result(CASES[-1], Outcome(False, "broke,\nacross lines"), 0.2)]
    csv_path, md_path = write_reports(results, tmp_path / "reports", seconds=1.0)
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(COLUMNS) == ["case", "category", "expected", "observed", "verdict"]
    assert [row[4] for row in rows[1:]] == ["ok", "FAIL"] and rows[2][3] == "broke, across lines"
    text = md_path.read_text()
    assert "fine, with a \\| pipe" in text and summary_line(results) in text
    assert summary_line(results).startswith("2 cases, 1 ok, 1 FAIL; per category")
    assert not list((tmp_path / "reports").glob(".*.tmp"))


def _sleeper(box):
    box.popen(["sleep", "31.4159"], log="sleeper")
    time.sleep(30)
    return Outcome(True, "never reached")


def test_a_case_past_its_time_limit_is_killed_with_what_it_started(tmp_path):
    cases = [Case("probe_ok", "exit codes", "returns ok", lambda box: Outcome(True, "fine"), timeout_s=20),
             Case("probe_hangs", "exit codes", "is killed", _sleeper, timeout_s=1.0)]
    started = time.monotonic()
    results = run_cases(cases, jobs=2, isolation="fork", base=tmp_path)
    assert time.monotonic() - started < 15
    assert [result.outcome.ok for result in results] == [True, False]
    assert "timed out" in results[1].outcome.observed
    assert not list(tmp_path.iterdir())  # sandboxes removed
    leftover = subprocess.run(["pgrep", "-f", "^sleep 31.4159$"], capture_output=True, text=True).stdout.split()
    assert not leftover, f"processes the timed-out case started are still alive: {leftover}"
