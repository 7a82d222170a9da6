"""Paired bootstrap intervals over test events: per-event metrics == mmq.metrics, coverage and width on synthetic
data, seed averaging, AUC / GAUC == scikit-learn / mmq.metrics on the full sample, the claim-line clause, and the
collection from per_event.npz files beside synthetic run reports."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmq import artifacts, registry
from mmq.claims import BEATS, HELD, ClaimIntervals, claim_line, interval_clause, our_test_row, strongest_other
from mmq.metrics import gauc, ndcg_at_k, recall_at_k
from mmq.metrics.intervals import (FAILS, HOLDS, UNRESOLVED, Interval, ndcg_at_k_per_event, paired_bootstrap,
                                   paired_bootstrap_auc, paired_bootstrap_gauc, recall_at_k_per_event, verdict,
                                   weighted_auc)
from mmq.tables import paired_interval


def ranks_of(ranked, targets):
    """1-based rank of each target in its list, 0 when absent (the per_event.npz convention)."""
    found = ranked == targets[:, None]
    return np.where(found.any(axis=1), found.argmax(axis=1) + 1, 0).astype(np.int32)


def test_per_event_ndcg_and_recall_equal_the_full_catalogue_metrics():
    rng = np.random.default_rng(0)
    ranked = np.stack([rng.permutation(50)[:20] for _ in range(300)])   # top-20 lists of a 50-item catalogue
    targets = rng.integers(0, 50, 300)
    ranks = ranks_of(ranked, targets)
    assert (ranks == 0).any() and (ranks > 10).any()
    for k in (5, 10, 20):
        np.testing.assert_allclose(ndcg_at_k_per_event(ranks, k), ndcg_at_k(ranked, targets, k, per_query=True))
        np.testing.assert_allclose(recall_at_k_per_event(ranks, k), recall_at_k(ranked, targets, k, per_query=True))
    np.testing.assert_allclose(ndcg_at_k_per_event(np.array([0, 1, 3, 11]), 10), [0, 1, 0.5, 0])
    with pytest.raises(ValueError, match=">= 0"):
        ndcg_at_k_per_event(np.array([-1, 2]), 10)
    with pytest.raises(ValueError, match="integers"):
        recall_at_k_per_event(np.array([1.0, 2.0]), 10)


def shifted_rows(num_events, shift, seed=0):
    """Row a: per-event values; row b: a minus ``shift`` plus event noise (true difference ``shift``)."""
    rng = np.random.default_rng(seed)
    a = rng.random((3, num_events))                                         # [seeds, events]
    b = a[:2] - shift + rng.normal(0, 0.2, (2, num_events))
    return a, b


def test_interval_covers_the_true_difference_is_centred_and_shrinks_with_more_events():
    a, b = shifted_rows(2000, 0.03)
    interval = paired_bootstrap(a, b, num_resamples=1000)
    assert interval.difference == pytest.approx(a.mean() - b.mean())
    assert interval.low < 0.03 < interval.high and verdict(interval) == HOLDS
    assert abs((interval.low + interval.high) / 2 - interval.difference) < 0.1 * (interval.high - interval.low)
    assert (interval.num_events, interval.num_seeds_a, interval.num_seeds_b) == (2000, 3, 2)
    width = interval.high - interval.low
    wider = paired_bootstrap(*shifted_rows(500, 0.03), num_resamples=1000)
    narrower = paired_bootstrap(*shifted_rows(8000, 0.03), num_resamples=1000)
    assert wider.high - wider.low > 1.5 * width > 2.25 * (narrower.high - narrower.low)   # ~ 1 / sqrt(events)
    # mde = 2.80 x the bootstrap standard error; the 95% interval spans about 2 x 1.96 of them
    assert interval.mde == pytest.approx(2.8 * width / (2 * 1.96), rel=0.1)
    assert paired_bootstrap(a, b, num_resamples=1000) == interval   # seeded
    assert paired_bootstrap(b, a, num_resamples=1000).difference == pytest.approx(-interval.difference)


def test_identical_rows_are_unresolved_and_the_verdict_rule():
    a, _ = shifted_rows(1000, 0.0)
    same = paired_bootstrap(a, a.copy())
    assert same.low <= 0 <= same.high and verdict(same) == UNRESOLVED
    rng = np.random.default_rng(1)
    alike = paired_bootstrap(rng.random((2, 1000)), rng.random((2, 1000)))   # same distribution, other draws
    assert alike.low < 0 < alike.high and verdict(alike) == UNRESOLVED
    make = lambda low, high: Interval((low + high) / 2, low, high, 10, 1, 1, 0.1)  # noqa: E731
    assert [verdict(make(0.01, 0.02)), verdict(make(-0.02, -0.01)), verdict(make(-0.01, 0.02)),
            verdict(make(0.0, 0.02))] == [HOLDS, FAILS, UNRESOLVED, UNRESOLVED]


def test_seeds_of_a_row_are_averaged_per_event_first():
    a, b = shifted_rows(700, 0.01)
    averaged = paired_bootstrap(a[:2], b, seed=3)
    single = paired_bootstrap(a[:2].mean(axis=0), b, seed=3)   # a 1-D row is one seed
    assert averaged._replace(num_seeds_a=1) == single and averaged.num_seeds_a == 2


def test_clear_errors_on_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="same events: 5 vs 6"):
        paired_bootstrap(np.zeros((2, 5)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap(np.zeros((0, 5)), np.zeros((1, 5)))
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap(np.zeros((1, 0)), np.zeros((1, 0)))
    with pytest.raises(ValueError, match="NaN"):
        paired_bootstrap(np.array([0.0, np.nan]), np.zeros(2))
    with pytest.raises(ValueError, match="both classes"):
        paired_bootstrap_auc(np.zeros((1, 4)), np.zeros((1, 4)), np.ones(4), np.arange(4))


def ranking_events(num_events=3000, num_users=60, seed=0):
    """Scores of two rows (3 and 2 seeds; row a better), 0/1 labels and users; scores rounded to make ties."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, num_users, num_events)
    labels = (rng.random(num_events) < 0.4).astype(np.int8)
    scores_a = np.round(labels * 0.6 + rng.normal(size=(3, num_events)), 1).astype(np.float32)
    scores_b = np.round(labels * 0.5 + rng.normal(size=(2, num_events)), 1).astype(np.float32)
    return scores_a, scores_b, labels, users


def test_auc_bootstrap_agrees_with_scikit_learn_on_the_full_sample():
    scores_a, scores_b, labels, users = ranking_events()
    interval = paired_bootstrap_auc(scores_a, scores_b, labels, users, num_resamples=500)
    expected = (np.mean([roc_auc_score(labels, s) for s in scores_a])
                - np.mean([roc_auc_score(labels, s) for s in scores_b]))
    assert interval.difference == pytest.approx(expected, abs=1e-12)
    assert interval.low < expected < interval.high and interval.num_clusters == 60
    # a resample's weights are repeats: the weighted AUC equals scikit-learn's on the repeated samples
    counts = np.random.default_rng(2).integers(0, 3, size=len(labels))
    repeated = np.repeat(np.arange(len(labels)), counts)
    assert weighted_auc(scores_a[0].astype(np.float64), labels.astype(np.float64), counts[None, :].astype(float))[0] \
        == pytest.approx(roc_auc_score(labels[repeated], scores_a[0][repeated]), abs=1e-12)


def test_gauc_bootstrap_agrees_with_mmq_gauc_on_the_full_sample():
    scores_a, scores_b, labels, users = ranking_events()
    interval = paired_bootstrap_gauc(scores_a, scores_b, labels, users, num_resamples=500)
    expected = (np.mean([gauc(users, labels, s)["gauc"] for s in scores_a])
                - np.mean([gauc(users, labels, s)["gauc"] for s in scores_b]))
    assert interval.difference == pytest.approx(expected, abs=1e-12)
    assert interval.low < interval.difference < interval.high and interval.num_clusters == 60


def test_resampling_users_widens_the_interval_when_a_users_samples_move_together():
    rng = np.random.default_rng(4)
    users = np.repeat(np.arange(40), 50)
    labels = (rng.random(2000) < 0.5).astype(np.int8)
    user_effect = rng.normal(0, 1.5, 40)[users] * labels       # row a helps some users a lot, others not at all
    scores_a, scores_b = labels * 0.5 + user_effect + rng.normal(size=2000), labels * 0.5 + rng.normal(size=2000)
    clustered = paired_bootstrap_auc(scores_a, scores_b, labels, users, num_resamples=500)
    independent = paired_bootstrap_auc(scores_a, scores_b, labels, np.arange(2000), num_resamples=500)
    assert clustered.difference == independent.difference
    assert clustered.high - clustered.low > 1.5 * (independent.high - independent.low)


# --- claim lines -------------------------------------------------------------------------------

def row(method, mean, std=float("nan"), metric="ndcg@10", n_seeds=3):
    return {"table": "t", "dataset": "d", "method": method, "split": "test", "metric": metric, "mean": mean,
            "std": std, "n_seeds": n_seeds, "source": "ours"}


ROWS = [row("A [cpu]", 0.050, 0.001), row("B [cpu]", 0.047, 0.002), row("C [cpu]", 0.049, 0.001)]


def test_claim_line_with_an_interval_adds_the_paired_clause_and_is_unchanged_without():
    plain = claim_line(ROWS, "A > best", "A", ["B", "C"], metric="ndcg@10", style=BEATS)
    assert claim_line(ROWS, "A > best", "A", ["B", "C"], metric="ndcg@10", style=BEATS, interval=None) == plain
    interval = Interval(0.001, -0.0004, 0.0026, 22363, 3, 3, 0.0021)
    assert strongest_other(ROWS, ["B", "C"], "ndcg@10") == "C"
    assert claim_line(ROWS, "A > best", "A", ["B", "C"], metric="ndcg@10", style=BEATS, interval=interval) == (
        plain[:-1] + "; paired 95% CI of the difference [-0.0004, +0.0026] over 22,363 test events (3 seeds each), "
        "minimum detectable effect 0.0021: unresolved.")
    clustered = Interval(0.004, 0.001, 0.007, 9023, 3, 1, 0.003, num_clusters=81)
    assert interval_clause(clustered) == ("paired 95% CI of the difference [+0.0010, +0.0070] over 9,023 test events "
                                          "of 81 users (3 / 1 seeds), minimum detectable effect 0.0030: holds")
    held = claim_line([row("A", 0.6, metric="auc"), row("B", 0.5, metric="auc")], "A > B", "A", ["B"], metric="auc",
                      style=HELD, interval=clustered)
    assert held.startswith("Claim 'A > B': HELD on test AUC") and held.endswith("effect 0.0030: holds.")


# --- collection from per_event.npz beside the reports --------------------------------------------

def write_run(config, seed, arrays, split_metrics, *, with_per_event=True):
    """A finished run's report (metrics per split) and, optionally, its per_event.npz recorded in it."""
    directory = registry.run_directory(config, seed)
    directory.mkdir(parents=True, exist_ok=True)
    metrics = {"profile": "cpu", **split_metrics}
    if with_per_event:
        path = directory / "per_event.npz"
        np.savez(path, **arrays)
        metrics["per_event"] = {"path": "per_event.npz", "sha256": artifacts.sha256_of_file(path),
                                "arrays": sorted(arrays)}
    return {"seed": seed, "metrics": metrics}


def retrieval_run(config, seed, ranks, users, **options):
    split = {f"{name}@{k}": float(function(ranks, k).mean()) for k in (5, 10)
             for name, function in (("ndcg", ndcg_at_k_per_event), ("recall", recall_at_k_per_event))}
    arrays = {"test_rank": ranks, "test_user": users, "valid_rank": ranks, "valid_user": users, "k": np.int32(20)}
    return write_run(config, seed, arrays, {"test": split, "valid": split}, **options)


@pytest.fixture
def configs(isolated_dirs):
    """Two experiment YAMLs (their run folders live under the temporary checkpoints folder)."""
    paths = []
    for name, epochs in (("a", 2), ("b", 3)):
        path = isolated_dirs / f"{name}.yaml"
        path.write_text(f"kind: sasrec\nepochs: {epochs}\n")
        paths.append(str(path))
    return paths


def test_collection_gives_none_without_per_event_files_and_an_interval_with_them(configs):
    from mmq.generative.table import claim_lines, table_rows

    config_a, config_b = configs
    rng = np.random.default_rng(5)
    users = rng.permutation(4000).astype(np.int32)
    better = lambda: np.where(rng.random(4000) < 0.3, rng.integers(1, 11, 4000), 0).astype(np.int32)  # noqa: E731
    worse = lambda: np.where(rng.random(4000) < 0.2, rng.integers(1, 11, 4000), 0).astype(np.int32)  # noqa: E731
    reports = {"A": [retrieval_run(config_a, seed, better(), users) for seed in (0, 1)],
               "B": [retrieval_run(config_b, seed, worse(), users) for seed in (0, 1, 2)]}
    folders = {label: [registry.run_directory(config, report["seed"]) for report in reports[label]]
               for label, config in (("A", config_a), ("B", config_b))}
    interval = paired_interval(reports["A"], folders["A"], reports["B"], folders["B"], "recall@10")
    expected = (np.mean([report["metrics"]["test"]["recall@10"] for report in reports["A"]])
                - np.mean([report["metrics"]["test"]["recall@10"] for report in reports["B"]]))
    assert interval.difference == pytest.approx(expected) and verdict(interval) == HOLDS
    assert (interval.num_events, interval.num_seeds_a, interval.num_seeds_b) == (4000, 2, 3)
    assert paired_interval(reports["A"], folders["A"], reports["B"], folders["B"], "mrr") is None  # no per-event form

    intervals = ClaimIntervals((("A", config_a), ("B", config_b)), reports)
    ours = table_rows("t", "d", reports)
    line, = claim_lines(ours, [("A", ("B",), "B")], intervals=intervals)
    assert "(n = 2 / 3 seeds); paired 95% CI of the difference [+0." in line and line.endswith(": holds.")
    assert intervals.between("A", "B", "ndcg@10").difference == pytest.approx(
        our_test_row(ours, "A", "ndcg@10")["mean"] - our_test_row(ours, "B", "ndcg@10")["mean"])

    reports["B"][1] = retrieval_run(config_b, 1, worse(), users, with_per_event=False)   # one run lacks them
    intervals = ClaimIntervals((("A", config_a), ("B", config_b)), reports)
    assert intervals.between("A", "B", "ndcg@10") is None
    line, = claim_lines(table_rows("t", "d", reports), [("A", ("B",), "B")], intervals=intervals)
    assert line == claim_lines(table_rows("t", "d", reports), [("A", ("B",), "B")])[0] and "paired" not in line


def test_collection_rejects_other_events_a_changed_file_and_arrays_that_are_not_the_reports(configs):
    config_a, config_b = configs
    users = np.arange(100, dtype=np.int32)
    ranks = np.arange(100, dtype=np.int32) % 15
    run_a = retrieval_run(config_a, 0, ranks, users)
    run_b = retrieval_run(config_b, 0, ranks, users[::-1].copy())
    folders = [registry.run_directory(config_a, 0)], [registry.run_directory(config_b, 0)]
    with pytest.raises(ValueError, match="did not evaluate the same test events"):
        paired_interval([run_a], folders[0], [run_b], folders[1], "ndcg@10")
    run_b = retrieval_run(config_b, 0, ranks, users)
    run_b["metrics"]["test"]["ndcg@10"] += 0.01
    with pytest.raises(ValueError, match="differs from the reported"):
        paired_interval([run_a], folders[0], [run_b], folders[1], "ndcg@10")
    with pytest.raises(ValueError, match="top 30"):
        paired_interval([run_a], folders[0], [run_a], folders[0], "ndcg@30")
    np.savez(folders[1][0] / "per_event.npz", test_rank=ranks)   # the file changed after its report
    with pytest.raises(ValueError, match="sha256"):
        paired_interval([run_a], folders[0], [run_b], folders[1], "ndcg@10")


def test_ranking_collection_gives_auc_and_gauc_intervals_and_none_for_tail_auc(configs):
    config_a, config_b = configs
    scores_a, scores_b, labels, users = ranking_events(num_events=1500, num_users=30)
    items = np.arange(1500, dtype=np.int32) % 97

    def ranking_run(config, seed, scores):
        split = {"auc": roc_auc_score(labels, scores), "gauc": gauc(users, labels, scores)["gauc"], "auc_tail": 0.5}
        arrays = {"test_score": scores, "test_label": labels, "test_user": users.astype(np.int32),
                  "test_item": items}
        return write_run(config, seed, arrays, {"test": split})

    reports = {"A": [ranking_run(config_a, seed, scores) for seed, scores in enumerate(scores_a)],
               "B": [ranking_run(config_b, seed, scores) for seed, scores in enumerate(scores_b)]}
    intervals = ClaimIntervals((("A", config_a), ("B", config_b)), reports, num_resamples=300)
    for metric, function in (("auc", paired_bootstrap_auc), ("gauc", paired_bootstrap_gauc)):
        assert intervals.between("A", "B", metric) == function(scores_a, scores_b, labels, users, num_resamples=300)
    assert intervals.between("A", "B", "auc").num_clusters == 30
    assert intervals.between("A", "B", "auc_tail") is None


def test_bucket_auc_intervals_use_the_masked_events_only(configs):
    config_a, config_b = configs
    scores_a, scores_b, labels, users = ranking_events(num_events=1500, num_users=30, seed=4)
    items = np.arange(1500, dtype=np.int32) % 97
    cold = (items % 5 == 0).astype(np.int8)
    rows = cold.astype(bool)

    def ranking_run(config, seed, scores, *, report_shift=0.0):
        split = {"auc": roc_auc_score(labels, scores), "gauc": gauc(users, labels, scores)["gauc"],
                 "auc_cold": roc_auc_score(labels[rows], scores[rows]) + report_shift}
        arrays = {"test_score": scores, "test_label": labels, "test_user": users.astype(np.int32),
                  "test_item": items, "test_in_cold": cold}
        return write_run(config, seed, arrays, {"test": split})

    reports = {"A": [ranking_run(config_a, seed, scores) for seed, scores in enumerate(scores_a)],
               "B": [ranking_run(config_b, seed, scores) for seed, scores in enumerate(scores_b)]}
    intervals = ClaimIntervals((("A", config_a), ("B", config_b)), reports, num_resamples=300)
    expected = paired_bootstrap_auc(scores_a[:, rows], scores_b[:, rows], labels[rows], users[rows],
                                    num_resamples=300)
    assert intervals.between("A", "B", "auc_cold") == expected
    assert expected.num_events == rows.sum()
    assert intervals.between("A", "B", "auc_warm") is None  # no such mask recorded
    reports["B"][0] = ranking_run(config_b, 0, scores_b[0], report_shift=0.01)
    with pytest.raises(ValueError, match="auc_cold .* differs from the reported"):
        ClaimIntervals((("A", config_a), ("B", config_b)), reports, num_resamples=300).between("A", "B", "auc_cold")


@pytest.mark.filterwarnings("ignore:No artists with labels")   # the empty series tables' plots
def test_ranking_script_prints_intervals_for_runs_with_per_event_results(isolated_dirs, monkeypatch):
    import scripts.table_movielens_ranking as script

    scores_a, scores_b, labels, users = ranking_events(num_events=800, num_users=20)
    items = np.arange(800, dtype=np.int32)

    def ranking_report(config, seed, scores):
        split = {"auc": roc_auc_score(labels, scores), "gauc": gauc(users, labels, scores)["gauc"],
                 "auc_head": 0.6, "auc_tail": 0.5}
        arrays = {"test_score": scores, "test_label": labels, "test_user": users.astype(np.int32), "test_item": items}
        return write_run(config, seed, arrays, {"test": split, "valid": {"auc": 0.6}})

    def fake_collect(rows, seeds, *, no_train, force):
        configs = dict(rows)
        if script.MMQ_FULL not in configs and f"PPNet + {script.MMQ_FULL}" not in configs:
            return {}, []
        mmq_label = f"PPNet + {script.MMQ_FULL}" if f"PPNet + {script.MMQ_FULL}" in configs else script.MMQ_FULL
        others = ("PPNet + MS-OPQ", "PPNet-ItemID") if "PPNet + MS-OPQ" in configs else ("w/o L_aux",)
        reports = {mmq_label: [ranking_report(configs[mmq_label], seed, scores_a[seed]) for seed in seeds]}
        for other in others:
            reports[other] = [ranking_report(configs[other], seed, scores_b[seed]) for seed in seeds]
        return reports, []

    monkeypatch.setattr(script, "collect", fake_collect)
    monkeypatch.setattr(script, "setup", lambda: None)
    output = isolated_dirs / "tables"
    output.mkdir()
    assert script.main(["--seeds", "0", "1", "--no-train", "--output-dir", str(output)]) == 0
    claims = [line for line in (output / "movielens_ranking.md").read_text().splitlines() if line.startswith("Claim")]
    auc_line, gauc_line, _, tail_line = claims[:4]
    assert "strongest other 'PPNet + MS-OPQ'" in auc_line   # the first of the tied baselines
    for line, function in ((auc_line, paired_bootstrap_auc), (gauc_line, paired_bootstrap_gauc)):
        interval = function(scores_a[:2], scores_b[:2], labels, users)
        assert line.endswith(f"; {interval_clause(interval)}.") and "over 800 test events of 20 users" in line
    assert tail_line.startswith("Claim 'SIDs help the long tail") and "paired" not in tail_line   # no bucket masks
    for name in ("movielens_ranking_per_user.md", "movielens_ranking_cold_items.md"):  # one table per protocol
        assert "Claim 'MMQ above the best MA/MS baseline (AUC)': HELD" in (output / name).read_text()
    ablation = (output / "movielens_ablation.md").read_text()
    assert "Claim 'full MMQ above 'w/o L_aux'': HELD" in ablation and ablation.count("paired 95% CI") == 1


def test_matched_beauty_script_gives_intervals_under_both_protocols(isolated_dirs, monkeypatch):
    import scripts.table_beauty_matched as script

    rng = np.random.default_rng(5)
    users = np.arange(400, dtype=np.int32)
    strong = np.where(rng.random((2, 400)) < 0.5, rng.integers(1, 6, size=(2, 400)), 0).astype(np.int32)
    weak = np.where(rng.random((2, 400)) < 0.05, rng.integers(1, 21, size=(2, 400)), 0).astype(np.int32)

    def matched_run(config, seed, ranks, plain):
        splits = {}
        for name, values in (("test", ranks), ("test_no_exclusion", plain), ("valid", ranks)):
            splits[name] = {f"{metric}@{k}": float(function(values, k).mean()) for k in (5, 10)
                            for metric, function in (("ndcg", ndcg_at_k_per_event), ("recall", recall_at_k_per_event))}
        arrays = {"test_rank": ranks, "test_user": users, "test_no_exclusion_rank": plain,
                  "test_no_exclusion_user": users, "k": np.int32(20)}
        return write_run(config, seed, arrays, {**splits, "training": {"train_seconds": 10.0}})

    def fake_collect(rows, seeds, *, no_train, force):
        configs = dict(rows)
        reports = {script.MMQ_LABEL: [matched_run(configs[script.MMQ_LABEL], seed, strong[seed], weak[seed])
                                      for seed in seeds],
                   "MA-RQ-VAE": [matched_run(configs["MA-RQ-VAE"], seed, weak[seed], strong[seed]) for seed in seeds]}
        return reports, [f"{configs['MS-RQ-KMeans']} seed 0"]

    monkeypatch.setattr(script, "collect", fake_collect)
    monkeypatch.setattr(script, "setup", lambda: None)
    output = isolated_dirs / "tables"
    output.mkdir()
    assert script.main(["--seeds", "0", "1", "--no-train", "--output-dir", str(output)]) == 0
    markdown = (output / "beauty_generative_matched.md").read_text()
    claims = [line for line in markdown.splitlines() if line.startswith("Claim")]
    excluded = next(line for line in claims if "MA-RQ-VAE (the paper's first" in line and "history excluded" in line)
    plain = next(line for line in claims if "MA-RQ-VAE (the paper's first" in line and "no history exclusion" in line)
    assert excluded.endswith(": holds.") and plain.endswith(": fails.")   # MMQ ahead with exclusion, behind without
    assert "over 400 test events (2 seeds each)" in excluded
    assert any("MS-RQ-KMeans (the paper's second baseline)" in line and "not tested" in line for line in claims)
    assert "Paper gap MMQ - MA-RQ-VAE on test ndcg@10 +0.0092 is" in markdown
    assert "## Test, no history exclusion (ours)" in markdown and "| MMQ stage 1 [cpu] | ours |" in markdown
    assert "Missing runs (left out):" in markdown


def test_cluster_bootstrap_equals_the_event_bootstrap_for_one_event_per_cluster_and_widens_for_correlated_events():
    rng = np.random.default_rng(2)
    a, b = rng.random((2, 300)), rng.random((2, 300))
    plain = paired_bootstrap(a, b, num_resamples=500)
    assert paired_bootstrap(a, b, num_resamples=500, clusters=np.arange(300)) == plain._replace(num_clusters=300)
    users = np.repeat(np.arange(30), 10)                 # 30 users with 10 identical events each
    per_user = rng.normal(size=(1, 30))
    copies_a, copies_b = np.repeat(per_user, 10, axis=1), np.zeros((1, 300))
    events = paired_bootstrap(copies_a, copies_b, num_resamples=500)
    clustered = paired_bootstrap(copies_a, copies_b, num_resamples=500, clusters=users)
    assert clustered.num_clusters == 30 and clustered.difference == pytest.approx(events.difference)
    assert clustered.high - clustered.low > 2 * (events.high - events.low)
    with pytest.raises(ValueError, match="one cluster per event"):
        paired_bootstrap(a, b, clusters=users[:10])


def test_movielens_multi_event_script_resamples_users(isolated_dirs, monkeypatch):
    import scripts.table_movielens_multi_event as script

    rng = np.random.default_rng(6)
    users = np.repeat(np.arange(50, dtype=np.int32), 4)
    good = np.where(rng.random((1, 200)) < 0.6, rng.integers(1, 6, size=(1, 200)), 0).astype(np.int32)
    poor = np.where(rng.random((1, 200)) < 0.1, rng.integers(1, 21, size=(1, 200)), 0).astype(np.int32)

    def run(config, ranks):
        splits = {name: {f"{metric}@{k}": float(function(ranks, k).mean()) for k in (5, 10)
                         for metric, function in (("ndcg", ndcg_at_k_per_event), ("recall", recall_at_k_per_event))}
                  for name in ("test", "test_no_exclusion", "valid")}
        arrays = {"test_rank": ranks, "test_user": users, "test_no_exclusion_rank": ranks,
                  "test_no_exclusion_user": users, "k": np.int32(20)}
        return write_run(config, 0, arrays, {**splits, "training": {"train_seconds": 5.0}})

    def fake_collect(rows, seeds, *, no_train, force):
        configs = dict(rows)
        return {script.MMQ_LABEL: [run(configs[script.MMQ_LABEL], good[0])],
                script.MMQ_SHUFFLED: [run(configs[script.MMQ_SHUFFLED], poor[0])],
                script.MMQ_A: [run(configs[script.MMQ_A], poor[0])]}, []

    monkeypatch.setattr(script, "collect", fake_collect)
    monkeypatch.setattr(script, "setup", lambda: None)
    output = isolated_dirs / "tables"
    output.mkdir()
    assert script.main(["--seeds", "0", "--no-train", "--output-dir", str(output)]) == 0
    markdown = (output / "movielens_generative_multi_event.md").read_text()
    line = next(line for line in markdown.splitlines() if "posters help MMQ" in line and "history excluded" in line)
    assert "over 200 test events of 50 users (1 seed each)" in line and line.endswith(": holds.")
    assert any("the best MA/MS row" in line and "not tested" in line for line in markdown.splitlines())
    stage2 = next(line for line in markdown.splitlines()
                  if "behaviour fine-tuning helps" in line and "history excluded" in line)
    assert stage2.startswith(f'Claim "{script.MMQ_A} beats stage 1 alone') and stage2.endswith(": fails.")


def test_orthogonality_script_compares_generative_rows_on_their_shared_seeds(isolated_dirs, monkeypatch):
    import scripts.table_orthogonality as script

    rng = np.random.default_rng(7)
    users = np.arange(300, dtype=np.int32)
    strong = np.where(rng.random((3, 300)) < 0.5, rng.integers(1, 6, size=(3, 300)), 0).astype(np.int32)
    weak = np.where(rng.random((3, 300)) < 0.05, rng.integers(1, 21, size=(3, 300)), 0).astype(np.int32)
    paper, cross = script.VARIANTS[0][0], script.VARIANTS[1][0]

    def run(config, seed, ranks):
        split = {f"{metric}@{k}": float(function(ranks, k).mean()) for k in (5, 10)
                 for metric, function in (("ndcg", ndcg_at_k_per_event), ("recall", recall_at_k_per_event))}
        return write_run(config, seed, {"test_rank": ranks, "test_user": users, "k": np.int32(20)},
                         {"test": split, "valid": split})

    def fake_collect(rows, seeds, *, no_train, force):
        configs = dict(rows)
        return {paper: [run(configs[paper], seed, strong[seed]) for seed in (0, 1, 2)],
                cross: [run(configs[cross], 0, weak[0])]}, []

    monkeypatch.setattr(script, "collect", fake_collect)
    monkeypatch.setattr(script, "setup", lambda: None)
    output = isolated_dirs / "tables"
    output.mkdir()
    assert script.main(["--seeds", "0", "1", "2", "--no-train", "--output-dir", str(output)]) == 0
    markdown = (output / "orthogonality.md").read_text()
    line = next(line for line in markdown.splitlines() if line.startswith(f"Claim \"the paper's form beats {cross}\""))
    expected = ndcg_at_k_per_event(strong[0], 10).mean() - ndcg_at_k_per_event(weak[0], 10).mean()
    assert "seed 0:" in line and "(1 seed each)" in line and line.endswith(": holds.")
    assert f"difference {expected:+.4f}" in line   # seed 0 only, not the paper form's 3-seed mean
    assert not any("w/o L_ortho\"" in line for line in markdown.splitlines())   # no generative run: no claim
