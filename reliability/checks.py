"""Small assertions shared by the case checks: expect an error naming things, compare reports."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Mapping

from reliability.core import Outcome, describe, one_line

TIMING_KEYS = re.compile(r"(seconds|per_second|wall_time|finished_at|_at$|commit|environment)")


def expect_error(action: Callable[[], Any], *, names: Iterable[str] = (), patterns: Iterable[str] = (),
                 types: tuple[type[BaseException], ...] = (Exception,), also: Callable[[], str | None] | None = None
                 ) -> Outcome:
    """``action`` must raise one of ``types`` whose message contains every string in ``names`` and
    matches every regex in ``patterns``; ``also`` (optional) returns a problem found afterwards, or None."""
    try:
        result = action()
    except types as error:  # noqa: PERF203
        message = str(error)
        missing = [name for name in names if name not in message]
        missing += [f"/{pattern}/" for pattern in patterns if not re.search(pattern, message)]
        problem = also() if also is not None else None
        observed = describe(error, focus=[*patterns, *(re.escape(name) for name in names)])
        if missing:
            observed += f" [message lacks {', '.join(missing)}]"
        if problem:
            observed += f" [{problem}]"
        return Outcome(not missing and not problem, observed)
    except BaseException as error:  # a wrong kind of failure (not one of ``types``)
        if not isinstance(error, Exception):
            raise
        return Outcome(False, f"wrong error type {describe(error)}")
    return Outcome(False, one_line(f"no error raised; returned {summarise(result)}"))


def summarise(value: Any) -> str:
    """A short description of a returned value."""
    if hasattr(value, "statistics") and callable(value.statistics):
        stats = value.statistics()
        return f"dataset users={stats['users']} items={stats['items']} interactions={stats['interactions']} " \
               f"import_report={stats.get('import_report')}"
    return one_line(repr(value), 100)


def without_timings(value: Any) -> Any:
    """``value`` with wall-clock fields (seconds, throughput, timestamps, commit, environment) removed."""
    if isinstance(value, Mapping):
        return {key: without_timings(item) for key, item in value.items() if not TIMING_KEYS.search(str(key))}
    if isinstance(value, list):
        return [without_timings(item) for item in value]
    return value


def first_difference(left: Any, right: Any, path: str = "") -> str | None:
    """Where two JSON-like values first differ (``None`` when equal)."""
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        for key in sorted(set(left) | set(right), key=str):
            if key not in left or key not in right:
                return f"{path}/{key} only on one side"
            found = first_difference(left[key], right[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return f"{path} lengths {len(left)} vs {len(right)}"
        for index, (a, b) in enumerate(zip(left, right)):
            found = first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if left == right else f"{path}: {one_line(repr(left), 40)} vs {one_line(repr(right), 40)}"


def verdict(problems: list[str], success: str) -> Outcome:
    """ok with ``success`` when there are no problems, else FAIL listing them."""
    return Outcome(True, success) if not problems else Outcome(False, one_line("; ".join(problems)))
