"""Multimodal tokenizer-quality table (MMQ vs MA/MS baselines vs ablations) from run reports.

Rows are declared as data (:data:`TABLE_ROWS`: dataset, label, config); columns are
:data:`COLUMNS`. The paper's industrial numbers (paper_tables/paper_reference/mmq_paper.csv) are
added as ``source=paper`` reference rows under the dataset ``industrial``.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Sequence

from mmq.metrics.semantic_ids import BALANCE_COLUMNS, balance_columns
from mmq.tables import markdown_grid, metric_row

TABLE = "tokenizer_quality"
COLUMNS = ("reconstruction_l2_sq", "reconstruction_gated", "entropy_mean", "utilization_mean", "utilization_min",
           "collision_rate", *BALANCE_COLUMNS, "fit_seconds")
# the README block: the MA/MS baselines and MMQ on each dataset (ablations and paper rows: the full table)
README_COLUMNS = ("reconstruction_l2_sq", "reconstruction_gated", "entropy_mean", "utilization_min", "collision_rate",
                  "gini_mean", "largest_sid_bucket")
PAPER_METRICS = {"l_recon": "reconstruction_l2_sq", "entropy": "entropy_mean", "utilization": "utilization_mean"}


@dataclasses.dataclass(frozen=True)
class TableRow:
    """One line of the table: which dataset, what to call it, which config produces it."""

    dataset: str
    label: str
    config: str


def _rows_for(dataset: str) -> list[TableRow]:
    rows = [TableRow(dataset, f"{fusion.upper()}-{name}", f"experiments/tokenizers/{dataset}_{fusion}_{method}.yaml")
            for fusion in ("ma", "ms")
            for method, name in (("rq_vae", "RQ-VAE"), ("rq_kmeans", "RQ-KMeans"), ("opq", "OPQ"))]
    return rows + [TableRow(dataset, "MMQ", f"experiments/mmq/{dataset}_mmq.yaml")]


ABLATIONS = (("l2", "MMQ w/o cosine quantizer (L2 lookup)"), ("no_aux", "MMQ w/o L_aux"),
             ("no_ortho", "MMQ w/o L_ortho"), ("no_gate_balance", "MMQ w/o gate balance (paper objective)"),
             ("specific_only", "MMQ specific-only (3 text + 3 image)"),
             ("no_restarts", "MMQ w/o dead-code restarts"), ("l2_no_restarts", "MMQ L2 lookup w/o dead-code restarts"),
             *((f"len{length}", f"MMQ SID length {length}") for length in (9, 12, 15, 18)))
TABLE_ROWS: tuple[TableRow, ...] = (
    *_rows_for("movielens"),
    *(TableRow("movielens", label, f"experiments/mmq/movielens_mmq_{suffix}.yaml") for suffix, label in ABLATIONS),
    *_rows_for("beauty"),
)


def report_values(report: dict) -> dict[str, float]:
    """The table's numbers from one run report (``reconstruction_gated`` only for MMQ runs)."""
    metrics = report["metrics"]
    quality = metrics["quality"]["semantic_id_quality"]
    values = {
        "reconstruction_l2_sq": metrics["quality"]["reconstruction_l2_sq"],
        "entropy_mean": quality["entropy_mean"],
        "utilization_mean": quality["utilization_mean"],
        "utilization_min": min(quality["utilization_per_position"]),
        "collision_rate": metrics["dedup"]["collision_rate_before"],
        **balance_columns(quality),
        "fit_seconds": metrics["fit_seconds"],
    }
    if "mmq" in metrics:
        values["reconstruction_gated"] = metrics["mmq"]["reconstruction_gated"]
    return values


def table_rows(reports: dict[TableRow, Sequence[dict]]) -> list[dict]:
    """Long-format rows (mean ± std over the seeds found) for every row with at least one report; a column only
    some seeds recorded (balance columns of runs older than them) is left out rather than averaged over fewer."""
    rows = []
    for row, row_reports in reports.items():
        values = [report_values(report) for report in row_reports]
        for column in COLUMNS:
            present = [value[column] for value in values if column in value]
            if present and len(present) == len(values):
                rows.append(metric_row(TABLE, row.dataset, row.label, "all_items", column, present))
    return rows


def paper_rows(reference_csv: Path) -> list[dict]:
    """The paper's industrial L_recon / entropy / utilization rows (ranking table and ablation)."""
    rows = []
    with open(reference_csv, newline="", encoding="utf-8") as handle:
        for record in csv.DictReader(handle):
            if record["table"] not in ("industrial_ranking", "industrial_ablation"):
                continue
            if record["metric"] not in PAPER_METRICS:
                continue
            label = record["method"] if record["table"] == "industrial_ranking" else f"ablation: {record['method']}"
            row = metric_row(TABLE, "industrial", label, "all_items", PAPER_METRICS[record["metric"]],
                             [float(record["mean"])], source="paper")
            rows.append({**row, "n_seeds": ""})  # a published number, not a seed count
    return rows


def readme_grid(rows: Sequence[dict]) -> str:
    """The README block: our MA/MS + MMQ rows of every dataset (no ablations, no paper rows)."""
    main_labels = {row.label for dataset in ("movielens", "beauty") for row in _rows_for(dataset)}
    return markdown_grid([row for row in rows if row["method"] in main_labels and row["source"] == "ours"],
                         README_COLUMNS, split="all_items", label_columns=("dataset", "method", "n_seeds"))


def render_markdown(rows: Sequence[dict], *, title: str, notes: Sequence[str]) -> str:
    """Markdown page: one grid per dataset (ours first, then the paper's industrial rows)."""
    sections = [f"# {title}", "", *notes, ""]
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        subset = [row for row in rows if row["dataset"] == dataset]
        sections += [f"## {dataset}", "", markdown_grid(subset, COLUMNS, split="all_items",
                                                        label_columns=("method", "source", "n_seeds")), ""]
    return "\n".join(sections)
