"""Chapter-2 table: query -> product retrieval on the generated Myntra benchmark (BM25, frozen MiniLM, two-tower).

    python scripts/table_ch2_two_tower.py [--seeds 0 1 2] [--no-train] [--force]

Runs any missing (config, seed) first (BM25 and frozen MiniLM are deterministic: seed 0 only), unless
``--no-train``. Writes paper_tables/ch2_two_tower.{md,csv,png} and the README block ``ch2_two_tower``.
"""

from __future__ import annotations

import baselines  # noqa: F401  (registers the query_search kind)
from mmq.cli import setup

from baselines.two_tower.table import bar_plot, grid, per_query_matrix, relative_claim, rows_from_metrics
from mmq import registry
from mmq.tables import (collect, is_default_output, missing_note, parse_arguments, tables_dir, write_readme_block,
                        write_table)

TABLE = "ch2_two_tower"
METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "precision@10")
BM25, FROZEN = "BM25 (bm25s)", "Frozen MiniLM (all-MiniLM-L6-v2)"
IN_BATCH, HARD = "Two-tower, in-batch negatives", "Two-tower, in-batch + mined hard negatives"
TRIPLET = "Two-tower, triplet loss + mined hard negatives"
ROWS = ((BM25, "experiments/ch2/myntra_bm25.yaml"), (FROZEN, "experiments/ch2/myntra_frozen_minilm.yaml"),
        (IN_BATCH, "experiments/ch2/myntra_two_tower_inbatch.yaml"), (HARD, "experiments/ch2/myntra_two_tower.yaml"),
        (TRIPLET, "experiments/ch2/myntra_two_tower_triplet.yaml"))
DETERMINISTIC = (BM25, FROZEN)
CLAIMS = ((HARD, FROZEN, 0.10), (HARD, BM25, 0.0), (HARD, IN_BATCH, 0.0), (IN_BATCH, FROZEN, 0.0), (HARD, TRIPLET, 0.0))


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(__doc__, argv)
    setup()
    deterministic = [(label, config) for label, config in ROWS if label in DETERMINISTIC]
    trained = [(label, config) for label, config in ROWS if label not in DETERMINISTIC]
    reports, missing = collect(deterministic, [0], no_train=arguments.no_train, force=arguments.force)
    more, missing_trained = collect(trained, arguments.seeds, no_train=arguments.no_train, force=arguments.force)
    reports.update(more)
    missing += missing_trained
    rows = []
    for label, _ in ROWS:
        if label in reports:
            rows += rows_from_metrics(TABLE, label, reports[label], lambda report, split: report["metrics"][split],
                                      METRICS)
    seeds_of = {label: ([0] if label in DETERMINISTIC else [report["seed"] for report in reports.get(label, [])])
                for label, _ in ROWS}
    configs = dict(ROWS)
    matrices = {label: per_query_matrix(configs[label], seeds_of[label], "test_ndcg_at_10") if seeds_of[label] else None
                for label, _ in ROWS}
    claims = [relative_claim(a, matrices[a], b, matrices[b], metric="ndcg@10", relative=relative)
              for a, b, relative in CLAIMS]
    summary = _benchmark_note(reports)
    hard = registry.load_experiment(configs[HARD])[1]
    command = "python scripts/table_ch2_two_tower.py"
    markdown = "\n\n".join([
        "# Chapter 2: two-tower retrieval on the generated Myntra query benchmark",
        summary,
        (f"Two-tower (`baselines/two_tower/search.py`): all-MiniLM-L6-v2 encoder shared by both towers, frozen "
         f"(`trainable_layers: {hard.trainable_layers}`: the CPU budget; its outputs are cached) with a residual MLP "
         f"head per tower (width {hard.head_hidden}, identity at initialisation, so step 0 is the frozen row), "
         f"normalised; in-batch softmax (scale {hard.scale:g}) with in-batch candidates relevant to another query "
         f"of the batch masked (grade >= {hard.false_negative_grade}); batch {hard.batch_size}, "
         f"{hard.units} units x {hard.steps_per_unit} steps, unit chosen on validation NDCG@10. Hard negatives: "
         f"after each unit the model's FAISS top {hard.hard_negative_pool} of every training query minus exact and "
         "substitute products; one per query per step from unit 2 on. Products: exact FAISS inner-product search "
         "(chapter-1 index code). BM25 and frozen MiniLM are deterministic (one run). Triplet row: "
         f"sentence-transformers' TripletLoss (cosine distance, margin {hard.triplet_margin:g}) on (query, exact "
         "product, negative), the negative random non-relevant in unit 1, mined from unit 2 on."),
        ("Where this falls short of the issue's goals (see the claims): the gain over frozen MiniLM is about +12% but "
         "its interval does not exclude 10%, and mined hard negatives do not beat in-batch negatives beyond the "
         "interval. Suspected cause: only the heads train (the encoder is frozen, so a head cannot learn to ignore "
         "the held-out template words such as \"show me\" or \"looking for\"), and after one or two hundred steps "
         "the heads fit the training templates (validation falls); hard negatives mostly sharpen that fit. "
         "Fine-tuning the encoder's top layers (`trainable_layers`) is the expected remedy, not affordable on 2 "
         "cores (3-12 s a step)."),
        *claims, *missing_note(missing),
        f"Generated by `{command}`; bar chart: `{TABLE}.png`.",
        "## Test (mean ± std over seeds)", grid(rows, METRICS, "test"),
        "## Validation", grid(rows, METRICS, "valid"),
    ])
    output = arguments.output_dir or tables_dir()
    csv_path, markdown_path = write_table(TABLE, rows, markdown, output)
    bar_plot(rows, ("ndcg@10", "recall@10", "recall@100", "mrr@10"), output / f"{TABLE}.png",
             "Myntra generated queries, test (held-out templates and synonyms)")
    if is_default_output(arguments.output_dir):
        write_readme_block(TABLE, "\n\n".join([grid(rows, ("ndcg@10", "recall@10", "recall@100"), "test"), *claims]))
    print(markdown)
    print(f"\nwrote {markdown_path}, {csv_path}, {output / (TABLE + '.png')}")
    return 0


def _benchmark_note(reports: dict) -> str:
    first = next(iter(reports.values()))[0]["metrics"]["benchmark"]
    test, valid, train = first["test"], first["valid"], first["train"]
    return (f"Benchmark (`baselines/two_tower/queries.py`, seed 0, sha256 {first['sha256'][:12]}): "
            f"{first['num_items']:,} Myntra products; queries name an article type plus 0-4 of gender, colour, usage, "
            f"season, brand of a sampled product, rendered by templates with synonyms. Train {train['queries']:,} "
            f"queries ({train['combinations']:,} attribute combinations), valid {valid['queries']}, test "
            f"{test['queries']}; splits share no combination, and valid/test use only held-out templates and "
            f"synonyms. Grades: 3 exact (every named attribute matches; Unisex matches men/women), 2 substitute "
            f"(article type + gender), 1 related (same sub-category), 0 otherwise. Test queries have a median of "
            f"{test['exact_median']} exact products (90th percentile {test['exact_p90']}). NDCG@10 uses gains "
            f"2^grade - 1; recall@k is capped recall of exact products (hits / min(k, #exact)); precision@10 and "
            f"MRR count exact products only.")


if __name__ == "__main__":
    raise SystemExit(main())
