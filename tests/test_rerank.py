"""Chapter 4: reranking features, pair sampling, the cross-encoder losses and the two-stage run on tiny data."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from baselines.reranker import rerank
from baselines.two_tower import search
from baselines.two_tower.queries import generate_benchmark
from tests.test_query_search import FAST, SMALL, tiny_catalogue


@pytest.fixture(scope="module")
def world():
    dataset = tiny_catalogue()
    benchmark = generate_benchmark(dataset, SMALL)
    return dataset, benchmark, search.product_texts(dataset)


def test_features_read_the_query_text_not_the_hidden_slots(world):
    _, benchmark, texts = world
    builder = rerank.FeatureBuilder(benchmark.attributes, texts)
    attributes = benchmark.attributes
    navy_men_jeans = int(np.flatnonzero((attributes.articleType == "Jeans") & (attributes.gender == "Men")
                                        & (attributes.baseColour == "Navy Blue"))[0])
    other = int(np.flatnonzero((attributes.articleType == "Watches") & (attributes.baseColour != "Navy Blue"))[0])
    items = np.array([navy_men_jeans, other])
    row = dict(zip(rerank.FEATURES, builder.build("navy blue jean for men", items, np.array([0.9, 0.1]))[0]))
    assert row["article_in_query"] == 1 and row["colour_in_query"] == 1 and row["gender_in_query"] == 1
    assert row["two_tower_score"] == pytest.approx(0.9) and row["two_tower_rank"] == 0 and row["bm25"] > 0
    other_row = dict(zip(rerank.FEATURES, builder.build("navy blue jean for men", items, np.array([0.9, 0.1]))[1]))
    assert other_row["article_in_query"] == 0 and other_row["colour_in_query"] == 0
    # a held-out synonym is not matched: the features only see words
    gents = dict(zip(rerank.FEATURES, builder.build("dark blue denims for gents", items, np.zeros(2))[0]))
    assert gents["gender_in_query"] == 0 and gents["colour_in_query"] == 0
    assert builder.build("zzz qqq", items, np.zeros(2))[:, 2].tolist() == [0.0, 0.0]   # no known word: BM25 0


def test_pair_sampling_keeps_every_grade():
    grades = np.array([0] * 40 + [1] * 6 + [2] * 3 + [3])
    rng = np.random.default_rng(0)
    for _ in range(20):
        chosen = rerank.sample_pairs(grades, 8, rng)
        assert len(chosen) == 8 == len(set(chosen.tolist())) and set(grades[chosen]) == {0, 1, 2, 3}


def test_reorder_is_stable_for_ties():
    items = np.array([[5, 6, 7]])
    np.testing.assert_array_equal(rerank.reorder(items, np.array([[0.0, 1.0, 0.0]])), [[6, 5, 7]])


def test_bad_rerank_configs():
    for bad in (dict(ce_loss="pairwise"), dict(candidates=5), dict(depths=(5, 50)), dict(ce_pairs_per_query=1),
                dict(train_queries=2)):
        with pytest.raises(ValueError):
            rerank.RerankConfig(**bad)


@pytest.mark.parametrize("loss", ["pointwise", "listwise"])
def test_cross_encoder_losses_lower_the_training_loss(world, loss):
    _, benchmark, texts = world
    config = rerank.RerankConfig(ce_loss=loss, ce_pairs_per_query=4, ce_batch_size=16, ce_candidates=10,
                                 candidates=10, depths=(10,), ce_epochs=6, ce_learning_rate=1e-4, num_threads=1)
    queries = benchmark.split("train")[:8]
    rng = np.random.default_rng(0)
    candidates = np.stack([rng.choice(len(texts), 10, replace=False) for _ in queries])
    grades = np.stack([benchmark.grades(query, row) for query, row in zip(queries, candidates)])
    cross_encoder = rerank.build_cross_encoder(config, 0)
    history = rerank.train_cross_encoder(cross_encoder, [query.text for query in queries], candidates, grades, texts,
                                         config, 0, progress=False)
    assert history["steps"] == 6 * 2 and history["last_loss"] < history["first_loss"]
    scores = rerank.cross_encoder_scores(cross_encoder, [query.text for query in queries], candidates, texts)
    assert scores.shape == candidates.shape and np.isfinite(scores).all()


def test_two_stage_run_on_tiny_data(monkeypatch, isolated_dirs, world):
    dataset, _, _ = world
    monkeypatch.setattr(search, "load_dataset", lambda name: dataset)
    torch.manual_seed(0)
    stage_config = dataclasses.replace(FAST, units=1)
    search.run(stage_config, 0, isolated_dirs / "stage1", progress=False)
    model, products = search.load_two_tower(stage_config, isolated_dirs / "stage1")
    stage1 = rerank.Stage1(stage_config, model, products, search.build_index(products, search.IndexSpec("Flat")))
    monkeypatch.setattr(rerank, "load_stage1", lambda config, seed, progress=True: stage1)
    config = rerank.RerankConfig(candidates=20, depths=(10, 20, 40), train_queries=60, ce_candidates=10,
                                 ce_train_queries=10, ce_pairs_per_query=4, ce_batch_size=16, lgbm_trees=30,
                                 early_stopping_rounds=10, lgbm_min_child_samples=5, num_threads=1)
    report = rerank.run(config, 0, isolated_dirs / "rerank", progress=False)
    assert set(report["rows"]) == {"stage1", "lightgbm_n20", "cross_encoder_n10", "lightgbm_ce_n10"}
    for row in report["rows"].values():
        assert 0 <= row["test"]["ndcg@10"] <= 1
    recalls = [entry["test_stage1_recall"] for entry in report["depth_sweep"]]
    assert recalls == sorted(recalls)                       # deeper stage 1 never finds fewer exact products
    per_query = search.load_per_query(isolated_dirs / "rerank")
    assert per_query["test_lightgbm_n20_ndcg_at_10"].mean() == pytest.approx(
        report["rows"]["lightgbm_n20"]["test"]["ndcg@10"], abs=1e-6)
    # stage 1 row = the two-tower's own ranking
    stage_report = search.load_per_query(isolated_dirs / "stage1")
    np.testing.assert_allclose(per_query["test_stage1_ndcg_at_10"], stage_report["test_ndcg_at_10"], atol=1e-6)
