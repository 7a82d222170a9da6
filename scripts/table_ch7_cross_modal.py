"""Chapter-7 table: cross-modal retrieval (Myntra, MovieLens posters) + multimodal next-item retrieval.

    python scripts/run.py experiments/ch7/myntra_image_tower.yaml
    python scripts/table_ch7_cross_modal.py

Reads the image tower run's report.json (train it first with the command above), runs the MovieLens
multimodal-index evaluation if its run folder is not done (--force reruns it), then writes
paper_tables/ch7_cross_modal.{md,csv}, query -> top-5 image grids (PNG) next to them and the README
block ``ch7_cross_modal`` (the cross-modal grid of both galleries).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import baselines  # noqa: F401  (registers the clip_retrieval kind)
from baselines.clip.table import TABLE, next_item_rows, readme_grid, render_markdown, tower_rows
from mmq import registry
from mmq.cli import setup
from mmq.data import load_dataset
from mmq.image_tower.experiment import ImageTowerExperimentConfig
from mmq.image_tower.figures import query_grid
from mmq.tables import is_default_output, output_name, tables_dir, write_readme_block, write_table


def main(argv: list[str] | None = None) -> int:
    """Collect the reports, run the missing retrieval evaluation and write the table + grids."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower-config", default="experiments/ch7/myntra_image_tower.yaml")
    parser.add_argument("--retrieval-config", default="experiments/ch7/movielens_clip_retrieval.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--force", action="store_true", help="rerun the retrieval evaluation")
    parser.add_argument("--no-figures", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: paper_tables/")
    parser.add_argument("--name", default=None, help=f"output file name (default: {TABLE}, or {TABLE}_<dataset> "
                        "when the retrieval config names another dataset than movielens)")
    arguments = parser.parse_args(argv)
    setup()
    _, tower_config = registry.load_experiment(arguments.tower_config)
    name = output_name(TABLE, registry.load_experiment(arguments.retrieval_config)[1].dataset, "movielens",
                       arguments.name)
    try:  # the image tower (~23 min) is trained by `scripts/run.py`, never implicitly by the table
        tower_reports = [registry.run_or_load(arguments.tower_config, seed, no_train=True) for seed in arguments.seeds]
    except registry.MissingRunsError as error:
        raise SystemExit(f"{error}\nrun: python scripts/run.py {arguments.tower_config} --seeds "
                         f"{' '.join(map(str, arguments.seeds))}") from None
    retrieval_reports = [registry.run_or_load(arguments.retrieval_config, seed, force=arguments.force)
                         for seed in arguments.seeds]
    output = arguments.output_dir or tables_dir()
    tower_directory = registry.run_directory(arguments.tower_config, arguments.seeds[0])
    figures = [] if arguments.no_figures else _figures(tower_config, tower_directory, arguments.seeds[0], output, name)
    rows = tower_rows(tower_reports) + next_item_rows(retrieval_reports)
    commands = [f"python scripts/run.py {arguments.tower_config}",
                "python scripts/table_ch7_cross_modal.py"]
    markdown = render_markdown(tower_reports, retrieval_reports, rows, commands, figures)
    csv_path, markdown_path = write_table(name, rows, markdown, output)
    if is_default_output(arguments.output_dir) and name == TABLE:
        write_readme_block(TABLE, readme_grid(rows))
    print(markdown)
    print(f"\nwrote {markdown_path}, {csv_path}" + "".join(f", {output / figure}" for figure in figures))
    return 0


def _figures(config: ImageTowerExperimentConfig, tower_directory: Path, seed: int, output: Path,
             table: str) -> list[str]:
    """Query grids for 6 held-out items per stage (skipped when the weights are not on this machine)."""
    names = []
    for stage_name in config.stages:
        stage = getattr(config, stage_name)
        stage_dir = tower_directory / stage_name
        name = f"{table}_{stage_name}_queries.png"
        if not (stage_dir / "best.pt").exists() or not (stage_dir / "test_items.npy").exists():
            if (output / name).exists():  # a clone without weights keeps the committed figure
                names.append(name)
            print(f"no weights in {stage_dir}: its query grid is not redrawn")
            continue
        test_items = np.load(stage_dir / "test_items.npy")
        queries = np.random.default_rng(seed).choice(test_items, 6, replace=False)
        query_grid(load_dataset(stage.dataset, kcore=stage.kcore), stage_dir / "best.pt", stage.text_config, test_items,
                   queries, output / name)
        names.append(name)
    return names


if __name__ == "__main__":
    raise SystemExit(main())
