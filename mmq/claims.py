"""One renderer for the claim lines under the tables: does one row beat the strongest of some others?

:func:`claim_line` reads only a table's own rows (mean ± std over seeds, test split, ``source=ours``),
compares the candidate with the strongest of the others on one metric, and writes one sentence.
The verdict is the same in every table (the candidate's mean is strictly above every other row's);
how the sentence reads is a :class:`ClaimStyle`:

- :data:`BEATS` (generative tables): ``Claim "...": beats it here. <row> vs best baseline <row>: gap
  +0.0015 (+4%), larger than either row's std (n = 3 / 3 seeds).``
- :data:`HELD` (ranking tables): ``Claim '...': HELD on test AUC: <row> vs strongest other '<row>',
  gap +0.0002 (gap within one seed std).`` plus the rows that beat the candidate when it fails.

Given a paired :class:`~mmq.metrics.intervals.Interval` of the candidate minus the strongest other row over
the same test events, the line adds ``; paired 95% CI of the difference [low, high] over N test events
(S seeds each), minimum detectable effect M: holds|fails|unresolved``. :class:`ClaimIntervals` computes
those intervals from the runs' per-event results (``per_event.npz`` beside ``report.json``) and gives
None while any run of the two rows lacks them, so a line without per-event results reads as before.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

from mmq import registry
from mmq.metrics.intervals import Interval, verdict
from mmq.tables import format_value, paired_interval

# how the gap compares with the seed std of the two rows
NO_STD, BEYOND, WITHIN_ONE, WITHIN_BOTH = "no_std", "beyond", "within_one", "within_both"


@dataclasses.dataclass(frozen=True)
class ClaimStyle:
    """The wording of a claim line; ``body`` and ``beaten_by`` are ``str.format`` templates.

    ``body`` fields: ``verdict`` (``verdicts[0]`` if the candidate beats every other row, else
    ``verdicts[1]``), ``METRIC`` (upper case), ``candidate`` / ``other`` (row labels, ``other`` the
    strongest other row), ``candidate_value`` / ``other_value`` (``mean ± std``), ``best`` (``best_label``
    when several rows were compared, else empty), ``gap`` (``+0.0015``), ``relative`` (`` (+4%)``),
    ``spread`` (``spreads[...]`` of the gap vs the rows' seed stds), ``n`` / ``n_other`` (seeds),
    ``beaten_by`` (``beaten_by`` filled with the rows at or above the candidate, only when it fails).
    """

    quote: str
    verdicts: tuple[str, str]
    body: str
    spreads: Mapping[str, str]
    best_label: str = ""
    beaten_by: str = ""


BEATS = ClaimStyle(
    quote='"', verdicts=("beats it here", "does not beat it here"),
    body=("{verdict}. {candidate} {candidate_value} vs {best}{other} {other_value}: gap {gap}{relative}, {spread} "
          "(n = {n} / {n_other} seeds)"),
    spreads={NO_STD: "single seed, no std", BEYOND: "larger than either row's std",
             WITHIN_ONE: "within the seed std of one row", WITHIN_BOTH: "within the seed std of both rows"},
    best_label="best baseline ")
HELD = ClaimStyle(
    quote="'", verdicts=("HELD", "FAILED"),
    body=("{verdict} on test {METRIC}: {candidate} {candidate_value} vs strongest other '{other}' {other_value}, "
          "gap {gap}{spread}{beaten_by}"),
    spreads={NO_STD: "", BEYOND: " (gap beyond one seed std)", WITHIN_ONE: " (gap within one seed std)",
             WITHIN_BOTH: " (gap within one seed std)"},
    beaten_by="; beaten only by: {labels}")


def our_test_row(rows: Sequence[dict], label: str, metric: str) -> dict | None:
    """Our test row of ``metric`` for ``label`` (also matches ``label [profile]``, as the generative tables
    name their rows); None when the table has no such row."""
    for row in rows:
        if (row["split"] == "test" and row["metric"] == metric and row["source"] == "ours"
                and (row["method"] == label or row["method"].startswith(label + " ["))):
            return row
    return None


def spread_of(gap: float, stds: Sequence[float]) -> str:
    """How ``|gap|`` compares with the seed stds of the two rows (NaN: a single seed, no std)."""
    spreads = [value for value in stds if not math.isnan(value)]
    if not spreads:
        return NO_STD
    if abs(gap) > max(spreads):
        return BEYOND
    return WITHIN_BOTH if len(spreads) == len(stds) and abs(gap) <= min(spreads) else WITHIN_ONE


def strongest_other(rows: Sequence[dict], others: Sequence[str], metric: str) -> str | None:
    """The label in ``others`` whose test row of ``metric`` has the highest mean (the first on a tie; None when
    none has a row): the row a claim line compares its candidate with."""
    present = [(label, found) for label, found in ((label, our_test_row(rows, label, metric)) for label in others)
               if found is not None]
    return max(present, key=lambda pair: pair[1]["mean"])[0] if present else None


def interval_clause(interval: Interval) -> str:
    """``paired 95% CI of the difference [low, high] over N test events (S seeds each), minimum detectable
    effect M: holds|fails|unresolved`` (``over N test events of U users`` when users were resampled)."""
    seeds = (f"{interval.num_seeds_a} seed{'s' if interval.num_seeds_a > 1 else ''} each"
             if interval.num_seeds_a == interval.num_seeds_b else f"{interval.num_seeds_a} / {interval.num_seeds_b} seeds")
    users = f" of {interval.num_clusters:,} users" if interval.num_clusters is not None else ""
    return (f"paired {interval.confidence:.0%} CI of the difference [{interval.low:+.4f}, {interval.high:+.4f}] "
            f"over {interval.num_events:,} test events{users} ({seeds}), minimum detectable effect "
            f"{interval.mde:.4f}: {verdict(interval)}")


def claim_line(rows: Sequence[dict], claim: str, candidate: str, others: Sequence[str], *, metric: str,
               style: ClaimStyle, interval: Interval | None = None) -> str:
    """``Claim <claim>: <verdict> ...``: does ``candidate`` beat the strongest of ``others`` on test ``metric``?

    ``rows`` are a table's long-format rows; only our test rows of ``metric`` are read. A claim whose
    candidate or every other row has no finished run is reported as not tested, naming what is missing.
    ``interval``: the paired interval of the candidate minus :func:`strongest_other` on the same test events;
    given, the line ends with :func:`interval_clause` (its verdict is the claim's; the mean gap is descriptive).
    """
    quoted = f"Claim {style.quote}{claim}{style.quote}"
    row = our_test_row(rows, candidate, metric)
    present = [found for found in (our_test_row(rows, label, metric) for label in others) if found is not None]
    if row is None or not present:
        lacking = candidate if row is None else "all of " + ", ".join(others)
        return f"{quoted}: not tested (no finished runs for {lacking})."
    strongest = max(present, key=lambda found: found["mean"])
    gap = row["mean"] - strongest["mean"]
    held = gap > 0  # above the strongest = above every other row
    beaten_by = "" if held else style.beaten_by.format(
        labels=", ".join(found["method"] for found in present if found["mean"] >= row["mean"]))
    body = style.body.format(
        verdict=style.verdicts[0 if held else 1], METRIC=metric.upper(),
        candidate=row["method"], candidate_value=format_value(row["mean"], row["std"]),
        other=strongest["method"], other_value=format_value(strongest["mean"], strongest["std"]),
        best=style.best_label if len(others) > 1 else "", gap=f"{gap:+.4f}",
        relative=f" ({gap / strongest['mean']:+.0%})" if strongest["mean"] else "",
        spread=style.spreads[spread_of(gap, (row["std"], strongest["std"]))],
        n=row["n_seeds"], n_other=strongest["n_seeds"], beaten_by=beaten_by)
    if interval is not None:
        body = f"{body}; {interval_clause(interval)}"
    return f"{quoted}: {body}."


class ClaimIntervals:
    """The paired intervals of one table's claims: its rows' ``(label, experiment YAML)`` pairs and the
    collected reports per label (:func:`mmq.tables.collect`), read from the runs' per-event results on demand."""

    def __init__(self, rows: Sequence[tuple[str, str]], reports: Mapping[str, Sequence[dict]], *,
                 num_resamples: int = 2000, seed: int = 0, split: str = "test"):
        self.configs = dict(rows)
        self.reports = reports
        self.split = split  # the scored split the per-event results are read from (e.g. test_no_exclusion)
        self.num_resamples, self.seed = num_resamples, seed
        self._cache: dict[tuple[str, str, str], Interval | None] = {}

    def _has_per_event(self, label: str) -> bool:
        runs = self.reports.get(label, ())
        return bool(runs) and all("per_event" in report["metrics"] for report in runs)

    def _directories(self, label: str) -> list[Path]:
        return [registry.run_directory(self.configs[label], report["seed"]) for report in self.reports[label]]

    def between(self, candidate: str, other: str, metric: str) -> Interval | None:
        """Row ``candidate`` minus row ``other`` on ``metric`` of the split; None while either lacks per-event results."""
        key = (candidate, other, metric)
        if key not in self._cache:
            if not (self._has_per_event(candidate) and self._has_per_event(other)):
                self._cache[key] = None  # run folders are only resolved once both rows recorded per-event results
            else:
                self._cache[key] = paired_interval(
                    self.reports[candidate], self._directories(candidate), self.reports[other],
                    self._directories(other), metric, split=self.split, num_resamples=self.num_resamples,
                    seed=self.seed)
        return self._cache[key]

    def for_claim(self, rows: Sequence[dict], candidate: str, others: Sequence[str], metric: str) -> Interval | None:
        """The interval :func:`claim_line` reports: ``candidate`` minus the strongest of ``others`` in ``rows``."""
        other = strongest_other(rows, others, metric)
        if other is None or our_test_row(rows, candidate, metric) is None:
            return None
        return self.between(candidate, other, metric)
