"""Chapter-6 table: rows, Markdown and the recall-vs-latency figure from ``multiphase`` run reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from mmq.tables import format_value, metric_row

TABLE = "ch6_multiphase"
COLUMNS = ("recall@10", "task", "mean_candidates", "p50_ms", "p99_ms", "queries_per_second")


def _method_points(metrics: dict) -> list[tuple[str, dict]]:
    """(label, point) for every curve point of one report: multiphase per tokenizer, then Flat / IVF / HNSW."""
    points = []
    for name, curve in metrics["multiphase"].items():
        points += [(f"multiphase {name} probe={point['probe']} N={point['min_candidates']}", point) for point in curve]
    points += [("Flat", point) for point in metrics["flat"]]
    points += [(f"{point['name']} nprobe={point['nprobe']}", point) for point in metrics["ivf"]]
    points += [(f"HNSW32 efSearch={point['ef_search']}", point) for point in metrics["hnsw"]]
    return points


def task_metric(metrics: dict) -> str:
    """The task metric shown (NDCG@10 when the task reports it)."""
    point = metrics["flat"][0]
    return "ndcg@10" if "ndcg@10" in point.get("task", {}) else next(iter(point.get("task", {"recall@10": 0})))


def table_rows(reports: Sequence[dict]) -> list[dict]:
    """Long-format CSV rows: one per (task, curve point, metric), test split."""
    rows = []
    for report in reports:
        metrics = report["metrics"]
        metric = task_metric(metrics)
        for label, point in _method_points(metrics):
            values = {**{key: point[key] for key in COLUMNS if key in point and key != "task"},
                      f"task_{metric}": point.get("task", {}).get(metric)}
            rows += [metric_row(TABLE, metrics["task"], label, "test", name, [value])
                     for name, value in values.items() if value is not None]
    return rows


def render_markdown(reports: Sequence[dict], command: str) -> str:
    """Per task: selected settings, the full curve grid, the matched-recall comparison and verdicts."""
    lines = [f"# Chapter 6: multiphase retrieval (semantic-ID candidates -> exact vector rerank)", "",
             f"Regenerate: `{command}`. Test split; recall@10 is against exact (Flat) top-10 on the same queries; "
             "latency = one query at a time, 1 thread, encoding included; measured on a shared 2-core machine.", ""]
    for report in reports:
        metrics = report["metrics"]
        metric = task_metric(metrics)
        lines += [f"## {metrics['task']} ({metrics['num_items']:,} items, {metrics['num_queries']:,} test queries)", ""]
        if "decay" in metrics:
            lines += [f"History query decay {metrics['decay']:g} (chosen on valid).", ""]
        for name, pick in metrics["selected_on_valid"].items():
            test = pick["test"]
            lines.append(f"- {name}: valid-selected probe={pick['probe']} N={pick['min_candidates']} -> test {metric} "
                         f"{test['task'][metric]:.4f}, recall@10 {test['recall@10']:.4f}, "
                         f"{test['mean_candidates']:.0f} candidates, p50 {test['p50_ms']:.3f} ms")
        lines += ["", f"| method | recall@10 | {metric} | candidates | p50 ms | p99 ms | queries/s |",
                  "|---|---|---|---|---|---|---|"]
        for label, point in _method_points(metrics):
            lines.append(f"| {label} | {point['recall@10']:.4f} | {point.get('task', {}).get(metric, float('nan')):.4f} "
                         f"| {point.get('mean_candidates', '-')} | {point['p50_ms']:.3f} | {point['p99_ms']:.3f} "
                         f"| {point['queries_per_second']:,.0f} |")
        lines += ["", "Matched recall (cheapest IVF setting with recall >= the point's; ratio = multiphase p50 / IVF p50):",
                  "", "| tokenizer | probe | N | recall@10 | p50 ms | IVF nprobe | IVF recall | IVF p50 ms | ratio |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, rows in metrics["matched"].items():
            for row in rows:
                lines.append(f"| {name} | {row['probe']} | {row['min_candidates']} | {row['recall@10']:.4f} | "
                             f"{row['multiphase_ms']:.3f} | {row['ivf_nprobe'] or '-'} | "
                             f"{format_value(row['ivf_recall']) if row['ivf_recall'] is not None else '-'} | "
                             f"{format_value(row['ivf_ms'], digits=3) if row['ivf_ms'] is not None else '-'} | "
                             f"{row['ratio'] if row['ratio'] is not None else '-'} |")
        lines += [""] + [f"Verdict ({name}): {text}." for name, text in metrics["verdicts"].items()] + [""]
        lines += shortfall_lines(metrics) + [""] + sid_provenance(report) + [""]
    return "\n".join(lines)


def _ivf_scanned(point: dict, num_items: int) -> float:
    """Vectors an IVF point scans per query on average: nprobe x n / nlist."""
    nlist = int(point["name"].split(",")[0].removeprefix("IVF"))
    return point["nprobe"] * num_items / nlist


def shortfall_lines(metrics: dict) -> list[str]:
    """Why multiphase trails IVF, in numbers: its fixed phase-1 cost, and items scanned per unit of recall."""
    ivf = metrics["ivf"]
    fastest_ivf = min(ivf, key=lambda point: point["p50_ms"])
    lines = []
    for name, curve in metrics["multiphase"].items():
        small = [point for point in curve if point["mean_candidates"] <= 10] or curve
        floor = min(small, key=lambda point: point["p50_ms"])
        pick = metrics["selected_on_valid"][name]["test"]
        reaching = [point for point in ivf if point["recall@10"] >= pick["recall@10"]]
        scan = (f"IVF reaches recall {min(reaching, key=lambda p: p['p50_ms'])['recall@10']:.3f} scanning "
                f"~{_ivf_scanned(min(reaching, key=lambda p: p['p50_ms']), metrics['num_items']):,.0f} vectors"
                if reaching else "no IVF setting reaches it")
        lines.append(f"Why {name} trails IVF: with <= 10 candidates a query still costs {floor['p50_ms']:.3f} ms "
                     f"(query encoding + prefix lookup, per query in numpy/Python) against IVF's fastest "
                     f"{fastest_ivf['p50_ms']:.3f} ms; the valid-selected setting scores {pick['mean_candidates']:,.0f} "
                     f"candidates for recall {pick['recall@10']:.3f}, while {scan}.")
    return lines


def plot_curves(reports: Sequence[dict], path: Path) -> None:
    """recall@10 vs p50 latency, one panel per task: multiphase per tokenizer vs IVF / HNSW (and Flat)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(reports), figsize=(6 * len(reports), 4.5), squeeze=False)
    for axis, report in zip(axes[0], reports):
        metrics = report["metrics"]
        for name, curve in metrics["multiphase"].items():
            ordered = sorted(curve, key=lambda point: point["p50_ms"])
            axis.scatter([p["p50_ms"] for p in ordered], [p["recall@10"] for p in ordered], label=f"multiphase {name}",
                         s=18)
        for key, marker, colour in (("ivf", "o-", "black"), ("hnsw", "s--", "dimgray"), ("flat", "*", "crimson")):
            curve = metrics[key]
            axis.plot([p["p50_ms"] for p in curve], [p["recall@10"] for p in curve], marker, color=colour,
                      label=key.upper(), markersize=5)
        axis.set_xscale("log")
        axis.set_xlabel("single-query p50 latency (ms, 1 thread)")
        axis.set_ylabel("recall@10 vs exact")
        axis.set_title(f"{metrics['task']}: {metrics['num_items']:,} items")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def readme_grid(reports: Sequence[dict]) -> str:
    """The short README block: each tokenizer's valid-selected point and its verdict against IVF."""
    lines = ["| task | method | recall@10 | task metric | candidates | p50 ms |", "|---|---|---|---|---|---|"]
    for report in reports:
        metrics = report["metrics"]
        metric = task_metric(metrics)
        for name, pick in metrics["selected_on_valid"].items():
            test = pick["test"]
            lines.append(f"| {metrics['task']} | multiphase {name} (probe {pick['probe']}, N {pick['min_candidates']}) | "
                         f"{test['recall@10']:.4f} | {metric} {test['task'][metric]:.4f} | {test['mean_candidates']:.0f} "
                         f"| {test['p50_ms']:.3f} |")
        flat = metrics["flat"][0]
        lines.append(f"| {metrics['task']} | Flat | 1.0000 | {metric} {flat['task'][metric]:.4f} | - | {flat['p50_ms']:.3f} |")
    verdicts = [f"Verdict ({report['metrics']['task']}, {name} vs IVF at matched recall): {text}."
                for report in reports for name, text in report["metrics"]["verdicts"].items()]
    return "\n\n".join(["\n".join(lines), *verdicts, *[line for report in reports for line in sid_provenance(report)]])


def sid_provenance(report: dict) -> list[str]:
    """Flag SID sources whose table differs from the committed run of the same config (rebuilt since)."""
    from mmq import registry

    lines = []
    for name, source in report["metrics"].get("sources", {}).items():
        if "config" not in source or "sha256" not in source:
            continue
        committed = registry.run_directory(source["config"], report["config"].get("tokenizer_seed", 0)) / "report.json"
        if not committed.exists():
            continue
        recorded = json.loads(committed.read_text())["metrics"]["semantic_id_table"]["sha256"]
        if recorded != source["sha256"]:
            lines.append(f"Note ({report['metrics']['task']}, {name}): the SIDs used here (sha256 {source['sha256'][:12]}) "
                         f"were rebuilt from `{source['config']}` and differ from its committed "
                         f"run's table ({recorded[:12]}): rebuilding that run today does not reproduce it bit-for-bit.")
    return lines


def hybrid_markdown(report: dict) -> list[str]:
    """The recommendation hybrid's section: every system on TEST, the VALID choice and its paired intervals."""
    metrics = report["metrics"]
    chosen = metrics["selected_on_valid"]
    lines = ["## Recommendation hybrid on Beauty (generative beam -> candidate SIDs -> vector rerank)", "",
             f"Generative retriever: `{metrics['generative_run']['config']}` seed {metrics['generative_run']['seed']}; "
             f"{metrics['num_test_users']:,} test users; (beam, depth, rerank) chosen on {metrics['num_valid_users']:,} valid "
             f"users: **{chosen}**. depth=full: the beam's own items; depth=code: + every item sharing a beam item's "
             "code (without the de-dup digit). rerank=vector: inner product with the chapter-1 history query; "
             "rerank=rrf: reciprocal rank fusion (k = 60) of the beam order and that inner-product order. "
             "\"generative\" is the beam-50 list in beam order, history removed.", "",
             "| system | ndcg@10 | recall@10 | candidates |", "|---|---|---|---|"]
    for name, values in metrics["test"].items():
        label = f"**{name}** (valid-selected)" if name == chosen else name
        candidates = metrics["mean_candidates"].get(name)
        lines.append(f"| {label} | {values['ndcg@10']:.4f} | {values['recall@10']:.4f} | "
                     f"{'-' if candidates is None else f'{candidates:,.1f}'} |")
    return lines + [""] + hybrid_claims(report) + [""]


def hybrid_claims(report: dict) -> list[str]:
    """One claim line per single system the chosen hybrid is compared with (paired bootstrap over test users)."""
    metrics = report["metrics"]
    chosen, names = metrics["selected_on_valid"], {"generative": "the generative list alone", "dense": "dense Flat alone"}
    lines = []
    for other, interval in metrics["chosen_vs"].items():
        lines.append(f"Claim \"the hybrid ({chosen}) beats {names.get(other, other)} on test ndcg@10\": "
                     f"**{interval['verdict']}**. {metrics['test'][chosen]['ndcg@10']:.4f} vs "
                     f"{metrics['test'][other]['ndcg@10']:.4f}: paired 95% interval of the difference "
                     f"[{interval['low']:+.4f}, {interval['high']:+.4f}] over {interval['num_events']:,} test users.")
    return lines
