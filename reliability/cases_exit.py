"""Category ``exit codes``: the command-line scripts, as subprocesses, when they cannot do their work."""

from __future__ import annotations

import re
from typing import Callable

from reliability import synthetic
from reliability.checks import verdict
from reliability.core import Case, Outcome, Sandbox, declare, finished_runs, last_line, one_line

CATEGORY = "exit codes"
CASES: list[Case] = []
case = declare(CASES, CATEGORY)
TIMEOUT = 90.0


def _exit(box: Sandbox, command: list[str], *, codes: set[int], line_has: list[str] = (), env=None,
          also: Callable[[], str | None] | None = None) -> Outcome:
    """Run ``command``: its exit code must be in ``codes`` and its last stderr line hold every ``line_has``;
    ``also`` (optional) returns a problem found afterwards (appended in brackets, a FAIL), or None."""
    result = box.run(command, timeout=TIMEOUT, env=env)
    line = last_line(result.stderr)
    problems = [] if result.returncode in codes else [f"rc={result.returncode}, expected one of {sorted(codes)}"]
    problems += [f"last stderr line lacks {token!r}" for token in line_has if token not in line]
    if problems:
        problems.append(f"stderr: {one_line(line, 100)!r}")
    outcome = verdict(problems, f"rc={result.returncode}: {one_line(line, 140)}")
    problem = also() if also is not None else None
    return Outcome(False, f"{outcome.observed} [{problem}]") if problem else outcome


@case("exit_prepare_data_named_missing", "prepare_data.py beauty with no data -> exit 2, 'missing "
      "under'", timeout_s=TIMEOUT)
def prepare_named_no_data(box: Sandbox) -> Outcome:
    return _exit(box, box.script("prepare_data", "beauty"), codes={2}, line_has=["missing under", "beauty"])


@case("exit_prepare_data_all_missing", "prepare_data.py --all with no data -> exit 2", timeout_s=TIMEOUT)
def prepare_all_no_data(box: Sandbox) -> Outcome:
    return _exit(box, box.script("prepare_data", "--all"), codes={2}, line_has=["missing under"])


@case("exit_prepare_data_statistics_mismatch", "prepare_data.py on data with other counts than published -> exit 1 "
      "naming them", timeout_s=TIMEOUT)
def prepare_statistics_mismatch(box: Sandbox) -> Outcome:
    """A Beauty folder whose counts are not the published ones -> exit 1 (a mismatch, not silence)."""
    synthetic.write_beauty(box.data, num_users=60, num_items=30)
    result = box.run(box.script("prepare_data", "beauty"), timeout=TIMEOUT)
    problems = [] if result.returncode == 1 else [f"rc={result.returncode}, expected 1"]
    if not re.search(r"22,?363", result.stdout) or "expected" not in result.stdout.lower():
        problems.append("stdout does not name the published count (22,363 users)")
    mismatch = next((line for line in result.stdout.splitlines() if "users" in line and "expected" in line.lower()), "")
    return verdict(problems, f"rc={result.returncode}; {one_line(mismatch, 120)}")


@case("exit_download_verify_no_data", "download_data.py --verify with no data -> exit 2 naming the "
      "folder", timeout_s=TIMEOUT)
def download_verify_no_data(box: Sandbox) -> Outcome:
    return _exit(box, box.script("download_data", "--verify", "--root", box.data), codes={2},
                 line_has=["none of the", str(box.data)])


@case("exit_run_unknown_key", "run.py on a config with an unknown key -> exit 2 naming it, nothing "
      "written", timeout_s=TIMEOUT)
def run_unknown_key(box: Sandbox) -> Outcome:
    config = synthetic.sasrec_yaml(box.configs / "bad.yaml", epochz=2)
    return _exit(box, box.script("run", config, "--no-progress"), codes={2}, line_has=["epochz", "valid keys"],
                 also=lambda: "checkpoints written" if box.checkpoints.exists() and any(box.checkpoints.iterdir())
                 else None)


@case("exit_run_runtime_failure", "run.py whose run fails (dataset missing) -> non-zero, last line names the file, no "
      "DONE", timeout_s=TIMEOUT)
def run_runtime_failure(box: Sandbox) -> Outcome:
    """A valid config whose run fails (its dataset is missing) -> non-zero, the file named, no DONE."""
    config = synthetic.sasrec_yaml(box.configs / "no_data.yaml")
    return _exit(box, box.script("run", config, "--no-progress"), codes=set(range(1, 256)),
                 line_has=["amazon14/beauty/user_sequence.txt"],
                 also=lambda: "DONE written" if finished_runs(box.checkpoints) else None)


@case("exit_run_check_broken_yaml", "run.py --check good.yaml broken.yaml -> exit 1, FAIL line names "
      "it", timeout_s=TIMEOUT)
def run_check_broken(box: Sandbox) -> Outcome:
    good = synthetic.sasrec_yaml(box.configs / "good.yaml")
    bad = box.configs / "broken.yaml"
    bad.write_text("kind: sasrec\nepochs: [2\n")
    result = box.run(box.script("run", "--check", good, bad), timeout=TIMEOUT)
    problems = [] if result.returncode == 1 else [f"rc={result.returncode}, expected 1"]
    if f"FAIL {bad}" not in result.stdout:
        problems.append("no FAIL line names broken.yaml")
    return verdict(problems, f"rc={result.returncode}; {one_line(last_line(result.stdout), 60)}")
