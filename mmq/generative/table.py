"""Generative-retrieval tables (Beauty, MovieLens): our runs (mean ± std over seeds) beside any
paper / peer rows, plus the shared output step of their scripts (runs are collected by :mod:`mmq.tables`;
claim lines come from :mod:`mmq.claims`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from mmq.claims import BEATS, ClaimIntervals, claim_line
from mmq.tables import format_value, is_default_output, markdown_grid, metric_row, write_readme_block, write_table

METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
GAP_METRIC = "ndcg@10"


def table_rows(table: str, dataset: str, reports: dict[str, list[dict]]) -> list[dict]:
    """``run_rows`` of every collected method, in row order."""
    return [row for label, runs in reports.items() for row in run_rows(table, dataset, label, runs)]


def mean_train_seconds(reports: dict[str, list[dict]]) -> dict[str, float]:
    """Mean training seconds per run of each method (generative and SASRec reports alike)."""
    return {label: sum(run["metrics"].get("training", run["metrics"])["train_seconds"] for run in runs) / len(runs)
            for label, runs in reports.items()}


def claim_lines(ours: Sequence[dict], claims: Sequence[tuple[str, Sequence[str], str]],
                metric: str = GAP_METRIC, intervals: ClaimIntervals | None = None) -> list[str]:
    """One line per ``(candidate, others, what)``: does the candidate beat ``what`` (the best of ``others``)?

    With ``intervals``, a line whose rows have per-event results also gives the paired interval and its verdict.
    """
    lines = []
    for candidate, others, what in claims:
        interval = intervals.for_claim(ours, candidate, others, metric) if intervals else None
        lines.append(claim_line(ours, f"{candidate} beats {what} on test {metric}", candidate, others, metric=metric,
                                style=BEATS, interval=interval))
    return lines


NO_EXCLUSION_SPLIT = "test_no_exclusion"   # the runs' test lists scored without history exclusion
PROTOCOLS = (("test", "history excluded (full history, inside the beam)"), (NO_EXCLUSION_SPLIT, "no history exclusion"))


def protocol_rows(table: str, dataset: str, reports: dict[str, list[dict]]) -> list[dict]:
    """:func:`run_rows` of every method plus its test rows without history exclusion (split ``test_no_exclusion``,
    for runs that recorded them)."""
    rows = []
    for label, runs in reports.items():
        method_rows = run_rows(table, dataset, label, runs)
        rows += method_rows
        if all(NO_EXCLUSION_SPLIT in run["metrics"] for run in runs):
            rows += [metric_row(table, dataset, method_rows[0]["method"], NO_EXCLUSION_SPLIT, metric,
                                [run["metrics"][NO_EXCLUSION_SPLIT][metric] for run in runs]) for metric in METRICS]
    return rows


def protocol_claim_lines(ours: Sequence[dict], claims: Sequence[tuple[str, Sequence[str], str]],
                         intervals: dict[str, ClaimIntervals], metric: str = GAP_METRIC) -> list[str]:
    """:func:`claim_lines` under each protocol of :data:`PROTOCOLS` (``intervals``: one per split), the protocol
    named in each line."""
    lines = []
    for split, name in PROTOCOLS:
        rows = [{**row, "split": "test"} for row in ours if row["split"] == split]
        lines += [line.replace(f" on test {metric}", f" on test {metric}, {name}", 1)
                  for line in claim_lines(rows, claims, metric=metric, intervals=intervals.get(split))]
    return lines


def protocol_page(title: str, notes: Sequence[str], ours: Sequence[dict], headings: tuple[str, str, str],
                  references: Sequence[dict] = ()) -> str:
    """The page of a two-protocol table: notes, then the test grid with the history excluded (our rows and any
    ``references``), the test grid without exclusion, the validation grid; ``headings`` name those three."""
    test, plain, valid = headings
    return "\n".join([
        f"# {title}", "", *notes, "",
        f"## {test}", "", markdown_grid([*ours, *references], METRICS, split="test"), "",
        f"## {plain}", "", markdown_grid(ours, METRICS, split=NO_EXCLUSION_SPLIT), "",
        f"## {valid}", "", markdown_grid(ours, METRICS, split="valid"), "",
    ])


def run_rows(table: str, dataset: str, method: str, reports: Sequence[dict]) -> list[dict]:
    """Test and validation rows of one method (``reports``: one per seed), labelled with the profile."""
    profiles = sorted({report["metrics"].get("profile", "cpu") for report in reports})
    label = f"{method} [{'/'.join(profiles)}]"
    rows = []
    for split in ("test", "valid"):
        for metric in METRICS:
            rows.append(metric_row(table, dataset, label, split, metric,
                                   [report["metrics"][split][metric] for report in reports]))
    return rows


def gap_lines(ours: Sequence[dict], references: Sequence[dict], metric: str = GAP_METRIC) -> list[str]:
    """Markdown table of ``ours - reference`` on ``metric`` (test), one line per our method."""
    our_values = {row["method"]: row["mean"] for row in ours if row["split"] == "test" and row["metric"] == metric}
    reference_values = {row["method"]: row["mean"] for row in references if row["metric"] == metric}
    header = "| ours \\ reference | " + " | ".join(reference_values) + " |"
    rule = "|" + "|".join(["---"] * (len(reference_values) + 1)) + "|"
    body = []
    for method, value in our_values.items():
        cells = []
        for reference in reference_values.values():
            gap = value - reference
            cells.append(f"{gap:+.4f} ({gap / reference:+.0%})" if reference and not math.isnan(gap) else "-")
        body.append(f"| {method} ({format_value(value)}) | " + " | ".join(cells) + " |")
    return [header, rule, *body]


def readme_grid(ours: Sequence[dict], references: Sequence[dict]) -> str:
    """The test grid: our rows, then the paper / peer rows (the page's first grid and the README block)."""
    return markdown_grid([*ours, *references], METRICS, split="test")


def render_markdown(ours: Sequence[dict], references: Sequence[dict], *, title: str, notes: Sequence[str]) -> str:
    """The page: test grid (ours + references), validation grid (ours), gap to each reference.

    Without reference rows the test heading names ours only and the gap section is left out.
    """
    if not references:
        return "\n".join([
            f"# {title}", "", *notes, "",
            "## Test (ours: mean ± std over seeds)", "",
            markdown_grid(ours, METRICS, split="test"), "",
            "## Validation (model selection; ours only)", "",
            markdown_grid(ours, METRICS, split="valid"), "",
        ])
    return "\n".join([
        f"# {title}", "", *notes, "",
        "## Test (ours: mean ± std over seeds; paper/peer rows as published)", "",
        readme_grid(ours, references), "",
        "## Validation (model selection; ours only)", "",
        markdown_grid(ours, METRICS, split="valid"), "",
        f"## Gap to each reference ({GAP_METRIC}, test)", "",
        *gap_lines(ours, references), "",
    ])


def plot_ndcg(rows: Sequence[dict], path, metric: str = GAP_METRIC, *,
              title: str = "Amazon Beauty next-item retrieval") -> None:
    """Horizontal bars of test ``metric`` for every row (ours with ± std), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmq import artifacts

    selected = [row for row in rows if row["split"] == "test" and row["metric"] == metric]
    colours = {"ours": "tab:blue", "paper": "tab:gray", "peer": "tab:orange"}
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(selected) + 1.2))
    positions = range(len(selected))[::-1]
    errors = [0.0 if math.isnan(row["std"]) else row["std"] for row in selected]
    axis.barh(list(positions), [row["mean"] for row in selected], xerr=errors,
              color=[colours.get(row["source"], "tab:blue") for row in selected])
    axis.set_yticks(list(positions), [f"{row['method']} ({row['source']})" for row in selected], fontsize=8)
    axis.set_xlabel(f"test {metric}")
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    with artifacts.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def write_outputs(table: str, ours: Sequence[dict], references: Sequence[dict], markdown: str,
                  output_dir: Path | None, *, plot_title: str) -> tuple[Path, Path]:
    """Write ``<table>.{csv,md,png}`` (ours + references), print the page; returns (csv, md) paths.

    Written to ``paper_tables/`` (the default), the test grid also goes to the README block ``<table>``.
    """
    from mmq.tables import tables_dir

    output = output_dir or tables_dir()
    csv_path, markdown_path = write_table(table, [*ours, *references], markdown, output)
    plot_ndcg([*ours, *references], output / f"{table}.png", title=plot_title)
    if is_default_output(output_dir):
        write_readme_block(table, readme_grid(ours, references))
    print(markdown)
    print(f"gap metric {GAP_METRIC}; wrote {markdown_path}, {csv_path}")
    return csv_path, markdown_path
