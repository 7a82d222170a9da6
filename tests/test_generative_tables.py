"""Generative-retrieval table scripts (Beauty, MovieLens): collect, render, the MMQ-vs-baselines claim line.

Synthetic reports only: no real data, no training.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmq import registry
from mmq.claims import BEATS, claim_line
from mmq.generative.table import render_markdown, table_rows
from mmq.tables import collect, missing_note

TABLE = "movielens_generative_retrieval"


def fake_report(seed, ndcg10, *, profile="cpu", sasrec=False, train_seconds=100.0):
    split = {"recall@5": 0.04 + seed / 100, "recall@10": 0.06, "ndcg@5": 0.03, "ndcg@10": ndcg10}
    metrics = {"valid": split, "test": split, "profile": profile}
    if sasrec:   # SASRec keeps train_seconds (and its schedule) at the top level, the generative runs nest them
        metrics["train_seconds"] = train_seconds
        config = {"epochs": 36, "eval_every": 2, "patience": 5}
    else:
        metrics["training"] = {"train_seconds": train_seconds}
        config = {"training": {"max_epochs": 24, "eval_every": 2, "patience": 4}}
    return {"seed": seed, "config": config, "metrics": metrics}


def rows_for(values_by_label):
    """Our table rows from ``{label: [test ndcg@10 per seed]}``."""
    reports = {label: [fake_report(seed, value) for seed, value in enumerate(values)]
               for label, values in values_by_label.items()}
    return table_rows(TABLE, "movielens", reports)


@pytest.fixture
def fake_runner(monkeypatch):
    """The registry's ``run_or_load`` replaced by one that records its calls."""
    calls = []

    def run_or_load(config, seed, *, force=False):
        calls.append((config, seed, force))
        return fake_report(seed, 0.02 + seed / 1000)

    monkeypatch.setattr(registry, "run_or_load", run_or_load)
    return calls


def test_collect_reads_finished_runs_and_names_the_missing_ones(isolated_dirs, fake_runner):
    fake_a, fake_b = str(isolated_dirs / "fake_a.yaml"), str(isolated_dirs / "fake_b.yaml")
    (isolated_dirs / "fake_a.yaml").write_text("kind: sasrec\nepochs: 2\n")
    (isolated_dirs / "fake_b.yaml").write_text("kind: sasrec\nepochs: 3\n")
    rows = (("A", fake_a), ("B", fake_b))
    for seed in (0, 2):   # A has seeds 0 and 2, B has none
        done = registry.run_directory(fake_a, seed) / "DONE"
        done.parent.mkdir(parents=True)
        done.write_text("x\n")
    reports, missing = collect(rows, [0, 1, 2], no_train=True, force=False)
    assert list(reports) == ["A"] and [report["seed"] for report in reports["A"]] == [0, 2]
    assert missing == [f"{fake_a} seed 1", f"{fake_b} seed 0", f"{fake_b} seed 1", f"{fake_b} seed 2"]
    assert fake_runner == [(fake_a, 0, False), (fake_a, 2, False)]
    fake_runner.clear()
    reports, missing = collect(rows, [0, 1], no_train=False, force=True)   # training allowed: every run asked for
    assert missing == [] and list(reports) == ["A", "B"] and len(fake_runner) == 4
    assert all(force for _, _, force in fake_runner)


def test_rows_and_markdown_without_references():
    ours = rows_for({"SASRec-CE (item IDs)": [0.050, 0.054, 0.052], "Generative, MMQ (stage 1) SIDs": [0.040]})
    test_ndcg = [row for row in ours if row["split"] == "test" and row["metric"] == "ndcg@10"]
    assert [row["method"] for row in test_ndcg] == ["SASRec-CE (item IDs) [cpu]", "Generative, MMQ (stage 1) SIDs [cpu]"]
    assert test_ndcg[0]["mean"] == pytest.approx(0.052) and test_ndcg[0]["n_seeds"] == 3
    assert test_ndcg[0]["std"] == pytest.approx(np.std([0.050, 0.054, 0.052], ddof=1))
    assert np.isnan(test_ndcg[1]["std"])
    notes = ["protocol line", *missing_note(["experiments/generative/movielens_ms_opq.yaml seed 2"])]
    markdown = render_markdown(ours, [], title="MovieLens: generative retrieval", notes=notes)
    lines = markdown.splitlines()
    assert lines[0] == "# MovieLens: generative retrieval" and "protocol line" in lines
    assert "Missing runs (left out): experiments/generative/movielens_ms_opq.yaml seed 2." in lines
    assert "## Test (ours: mean ± std over seeds)" in lines
    assert "| method | source | recall@5 | recall@10 | ndcg@5 | ndcg@10 |" in lines
    # recall@5 = 0.04, 0.05, 0.06 over seeds 0-2 -> 0.0500 ± 0.0100; a single seed has no ± part
    assert "| SASRec-CE (item IDs) [cpu] | ours | 0.0500 ± 0.0100 | 0.0600 ± 0.0000 | 0.0300 ± 0.0000 " \
           "| 0.0520 ± 0.0020 |" in lines
    assert "| Generative, MMQ (stage 1) SIDs [cpu] | ours | 0.0400 | 0.0600 | 0.0300 | 0.0400 |" in lines
    assert lines.count("| SASRec-CE (item IDs) [cpu] | ours | 0.0500 ± 0.0100 | 0.0600 ± 0.0000 | 0.0300 ± 0.0000 "
                       "| 0.0520 ± 0.0020 |") == 2   # test and validation grids
    assert "Gap to each reference" not in markdown
    assert missing_note([]) == []


BASELINES = ["Generative, MA-RQ-VAE SIDs", "Generative, MS-RQ-KMeans SIDs", "Generative, MS-OPQ SIDs"]
MMQ = "Generative, MMQ (stage 1) SIDs"


def ndcg_claim(ours, candidate, baselines):
    """The generative tables' claim: ``candidate`` beats the best of ``baselines`` on test NDCG@10."""
    return claim_line(ours, f"{candidate} beats the best MA/MS row on test ndcg@10", candidate, baselines,
                      metric="ndcg@10", style=BEATS)


def test_mmq_beats_the_best_baseline_line_when_it_holds():
    ours = rows_for({BASELINES[0]: [0.030, 0.032], BASELINES[1]: [0.036, 0.040], MMQ: [0.050, 0.052]})
    line = ndcg_claim(ours, MMQ, BASELINES)
    assert ": beats it here." in line and "does not" not in line
    assert "vs best baseline Generative, MS-RQ-KMeans SIDs [cpu] 0.0380 ± 0.0028" in line
    assert "Generative, MMQ (stage 1) SIDs [cpu] 0.0510 ± 0.0014" in line
    assert "gap +0.0130 (+34%), larger than either row's std (n = 2 / 2 seeds)." in line


def test_mmq_beats_the_best_baseline_line_when_it_does_not():
    ours = rows_for({BASELINES[0]: [0.030, 0.032], BASELINES[2]: [0.041, 0.045], MMQ: [0.040, 0.042]})
    line = ndcg_claim(ours, MMQ, BASELINES)
    assert ": does not beat it here." in line
    assert "best baseline Generative, MS-OPQ SIDs [cpu] 0.0430 ± 0.0028" in line
    assert "gap -0.0020 (-5%), within the seed std of one row" in line   # |gap| between the two stds
    tied = rows_for({BASELINES[0]: [0.040], MMQ: [0.040]})
    assert ": does not beat it here." in ndcg_claim(tied, MMQ, BASELINES)
    assert "single seed, no std" in ndcg_claim(tied, MMQ, BASELINES)


def test_mmq_line_says_when_it_cannot_be_tested():
    only_baselines = rows_for({BASELINES[0]: [0.030]})
    assert "not tested (no finished runs for Generative, MMQ (stage 1) SIDs)" in ndcg_claim(
        only_baselines, MMQ, BASELINES)
    assert "not tested (no finished runs for all of" in ndcg_claim(rows_for({MMQ: [0.03]}), MMQ, BASELINES)


def test_movielens_script_writes_the_table_from_fake_runs(tmp_path, monkeypatch, capsys):
    import scripts.table_movielens_generative as script

    def fake_collect(rows, seeds, *, no_train, force):
        assert no_train and list(seeds) == [0, 1]
        labels = [label for label, _ in rows]
        assert labels[0] == "SASRec-CE (item IDs)" and labels[-3] == script.MMQ_FT_LABEL and len(labels) == 11
        reports = {labels[0]: [fake_report(seed, 0.06, sasrec=True) for seed in seeds],
                   labels[1]: [fake_report(seed, 0.030 + seed / 1000) for seed in seeds],
                   labels[-4]: [fake_report(seed, 0.020 + seed / 1000) for seed in seeds]}
        return reports, [f"{config} seed {seed}" for _, config in rows[2:-4] + rows[-3:] for seed in seeds]

    import mmq.generative.table as generative_table

    readme_writes = []
    monkeypatch.setattr(script, "collect", fake_collect)
    monkeypatch.setattr(script, "setup", lambda: None)
    monkeypatch.setattr(generative_table, "write_readme_block", lambda *args: readme_writes.append(args))
    assert script.main(["--seeds", "0", "1", "--no-train", "--output-dir", str(tmp_path)]) == 0
    assert readme_writes == []   # another output dir never touches the README
    markdown = (tmp_path / f"{TABLE}.md").read_text()
    assert markdown.startswith("# MovieLens (text + poster): generative retrieval")
    assert "| Generative, MA-RQ-VAE SIDs [cpu] | ours | 0.0450 ± 0.0071 |" in markdown
    assert "Reference rows: none." in markdown and "paper |" not in markdown
    assert "Claim \"Generative, MMQ (stage 1) SIDs beats the best MA/MS row on test ndcg@10\": does not beat" \
        in markdown
    assert "Missing runs (left out): experiments/generative/movielens_ms_rq_vae.yaml seed 0;" in markdown
    assert "movielens_mmq_ft_ranking.yaml seed 1." in markdown
    assert "SIDs fine-tuned on the ranking task beats stage 1 alone on test ndcg@10\": not tested" in markdown
    assert "SIDs fine-tuned on this task beats the best MA/MS row on test ndcg@10\": not tested" in markdown
    assert "SASRec-CE (item IDs) 100, Generative, MA-RQ-VAE SIDs 100" in markdown   # mean training seconds
    assert "as recorded in the runs): SASRec 36/2/5; generative 24/2/4." in markdown
    csv_lines = (tmp_path / f"{TABLE}.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 3 * 2 * 4 and all(line.endswith(",ours") for line in csv_lines[1:])
    assert (tmp_path / f"{TABLE}.png").stat().st_size > 0
    assert "wrote" in capsys.readouterr().out


def test_beauty_script_still_renders_its_references_and_gaps(tmp_path, monkeypatch):
    import scripts.table_beauty_generative as script

    monkeypatch.setattr(script, "collect", lambda rows, seeds, **_: (
        {rows[1][0]: [fake_report(seed, 0.030 + seed / 500) for seed in seeds],
         script.MMQ_LABEL: [fake_report(seed, 0.036) for seed in seeds]}, ["experiments/x.yaml seed 2"]))
    monkeypatch.setattr(script, "setup", lambda: None)
    assert script.main(["--seeds", "0", "1", "--no-train", "--output-dir", str(tmp_path)]) == 0
    markdown = (tmp_path / "beauty_generative_retrieval.md").read_text()
    assert "## Test (ours: mean ± std over seeds; paper/peer rows as published)" in markdown
    assert "## Gap to each reference (ndcg@10, test)" in markdown
    assert "| Generative, RQ-VAE SIDs [cpu] (0.0310) | +0.0018 (+6%) |" in markdown   # vs MA-RQ-VAE 0.0292
    assert markdown.rstrip().endswith("|") and "Missing runs (left out): experiments/x.yaml seed 2." in markdown
    assert ("Claim \"Generative, MMQ stage-1 SIDs (text + collaborative) beats the best title-only SID row on test "
            "ndcg@10\": beats it here.") in markdown
    assert "fine-tuning (text + collaborative) beats stage 1 alone on test ndcg@10\": not tested" in markdown


def test_stage2_script_chooses_on_validation_and_confirms_the_choice(tmp_path, monkeypatch):
    import scripts.table_stage2_study as script

    chosen = "(a) fine-tuned tokenizer frozen, generator retrained"
    valid = {script.STAGE1: .050, script.CONTROL: .052, chosen: .048, "(b) + stage-1 anchors and code-stability term": .044}
    calls = []

    def fake_collect(rows, seeds, *, no_train, force):
        calls.append(([label for label, _ in rows], list(seeds)))
        reports = {}
        for label, _ in rows:
            if label.split("MA-RQ-VAE + ")[-1] in valid or label.startswith("MA-RQ-VAE stage 1"):
                runs = []
                for seed in seeds:
                    run = fake_report(seed, 0.04)
                    run["metrics"]["valid"] = {**run["metrics"]["valid"], "ndcg@10": valid.get(label, .04)}
                    run["metrics"]["training"]["history"] = [
                        {"epoch": 4, "loss": 8.0, "train_generation": 7.9, "changed_item_fraction": .2}]
                    runs.append(run)
                reports[label] = runs
        return reports, []

    monkeypatch.setattr(script, "collect", fake_collect)
    monkeypatch.setattr(script, "setup", lambda: None)
    monkeypatch.setattr(script.registry, "is_done", lambda config, seed: seed == 0)  # the RQ-VAE variant: seed 0
    assert script.main(["--no-train", "--output-dir", str(tmp_path)]) == 0
    markdown = (tmp_path / "beauty_stage2_study.md").read_text()
    # (a) beats (b) on validation; the control is not a variant, so it is never the choice
    assert f"Chosen on validation NDCG@10 (history excluded): {chosen}." in markdown
    assert calls[1] == ([script.STAGE1, script.CONTROL, chosen], [0, 1, 2])
    assert calls[2][0] == [script.RQ_VAE_STAGE1, script.RQ_VAE_CONTROL,
                           "MA-RQ-VAE + Stage 2 as committed (L_gen + L_recon + L_aux)",
                           f"MA-RQ-VAE + {chosen}"] and calls[2][1] == [0]
    assert "## The chosen variant, seeds 0-2" in markdown and f"{chosen}, seeds 0-2 [cpu]" in markdown
    assert "## Applied to MA-RQ-VAE (the paper: the stage plugs into RQ-VAE), seed 0" in markdown
    assert (tmp_path / "beauty_stage2_study_churn.png").stat().st_size > 0
