"""Fault injection: a matrix of cases (bad data, broken configs, bad arrays, kills, --force, edited
configs, concurrent runs, read-only / full disks, exit codes), each run in its own sandbox, reported
as ``reports/reliability.{csv,md}`` by ``scripts/fault_matrix.py``.

- :mod:`reliability.core`: :class:`Case`, :class:`Outcome`, the :class:`Sandbox`.
- :mod:`reliability.cases`: every case (as data); ``cases_*`` modules hold the checks.
- :mod:`reliability.runner`: isolation (fork or inline), time limits, the reports.
"""

from reliability.core import Case, Outcome, Sandbox
from reliability.runner import all_cases, run_cases, run_inline, select_cases, write_reports

__all__ = ["Case", "Outcome", "Sandbox", "all_cases", "run_cases", "run_inline", "select_cases", "write_reports"]
