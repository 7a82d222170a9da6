"""The reliability matrix as data: every fault case, category by category.

Each module holds one or two categories' :class:`~reliability.core.Case` entries (name, category,
the contract in one line, the check, whether it is fast, its time limit), each declared on its check
with a :func:`~reliability.core.declare` decorator (so a module's ``CASES`` is in definition order);
this list is their union in report order. ``fast`` cases run in-process in well under a second and are also run by
``tests/test_reliability.py``.
"""

from __future__ import annotations

from reliability import (cases_ann, cases_arrays, cases_config, cases_data, cases_disk, cases_exit, cases_identity,
                         cases_runs, cases_search)

CASES = [*cases_data.CASES, *cases_config.CASES, *cases_arrays.CASES, *cases_runs.CASES, *cases_identity.CASES, *cases_disk.CASES,
         *cases_exit.CASES, *cases_search.CASES, *cases_ann.CASES]

_names = [case.name for case in CASES]
if len(set(_names)) != len(_names):  # pragma: no cover - a definition error
    raise ValueError(f"duplicate case names: {sorted({name for name in _names if _names.count(name) > 1})}")
