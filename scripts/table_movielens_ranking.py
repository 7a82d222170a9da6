"""MovieLens ranking tables: (A) PPNet ranking + SID quality for PPNet-ItemID, the six MA/MS
baselines, MMQ and the shuffled-poster controls, once per protocol (the paper's global split, per-user,
cold items); (D) ablations incl. behavior fine-tuning and fine-tuning added to RQ-VAE; the SID-length and
shared-vs-specific series. Mean ± std over seeds (the series: seed 0 only); claim lines carry a paired
95% interval over test ratings (users resampled) wherever both rows have per-event results.

    python scripts/table_movielens_ranking.py [--seeds 0 1 2] [--no-train] [--force] [--tables ranking ...]

Runs any missing (config, seed) first (frozen-SID runs ~15 s, fine-tuning runs ~2-4 min on one
CPU core, plus any SID run missing upstream), unless ``--no-train`` is given: then rows without finished
runs are left out and named. Writes paper_tables/movielens_{ranking,ranking_per_user,ranking_cold_items,
ablation,sid_length,shared_vs_specific}.{md,csv,png}.
"""

from __future__ import annotations

import baselines  # noqa: F401  (registers the baseline tokenizer kinds)
from mmq.cli import setup

from mmq.claims import HELD, ClaimIntervals, claim_line
from mmq.metrics.intervals import verdict
from mmq.ranking.table import (ABLATION_TABLES, BASELINES, MMQ_FULL, MMQ_STAGE1, PROTOCOL_TABLES, README_COLUMNS, ROWS,
                               SERIES, SHUFFLED, TABLE_PROTOCOLS, TABLES, grid, paper_rows, plot_intervals, plot_ranking, plot_series, table_rows)
from mmq.tables import (collect, is_default_output, missing_note, parse_arguments, tables_dir, write_readme_block,
                        write_table)

PROTOCOL_NAMES = {"global": "global split (paper's)", "per_user": "per-user split", "cold_items": "cold items"}
DATA = ("MovieLens latest-small, movies with a poster, 5-core (610 users, 3,645 items, 90,227 ratings); "
        "label = rating > 3; model selection: best validation AUC epoch; test read once. GAUC = per-user AUC "
        "weighted by the user's test samples (users with both labels). Head / tail = top / bottom 25% of test "
        "items by training exposure.")
PROTOCOLS = {
    "global": ("Protocol: the paper's global chronological split: last 10% of interactions (by time) = test, the "
               "last 10% of the rest = validation, the rest = training. Split sizes 73,084 / 8,120 / 9,023; the "
               "test ratings come from 81 users, 92% of them from users absent from training, 7% on movies absent "
               "from training."),
    "per_user": ("Protocol: per-user chronological split (ours, `protocol: per_user`): each user's last 10% of "
                 "ratings by time = test, the 10% before = validation (at least one each), the rest = training; "
                 "equal timestamps ordered by a seeded shuffle (split_seed 0). Split sizes 72,165 / 9,031 / 9,031; "
                 "all 610 users are in test and in training."),
    "cold_items": ("Protocol: cold items (ours, `protocol: cold_items`): the per-user split, then 729 movies (20%, "
                   "one drawn from each stratum of 5 movies ranked by popularity, split_seed 0) are removed from "
                   "training; their validation and test ratings stay (1,872 of 9,031 test ratings). Training "
                   "57,853 ratings. Their item-ID lookups share one unknown-item row (never trained), so "
                   "PPNet-ItemID scores a cold movie through the user alone; SID rows also see its content codes. "
                   "`auc_cold` / `auc_warm` = AUC on the test ratings of cold / other movies."),
}
MODEL = ("PPNet (`mmq.ranking.ppnet`): user-ID and item-ID embeddings (32), SID embeddings (16 per position, "
         "concatenated) augmenting the item ID, a 128-64 DNN whose hidden units are scaled by 2*sigmoid gates on "
         "the ID priors + sg(DNN input); Adam 1e-3, batch 512, <= 20 epochs, patience 3. SIDs: 6 codes from "
         "MiniLM text + poster features (K=100; OPQ K=128). Frozen rows use the stage-1 table; fine-tuned rows "
         "train tokenizer and PPNet jointly (soft-index STE, tau 0.1, tokenizer lr 1e-4, L_rank + 0.5 L_recon + "
         "0.5 L_aux) and report the re-derived SIDs' quality; `changed_items` = fraction of items whose SID moved.")


def notes_for(table: str, ours: list[dict], missing: list[str], intervals: ClaimIntervals | None = None,
              ledger: dict | None = None) -> list[str]:
    """Protocol, model and the paper's claims as tested on these rows (with ``intervals``: the paired
    interval of each claim whose rows have per-event results; ``ledger[(claim, protocol)]`` receives each
    claim's verdict cell for the README ledger)."""
    def claim(text: str, candidate: str, others: list[str], metric: str = "auc") -> str:
        interval = intervals.for_claim(ours, candidate, others, metric) if intervals else None
        line = claim_line(ours, text, candidate, others, metric=metric, style=HELD, interval=interval)
        if ledger is not None:
            ledger[(text, protocol)] = ledger_cell(line, interval)
        return line

    protocol = TABLE_PROTOCOLS.get(table, "global")
    notes = [DATA, PROTOCOLS[protocol], MODEL]
    if table in PROTOCOL_TABLES:
        mmq, stage1 = f"PPNet + {MMQ_FULL}", f"PPNet + {MMQ_STAGE1}"
        baselines = [f"PPNet + {label}" for label, _ in BASELINES]
        notes.append(claim("MMQ above the best MA/MS baseline (AUC)", mmq, baselines))
        notes.append(claim("MMQ above the best MA/MS baseline (GAUC)", mmq, baselines, metric="gauc"))
        notes.append(claim("MMQ above PPNet-ItemID (AUC)", mmq, ["PPNet-ItemID"]))
        notes.append(claim("SIDs help the long tail: MMQ above PPNet-ItemID on tail items", mmq, ["PPNet-ItemID"],
                           metric="auc_tail"))
        notes.append(claim("MMQ above the best MA/MS baseline on tail items", mmq, baselines, metric="auc_tail"))
        notes.append(claim("behavior fine-tuning above stage 1 (AUC)", mmq, [stage1]))
        notes.append(claim("the posters add to MMQ: MMQ above MMQ with shuffled posters (AUC)", mmq,
                           [mmq + SHUFFLED]))
        notes.append(claim("the posters add to MMQ stage 1: above stage 1 with shuffled posters (AUC)", stage1,
                           [stage1 + SHUFFLED]))
        if protocol == "cold_items":
            notes.append(claim("MMQ above the best MA/MS baseline on cold items", mmq, baselines, metric="auc_cold"))
            for label in [*baselines, stage1, mmq]:
                notes.append(claim(f"{label.replace('PPNet + ', '')} SIDs above PPNet-ItemID on cold items",
                                   label, ["PPNet-ItemID"], metric="auc_cold"))
        notes.append("Rows ending in 'posters shuffled across items' are the control: the same SID run with the "
                     "poster features permuted across movies (`inputs.shuffled: [image]`, one fixed permutation), "
                     "so the gap to the unshuffled row is what the image modality adds.")
        if protocol == "global":
            notes.append("Reference rows `paper: ...` are the MMQ paper's industrial ranking numbers (a different, "
                         "much larger dataset): compare orderings, not values.")
    elif table in ABLATION_TABLES:
        for label in ("w/o cosine quantizer (L2 lookup)", "w/o L_aux", "w/o L_ortho", "w/o behavior fine-tuning"):
            notes.append(claim(f"full MMQ above '{label}'", MMQ_FULL, [label]))
        notes.append(claim("behavior fine-tuning helps RQ-VAE too", "MA-RQ-VAE + behavior fine-tuning", ["MA-RQ-VAE"]))
        notes.append("The paper's ablation is measured on industrial generative retrieval (R@5 / N@5); ours on "
                     f"MovieLens ranking AUC. 'w/o behavior fine-tuning' = '{MMQ_STAGE1}'. Ablation SID runs are "
                     "experiments/mmq/movielens_mmq_<ablation>.yaml, each followed by the same fine-tuning.")
    elif table == "sid_length":
        notes.append("Series (seed 0, one run per point): MMQ with n shared + n text + n image experts (n = 2..6, SID "
                     "length 6-18), each behavior-fine-tuned; the paper reports NDCG rising steadily with SID length "
                     "(figure, no numbers). Ours is ranking AUC.")
    else:
        notes.append("Series (seed 0, one run per point): 2 shared + (n-2)/2 text + (n-2)/2 image experts vs "
                     "specific-only n/2 text + n/2 image experts, n = 4-10, each behavior-fine-tuned; the paper: "
                     "specific-only never catches up (figure, no numbers).")
        for count in (4, 6, 8, 10):
            notes.append(claim(f"shared + specific above specific-only at {count} experts",
                               f"2 shared + {count - 2} specific ({count} experts)",
                               [f"specific-only ({count} experts)"]))
    return notes + missing_note(missing)


def intervals_to_itemid(table: str, labelled: list[tuple[str, str]], intervals: ClaimIntervals) -> list:
    """``(row, metric, interval)`` of every row minus PPNet-ItemID on test AUC (and cold-item AUC under the
    cold-item protocol) where both rows have per-event results: the figure beside the protocol tables."""
    metrics = ("auc", "auc_cold") if PROTOCOL_TABLES[table][0] == "cold_items" else ("auc",)
    entries = []
    for label, _ in labelled:
        for metric in metrics if label != "PPNet-ItemID" else ():
            interval = intervals.between(label, "PPNet-ItemID", metric) if label in intervals.reports else None
            if interval is not None:
                entries.append((label, metric, interval))
    return entries


def compute_note(reports: dict[str, list[dict]]) -> str:
    """What this table's ranking runs cost: their count and summed wall time (one core each; the SID runs
    upstream are shared by every protocol and not counted)."""
    runs = [report for row_reports in reports.values() for report in row_reports]
    minutes = sum(float(report.get("wall_time_s", 0.0)) for report in runs) / 60
    return (f"Compute: {len(runs)} ranking runs, {minutes:.0f} min of run time in all (one core each, two at a time "
            f"on 2 cores: ~{minutes / 2:.0f} min), not counting the shared SID runs upstream.")


def ledger_cell(line: str, interval) -> str:
    """A claim's README ledger cell: the interval's verdict, difference and interval; without an interval, the
    mean comparison's verdict (marked as such); 'not tested' when a row has no runs."""
    if interval is not None:
        return (f"**{verdict(interval)}** {interval.difference:+.4f} "
                f"[{interval.low:+.4f}, {interval.high:+.4f}]")
    if ": not tested" in line:
        return "not tested"
    return ("held" if ": HELD" in line else "failed") + " on means (no interval)"


def ledger_block(ledger: dict) -> str:
    """The README ledger: one line per claim, one column per protocol."""
    protocols = [protocol for protocol in PROTOCOLS if any(key[1] == protocol for key in ledger)]
    lines = ["| claim (paired 95% interval of the difference over test ratings, users resampled, 3 seeds) | "
             + " | ".join(PROTOCOL_NAMES[protocol] for protocol in protocols) + " |",
             "|---|" + "---|" * len(protocols)]
    for claim in dict.fromkeys(key[0] for key in ledger):
        lines.append(f"| {claim} | " + " | ".join(ledger.get((claim, protocol), "-") for protocol in protocols) + " |")
    return "\n".join(lines)


def _add_tables_option(parser) -> None:
    parser.add_argument("--tables", nargs="+", choices=sorted(TABLES), default=None,
                        help="only these tables (default: all)")


def main(argv: list[str] | None = None) -> int:
    """Collect the runs of each table, write .md/.csv/.png (and, into paper_tables/, its README block), print."""
    arguments = parse_arguments(__doc__, argv, extra=_add_tables_option)
    setup()
    output = arguments.output_dir or tables_dir()
    reference = tables_dir() / "paper_reference" / "mmq_paper.csv"
    panels: dict[str, list] = {}
    ledger: dict[tuple[str, str], str] = {}
    for table, name in TABLES.items():
        if arguments.tables and table not in arguments.tables:
            continue
        rows = [row for row in ROWS if row.table == table]
        seeds = arguments.seeds[:1] if table in SERIES else arguments.seeds
        labelled = [(row.label, row.config) for row in rows]
        reports, missing = collect(labelled, seeds, no_train=arguments.no_train, force=arguments.force)
        ours = table_rows(table, {row: reports.get(row.label, []) for row in rows})
        references = paper_rows(table, reference)
        title = {"ranking": "MovieLens ranking (PPNet) and SID quality — paper table A (global split, the paper's)",
                 "ranking_per_user": "MovieLens ranking (PPNet) and SID quality — table A, per-user split",
                 "ranking_cold_items": "MovieLens ranking (PPNet) and SID quality — table A, cold items",
                 "ablation": "MovieLens ablation (ranking AUC) — paper table D (global split, the paper's)",
                 "ablation_per_user": "MovieLens ablation (ranking AUC) — table D, per-user split",
                 "ablation_cold_items": "MovieLens ablation (ranking AUC) — table D, cold items",
                 "sid_length": "MovieLens: SID length 6-18 (MMQ + behavior fine-tuning)",
                 "experts": "MovieLens: shared + specific vs specific-only experts (MMQ + behavior fine-tuning)"}[table]
        intervals = ClaimIntervals(labelled, reports)
        notes = notes_for(table, ours, missing, intervals, ledger if table in TABLE_PROTOCOLS else None)
        if table in PROTOCOL_TABLES:
            panels[PROTOCOL_NAMES[PROTOCOL_TABLES[table][0]]] = intervals_to_itemid(table, labelled, intervals)
        notes.append(compute_note(reports))
        markdown = "\n".join([f"# {title}", "", *notes, "", grid([*ours, *references]), ""])
        write_table(name, [*ours, *references], markdown, output)
        if is_default_output(arguments.output_dir):
            write_readme_block(name, grid([*ours, *references], columns=README_COLUMNS))
        if table in SERIES:
            xlabel, groups = SERIES[table]
            plot_series(ours, output / f"{name}.png", title=title, xlabel=xlabel, groups=groups)
        else:
            plot_ranking(ours, output / f"{name}.png", title=title)
        print(markdown)
    if ledger and is_default_output(arguments.output_dir) and not arguments.tables:
        write_readme_block("movielens_ranking_ledger", ledger_block(ledger))
    panels = {protocol: entries for protocol, entries in panels.items() if entries}
    if panels:
        path = output / "movielens_ranking_intervals.png"
        plot_intervals(panels, path, reference="PPNet-ItemID")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
