"""MovieLens ranking tables (MMQ paper tables A and D, plus the SID-length and expert series).

Rows are data (:data:`ROWS`: table, label, config, series x); every number comes from the run
reports of ``experiments/ranking/*.yaml``. Table A exists once per protocol (:data:`PROTOCOL_TABLES`):
the paper's global split (``experiments/ranking/``), per-user (``experiments/ranking/per_user/``) and cold
items (``experiments/ranking/cold_items/``), with the same rows plus the shuffled-poster controls. Quality columns are those of the SIDs the ranking model
used: the stage-1 run's for frozen SIDs, the re-derived table's after behavior fine-tuning. Claim
lines come from :mod:`mmq.claims`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from mmq.tables import format_value, metric_row

DATASET = "movielens"
# (split, metric) columns in display order
COLUMNS = (("all_items", "l_recon"), ("all_items", "entropy"), ("all_items", "utilization"),
           ("all_items", "changed_items"), ("valid", "auc"), ("test", "auc"), ("test", "gauc"),
           ("test", "auc_head"), ("test", "auc_tail"), ("test", "auc_cold"), ("test", "auc_warm"))
# the compact grid of the README blocks: SID quality, then the downstream AUCs
README_COLUMNS = (("all_items", "l_recon"), ("all_items", "utilization"), ("all_items", "changed_items"),
                  ("test", "auc"), ("test", "gauc"), ("test", "auc_tail"), ("test", "auc_cold"))
PAPER_METRICS = {"l_recon": "l_recon", "entropy": "entropy", "utilization": "utilization", "auc": "auc",
                 "gauc": "gauc"}


@dataclasses.dataclass(frozen=True)
class RankingRow:
    """One table line: which table, its label, the config producing it, its x in a series."""

    table: str
    label: str
    config: str
    x: int | None = None


def _config(name: str, protocol: str = "global") -> str:
    folder = "" if protocol == "global" else f"{protocol}/"
    return f"experiments/ranking/{folder}movielens_{name}.yaml"


BASELINES = tuple((f"{fusion.upper()}-{label}", f"{fusion}_{method}")
                  for method, label in (("rq_vae", "RQ-VAE"), ("rq_kmeans", "RQ-KMeans"), ("opq", "OPQ"))
                  for fusion in ("ma", "ms"))
MMQ_FULL = "MMQ (stage 1 + behavior fine-tuning)"
MMQ_STAGE1 = "MMQ stage 1 only (w/o behavior fine-tuning)"
SHUFFLED = " — posters shuffled across items"
# table A once per protocol: table name -> (protocol, output file)
PROTOCOL_TABLES = {"ranking": ("global", "movielens_ranking"),
                   "ranking_per_user": ("per_user", "movielens_ranking_per_user"),
                   "ranking_cold_items": ("cold_items", "movielens_ranking_cold_items")}


def _ranking_rows(table: str, protocol: str) -> tuple[RankingRow, ...]:
    return (RankingRow(table, "PPNet-ItemID", _config("ppnet_itemid", protocol)),
            *(RankingRow(table, f"PPNet + {label}", _config(name, protocol)) for label, name in BASELINES),
            RankingRow(table, f"PPNet + {MMQ_STAGE1}", _config("mmq_stage1", protocol)),
            RankingRow(table, f"PPNet + {MMQ_FULL}", _config("mmq", protocol)),
            RankingRow(table, f"PPNet + {MMQ_STAGE1}{SHUFFLED}", _config("mmq_stage1_shuffled_poster", protocol)),
            RankingRow(table, f"PPNet + {MMQ_FULL}{SHUFFLED}", _config("mmq_shuffled_poster", protocol)))


ABLATION_TABLES = {"ablation": ("global", "movielens_ablation"),
                   "ablation_per_user": ("per_user", "movielens_ablation_per_user"),
                   "ablation_cold_items": ("cold_items", "movielens_ablation_cold_items")}


def _ablation_rows(table: str, protocol: str) -> tuple[RankingRow, ...]:
    return tuple(RankingRow(table, label, _config(name, protocol)) for label, name in (
        (MMQ_FULL, "mmq"), ("w/o cosine quantizer (L2 lookup)", "mmq_l2"), ("w/o L_aux", "mmq_no_aux"),
        ("w/o L_ortho", "mmq_no_ortho"), ("w/o behavior fine-tuning", "mmq_stage1"),
        ("specific-only experts (3 text + 3 image)", "mmq_specific_only"), ("MA-RQ-VAE", "ma_rq_vae"),
        ("MA-RQ-VAE + behavior fine-tuning", "ma_rq_vae_ft")))


ROWS: tuple[RankingRow, ...] = (
    *(row for table, (protocol, _) in PROTOCOL_TABLES.items() for row in _ranking_rows(table, protocol)),
    *(row for table, (protocol, _) in ABLATION_TABLES.items() for row in _ablation_rows(table, protocol)),
    *(RankingRow("sid_length", f"MMQ SID length {length}", _config("mmq" if length == 6 else f"mmq_len{length}"),
                 length) for length in (6, 9, 12, 15, 18)),
    *(RankingRow("experts", f"2 shared + {count - 2} specific ({count} experts)",
                 _config("mmq" if count == 6 else f"mmq_experts{count}"), count) for count in (4, 6, 8, 10)),
    *(RankingRow("experts", f"specific-only ({count} experts)",
                 _config("mmq_specific_only" if count == 6 else f"mmq_specific_only{count}"), count)
      for count in (4, 6, 8, 10)),
)
TABLES = {**{table: name for table, (_, name) in PROTOCOL_TABLES.items()},
          **{table: name for table, (_, name) in ABLATION_TABLES.items()},
          "sid_length": "movielens_sid_length", "experts": "movielens_shared_vs_specific"}
# the protocol of every table (the series run the paper's global split only)
TABLE_PROTOCOLS = {table: protocol for table, (protocol, _) in {**PROTOCOL_TABLES, **ABLATION_TABLES}.items()}
SERIES = {"sid_length": ("SID length", None), "experts": ("number of experts", ("2 shared", "specific-only"))}


def report_values(report: dict) -> dict[tuple[str, str], float]:
    """``{(split, metric): value}`` of one ranking run report."""
    metrics = report["metrics"]
    values = {("valid", "auc"): metrics["valid"]["auc"]}
    for name in ("auc", "gauc", "auc_head", "auc_tail", "auc_cold", "auc_warm"):
        if name in metrics["test"]:
            values[("test", name)] = metrics["test"][name]
    quality = (metrics["finetuned"]["quality"] if "finetuned" in metrics
               else metrics.get("semantic_ids", {}).get("stage1_quality"))
    if quality:
        values[("all_items", "l_recon")] = quality["reconstruction_l2_sq"]
        values[("all_items", "entropy")] = quality["semantic_id_quality"]["entropy_mean"]
        values[("all_items", "utilization")] = quality["semantic_id_quality"]["utilization_mean"]
    if "finetuned" in metrics:
        values[("all_items", "changed_items")] = metrics["finetuned"]["changed_item_fraction"]
    return values


def table_rows(table: str, reports: dict[RankingRow, Sequence[dict]]) -> list[dict]:
    """Long-format rows (mean ± std over seeds) of one table."""
    rows = []
    for row, row_reports in reports.items():
        if row.table != table or not row_reports:
            continue
        values = [report_values(report) for report in row_reports]
        for split, metric in COLUMNS:
            present = [value[(split, metric)] for value in values if (split, metric) in value]
            if present:
                rows.append({**metric_row(TABLES[table], DATASET, row.label, split, metric, present),
                             "x": "" if row.x is None else row.x})
    return rows


def paper_rows(table: str, reference_csv: Path) -> list[dict]:
    """The paper's industrial rows for the ranking table (L_recon, entropy, util, AUC, GAUC)."""
    if table != "ranking":
        return []
    rows = []
    with open(reference_csv, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            if record["table"] == "industrial_ranking" and record["metric"] in PAPER_METRICS:
                split = "test" if record["metric"] in ("auc", "gauc") else "all_items"
                row = metric_row(TABLES[table], "industrial", f"paper: {record['method']}", split,
                                 PAPER_METRICS[record["metric"]], [float(record["mean"])], source="paper")
                rows.append({**row, "n_seeds": "", "x": ""})
    return rows


def grid(rows: Sequence[dict], digits: int = 4, columns: Sequence[tuple[str, str]] = COLUMNS) -> str:
    """One markdown line per method, one column per (split, metric) of ``columns`` that some row has."""
    lines: dict[tuple, dict] = {}
    for row in rows:
        key = (row["method"], row["source"], row["n_seeds"])
        lines.setdefault(key, {})[(row["split"], row["metric"])] = format_value(row["mean"], row["std"], digits)
    used = [column for column in columns if any(column in cells for cells in lines.values())]
    header = "| method | source | n_seeds | " + " | ".join(f"{split} {metric}" for split, metric in used) + " |"
    rule = "|" + "|".join(["---"] * (3 + len(used))) + "|"
    body = ["| " + " | ".join([*map(str, key), *(cells.get(column, "-") for column in used)]) + " |"
            for key, cells in lines.items()]
    return "\n".join([header, rule, *body])


def mean_of(rows: Sequence[dict], label: str, split: str = "test", metric: str = "auc") -> tuple[float, float, int]:
    """(mean, std, n_seeds) of one cell, NaNs when absent."""
    for row in rows:
        if row["method"] == label and row["split"] == split and row["metric"] == metric and row["source"] == "ours":
            return row["mean"], row["std"], row["n_seeds"]
    return math.nan, math.nan, 0


def plot_ranking(rows: Sequence[dict], path: Path, *, title: str) -> None:
    """Grouped bars: test AUC, head AUC and tail AUC per method (mean ± std)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(row["method"] for row in rows if row["source"] == "ours"))
    metrics = tuple(metric for metric in ("auc", "auc_head", "auc_tail", "auc_cold")
                    if any(row["metric"] == metric for row in rows))
    figure, axis = plt.subplots(figsize=(max(6, 1.1 * len(methods)), 4))
    width = 0.8 / len(metrics)
    for index, metric in enumerate(metrics):
        cells = [mean_of(rows, method, metric=metric) for method in methods]
        axis.bar(np.arange(len(methods)) + index * width, [c[0] for c in cells], width,
                 yerr=[0 if math.isnan(c[1]) else c[1] for c in cells], label=f"test {metric}")
    values = [mean_of(rows, method, metric=metric)[0] for method in methods for metric in metrics]
    finite = [value for value in values if not math.isnan(value)]
    if finite:
        axis.set_ylim(min(finite) - 0.02, max(finite) + 0.01)
    axis.set_xticks(np.arange(len(methods)) + width, [m.replace("PPNet + ", "") for m in methods], rotation=30,
                    ha="right", fontsize=7)
    axis.set_ylabel("AUC")
    axis.set_title(title)
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_series(rows: Sequence[dict], path: Path, *, title: str, xlabel: str,
                groups: Sequence[str] | None = None) -> None:
    """Test AUC and L_recon against the series x; one line per label prefix in ``groups``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, (split, metric) in zip(axes, (("test", "auc"), ("all_items", "l_recon"))):
        for group in groups or ("",):
            points = sorted((row["x"], row["mean"], row["std"]) for row in rows
                            if row["split"] == split and row["metric"] == metric and row["x"] != ""
                            and row["method"].startswith(group))
            if points:
                axis.errorbar([p[0] for p in points], [p[1] for p in points], label=group or None,
                              yerr=[0 if math.isnan(p[2]) else p[2] for p in points], marker="o", capsize=3)
        if groups:
            axis.legend(fontsize=7)
        axis.set_xlabel(xlabel)
        axis.set_ylabel(f"{split} {metric}")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_intervals(panels: dict[str, list[tuple[str, str, object]]], path: Path, *, reference: str) -> None:
    """One panel per protocol: each row's paired difference to ``reference`` (point and 95% interval over test
    ratings, users resampled) per metric; ``panels`` maps a panel title to ``(row label, metric, Interval)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(label for entries in panels.values() for label, _, _ in entries))
    metrics = list(dict.fromkeys(metric for entries in panels.values() for _, metric, _ in entries))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.38 * len(labels) + 1.6), sharey=True,
                                squeeze=False)
    offsets = {metric: (index - (len(metrics) - 1) / 2) * 0.25 for index, metric in enumerate(metrics)}
    colours = dict(zip(metrics, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for axis, (title, entries) in zip(axes[0], panels.items()):
        for label, metric, interval in entries:
            y = labels.index(label) + offsets[metric]
            axis.errorbar(interval.difference, y, xerr=[[interval.difference - interval.low],
                                                        [interval.high - interval.difference]],
                          fmt="o", color=colours[metric], capsize=2, markersize=3)
        axis.axvline(0.0, color="grey", linewidth=0.8)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(f"difference to {reference} (paired 95% CI)", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(labels)), [label.replace("PPNet + ", "") for label in labels])
    axes[0][0].invert_yaxis()
    handles = [plt.Line2D([], [], color=colours[metric], marker="o", linestyle="", label=f"test {metric}")
               for metric in metrics]
    figure.legend(handles=handles, loc="lower center", ncol=len(metrics), fontsize=7)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
