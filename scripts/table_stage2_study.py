"""The stage-2 study on Beauty: which way of fine-tuning MMQ's tokenizer with the generator helps, if any.

    python scripts/table_stage2_study.py [--seeds 0] [--no-train] [--force]

Three parts:

1. The study (seed 0, ``--seeds``): the stage 2 of the committed runs, its control (the same 12 extra epochs on
   frozen stage-1 SIDs) and variants (a)-(e) of docs/method.md §4.6, all starting from the matched MMQ row
   (experiments/generative/beauty_matched/mmq.yaml). The variant is chosen on validation NDCG@10 (history
   excluded); test is only reported.
2. The chosen variant at seeds 0-2 against stage 1 and the control at the same seeds.
3. The chosen variant applied to MA-RQ-VAE (``beauty_stage2/ma_rq_vae_<variant>.yaml``) against the matched
   MA-RQ-VAE row and its own control (``beauty_stage2/ma_rq_vae_control.yaml``), on the seeds that variant has.

Each claim line gives the paired interval under both protocols. Writes paper_tables/beauty_stage2_study.{md,csv,png}
and beauty_stage2_study_churn.png (per-epoch SID churn and training loss of every seed-0 row). Runs any missing
(config, seed) first (~5-25 min each) unless ``--no-train``.
"""

from __future__ import annotations

from pathlib import Path

import baselines  # noqa: F401  (registers the baseline kinds)
from mmq.cli import setup

from mmq import artifacts, registry
from mmq.claims import ClaimIntervals
from mmq.generative.table import (METRICS, PROTOCOLS, mean_train_seconds, protocol_claim_lines, protocol_page,
                                  protocol_rows, write_outputs)
from mmq.tables import collect, markdown_grid, missing_note, parse_arguments, tables_dir, write_readme_block

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
CONFIRM_SEEDS = (0, 1, 2)
ROOT = Path(__file__).resolve().parents[1]
RQ_VAE_STAGE1 = "MA-RQ-VAE stage 1 (matched row)"
RQ_VAE_CONTROL = "MA-RQ-VAE + 12 epochs on frozen SIDs (control)"
RQ_VAE_ROWS = ((RQ_VAE_STAGE1, "experiments/generative/beauty_matched/ma_rq_vae.yaml"),
               (RQ_VAE_CONTROL, f"{FOLDER}/ma_rq_vae_control.yaml"))
# RQ-VAE's stage-2 tokenizer (the one variant (a) on RQ-VAE freezes, beauty_stage2/ma_rq_vae_a_retrain.yaml)
RQ_VAE_STAGE2 = ((VARIANTS[0][0], "ft"),)


def churn_figure(reports: dict[str, list[dict]], path) -> None:
    """Per epoch, seed 0 of each row: the fraction of items whose SID moved (stage-2 rows) and the generator's
    loss L_gen (a stage-2 row's total adds its weighted tokenizer terms, so L_gen is what the rows share)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (churn, loss) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, (label, runs) in enumerate(reports.items()):
        colour = colours[number % len(colours)]  # one colour per row in both panels
        history = runs[0]["metrics"]["training"]["history"]
        epochs = [entry["epoch"] for entry in history]
        loss.plot(epochs, [entry.get("train_generation", entry["loss"]) for entry in history], label=label,
                  linewidth=1, color=colour)
        moved = [(entry["epoch"], entry["changed_item_fraction"]) for entry in history if "changed_item_fraction" in entry]
        if moved:
            churn.plot(*zip(*moved), marker="o", label=label, linewidth=1, color=colour)
    churn.set(xlabel="epoch", ylabel="items whose SID differs from stage 1", title="SID churn (validation epochs)")
    loss.set(xlabel="epoch", ylabel="training L_gen (nats)", title="generator loss")
    loss.legend(fontsize=6)
    figure.tight_layout()
    with artifacts.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def chosen_variant(ours: list[dict]) -> tuple[str, str] | None:
    """The ``(label, config name)`` of the variant with the best validation NDCG@10 (history excluded), or None."""
    valid = {row["method"].split(" [")[0]: row["mean"] for row in ours
             if row["split"] == "valid" and row["metric"] == "ndcg@10"}
    candidates = [(label, name) for label, name in VARIANTS if label in valid]
    return max(candidates, key=lambda pair: valid[pair[0]], default=None)


def rq_vae_comparison(label: str, name: str) -> tuple[tuple[tuple[str, str], ...], tuple]:
    """The MA-RQ-VAE rows (stage 1, control, the committed stage 2 when the chosen variant builds on it, the chosen
    variant: ``beauty_stage2/ma_rq_vae_<name>.yaml`` where written) and their claims against stage 1 and control."""
    rows = list(RQ_VAE_ROWS)
    for stage2_label, stage2_name in RQ_VAE_STAGE2:
        if name != stage2_name and (ROOT / FOLDER / f"ma_rq_vae_{stage2_name}.yaml").exists():
            rows.append((f"MA-RQ-VAE + {stage2_label}", f"{FOLDER}/ma_rq_vae_{stage2_name}.yaml"))
    if (ROOT / FOLDER / f"ma_rq_vae_{name}.yaml").exists():
        rows.append((f"MA-RQ-VAE + {label}", f"{FOLDER}/ma_rq_vae_{name}.yaml"))
    claims = tuple(claim for candidate, _ in rows[2:]
                   for claim in ((candidate, (RQ_VAE_STAGE1,), "MA-RQ-VAE stage 1 alone"),
                                 (candidate, (RQ_VAE_CONTROL,), "the MA-RQ-VAE same-epochs control")))
    return tuple(rows), claims


def seeds_label(seeds: tuple[int, ...]) -> str:
    """``seeds 0-2`` / ``seed 0``."""
    return f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"


def section(table: str, rows: tuple[tuple[str, str], ...], claims: tuple, seeds: tuple[int, ...], *, no_train: bool,
            force: bool) -> tuple[list[dict], list[str], list[str], dict[str, list[dict]]]:
    """One multi-seed comparison: its table rows, claim lines (both protocols), missing runs and reports."""
    reports, missing = collect(rows, seeds, no_train=no_train, force=force)
    ours = protocol_rows(table, "beauty", reports)
    intervals = {split: ClaimIntervals(rows, reports, split=split) for split, _ in PROTOCOLS}
    lines = protocol_claim_lines(ours, claims, intervals)
    relabel(ours, seeds)
    return ours, lines, missing, reports


def relabel(rows: list[dict], seeds: tuple[int, ...]) -> None:
    """Name the seeds in each row's method (``..., seeds 0-2 [cpu]``): the page's sections share methods, and the CSV
    and the bar chart tell them apart by it."""
    for row in rows:
        method, _, profile = row["method"].partition(" [")
        row["method"] = f"{method}, {seeds_label(seeds)} [{profile}"


def grid_block(title: str, notes: list[str], ours: list[dict]) -> list[str]:
    """A page section: title, notes, then the test grids under both protocols and the validation grid."""
    return [f"## {title}", "", *notes, "",
            "Test, history excluded:", "", markdown_grid(ours, METRICS, split="test"), "",
            "Test, no history exclusion:", "", markdown_grid(ours, METRICS, split=PROTOCOLS[1][0]), "",
            "Validation, history excluded:", "", markdown_grid(ours, METRICS, split="valid"), ""]


def main(argv: list[str] | None = None) -> int:
    """Collect the runs, pick the variant on validation, confirm it on 3 seeds and on MA-RQ-VAE, write it all."""
    arguments = parse_arguments(__doc__, argv, extra=lambda parser: parser.set_defaults(seeds=[0]))
    setup()
    reports, missing = collect(ROWS, arguments.seeds, no_train=arguments.no_train, force=arguments.force)
    ours = protocol_rows(TABLE, "beauty", reports)
    intervals = {split: ClaimIntervals(ROWS, reports, split=split) for split, _ in PROTOCOLS}
    chosen = chosen_variant(ours)
    seeds = ", ".join(map(str, arguments.seeds))
    notes = [
        "Amazon Beauty, matched text + collaborative MMQ SIDs (6 x 100 + de-dup digit), the causal generator of the "
        "matched table; every stage-2 row starts from the matched MMQ row's chosen generator (same seed) and trains "
        "12 epochs (validation every 4, patience 2), tokenizer lr = 0.01 x the generator's unless stated; (a) trains a "
        "new generator 48 epochs on the SIDs the `ft` row's tokenizer re-derives. docs/method.md §4.6 describes each "
        "variant.",
        f"The study: seed {seeds}. Chosen on validation NDCG@10 (history excluded): "
        f"{chosen[0] if chosen else 'none yet (no variant has finished runs)'}.",
        "Mean training time per run (s, 1 thread on the shared 2-core machine): "
        + ", ".join(f"{label} {value:,.0f}" for label, value in mean_train_seconds(reports).items()) + ".",
        *protocol_claim_lines(ours, [claim for claim in CLAIMS if claim[0] in reports], intervals),
        "Generated by `python scripts/table_stage2_study.py`; churn and loss per epoch: `beauty_stage2_study_churn.png`.",
        *missing_note(missing),
    ]
    relabel(ours, tuple(arguments.seeds))  # after the claims and the choice, which look rows up by label
    markdown = protocol_page(f"Beauty: the stage-2 study (seed {seeds})", notes, ours,
                             ("Test, history excluded", "Test, no history exclusion",
                              "Validation, history excluded (selection)"))
    extra_rows, summary = [], []
    if chosen is not None:
        label, name = chosen
        confirm_rows = ((STAGE1, ROWS[0][1]), (CONTROL, ROWS[1][1]), (label, f"{FOLDER}/{name}.yaml"))
        claims = ((label, (STAGE1,), "stage 1 alone"), (label, (CONTROL,), "the same-epochs control"))
        confirm, lines, confirm_missing, _ = section(f"{TABLE}_confirm", confirm_rows, claims, CONFIRM_SEEDS,
                                                     no_train=arguments.no_train, force=arguments.force)
        rq_vae_rows, rq_vae_claims = rq_vae_comparison(label, name)
        # every RQ-VAE row on the seeds its last (chosen) row has; all of CONFIRM_SEEDS when training is allowed
        rq_vae_seeds = tuple(seed for seed in CONFIRM_SEEDS
                             if not arguments.no_train or registry.is_done(rq_vae_rows[-1][1], seed)) or (0,)
        rq_vae, rq_vae_lines, rq_vae_missing, _ = section(f"{TABLE}_rq_vae", rq_vae_rows, rq_vae_claims, rq_vae_seeds,
                                                          no_train=arguments.no_train, force=arguments.force)
        markdown += "\n" + "\n".join(
            grid_block(f"The chosen variant, {seeds_label(CONFIRM_SEEDS)}", [
                "Stage 1, the control and the chosen variant at seeds 0, 1, 2 (each seed starts from the matched "
                "MMQ row of the same seed). Intervals: paired bootstrap over the 22,363 test events, seed-averaged "
                "per event.", *lines, *missing_note(confirm_missing)], confirm)
            + grid_block(f"Applied to MA-RQ-VAE (the paper: the stage plugs into RQ-VAE), {seeds_label(rq_vae_seeds)}", [
                "The chosen variant on the matched MA-RQ-VAE row's tokenizer and generator ("
                + (", ".join(f"`{config}`" for _, config in rq_vae_rows[2:]) or "no config written for it yet")
                + "), against that row and its own 12-epoch control (`" + RQ_VAE_ROWS[1][1] + "`).",
                *rq_vae_lines, *missing_note(rq_vae_missing)], rq_vae))
        extra_rows = [*confirm, *rq_vae]
        summary = [*lines, *rq_vae_lines]
    write_outputs(TABLE, [*ours, *extra_rows], [], markdown, arguments.output_dir,
                  plot_title="Beauty stage-2 study, test NDCG@10")
    if arguments.output_dir is None and extra_rows:  # the README shows the confirmation, not the seed-0 study
        write_readme_block(TABLE, markdown_grid(extra_rows, METRICS, split="test") + "\n\n"
                           + "\n".join(f"- {line}" for line in summary))
    if reports:
        churn_figure(reports, (arguments.output_dir or tables_dir()) / f"{TABLE}_churn.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
