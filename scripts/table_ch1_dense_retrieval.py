"""Chapter-1 table: dense content retrieval on Beauty with FAISS (exact vs approximate).

    python scripts/table_ch1_dense_retrieval.py --config experiments/ch1/beauty_dense_retrieval.yaml

Runs whatever seed is missing (a finished run folder is reused unless --force), then writes
paper_tables/ch1_dense_retrieval.{md,csv,png} from the runs' report.json files, and the README block
``ch1_dense_retrieval``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmq.cli import setup

from baselines.faiss_ann.table import TABLE, plot_recall_vs_speed, readme_grid, render_markdown, table_rows
from mmq import registry
from mmq.tables import is_default_output, output_name, tables_dir, write_readme_block, write_table


def main(argv: list[str] | None = None) -> int:
    """Run missing seeds and write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/ch1/beauty_dense_retrieval.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: paper_tables/")
    parser.add_argument("--name", default=None, help=f"output file name (default: {TABLE}, or {TABLE}_<dataset> "
                        "for another dataset than beauty)")
    arguments = parser.parse_args(argv)
    setup()
    name = output_name(TABLE, registry.load_experiment(arguments.config)[1].dataset, "beauty", arguments.name)
    reports = [registry.run_or_load(arguments.config, seed, force=arguments.force) for seed in arguments.seeds]
    rows = table_rows(reports)
    command = f"python scripts/table_ch1_dense_retrieval.py --config {arguments.config}"
    markdown = render_markdown(rows, reports, command)
    output = arguments.output_dir or tables_dir()
    csv_path, markdown_path = write_table(name, rows, markdown, output)
    plot_recall_vs_speed(reports, output / f"{name}.png")
    if is_default_output(arguments.output_dir) and name == TABLE:
        write_readme_block(TABLE, readme_grid(rows, reports))
    print(markdown)
    print(f"\nwrote {markdown_path}, {csv_path}, {output / (name + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
