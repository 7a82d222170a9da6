"""A/B testing: deterministic assignment, exposure logging, offline replay with intervals, a latency guardrail.

- Assignment hashes ``"<salt>:<unit id>"`` (sha256) to a number in [0, 1) and cuts it by the configured split: the
  same unit always gets the same arm for one salt, and a new salt reshuffles every unit independently.
- The exposure log appends one JSON line per exposure (experiment, unit, arm, time, extra fields) with a single
  ``write`` on a file opened for appending, so concurrent writers never interleave a line.
- Offline replay scores logged units (chapter-2 test queries, Beauty test users) under both arms: the A/B
  estimate uses only each unit's assigned arm (unpaired bootstrap + Welch's t-test, what an online test would
  see); because a replay can score every unit under every arm, it also reports the paired interval over all
  units (``mmq.metrics.intervals.paired_bootstrap``) and a paired t-test -- the tighter answer.
- The guardrail fails a treatment whose p99 latency exceeds the control's by more than ``max_ratio``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from mmq.metrics.intervals import paired_bootstrap, verdict


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An A/B experiment: its arms (the first is the control), their traffic split and the hashing salt."""

    name: str = "experiment"
    salt: str = "salt"
    arms: tuple[str, ...] = ("control", "treatment")
    split: tuple[float, ...] = (0.5, 0.5)

    def __post_init__(self) -> None:
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"an experiment needs >= 2 distinct arms, got {list(self.arms)}")
        if len(self.split) != len(self.arms) or min(self.split) <= 0 or abs(sum(self.split) - 1) > 1e-9:
            raise ValueError(f"split must give each of the {len(self.arms)} arms a positive share summing to 1, "
                             f"got {list(self.split)}")

    def bucket(self, unit_id: str) -> float:
        """The unit's position in [0, 1) for this salt."""
        digest = hashlib.sha256(f"{self.salt}:{unit_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0 ** 64

    def assign(self, unit_id: str) -> str:
        """The unit's arm (deterministic for a salt)."""
        position, edge = self.bucket(str(unit_id)), 0.0
        for arm, share in zip(self.arms, self.split):
            edge += share
            if position < edge:
                return arm
        return self.arms[-1]                     # floating-point edge: the last arm


class ExposureLog:
    """Append-only JSON-lines exposure log."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, experiment: Experiment, unit_id: str, arm: str, **fields: Any) -> None:
        """Record that ``unit_id`` was exposed to ``arm``."""
        line = json.dumps({"experiment": experiment.name, "unit": str(unit_id), "arm": arm, "time": time.time(),
                           **fields}, sort_keys=True) + "\n"
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line.encode())
        finally:
            os.close(descriptor)

    def read(self) -> list[dict[str, Any]]:
        """Every exposure so far (a malformed line is an error naming its number)."""
        if not self.path.exists():
            return []
        rows = []
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.path}:{number}: not a JSON line ({error.msg})") from None
        return rows


def _unpaired_interval(a: np.ndarray, b: np.ndarray, *, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    differences = [rng.choice(a, a.size).mean() - rng.choice(b, b.size).mean() for _ in range(resamples)]
    return float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5))


def _paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Paired t-test p-value; a constant difference (no spread) is certain: 1 if zero, else 0."""
    difference = a - b
    if np.ptp(difference) <= 1e-12 * max(1.0, float(np.abs(difference).max())):
        return 1.0 if np.abs(difference).max() <= 1e-12 else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def replay(experiment: Experiment, unit_ids: Sequence[str], metric_by_arm: dict[str, np.ndarray], *,
           seed: int = 0) -> dict[str, Any]:
    """Per arm vs the control: the observed A/B estimate and the paired counterfactual (module docstring)."""
    missing = set(experiment.arms) - set(metric_by_arm)
    if missing:
        raise ValueError(f"no per-unit metric for arms {sorted(missing)}")
    values = {arm: np.asarray(metric_by_arm[arm], dtype=np.float64) for arm in experiment.arms}
    if any(array.shape != (len(unit_ids),) for array in values.values()):
        raise ValueError(f"every arm needs one value per unit ({len(unit_ids)}), got "
                         f"{ {arm: array.shape for arm, array in values.items()} }")
    arms = np.asarray([experiment.assign(unit) for unit in unit_ids])
    control = experiment.arms[0]
    result: dict[str, Any] = {"units_per_arm": {arm: int((arms == arm).sum()) for arm in experiment.arms},
                              "observed_mean": {arm: float(values[arm][arms == arm].mean()) for arm in experiment.arms},
                              "comparisons": {}}
    for arm in experiment.arms[1:]:
        a, b = values[arm][arms == arm], values[control][arms == control]
        low, high = _unpaired_interval(a, b, seed=seed)
        paired = paired_bootstrap(values[arm][None], values[control][None], seed=seed)
        result["comparisons"][arm] = {
            "ab_difference": float(a.mean() - b.mean()), "ab_interval": [low, high],
            "ab_welch_p": float(stats.ttest_ind(a, b, equal_var=False).pvalue),
            "ab_verdict": "holds" if low > 0 else "fails" if high < 0 else "unresolved",
            "paired_difference": paired.difference, "paired_interval": [paired.low, paired.high],
            "paired_t_p": _paired_p(values[arm], values[control]),
            "paired_verdict": verdict(paired), "num_units": len(unit_ids)}
    return result


def guardrail(latencies_ms: dict[str, np.ndarray], control: str, *, max_ratio: float = 1.2) -> dict[str, Any]:
    """Each arm's p99 latency against the control's; an arm fails when it exceeds ``max_ratio`` x the control."""
    if control not in latencies_ms:
        raise ValueError(f"no latencies for the control arm {control!r}")
    base = float(np.percentile(latencies_ms[control], 99))
    return {arm: {"p99_ms": float(np.percentile(values, 99)), "ratio": float(np.percentile(values, 99)) / base,
                  "passes": float(np.percentile(values, 99)) <= max_ratio * base}
            for arm, values in latencies_ms.items()}
