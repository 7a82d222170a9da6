"""Ranking tables (paper tables A, D and the series): rows, grid and claim lines from synthetic reports."""

from __future__ import annotations


def fake_ranking_report(auc, *, finetuned=False, sids=True):
    quality = {"reconstruction_l2_sq": 0.45, "semantic_id_quality": {"entropy_mean": 4.4, "utilization_mean": 1.0}}
    metrics = {"valid": {"auc": auc + 0.01}, "test": {"auc": auc, "gauc": auc - 0.02, "auc_head": auc + 0.01,
                                                      "auc_tail": auc - 0.03}}
    if sids:
        metrics["semantic_ids"] = {"stage1_quality": quality}
    if finetuned:
        metrics["finetuned"] = {"quality": {**quality, "reconstruction_l2_sq": 0.40}, "changed_item_fraction": 0.3}
    return {"metrics": metrics}


def test_ranking_table_rows_grid_and_claims():
    from mmq.claims import HELD, claim_line
    from mmq.ranking.table import README_COLUMNS, RankingRow, grid, report_values, table_rows

    assert ("all_items", "l_recon") not in report_values(fake_ranking_report(0.66, sids=False))
    assert report_values(fake_ranking_report(0.66, finetuned=True))[("all_items", "l_recon")] == 0.40
    assert report_values(fake_ranking_report(0.66))[("all_items", "l_recon")] == 0.45
    full, base, other = (RankingRow("ablation", "full", "a.yaml"), RankingRow("ablation", "base", "b.yaml"),
                         RankingRow("ablation", "other", "c.yaml"))
    rows = table_rows("ablation", {full: [fake_ranking_report(0.68, finetuned=True), fake_ranking_report(0.70, finetuned=True)],
                                   base: [fake_ranking_report(0.67)], other: [fake_ranking_report(0.71)],
                                   RankingRow("ranking", "elsewhere", "d.yaml"): [fake_ranking_report(0.5)]})
    text = grid(rows)
    assert "| full | ours | 2 | 0.4000 ± 0.0000 |" in text and "elsewhere" not in text
    assert "0.6900 ± 0.0141" in text and "all_items changed_items" in text
    compact = grid(rows, columns=README_COLUMNS).splitlines()
    assert compact[0] == ("| method | source | n_seeds | all_items l_recon | all_items utilization | "
                          "all_items changed_items | test auc | test gauc | test auc_tail |")
    assert compact[2].startswith("| full | ours | 2 | 0.4000 ± 0.0000 | 1.0000 ± 0.0000 | 0.3000 ± 0.0000 | "
                                 "0.6900 ± 0.0141 |")
    held = claim_line(rows, "full beats base", "full", ["base"], metric="auc", style=HELD)
    assert "HELD" in held and "gap +0.0200" in held
    failed = claim_line(rows, "full beats all", "full", ["base", "other"], metric="auc", style=HELD)
    assert "FAILED" in failed and "beaten only by: other" in failed
    assert "not tested" in claim_line(rows, "x", "full", ["missing"], metric="auc", style=HELD)
