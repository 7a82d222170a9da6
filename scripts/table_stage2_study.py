"""The stage-2 study on Beauty: which way of fine-tuning MMQ's tokenizer with the generator helps, if any.

    python scripts/table_stage2_study.py [--seeds 0] [--no-train] [--force]

Rows (experiments/generative/beauty_stage2/): the stage 2 of the committed runs, its control (the same 12 extra
epochs on frozen stage-1 SIDs) and variants (a)-(e) of docs/method.md §4.6, all starting from the matched MMQ row
(experiments/generative/beauty_matched/mmq.yaml). The variant is chosen on validation NDCG@10 (seed 0); test is only
reported. Each claim line gives the paired interval against stage 1 and against the control, under both protocols.
Writes paper_tables/beauty_stage2_study.{md,csv,png} and beauty_stage2_study_churn.png (per-epoch SID churn and
training loss of every variant). Runs any missing (config, seed) first (~10-25 min each) unless ``--no-train``.
"""

from __future__ import annotations

import baselines  # noqa: F401  (registers the baseline kinds)
from mmq.cli import setup

from mmq import artifacts
from mmq.claims import ClaimIntervals
from mmq.generative.table import (PROTOCOLS, mean_train_seconds, protocol_claim_lines, protocol_page, protocol_rows,
                                  write_outputs)
from mmq.tables import collect, missing_note, parse_arguments, tables_dir

TABLE = "beauty_stage2_study"
FOLDER = "experiments/generative/beauty_stage2"
STAGE1 = "MMQ stage 1 (matched row)"
CONTROL = "Stage 1 + 12 epochs on frozen SIDs (control)"
VARIANTS = (
    ("Stage 2 as committed (L_gen + L_recon + L_aux)", "ft"),
    ("(a) fine-tuned tokenizer frozen, generator retrained", "a_retrain"),
    ("(b) + stage-1 anchors and code-stability term", "b_anchored"),
    ("(c) + stable de-dup digits", "c_stable_dedup"),
    ("(d) frozen codebooks, lr / 10", "d_frozen_codebooks"),
    ("(e) + contrastive next-item loss on code vectors", "e_contrastive"),
)
ROWS = ((STAGE1, "experiments/generative/beauty_matched/mmq.yaml"), (CONTROL, f"{FOLDER}/control.yaml"),
        *((label, f"{FOLDER}/{name}.yaml") for label, name in VARIANTS))
CLAIMS = tuple(claim for label, _ in VARIANTS
               for claim in ((label, (STAGE1,), "stage 1 alone"), (label, (CONTROL,), "the same-epochs control")))


def churn_figure(reports: dict[str, list[dict]], path) -> None:
    """Per epoch: the fraction of items whose SID moved (stage-2 rows) and the training loss, seed 0 of each row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (churn, loss) = plt.subplots(1, 2, figsize=(11, 4))
    for label, runs in reports.items():
        history = runs[0]["metrics"]["training"]["history"]
        epochs = [entry["epoch"] for entry in history]
        loss.plot(epochs, [entry["loss"] for entry in history], label=label, linewidth=1)
        moved = [(entry["epoch"], entry["changed_item_fraction"]) for entry in history if "changed_item_fraction" in entry]
        if moved:
            churn.plot(*zip(*moved), marker="o", label=label, linewidth=1)
    churn.set(xlabel="epoch", ylabel="items whose SID differs from stage 1", title="SID churn (validation epochs)")
    loss.set(xlabel="epoch", ylabel="training loss (L_gen + weighted terms)", title="training loss")
    loss.legend(fontsize=6)
    figure.tight_layout()
    with artifacts.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Collect the runs, pick the variant on validation, write the table, claims and the churn figure."""
    # the study is seed 0; the chosen variant then runs 3 seeds (python scripts/run.py ... --seeds 1 2)
    arguments = parse_arguments(__doc__, argv, extra=lambda parser: parser.set_defaults(seeds=[0]))
    setup()
    reports, missing = collect(ROWS, arguments.seeds, no_train=arguments.no_train, force=arguments.force)
    ours = protocol_rows(TABLE, "beauty", reports)
    intervals = {split: ClaimIntervals(ROWS, reports, split=split) for split, _ in PROTOCOLS}
    valid = {row["method"]: row["mean"] for row in ours if row["split"] == "valid" and row["metric"] == "ndcg@10"}
    variants = {label for label, _ in VARIANTS}
    chosen = max((method for method in valid if method.split(" [")[0] in variants), key=valid.get, default=None)
    notes = [
        "Amazon Beauty, matched text + collaborative MMQ SIDs (6 x 100 + de-dup digit), the causal generator of the "
        "matched table; every stage-2 row starts from the matched MMQ row's chosen generator (same seed) and trains "
        "12 epochs (validation every 4, patience 2), tokenizer lr = 0.01 x the generator's unless stated; (a) trains a "
        "new generator 48 epochs on the SIDs the `ft` row's tokenizer re-derives. docs/method.md §4.6 describes each "
        "variant.",
        f"Chosen on validation NDCG@10 (history excluded): {chosen or 'none yet (no variant has finished runs)'}.",
        "Mean training time per run (s, 1 thread on the shared 2-core machine): "
        + ", ".join(f"{label} {value:,.0f}" for label, value in mean_train_seconds(reports).items()) + ".",
        *protocol_claim_lines(ours, CLAIMS, intervals),
        "Generated by `python scripts/table_stage2_study.py`; churn and loss per epoch: `beauty_stage2_study_churn.png`.",
        *missing_note(missing),
    ]
    markdown = protocol_page("Beauty: the stage-2 study", notes, ours,
                             ("Test, history excluded", "Test, no history exclusion",
                              "Validation, history excluded (selection)"))
    write_outputs(TABLE, ours, [], markdown, arguments.output_dir, plot_title="Beauty stage-2 study (history excluded)")
    if reports:
        churn_figure(reports, (arguments.output_dir or tables_dir()) / f"{TABLE}_churn.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
