"""Tokenizer-quality table rows from ``build_semantic_ids`` reports."""

from __future__ import annotations

from typing import Sequence

from mmq.metrics.semantic_ids import BALANCE_COLUMNS, balance_columns
from mmq.tables import markdown_grid, metric_row

METHOD_NAMES = {"rq_vae": "RQ-VAE", "rq_kmeans": "RQ-KMeans", "opq": "OPQ"}
COLUMNS = ("reconstruction_l2_sq", "entropy_mean", "utilization_mean", "utilization_min", "collision_rate",
           "collision_rate_dedup", "unique_ids", *BALANCE_COLUMNS, "fit_seconds")


def report_values(report: dict) -> dict[str, float]:
    """The table's numbers from one run report."""
    metrics = report["metrics"]
    quality = metrics["quality"]["semantic_id_quality"]
    return {
        "reconstruction_l2_sq": metrics["quality"]["reconstruction_l2_sq"],
        "entropy_mean": quality["entropy_mean"],
        "utilization_mean": quality["utilization_mean"],
        "utilization_min": min(quality["utilization_per_position"]),
        "collision_rate": metrics["dedup"]["collision_rate_before"],
        "collision_rate_dedup": metrics["dedup"]["collision_rate_after"],
        "unique_ids": float(quality["unique_ids"]),
        **balance_columns(quality),
        "fit_seconds": metrics["fit_seconds"],
    }


def table_rows(table: str, reports_by_method: dict[str, Sequence[dict]]) -> list[dict]:
    """Long-format rows, one group per method, aggregated over seeds."""
    rows = []
    for method, reports in reports_by_method.items():
        config = reports[0]["config"]
        label = f"{METHOD_NAMES.get(config['method'], config['method'])} ({config['code_length']}x{config['codebook_size']})"
        if config.get("balanced"):
            label += ", balanced assignment"
        values = [report_values(report) for report in reports]
        for column in COLUMNS:
            present = [value[column] for value in values if column in value]
            if present:
                rows.append(metric_row(table, config["dataset"], label, "all_items", column, present))
    return rows


def grid(rows: Sequence[dict]) -> str:
    """One line per method, one column per metric of :data:`COLUMNS` (the page's grid and the README block)."""
    return markdown_grid(rows, COLUMNS, split="all_items", label_columns=("method",))


def render_markdown(rows: Sequence[dict], *, title: str, notes: Sequence[str]) -> str:
    """Markdown page for the tokenizer-quality table."""
    return "\n".join([f"# {title}", "", *notes, "", grid(rows), ""])
