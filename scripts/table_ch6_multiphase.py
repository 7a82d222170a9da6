"""Chapter-6 table: multiphase retrieval (semantic-ID candidates -> exact rerank) vs Flat / IVF / HNSW.

    python scripts/table_ch6_multiphase.py     # Beauty, Myntra, 1M and the Beauty hybrid; ~15 min + ~20 min when missing

Runs whatever is missing (a finished run folder is reused unless --force; the Beauty SID runs are rebuilt by the
registry when their git-ignored files are absent; the 1M task reuses chapter 3's cached indexes; the hybrid needs the
weights of its generative run, trained first when absent, ~10-20 min), then writes
paper_tables/ch6_multiphase.{md,csv,png} and, when README.md has the ``<!-- table:ch6_multiphase -->`` markers,
that README block.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from baselines.multiphase.table import (TABLE, hybrid_claims, hybrid_markdown, plot_curves, readme_grid,
                                        render_markdown, table_rows)
from mmq import registry
from mmq.cli import setup
from mmq.tables import is_default_output, readme_markers, readme_path, tables_dir, write_readme_block, write_table

HYBRID = "experiments/ch6/beauty_hybrid.yaml"
CONFIGS = ("experiments/ch6/beauty_multiphase.yaml", "experiments/ch6/myntra_multiphase.yaml",
           "experiments/ch6/scale_multiphase.yaml")


def main(argv: list[str] | None = None) -> int:
    """Run missing runs (unless --no-train) and write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument("--no-train", action="store_true", help="only read finished runs; leave out missing ones")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: paper_tables/")
    arguments = parser.parse_args(argv)
    setup()
    reports, missing = [], []
    for config in arguments.configs:
        if arguments.no_train and not registry.is_done(config, arguments.seed):
            missing.append(config)
            continue
        reports.append(registry.run_or_load(config, arguments.seed, force=arguments.force))
    if not reports:
        print(f"no finished runs among {arguments.configs}")
        return 1
    hybrid = None
    if arguments.no_train and not registry.is_done(HYBRID, arguments.seed):
        missing.append(HYBRID)
    else:
        hybrid = registry.run_or_load(HYBRID, arguments.seed, force=arguments.force)
    markdown = render_markdown(reports, "python scripts/table_ch6_multiphase.py")
    if hybrid is not None:
        markdown += "\n" + "\n".join(hybrid_markdown(hybrid))
    if missing:
        markdown += "\nMissing runs (left out): " + "; ".join(missing) + ".\n"
    output = arguments.output_dir or tables_dir()
    csv_path, markdown_path = write_table(TABLE, table_rows(reports), markdown, output)
    plot_curves(reports, output / f"{TABLE}.png")
    if is_default_output(arguments.output_dir):
        if readme_markers(TABLE)[0] in readme_path().read_text(encoding="utf-8"):
            write_readme_block(TABLE, "\n\n".join([readme_grid(reports), *(hybrid_claims(hybrid) if hybrid else [])]))
        else:
            print(f"README.md has no {readme_markers(TABLE)[0]} block; add the marker pair to publish the summary")
    print(markdown)
    print(f"\nwrote {markdown_path}, {csv_path}, {output / (TABLE + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
