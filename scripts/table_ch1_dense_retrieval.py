"""Chapter-1 table: dense content retrieval on Beauty with FAISS (exact vs approximate).

    python scripts/table_ch1_dense_retrieval.py --config experiments/ch1/beauty_dense_retrieval.yaml

Runs whatever seed is missing (a finished run folder is reused unless --force), then writes
paper_tables/ch1_dense_retrieval.{md,csv,png} from the runs' report.json files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts._common import setup  # noqa: E402

from baselines.faiss_ann.experiment import DenseRetrievalConfig, run_dense_retrieval  # noqa: E402
from baselines.faiss_ann.table import TABLE, plot_recall_vs_speed, render_markdown, table_rows  # noqa: E402
from mmq.config import load_config  # noqa: E402
from mmq.runs import experiment_name, start_run  # noqa: E402
from mmq.tables import tables_dir, write_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run missing seeds and write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="experiments/ch1/beauty_dense_retrieval.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: paper_tables/")
    arguments = parser.parse_args(argv)
    setup()
    config = load_config(DenseRetrievalConfig, arguments.config)
    name = experiment_name(arguments.config)
    reports = []
    for seed in arguments.seeds:
        run = start_run(name, seed, config, force=arguments.force)
        if not run.done:
            run.finish(run_dense_retrieval(config, seed))
        reports.append(run.load_report())
    rows = table_rows(reports)
    command = f"python scripts/table_ch1_dense_retrieval.py --config {arguments.config}"
    markdown = render_markdown(rows, reports, command)
    output = arguments.output_dir or tables_dir()
    csv_path, markdown_path = write_table(TABLE, rows, markdown, output)
    plot_recall_vs_speed(reports, output / f"{TABLE}.png")
    print(markdown)
    print(f"\nwrote {markdown_path}, {csv_path}, {output / (TABLE + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
