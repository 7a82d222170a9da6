"""Run fault cases in isolation, bounded in time, and write the reliability reports.

Each case gets a fresh :class:`~reliability.core.Sandbox`. ``isolation="fork"`` (the matrix)
runs the check in a forked child -- module state changed by one case (patched functions, caches,
registered kinds) never leaks into the next, and a check past its ``timeout_s`` is killed with every
process it started. ``isolation="inline"`` (the test suite) runs it in this process under a SIGALRM
limit. Either way the sandbox is unmounted and deleted afterwards (unless ``keep``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import select
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from reliability.core import Case, CaseTimeout, Outcome, Sandbox, describe, one_line, shorten_paths, time_limit

COLUMNS = ("case", "category", "expected", "observed", "verdict")
CATEGORIES = ("data files", "configs", "arrays", "interrupt / resume", "--force", "config edited after a run",
              "concurrent runs of one config", "read-only and full disk", "exit codes", "search", "ann")


@dataclasses.dataclass(frozen=True)
class Result:
    """A case and what its check reported."""

    case: Case
    outcome: Outcome
    seconds: float

    @property
    def verdict(self) -> str:
        return "ok" if self.outcome.ok else "FAIL"

    def row(self) -> dict[str, str]:
        return {"case": self.case.name, "category": self.case.category, "expected": self.case.expected,
                "observed": one_line(shorten_paths(self.outcome.observed)), "verdict": self.verdict}


def all_cases() -> list[Case]:
    """Every case, in category order."""
    from reliability.cases import CASES

    return list(CASES)


def select_cases(cases: Sequence[Case], *, names: Iterable[str] = (), categories: Iterable[str] = (),
                 fast_only: bool = False) -> list[Case]:
    """The cases named (or in the categories named, or fast); all when nothing is named."""
    names, categories = set(names), set(categories)
    unknown = names - {case.name for case in cases}
    if unknown:
        raise ValueError(f"unknown case(s) {sorted(unknown)}; known: {[case.name for case in cases]}")
    chosen = [case for case in cases if (not names or case.name in names)
              and (not categories or case.category in categories) and (case.fast or not fast_only)]
    return chosen


def _check(case: Case, box: Sandbox) -> Outcome:
    """The case's outcome; a crashing check is a FAIL naming what it raised."""
    try:
        outcome = case.check(box)
    except CaseTimeout as error:
        return Outcome(False, f"timed out: {error}")
    except Exception as error:  # noqa: BLE001
        return Outcome(False, f"check crashed: {describe(error)}")
    if not isinstance(outcome, Outcome):
        return Outcome(False, f"check returned {type(outcome).__name__}, not an Outcome")
    return outcome


def run_inline(case: Case, *, base: Path | None = None, keep: bool = False) -> Result:
    """Run ``case`` in this process (main thread: bounded by SIGALRM)."""
    started = time.monotonic()
    box = Sandbox(case.name, base)
    try:
        with time_limit(case.timeout_s):
            outcome = _check(case, box)
    except CaseTimeout as error:
        outcome = Outcome(False, f"timed out: {error}")
    finally:
        _kill_started(box)
        if not keep:
            box.cleanup()
    return Result(case, outcome, time.monotonic() - started)


@dataclasses.dataclass
class _Running:
    case: Case
    box: Sandbox
    pid: int
    reader: int
    started: float
    payload: bytes = b""


def _start_forked(case: Case, base: Path | None) -> _Running:
    box = Sandbox(case.name, base)
    reader, writer = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: own process group, output to the sandbox's log, outcome down the pipe
        code = 0
        try:
            os.setpgid(0, 0)
            os.close(reader)
            log = os.open(box.root / "case.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            _quiet_child()
            outcome = _check(case, box)
            payload = json.dumps({"ok": outcome.ok, "observed": outcome.observed})
        except BaseException as error:  # noqa: BLE001
            payload = json.dumps({"ok": False, "observed": f"check crashed: {describe(error)}"})
            code = 1
        try:
            os.write(writer, payload.encode("utf-8"))
        finally:
            os._exit(code)
    os.close(writer)
    return _Running(case, box, pid, reader, time.monotonic())


def _quiet_child() -> None:
    """One torch and one faiss thread in a check (tiny models; two cores shared by two checks)."""
    try:
        import faiss
        import torch

        torch.set_num_threads(1)
        faiss.omp_set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def _kill_started(box: Sandbox) -> None:
    """Kill what a check started and may have left behind (process groups recorded by the sandbox)."""
    for pid in box.started_pids():
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def _collect_timed_out(running: _Running, *, keep: bool) -> Result:
    """Kill a check past its time limit (and everything it started); a FAIL."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(running.pid, signal.SIGKILL)
    os.waitpid(running.pid, 0)
    os.close(running.reader)
    _kill_started(running.box)
    if not keep:
        running.box.cleanup()
    return Result(running.case, Outcome(False, f"timed out after {running.case.timeout_s:g} s (killed)"),
                  time.monotonic() - running.started)


def _drain(running: _Running) -> None:
    while True:
        ready, _, _ = select.select([running.reader], [], [], 0)
        if not ready:
            return
        chunk = os.read(running.reader, 65536)
        if not chunk:
            return
        running.payload += chunk


def _log_tail(box: Sandbox) -> str:
    try:
        return (box.root / "case.log").read_text(errors="replace")[-400:]
    except OSError:
        return ""


def run_cases(cases: Sequence[Case], *, jobs: int = 2, isolation: str = "fork", base: Path | None = None,
              keep: bool = False, progress=None) -> list[Result]:
    """Run ``cases`` (``jobs`` at a time when forking); results in the order of ``cases``."""
    if isolation == "inline" or not hasattr(os, "fork"):
        results = []
        for case in cases:
            results.append(run_inline(case, base=base, keep=keep))
            if progress:
                progress(results[-1])
        return results
    if isolation != "fork":
        raise ValueError(f"isolation must be 'fork' or 'inline', got {isolation!r}")
    _preload()
    pending, running, done = list(cases), [], {}
    while pending or running:
        while pending and len(running) < max(jobs, 1):
            running.append(_start_forked(pending.pop(0), base))
        time.sleep(0.05)
        for item in list(running):
            _drain(item)
            finished, _ = os.waitpid(item.pid, os.WNOHANG)
            over = time.monotonic() - item.started > item.case.timeout_s
            if finished:  # reaped: collect without waiting again
                result = _collect_reaped(item, keep=keep)
            elif over:
                result = _collect_timed_out(item, keep=keep)
            else:
                continue
            running.remove(item)
            done[item.case.name] = result
            if progress:
                progress(result)
    return [done[case.name] for case in cases]


def _collect_reaped(running: _Running, *, keep: bool) -> Result:
    """The outcome a finished (already reaped) check process sent down its pipe."""
    _drain(running)
    os.close(running.reader)
    _kill_started(running.box)
    try:
        values = json.loads(running.payload.decode("utf-8"))
        outcome = Outcome(bool(values["ok"]), str(values["observed"]))
    except (ValueError, KeyError):
        outcome = Outcome(False, f"check process died without an outcome; log tail: "
                                 f"{one_line(_log_tail(running.box), 120)}")
    if not keep:
        running.box.cleanup()
    return Result(running.case, outcome, time.monotonic() - running.started)


def _preload() -> None:
    """Import the heavy modules once, before forking, so each case does not pay for them."""
    import baselines  # noqa: F401
    import faiss  # noqa: F401
    import mmq.registry  # noqa: F401
    import torch  # noqa: F401


# --- reports ------------------------------------------------------------------------------------------


def summary_line(results: Sequence[Result]) -> str:
    """``N cases, N ok, N FAIL; per category: name ok/total, ...``."""
    totals, oks = Counter(), Counter()
    for result in results:
        totals[result.case.category] += 1
        oks[result.case.category] += result.outcome.ok
    order = [name for name in CATEGORIES if name in totals] + sorted(set(totals) - set(CATEGORIES))
    ok = sum(oks.values())
    per_category = ", ".join(f"{name} {oks[name]}/{totals[name]}" for name in order)
    return f"{len(results)} cases, {ok} ok, {len(results) - ok} FAIL; per category (ok/cases): {per_category}"


def csv_text(results: Sequence[Result]) -> str:
    """The CSV report: exactly the columns case,category,expected,observed,verdict."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow(result.row())
    return buffer.getvalue()


def markdown_text(results: Sequence[Result], *, seconds: float | None = None) -> str:
    """The Markdown report: the same table and the summary line."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["# Reliability matrix", "",
             "Fault-injection cases (`python scripts/fault_matrix.py`): each runs in its own temporary folder "
             "(own data, cache and checkpoint folders) on synthetic data; `expected` is the contract, `observed` "
             "what happened.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for result in results:
        row = result.row()
        lines.append("| " + " | ".join(cell(row[column]) if column != "verdict" else
                                       ("ok" if row[column] == "ok" else "**FAIL**") for column in COLUMNS) + " |")
    lines += ["", f"**{summary_line(results)}**"]
    if seconds is not None:
        lines += ["", f"Run time: {seconds:.0f} s."]
    return "\n".join(lines) + "\n"


def write_reports(results: Sequence[Result], folder: Path, *, seconds: float | None = None) -> tuple[Path, Path]:
    """Write ``reliability.csv`` and ``reliability.md`` into ``folder`` atomically."""
    from mmq import artifacts

    folder = Path(folder)
    csv_path, md_path = folder / "reliability.csv", folder / "reliability.md"
    artifacts.write_text(csv_path, csv_text(results))
    artifacts.write_text(md_path, markdown_text(results, seconds=seconds))
    return csv_path, md_path
