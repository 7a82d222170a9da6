"""Tables of chapters 2 and 4 (the generated Myntra query benchmark): rows, claims with paired intervals, plots.

Claims compare rows on the same test queries with :func:`mmq.metrics.intervals.paired_bootstrap` (each row averaged
over its seeds per query, queries resampled); a claim "a beats b by r relative" is tested as ``a - (1 + r) b > 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from baselines.two_tower.search import load_per_query
from mmq import registry
from mmq.metrics.intervals import paired_bootstrap, verdict
from mmq.tables import format_value, metric_row


def per_query_matrix(config: str, seeds: Sequence[int], name: str) -> np.ndarray | None:
    """``[seeds, queries]`` of one per-query array of finished runs (None when a run lacks it)."""
    rows = []
    for seed in seeds:
        directory = registry.run_directory(config, seed)
        if not (directory / "per_query.npz").exists():
            return None
        arrays = load_per_query(directory)
        if name not in arrays:
            return None
        rows.append(arrays[name])
    return np.stack(rows) if rows else None


def relative_claim(label_a: str, a: np.ndarray | None, label_b: str, b: np.ndarray | None, *, metric: str,
                   relative: float = 0.0) -> str:
    """One claim line: does ``a`` beat ``b`` (by ``relative``, e.g. 0.10 = 10%) on the test queries?"""
    target = f" by >= {relative:.0%} relative" if relative else ""
    if a is None or b is None:
        return f"Claim \"{label_a} beats {label_b}{target} on test {metric}\": not tested (per-query results missing)."
    interval = paired_bootstrap(a, (1.0 + relative) * b)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    gap = mean_a - mean_b
    scaled = f"{1 + relative:g} x " if relative else ""
    return (f"Claim \"{label_a} beats {label_b}{target} on test {metric}\": **{verdict(interval)}**. "
            f"{mean_a:.4f} vs {mean_b:.4f}: gap {gap:+.4f} ({gap / mean_b:+.1%}); paired 95% interval of "
            f"a - {scaled}b over {interval.num_events} test queries [{interval.low:+.4f}, {interval.high:+.4f}], "
            f"minimum detectable effect {interval.mde:.4f} (n = {interval.num_seeds_a} / {interval.num_seeds_b} seeds).")


def rows_from_metrics(table: str, label: str, reports: Sequence[dict], pick, metrics: Sequence[str]) -> list[dict]:
    """Long-format rows of one method: ``pick(report, split)`` -> that split's metrics dict."""
    return [metric_row(table, "myntra", label, split, metric, [pick(report, split)[metric] for report in reports])
            for split in ("test", "valid") for metric in metrics]


def grid(rows: Sequence[dict], metrics: Sequence[str], split: str) -> str:
    """Markdown: one line per method, ``mean ± std (n)`` per metric."""
    lines: dict[str, dict[str, str]] = {}
    seeds: dict[str, int] = {}
    for row in rows:
        if row["split"] == split and row["metric"] in metrics:
            lines.setdefault(row["method"], {})[row["metric"]] = format_value(row["mean"], row["std"])
            seeds[row["method"]] = row["n_seeds"]
    header = "| method | seeds | " + " | ".join(metrics) + " |"
    rule = "|" + "|".join(["---"] * (len(metrics) + 2)) + "|"
    body = [f"| {method} | {seeds[method]} | " + " | ".join(cells.get(metric, "-") for metric in metrics) + " |"
            for method, cells in lines.items()]
    return "\n".join([header, rule, *body])


def bar_plot(rows: Sequence[dict], metrics: Sequence[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(row["method"] for row in rows if row["split"] == "test"))
    figure, axis = plt.subplots(figsize=(2.2 + 1.6 * len(metrics), 4.2))
    width = 0.8 / len(methods)
    for position, method in enumerate(methods):
        values = [next(row for row in rows if row["method"] == method and row["split"] == "test"
                       and row["metric"] == metric) for metric in metrics]
        axis.bar(np.arange(len(metrics)) + position * width, [value["mean"] for value in values], width,
                 yerr=[0 if np.isnan(value["std"]) else value["std"] for value in values], label=method, capsize=2)
    axis.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2)
    axis.set_xticklabels(metrics)
    axis.set_ylabel("test (mean ± seed std)")
    axis.set_title(title, fontsize=10)
    top = max(row["mean"] for row in rows if row["split"] == "test" and row["metric"] in metrics)
    axis.set_ylim(0, top * 1.4)   # room for the legend above the bars
    axis.legend(fontsize=7, loc="upper left", ncol=2)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
