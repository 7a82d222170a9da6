"""Chapter-3 table: rows, markdown and the Pareto plot from an ``ann_scale`` report (no measuring here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmq.tables import metric_row

TABLE = "ch3_ann_pareto"
CORPUS_TITLES = {"real": "real item-text vectors", "synthetic": "synthetic (mixture fitted to the real vectors)"}
GOAL = {"recall": 0.95, "qps": 2000.0, "p99_ms": 5.0}


def table_rows(metrics: dict[str, Any]) -> list[dict]:
    """Long-format CSV rows (mmq.tables): per swept point its recall@10, queries/s and Pareto membership; per
    family its bytes per vector, build seconds and 1-query p50 / p99 at the operating point."""
    rows = []
    for corpus, result in metrics["corpora"].items():
        dataset = f"{corpus} ({result['num_vectors']:,} vectors)"
        for family in result["families"]:
            for point in family["points"]:
                method = f"{family['family']} [{family['factory']}] {point['setting']}"
                rows += [metric_row(TABLE, dataset, method, "benchmark", "recall@10", [point["recall"]]),
                         metric_row(TABLE, dataset, method, "benchmark", "queries_per_second", [point["qps"]]),
                         metric_row(TABLE, dataset, method, "benchmark", "pareto",
                                    [float(point["setting"] in family["pareto"])])]
            method = f"{family['family']} [{family['factory']}] {family['operating_point']['setting']} (operating point)"
            rows += [metric_row(TABLE, dataset, method, "benchmark", name, [value]) for name, value in (
                ("bytes_per_vector", family["bytes_per_vector"]), ("build_seconds", family["build_s"]),
                ("single_query_p50_ms", family["latency"]["p50_ms"]),
                ("single_query_p99_ms", family["latency"]["p99_ms"]))]
    return rows


def _cheap(point: dict | None) -> str:
    return "not reached" if point is None else f"{point['setting']} ({point['qps']:,.0f} q/s)"


def corpus_grid(result: dict[str, Any], targets: list[str]) -> str:
    """Per family: build, size, operating point, latency and the cheapest setting per recall target."""
    head = ("| family | factory | build s | bytes/vector | operating point (recall@10, q/s) | 1-query p50 / p99 ms | "
            + " | ".join(f"cheapest for recall {t}" for t in targets) + " |")
    lines = [head, "|" + "---|" * (6 + len(targets))]
    flat = result["flat"]
    lines.append(f"| Flat (exact) | Flat | 0 | {flat['bytes_per_vector']:.0f} | 1.0000, {flat['qps']:,.0f} q/s | - | "
                 + " | ".join("-" for _ in targets) + " |")
    for family in result["families"]:
        op, latency = family["operating_point"], family["latency"]
        built = f"{family['build_s']:.1f}" + (" (cached)" if family["build_reused"] else "")
        lines.append(f"| {family['family']} | `{family['factory']}` | {built} | {family['bytes_per_vector']:.1f} | "
                     f"{op['setting']}: {op['recall']:.4f}, {op['qps']:,.0f} | {latency['p50_ms']:.3f} / "
                     f"{latency['p99_ms']:.3f} | " + " | ".join(_cheap(family["cheapest"][t]) for t in targets) + " |")
    return "\n".join(lines)


def batching_grid(result: dict[str, Any]) -> str:
    """Queries/s against the batch size at each family's operating point."""
    sizes = [row["batch_size"] for row in result["families"][0]["batching"]]
    lines = ["| family (operating point) | " + " | ".join(f"batch {size}" for size in sizes) + " |",
             "|---|" + "---:|" * len(sizes)]
    for family in result["families"]:
        lines.append(f"| {family['family']} ({family['operating_point']['setting']}) | "
                     + " | ".join(f"{row['qps']:,.0f}" for row in family["batching"]) + " |")
    return "\n".join(lines)


def fit_grid(check: dict[str, Any]) -> str:
    """Recall at the same settings on the real set and on a same-size synthetic draw."""
    lines = ["| index | setting | recall@10 real | recall@10 synthetic | gap |", "|---|---|---:|---:|---:|"]
    for family, curves in check["curves"].items():
        for real, synthetic in zip(curves["real"], curves["synthetic"]):
            lines.append(f"| {family} | {real['setting']} | {real['recall']:.4f} | {synthetic['recall']:.4f} | "
                         f"{synthetic['recall'] - real['recall']:+.4f} |")
    return "\n".join(lines)


def extrapolation_grid(rows: list[dict]) -> str:
    """Measured sizes and the 10M prediction per compressed family."""
    lines = ["| family (setting) | measured sizes | build s @10M | index GB @10M | q/s @10M | recall@10 @10M |",
             "|---|---|---:|---:|---:|---:|"]
    for row in rows:
        sizes = ", ".join(f"{entry['size'] / 1e6:g}M" for entry in row["measured"])
        lines.append(f"| {row['family']} ({row['setting']}) | {sizes} | {row['build_s']['predicted']:,.0f} | "
                     f"{row['index_bytes']['predicted'] / 1e9:.2f} | {row['qps']['predicted']:,.0f} | "
                     f"{row['recall']['predicted']:.3f} |")
    return "\n".join(lines)


def goal_verdict(result: dict[str, Any]) -> str:
    """Does any family's operating point reach recall >= .95 at >= 2,000 q/s with 1-query p99 <= 5 ms?"""
    passing = [f for f in result["families"] if f["operating_point"]["recall"] >= GOAL["recall"]
               and f["operating_point"]["qps"] >= GOAL["qps"] and f["latency"]["p99_ms"] <= GOAL["p99_ms"]]
    n = f"{result['num_vectors']:,}"
    if passing:
        best = max(passing, key=lambda f: f["operating_point"]["qps"])
        op = best["operating_point"]
        return (f"Goal at {n} vectors (recall@10 >= 0.95 at >= 2,000 q/s batched, 1-query p99 <= 5 ms): **holds** - "
                f"{best['family']} {op['setting']}: recall {op['recall']:.4f}, {op['qps']:,.0f} q/s, p99 "
                f"{best['latency']['p99_ms']:.2f} ms ({len(passing)} of {len(result['families'])} families pass).")
    return f"Goal at {n} vectors: **fails** - no family's operating point meets all three."


def machine_line(metrics: dict[str, Any]) -> str:
    """The machine and its load average before / after (benchmarks depend on both)."""
    before, after = metrics["machine_before"], metrics["machine_after"]
    return (f"Machine: {before['cpu']}, {before['cores']} cores, faiss {before['faiss']}, {metrics['threads']} threads "
            f"batched / 1 thread single-query; load average before {before['load_average']}, after "
            f"{after['load_average']}; the whole run took {metrics['wall_seconds'] / 60:.1f} min.")


def plot_pareto(metrics: dict[str, Any], path: Path) -> None:
    """Recall@10 vs queries/s per family (frontier bold), one panel per corpus, plus batch size vs throughput."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = metrics["corpora"]
    fig, axes = plt.subplots(1, len(corpora) + 1, figsize=(6 * (len(corpora) + 1), 4.8))
    colours = {}
    for axis, (corpus, result) in zip(axes, corpora.items()):
        for family in result["families"]:
            colour = colours.setdefault(family["family"], f"C{len(colours) % 10}")
            points = sorted(family["points"], key=lambda p: p["recall"])
            axis.plot([p["recall"] for p in points], [p["qps"] for p in points], "o", color=colour, alpha=0.35, ms=3)
            frontier = sorted((p for p in points if p["setting"] in family["pareto"]), key=lambda p: p["recall"])
            axis.plot([p["recall"] for p in frontier], [p["qps"] for p in frontier], "-o", color=colour, ms=4,
                      label=family["family"])
        axis.axhline(result["flat"]["qps"], color="k", ls=":", lw=1, label="Flat (exact)")
        axis.set(yscale="log", xlabel="recall@10 vs exact", ylabel="queries/s (batched)",
                 title=f"{CORPUS_TITLES.get(corpus, corpus)}\n{result['num_vectors']:,} vectors")
        axis.set_xlim(max(0.0, min(p["recall"] for f in result["families"] for p in f["points"]) - 0.02), 1.005)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    last = list(corpora.values())[-1]
    for family in last["families"]:
        axes[-1].plot([r["batch_size"] for r in family["batching"]], [r["qps"] for r in family["batching"]], "-o",
                      color=colours[family["family"]], ms=3, label=family["family"])
    axes[-1].set(xscale="log", yscale="log", xlabel="batch size", ylabel="queries/s",
                 title=f"batching at each operating point\n{last['num_vectors']:,} vectors")
    axes[-1].grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, metadata={"Software": None})
    plt.close(fig)
    tmp.replace(path)


def best_for_target(result: dict[str, Any], target: str) -> str:
    """The fastest family/setting over all families reaching the target recall."""
    candidates = [(family["family"], family["cheapest"][target]) for family in result["families"]
                  if family["cheapest"][target] is not None]
    if not candidates:
        return "none"
    name, point = max(candidates, key=lambda item: item[1]["qps"])
    return f"{name} {point['setting']} ({point['qps']:,.0f} q/s, recall {point['recall']:.4f})"


def mean_gap(check: dict[str, Any]) -> float:
    """Mean signed synthetic - real recall gap of the fit check."""
    return float(np.mean([s["recall"] - r["recall"] for curves in check["curves"].values()
                          for r, s in zip(curves["real"], curves["synthetic"])]))
