"""One renderer for the claim lines under the tables: does one row beat the strongest of some others?

:func:`claim_line` reads only a table's own rows (mean ± std over seeds, test split, ``source=ours``),
compares the candidate with the strongest of the others on one metric, and writes one sentence.
The verdict is the same in every table (the candidate's mean is strictly above every other row's);
how the sentence reads is a :class:`ClaimStyle`:

- :data:`BEATS` (generative tables): ``Claim "...": beats it here. <row> vs best baseline <row>: gap
  +0.0015 (+4%), larger than either row's std (n = 3 / 3 seeds).``
- :data:`HELD` (ranking tables): ``Claim '...': HELD on test AUC: <row> vs strongest other '<row>',
  gap +0.0002 (gap within one seed std).`` plus the rows that beat the candidate when it fails.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

from mmq.tables import format_value

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


def claim_line(rows: Sequence[dict], claim: str, candidate: str, others: Sequence[str], *, metric: str,
               style: ClaimStyle) -> str:
    """``Claim <claim>: <verdict> ...``: does ``candidate`` beat the strongest of ``others`` on test ``metric``?

    ``rows`` are a table's long-format rows; only our test rows of ``metric`` are read. A claim whose
    candidate or every other row has no finished run is reported as not tested, naming what is missing.
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
    return f"{quoted}: {body}."
