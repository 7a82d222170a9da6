"""What every table script shares: its options, collecting runs through the registry, writing
long-format CSV + Markdown atomically, the README result blocks, and the paired interval of two rows
from their runs' per-event results (:func:`paired_interval`).

CSV columns (one row per number): ``table,dataset,method,split,metric,mean,std,n_seeds,source``
with ``source`` in {ours, paper, peer}.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from mmq import artifacts, registry
from mmq.metrics.per_event import load_per_event
from mmq.metrics.classification import auc, gauc
from mmq.metrics.intervals import (Interval, ndcg_at_k_per_event, paired_bootstrap, paired_bootstrap_auc,
                                   paired_bootstrap_gauc, recall_at_k_per_event)
from mmq.runs import REPOSITORY_ROOT

CSV_COLUMNS = ("table", "dataset", "method", "split", "metric", "mean", "std", "n_seeds", "source")
SOURCES = ("ours", "paper", "peer")


def tables_dir() -> Path:
    """``<repo>/paper_tables``."""
    return REPOSITORY_ROOT / "paper_tables"


def metric_row(table: str, dataset: str, method: str, split: str, metric: str, values: Sequence[float],
               source: str = "ours") -> dict:
    """One long-format row aggregating ``values`` over seeds (std is NaN for a single seed)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    values = [float(value) for value in values]
    if not values:
        raise ValueError(f"{table}/{method}/{metric}: no values to aggregate")
    return {
        "table": table, "dataset": dataset, "method": method, "split": split, "metric": metric,
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
        "n_seeds": len(values), "source": source,
    }


def rows_to_csv(rows: Iterable[dict]) -> str:
    """Long-format CSV text (numbers with 6 significant digits)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: (f"{row[key]:.6g}" if isinstance(row[key], float) else row[key]) for key in CSV_COLUMNS})
    return buffer.getvalue()


def format_value(mean: float, std: float = float("nan"), digits: int = 4) -> str:
    """``0.0312 ± 0.0011`` (or just the mean when std is NaN)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if abs(mean) >= 100:  # throughputs, sizes: integers with thousands separators
        text, spread = f"{mean:,.0f}", f"{std:,.0f}" if std is not None and not math.isnan(std) else ""
    else:
        text = f"{mean:.{digits}f}"
        spread = f"{std:.{digits}f}" if std is not None and not math.isnan(std) else ""
    return f"{text} ± {spread}" if spread else text


def markdown_grid(rows: Sequence[dict], metrics: Sequence[str], *, split: str, digits: int = 4,
                  label_columns: Sequence[str] = ("method", "source")) -> str:
    """Markdown table: one line per (labels) in first-seen order, one column per metric of ``split``."""
    lines: dict[tuple, dict[str, str]] = {}
    for row in rows:
        if row["split"] != split or row["metric"] not in metrics:
            continue
        key = tuple(row[column] for column in label_columns)
        lines.setdefault(key, {})[row["metric"]] = format_value(row["mean"], row["std"], digits)
    header = "| " + " | ".join([*label_columns, *metrics]) + " |"
    rule = "|" + "|".join(["---"] * (len(label_columns) + len(metrics))) + "|"
    body = ["| " + " | ".join([*map(str, key), *(cells.get(metric, "-") for metric in metrics)]) + " |"
            for key, cells in lines.items()]
    return "\n".join([header, rule, *body])


def write_table(name: str, rows: Sequence[dict], markdown: str, directory: Path | None = None) -> tuple[Path, Path]:
    """Write ``<name>.csv`` and ``<name>.md`` atomically; returns both paths."""
    directory = tables_dir() if directory is None else Path(directory)
    csv_path, markdown_path = directory / f"{name}.csv", directory / f"{name}.md"
    artifacts.write_text(csv_path, rows_to_csv(rows))
    artifacts.write_text(markdown_path, markdown.rstrip() + "\n")
    return csv_path, markdown_path


def readme_path() -> Path:
    """``<repo>/README.md``."""
    return REPOSITORY_ROOT / "README.md"


def readme_markers(name: str) -> tuple[str, str]:
    """The lines that open and close the README block of table ``name``."""
    return f"<!-- table:{name} -->", f"<!-- /table:{name} -->"


def replace_block(text: str, name: str, content: str) -> str:
    """``text`` with the lines between the markers of block ``name`` replaced by ``content``.

    Each marker must occur exactly once, the opening one first; anything else is a ValueError.
    """
    start, end = readme_markers(name)
    for marker in (start, end):
        count = text.count(marker)
        if count != 1:
            raise ValueError(f"README block {name!r}: marker {marker!r} found {count} times, expected exactly once "
                             f"(add the pair {start} ... {end} where the table belongs)")
    head, rest = text.split(start)
    if end not in rest:
        raise ValueError(f"README block {name!r}: {end!r} comes before {start!r}")
    _, tail = rest.split(end)
    return f"{head}{start}\n{content.strip()}\n{end}{tail}"


def write_readme_block(name: str, content: str, readme: Path | None = None) -> bool:
    """Put ``content`` between ``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` in the README (atomically).

    Returns whether the file changed: unchanged content leaves the file untouched.
    """
    path = readme_path() if readme is None else Path(readme)
    text = path.read_text(encoding="utf-8")
    updated = replace_block(text, name, content)
    if updated == text:
        return False
    artifacts.write_text(path, updated)
    return True


def is_default_output(output_dir: Path | None) -> bool:
    """Whether a script writes to ``paper_tables/`` (only then does it update the README blocks)."""
    return output_dir is None or Path(output_dir).resolve() == tables_dir().resolve()


def paper_reference_rows(table: str, path: Path | None = None) -> list[dict]:
    """Rows of ``table`` from ``paper_tables/paper_reference/mmq_paper.csv`` (sources ``paper``/``peer``)."""
    path = tables_dir() / "paper_reference" / "mmq_paper.csv" if path is None else Path(path)
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["table"] == table]
    for row in rows:
        row["mean"] = float(row["mean"])
        row["std"] = float(row["std"]) if row["std"] else float("nan")
        row["n_seeds"] = int(row["n_seeds"]) if row["n_seeds"] else ""
    return rows


def parse_arguments(description: str, argv: list[str] | None = None,
                    extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The table scripts' options: ``--seeds``, ``--no-train``, ``--force``, ``--output-dir`` (and whatever
    ``extra`` adds to the parser)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-train", action="store_true", help="never train; leave out missing runs")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=None)
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def collect(rows: Sequence[tuple[str, str]], seeds: Sequence[int], *, no_train: bool,
            force: bool) -> tuple[dict[str, list[dict]], list[str]]:
    """Reports per row label (running missing seeds through the registry unless ``no_train``) and the
    missing runs; ``rows`` are ``(label, experiment YAML)`` pairs, each YAML's ``kind`` picks its runner."""
    reports, missing = {}, []
    for label, config in rows:
        found = []
        for seed in seeds:
            if no_train and not registry.is_done(config, seed):
                missing.append(f"{config} seed {seed}")
                continue
            found.append(registry.run_or_load(config, seed, force=force))  # a finished run is only read
        if found:
            reports[label] = found
    return reports, missing


def missing_note(missing: Sequence[str]) -> list[str]:
    """The note naming the runs left out (none when nothing is missing)."""
    return ["Missing runs (left out): " + "; ".join(missing) + "."] if missing else []


def output_name(base: str, dataset: str, default_dataset: str, name: str | None = None) -> str:
    """The file name of a table: ``base`` for its default dataset, ``<base>_<dataset>`` for any other
    (so a script pointed at another dataset never overwrites the committed table), or ``name`` if given."""
    if name:
        return name
    return base if dataset == default_dataset else f"{base}_{dataset}"


# --- paired intervals from per-event results ---------------------------------------------------

RANK_METRICS = {"ndcg": ndcg_at_k_per_event, "recall": recall_at_k_per_event}  # <name>@<k> from ranks
SCORE_METRICS = {"auc": paired_bootstrap_auc, "gauc": paired_bootstrap_gauc}  # from scores, resampling users
REPORT_TOLERANCE = 1e-4  # per-event results must reproduce the report's value (float32 scores round a little)


def per_event_runs(reports: Sequence[dict], directories: Sequence[Path]) -> list[dict[str, np.ndarray]] | None:
    """The per-event arrays of every run of a row (one report and run folder per seed); None when any lacks them."""
    if len(reports) != len(directories):
        raise ValueError(f"{len(reports)} reports but {len(directories)} run folders")
    if not reports or any("per_event" not in report["metrics"] for report in reports):
        return None
    runs = [load_per_event(directory, report["metrics"]) for report, directory in zip(reports, directories)]
    return None if any(run is None for run in runs) else runs


def _same_events(runs: Sequence[dict], directories: Sequence[Path], names: Sequence[str]) -> None:
    """Every run scored the same events in the same order (equal ``names`` arrays), else a ValueError."""
    first = runs[0]
    for run, directory in zip(runs, directories):
        for name in names:
            if name not in run:
                raise ValueError(f"{directory}: per-event results lack {name!r} (have {sorted(run)})")
            if not np.array_equal(run[name], first[name]):
                raise ValueError(f"{directory} and {directories[0]} did not evaluate the same test events "
                                 f"({name} differs): the rows cannot be compared event by event")


def _check_report(value: float, report: dict, directory: Path, split: str, metric: str) -> None:
    """The per-event results reproduce the value the run reported (else they are not that run's)."""
    reported = report["metrics"][split][metric]
    if abs(value - reported) > REPORT_TOLERANCE:
        raise ValueError(f"{directory}: per-event {split} {metric} {value:.6f} differs from the reported "
                         f"{reported:.6f}")


def paired_interval(reports_a: Sequence[dict], directories_a: Sequence[Path], reports_b: Sequence[dict],
                    directories_b: Sequence[Path], metric: str, *, split: str = "test", num_resamples: int = 2000,
                    seed: int = 0) -> Interval | None:
    """Paired interval of ``metric`` (``ndcg@K``, ``recall@K``, ``auc``, ``gauc``, ``auc_<bucket>``: AUC on the
    events whose ``<split>_in_<bucket>`` mask is set, e.g. ``auc_tail``, ``auc_cold``) of row a minus row b over
    the test events both rows scored, from every seed's per-event results.

    None when any run lacks per-event results (or the bucket's mask) or the metric has no per-event form.
    Rows that did not evaluate the same events in the same order, or per-event results that do not
    reproduce a run's reported value, are errors.
    """
    name, _, cutoff = metric.partition("@")
    bucket = metric[len("auc_"):] if metric.startswith("auc_") else None  # AUC on an item bucket (auc_tail, ...)
    if not ((name in RANK_METRICS and cutoff.isdigit()) or metric in SCORE_METRICS or bucket):
        return None
    runs_a, runs_b = per_event_runs(reports_a, directories_a), per_event_runs(reports_b, directories_b)
    if runs_a is None or runs_b is None:
        return None
    runs, reports, directories = [*runs_a, *runs_b], [*reports_a, *reports_b], [*directories_a, *directories_b]
    if metric in SCORE_METRICS or bucket:
        mask_name = f"{split}_in_{bucket}"
        if bucket and any(mask_name not in run for run in runs):
            return None  # runs made before the bucket masks were recorded
        _same_events(runs, directories, [f"{split}_user", f"{split}_item", f"{split}_label",
                                         *([mask_name] if bucket else [])])
        rows = runs[0][mask_name].astype(bool) if bucket else np.ones(len(runs[0][f"{split}_label"]), dtype=bool)
        labels, users = runs[0][f"{split}_label"][rows], runs[0][f"{split}_user"][rows]
        for run, report, directory in zip(runs, reports, directories):
            scores = run[f"{split}_score"][rows]
            value = gauc(users, labels, scores)["gauc"] if metric == "gauc" else auc(labels, scores)
            _check_report(value, report, directory, split, metric)
        scores_a, scores_b = ([run[f"{split}_score"][rows] for run in row] for row in (runs_a, runs_b))
        method = SCORE_METRICS["auc" if bucket else metric]
        return method(np.stack(scores_a), np.stack(scores_b), labels, users, num_resamples=num_resamples, seed=seed)
    _same_events(runs, directories, [f"{split}_user"])
    k, values = int(cutoff), []
    for run, report, directory in zip(runs, reports, directories):
        if k > int(run["k"]):
            raise ValueError(f"{directory}: {metric} needs the top {k}, the per-event ranks cover the top {run['k']}")
        values.append(RANK_METRICS[name](run[f"{split}_rank"], k))
        _check_report(float(values[-1].mean()), report, directory, split, metric)
    users = runs[0][f"{split}_user"]
    clusters = users if len(np.unique(users)) < len(users) else None  # several events per user: resample users
    return paired_bootstrap(np.stack(values[:len(runs_a)]), np.stack(values[len(runs_a):]),
                            num_resamples=num_resamples, seed=seed, clusters=clusters)
