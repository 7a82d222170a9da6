"""The one claim-line renderer (both styles, golden lines of the committed tables) and the README block writer."""

from __future__ import annotations

import csv

import pytest

from mmq.claims import BEATS, HELD, claim_line
from mmq.tables import is_default_output, replace_block, tables_dir, write_readme_block


def row(method, mean, std=float("nan"), n_seeds=3, metric="ndcg@10", split="test", source="ours"):
    """One long-format row as the table scripts build them (values copied from the committed CSVs)."""
    return {"table": "t", "dataset": "d", "method": method, "split": split, "metric": metric, "mean": mean,
            "std": std, "n_seeds": n_seeds, "source": source}


# paper_tables/beauty_generative_retrieval.csv (test ndcg@10)
BEAUTY = [row("Generative, RQ-VAE SIDs [cpu]", 0.0323104, 0.00101391),
          row("Generative, RQ-KMeans SIDs [cpu]", 0.035002, 0.00137412),
          row("Generative, OPQ SIDs [cpu]", 0.0360921, 0.000313559),
          row("Generative, MMQ stage-1 SIDs (text + collaborative) [cpu]", 0.037639, 0.00143845),
          row("Generative, RQ-VAE SIDs [cpu]", 0.9, 0.1, split="valid"),      # other splits and sources are
          row("Generative, OPQ SIDs [cpu]", 0.9, source="peer")]               # never read
TITLE_ROWS = ("Generative, RQ-VAE SIDs", "Generative, RQ-KMeans SIDs", "Generative, OPQ SIDs")
# paper_tables/movielens_ranking.csv (test auc, gauc)
RANKING = [row(f"PPNet + {method}", auc, auc_std, metric="auc") for method, auc, auc_std in (
    ("MA-RQ-VAE", 0.666784, 0.00282955), ("MS-RQ-VAE", 0.666308, 0.00493784), ("MA-RQ-KMeans", 0.666717, 0.00394537),
    ("MS-RQ-KMeans", 0.666978, 0.00272634), ("MA-OPQ", 0.66626, 0.00439804), ("MS-OPQ", 0.668807, 0.00259751),
    ("MMQ (stage 1 + behavior fine-tuning)", 0.666765, 0.00229137))] + [
    row("PPNet + MS-OPQ", 0.651029, 0.00132075, metric="gauc"),
    row("PPNet + MA-OPQ", 0.648429, 0.0019173, metric="gauc"),
    row("PPNet + MMQ (stage 1 + behavior fine-tuning)", 0.65121, 0.00428188, metric="gauc")]
BASELINES = [f"PPNet + {fusion}-{method}" for method in ("RQ-VAE", "RQ-KMeans", "OPQ") for fusion in ("MA", "MS")]
MMQ = "PPNet + MMQ (stage 1 + behavior fine-tuning)"
# paper_tables/movielens_shared_vs_specific.csv (seed 0: no std)
EXPERTS = [row("2 shared + 2 specific (4 experts)", 0.668268, n_seeds=1, metric="auc"),
           row("specific-only (4 experts)", 0.66844, n_seeds=1, metric="auc"),
           row("2 shared + 6 specific (8 experts)", 0.672148, n_seeds=1, metric="auc"),
           row("specific-only (8 experts)", 0.671104, n_seeds=1, metric="auc")]


def test_beats_style_golden_lines():
    mmq = "Generative, MMQ stage-1 SIDs (text + collaborative)"
    assert claim_line(BEAUTY, f"{mmq} beats the best title-only SID row on test ndcg@10", mmq, TITLE_ROWS,
                      metric="ndcg@10", style=BEATS) == (
        'Claim "Generative, MMQ stage-1 SIDs (text + collaborative) beats the best title-only SID row on test '
        'ndcg@10": beats it here. Generative, MMQ stage-1 SIDs (text + collaborative) [cpu] 0.0376 ± 0.0014 vs '
        "best baseline Generative, OPQ SIDs [cpu] 0.0361 ± 0.0003: gap +0.0015 (+4%), larger than either row's std "
        "(n = 3 / 3 seeds).")
    stage1, tuned = "Generative, MMQ (stage 1) SIDs", "Generative, MMQ (stage 1 + 2) SIDs fine-tuned on this task"
    movielens = [row(f"{stage1} [cpu]", 0.0357469, 0.00302536), row(f"{tuned} [cpu]", 0.0363659, 0.00249098)]
    assert claim_line(movielens, f"{tuned} beats stage 1 alone on test ndcg@10", tuned, [stage1], metric="ndcg@10",
                      style=BEATS) == (
        'Claim "Generative, MMQ (stage 1 + 2) SIDs fine-tuned on this task beats stage 1 alone on test ndcg@10": '
        "beats it here. Generative, MMQ (stage 1 + 2) SIDs fine-tuned on this task [cpu] 0.0364 ± 0.0025 vs "
        "Generative, MMQ (stage 1) SIDs [cpu] 0.0357 ± 0.0030: gap +0.0006 (+2%), within the seed std of both rows "
        "(n = 3 / 3 seeds).")


def test_held_style_golden_lines():
    assert claim_line(RANKING, "MMQ above the best MA/MS baseline (AUC)", MMQ, BASELINES, metric="auc",
                      style=HELD) == (
        "Claim 'MMQ above the best MA/MS baseline (AUC)': FAILED on test AUC: PPNet + MMQ (stage 1 + behavior "
        "fine-tuning) 0.6668 ± 0.0023 vs strongest other 'PPNet + MS-OPQ' 0.6688 ± 0.0026, gap -0.0020 (gap within "
        "one seed std); beaten only by: PPNet + MA-RQ-VAE, PPNet + MS-RQ-KMeans, PPNet + MS-OPQ.")
    assert claim_line(RANKING, "MMQ above the best MA/MS baseline (GAUC)", MMQ, BASELINES, metric="gauc",
                      style=HELD) == (
        "Claim 'MMQ above the best MA/MS baseline (GAUC)': HELD on test GAUC: PPNet + MMQ (stage 1 + behavior "
        "fine-tuning) 0.6512 ± 0.0043 vs strongest other 'PPNet + MS-OPQ' 0.6510 ± 0.0013, gap +0.0002 (gap within "
        "one seed std).")
    for count, expected in ((4, "FAILED on test AUC: 2 shared + 2 specific (4 experts) 0.6683 vs strongest other "
                                "'specific-only (4 experts)' 0.6684, gap -0.0002; beaten only by: specific-only "
                                "(4 experts)."),
                            (8, "HELD on test AUC: 2 shared + 6 specific (8 experts) 0.6721 vs strongest other "
                                "'specific-only (8 experts)' 0.6711, gap +0.0010.")):
        claim = f"shared + specific above specific-only at {count} experts"
        assert claim_line(EXPERTS, claim, f"2 shared + {count - 2} specific ({count} experts)",
                          [f"specific-only ({count} experts)"], metric="auc", style=HELD) == \
            f"Claim '{claim}': {expected}"


def test_spread_wording_and_untested_claims():
    one_std = [row("A", 0.050, 0.001), row("B", 0.0485, 0.002), row("C", 0.0492, n_seeds=1)]
    assert "within the seed std of one row (n = 3 / 3 seeds)" in claim_line(one_std, "A > B", "A", ["B"],
                                                                            metric="ndcg@10", style=BEATS)
    # only one row has a std: the gap can be within that one, never "within both"
    assert "within the seed std of one row (n = 3 / 1 seeds)" in claim_line(one_std, "A > C", "A", ["C"],
                                                                            metric="ndcg@10", style=BEATS)
    beyond = claim_line([row("A", 0.60, 0.001, metric="auc"), row("B", 0.50, 0.002, metric="auc")], "A > B", "A",
                        ["B"], metric="auc", style=HELD)
    assert beyond.endswith("gap +0.1000 (gap beyond one seed std).")
    tied = claim_line([row("A", 0.5, metric="auc"), row("B", 0.5, metric="auc")], "A > B", "A", ["B"], metric="auc",
                      style=HELD)
    assert "FAILED" in tied and tied.endswith("beaten only by: B.")   # a tie is not a win
    for style, quote in ((BEATS, '"'), (HELD, "'")):
        assert claim_line(BEAUTY, "x", "missing", TITLE_ROWS, metric="ndcg@10", style=style) == \
            f"Claim {quote}x{quote}: not tested (no finished runs for missing)."
        assert claim_line(BEAUTY, "x", TITLE_ROWS[0], ["gone", "lost"], metric="ndcg@10", style=style) == \
            f"Claim {quote}x{quote}: not tested (no finished runs for all of gone, lost)."


def _committed_rows(name):
    """A committed table's CSV as the scripts' rows (mean / std floats, n_seeds an int or empty)."""
    with open(tables_dir() / f"{name}.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for record in rows:
        record["mean"], record["std"] = float(record["mean"]), float(record["std"])
        record["n_seeds"] = int(record["n_seeds"]) if record["n_seeds"] else ""
    return [record for record in rows if record["source"] == "ours"]


def _committed_claims(name):
    return [line for line in (tables_dir() / f"{name}.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("Claim ")]


@pytest.mark.parametrize("script_name, table", [("table_beauty_generative", "beauty_generative_retrieval"),
                                                 ("table_movielens_generative", "movielens_generative_retrieval")])
def test_generative_scripts_render_their_committed_claim_lines(script_name, table):
    import importlib

    from mmq.generative.table import claim_lines

    script = importlib.import_module(f"scripts.{script_name}")
    committed = _committed_claims(table)
    assert committed and claim_lines(_committed_rows(table), script.CLAIMS) == committed


def test_ranking_script_renders_its_committed_claim_lines():
    from scripts.table_movielens_ranking import notes_for

    from mmq.ranking.table import TABLES

    def without_interval(line: str) -> str:  # the committed lines carry intervals read from the runs' files
        return line.split("; paired 95% CI")[0].rstrip(".") + "."

    for table, name in TABLES.items():
        rendered = [line for line in notes_for(table, _committed_rows(name), []) if line.startswith("Claim ")]
        assert rendered == [without_interval(line) for line in _committed_claims(name)]


README = """# title

<!-- table:alpha -->
old alpha
<!-- /table:alpha -->

text between

<!-- table:beta -->
<!-- /table:beta -->
end
"""


def test_readme_block_replaced_and_unchanged_content_is_a_no_op(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    assert write_readme_block("alpha", "| a |\n|---|\n| 1 |\n", readme) is True
    assert readme.read_text(encoding="utf-8") == README.replace("old alpha", "| a |\n|---|\n| 1 |")
    before = readme.stat().st_mtime_ns
    assert write_readme_block("alpha", "| a |\n|---|\n| 1 |", readme) is False   # same content: file untouched
    assert readme.stat().st_mtime_ns == before
    assert write_readme_block("beta", "filled", readme) is True
    assert "<!-- table:beta -->\nfilled\n<!-- /table:beta -->\nend\n" in readme.read_text(encoding="utf-8")
    assert "text between" in readme.read_text(encoding="utf-8")


def test_readme_block_markers_missing_duplicated_or_reversed(tmp_path):
    with pytest.raises(ValueError, match=r"'<!-- table:gamma -->' found 0 times"):
        replace_block(README, "gamma", "x")
    with pytest.raises(ValueError, match=r"'<!-- /table:alpha -->' found 0 times"):
        replace_block(README.replace("<!-- /table:alpha -->", "<!-- /table -->"), "alpha", "x")
    with pytest.raises(ValueError, match=r"'<!-- table:alpha -->' found 2 times"):
        replace_block(README + "<!-- table:alpha -->\n", "alpha", "x")
    with pytest.raises(ValueError, match="comes before"):
        replace_block("<!-- /table:alpha -->\n<!-- table:alpha -->\n", "alpha", "x")
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="marker"):
        write_readme_block("alpha", "x", readme)
    assert readme.read_text(encoding="utf-8") == "no markers\n"


def test_only_the_default_output_dir_updates_the_readme(tmp_path):
    assert is_default_output(None) and is_default_output(tables_dir())
    assert not is_default_output(tmp_path)


def test_the_repository_readme_has_one_block_per_table():
    from mmq.ranking.table import TABLES
    from mmq.tables import readme_markers, readme_path

    text = readme_path().read_text(encoding="utf-8")
    names = ["ch1_dense_retrieval", "beauty_tokenizer_quality", "ch7_cross_modal", "tokenizer_quality",
             "beauty_generative_retrieval", "movielens_generative_retrieval", *TABLES.values()]
    for name in names:
        for marker in readme_markers(name):
            assert text.count(marker) == 1, marker
