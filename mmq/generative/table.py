"""Beauty generative-retrieval table: our runs (mean ± std over seeds) beside the paper and peer rows."""

from __future__ import annotations

import math
from typing import Sequence

from mmq.tables import format_value, markdown_grid, metric_row

METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
GAP_METRIC = "ndcg@10"


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


def render_markdown(ours: Sequence[dict], references: Sequence[dict], *, title: str, notes: Sequence[str]) -> str:
    """The page: test grid (ours + references), validation grid (ours), gap to each reference."""
    return "\n".join([
        f"# {title}", "", *notes, "",
        "## Test (ours: mean ± std over seeds; paper/peer rows as published)", "",
        markdown_grid([*ours, *references], METRICS, split="test"), "",
        "## Validation (model selection; ours only)", "",
        markdown_grid(ours, METRICS, split="valid"), "",
        f"## Gap to each reference ({GAP_METRIC}, test)", "",
        *gap_lines(ours, references), "",
    ])


def plot_ndcg(rows: Sequence[dict], path, metric: str = GAP_METRIC) -> None:
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
    axis.set_title("Amazon Beauty next-item retrieval", fontsize=9)
    figure.tight_layout()
    with artifacts.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
