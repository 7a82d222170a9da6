"""What every table script shares: its options, collecting runs through the registry, writing
long-format CSV + Markdown atomically, and the README result blocks.

CSV columns (one row per number): ``table,dataset,method,split,metric,mean,std,n_seeds,source``
with ``source`` in {ours, paper, peer}.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from mmq import artifacts, registry
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


def parse_arguments(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The table scripts' options: ``--seeds``, ``--no-train``, ``--force``, ``--output-dir``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-train", action="store_true", help="never train; leave out missing runs")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=None)
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
