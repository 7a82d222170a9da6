"""Chapter 2: the generated query benchmark, graded metrics, the masked in-batch loss and the two-tower."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from baselines.two_tower import search
from baselines.two_tower.metrics import graded_metrics
from baselines.two_tower.queries import (HELD_OUT_TEMPLATES, TRAIN_TEMPLATES, Query, QueryBenchmarkConfig, QueryError,
                                         _forms, _render, catalogue_attributes, clean_query, generate_benchmark,
                                         load_query_files, product_brand, product_texts)
from mmq.data.schema import ImportReport, build_dataset

BRANDS = ("Nike", "Peter England", "Titan")
ARTICLES = (("Tshirts", "Topwear"), ("Shirts", "Topwear"), ("Jeans", "Bottomwear"), ("Watches", "Watches"),
            ("Casual Shoes", "Shoes"), ("Sports Shoes", "Shoes"))
GENDERS = ("Men", "Women", "Unisex")
COLOURS = ("Navy Blue", "Black", "White", "Red")


def tiny_catalogue(num: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(num):
        brand, (article, sub), gender, colour = (BRANDS[rng.integers(3)], ARTICLES[rng.integers(6)],
                                                 GENDERS[rng.integers(3)], COLOURS[rng.integers(4)])
        rows.append({"item_id": str(1000 + index), "title": f"{brand} {gender} {colour} {article}", "gender": gender,
                     "masterCategory": "Apparel", "subCategory": sub, "articleType": article, "baseColour": colour,
                     "season": ("Summer", "Winter")[rng.integers(2)], "usage": ("Casual", "Sports")[rng.integers(2)],
                     "year": "2012", "image": ""})
    fields = ("title", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage")
    return build_dataset("tiny_myntra", pd.DataFrame(rows), [], [], report=ImportReport(dataset="tiny"),
                         text_fields=fields)


SMALL = QueryBenchmarkConfig(num_test=30, num_valid=20, num_train=120, min_brand_products=5)


@pytest.fixture(scope="module")
def tiny():
    dataset = tiny_catalogue()
    return dataset, generate_benchmark(dataset, SMALL)


# --- the generator -------------------------------------------------------------------------------------

def test_benchmark_is_a_pure_function_of_the_seed(tiny):
    dataset, benchmark = tiny
    again = generate_benchmark(dataset, SMALL)
    assert again.sha256() == benchmark.sha256()
    assert generate_benchmark(dataset, dataclasses.replace(SMALL, seed=1)).sha256() != benchmark.sha256()


def test_splits_share_no_attribute_combination_and_test_uses_held_out_wording(tiny):
    _, benchmark = tiny
    combos = {name: {query.slots for query in benchmark.split(name)} for name in ("train", "valid", "test")}
    assert len(combos["test"]) == 30 and len(combos["valid"]) == 20 and len(combos["train"]) == 120
    assert not combos["train"] & combos["test"] and not combos["train"] & combos["valid"]
    assert not combos["valid"] & combos["test"]
    train_texts = {query.text for query in benchmark.split("train")}
    assert not train_texts & {query.text for query in benchmark.split("test")}
    held_out_starts = ("show me", "looking for", "best")
    assert any(query.text.startswith(held_out_starts) for query in benchmark.split("test"))
    assert not any(query.text.startswith(held_out_starts) for query in benchmark.split("train"))
    # a synonym table entry used in test never appears in a training query
    assert "tee shirts" not in " ".join(train_texts) and "trainers" not in " ".join(train_texts)


def test_held_out_synonyms_never_name_another_catalogue_value():
    # "burgundy" is a real Myntra colour, so it may not stand for Maroon at test time
    assert _forms("colour", "Maroon", True, frozenset({"burgundy", "maroon"})) == ("wine red", "dark red")
    assert _forms("article", "Backpack", True, frozenset({"backpacks"})) == ("backpack",)
    assert _forms("article", "Jeans", False) == ("jeans",)


def test_templates_drop_segments_of_missing_slots():
    assert _render(TRAIN_TEMPLATES[2], {"article": "jeans", "gender": "men"}) == "jeans for men"
    assert _render(HELD_OUT_TEMPLATES[0], {"article": "watches", "brand": "titan"}) == "show me titan watches"


def test_grades_follow_the_attribute_rules(tiny):
    dataset, benchmark = tiny
    attributes = catalogue_attributes(dataset)
    query = Query("q", "navy blue tshirts men", (("article", "Tshirts"), ("colour", "Navy Blue"), ("gender", "Men")),
                  "test")
    grades = benchmark.grades(query)
    tshirt, men = attributes.articleType == "Tshirts", attributes.gender.isin(["Men", "Unisex"])
    navy = attributes.baseColour == "Navy Blue"
    np.testing.assert_array_equal(grades == 3, tshirt & men & navy)
    np.testing.assert_array_equal(grades == 2, tshirt & men & ~navy)
    np.testing.assert_array_equal(grades == 1, (attributes.subCategory == "Topwear") & ~(tshirt & men))
    unisex_navy_tshirts = ((attributes.gender == "Unisex") & tshirt & navy).to_numpy()
    assert unisex_navy_tshirts.any() and (grades[unisex_navy_tshirts] == 3).all()
    items = np.array([0, 5, 17])
    np.testing.assert_array_equal(benchmark.grades(query, items), grades[items])


def test_every_generated_query_has_an_exact_product(tiny):
    _, benchmark = tiny
    assert all((benchmark.grades(query) == 3).any() for query in benchmark.queries)


def test_brand_and_product_text():
    assert product_brand("Peter England Men Party Blue Jeans") == "Peter England"
    assert product_brand("Plain Blue Jeans") == ""
    texts = product_texts(tiny_catalogue(4))
    assert len(texts) == 4 and all(" | " in text for text in texts)


def test_bad_queries_and_label_files(tmp_path, tiny):
    with pytest.raises(QueryError, match="empty query"):
        clean_query("   \t ")
    text, truncated = clean_query("shoes " * 100, max_chars=50)
    assert truncated and len(text) == 50
    assert clean_query("  red  shoes ") == ("red shoes", False)
    dataset, _ = tiny
    attributes, ids = catalogue_attributes(dataset), dataset.items["item_id"].tolist()
    queries, labels = tmp_path / "queries.tsv", tmp_path / "labels.tsv"
    queries.write_text("q1\tred shoes\nq2\tblue jeans\n")
    labels.write_text(f"q1\t{ids[0]}\t3\nq1\tNOPE\t2\n")
    with pytest.raises(QueryError, match="1 labels name products not in the catalogue"):
        load_query_files(attributes, ids, queries, labels)
    labels.write_text(f"q1\t{ids[0]}\t3\nq2\t{ids[1]}\t0\n")
    kept, graded, counts = load_query_files(attributes, ids, queries, labels)
    assert kept == [("q1", "red shoes")] and counts["queries_without_relevant"] == 1 and graded["q1"] == {0: 3}
    queries.write_text("q1\t  \n")
    with pytest.raises(QueryError, match="queries.tsv:1: empty query"):
        load_query_files(attributes, ids, queries, labels)


# --- metrics ----------------------------------------------------------------------------------------------

def test_graded_metrics_by_hand():
    grades = [np.array([3, 0, 2, 3, 1, 0])]
    ranked = np.array([[1, 0, 2, -1]])           # irrelevant, exact, substitute, empty
    out = graded_metrics(ranked, grades, ks=(2, 4))
    ideal = 7 + 7 / np.log2(3)
    assert out["ndcg@2"][0] == pytest.approx((7 / np.log2(3)) / ideal)
    assert out["ndcg@4"][0] == pytest.approx((7 / np.log2(3) + 3 / 2) / (ideal + 3 / 2 + 1 / np.log2(5)))
    assert out["recall@2"][0] == pytest.approx(0.5) and out["recall@4"][0] == pytest.approx(0.5)
    assert out["precision@2"][0] == pytest.approx(0.5) and out["mrr@4"][0] == pytest.approx(0.5)
    perfect = graded_metrics(np.array([[0, 3, 2, 4]]), grades, ks=(2, 4))
    assert perfect["ndcg@4"][0] == pytest.approx(1.0) and perfect["recall@2"][0] == 1.0
    with pytest.raises(ValueError, match="ranked must be"):
        graded_metrics(np.array([[0, 1]]), grades, ks=(10,))


# --- losses ---------------------------------------------------------------------------------------------------

def test_masked_info_nce_equals_the_library_loss_without_mask():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(8, 16, generator=generator), dim=-1)
    docs = torch.nn.functional.normalize(torch.randn(16, 16, generator=generator), dim=-1)
    library = MultipleNegativesRankingLoss(model=None, scale=20.0)
    expected = library.compute_loss_from_embeddings([queries, docs[:8], docs[8:]], None)
    assert search.masked_info_nce(queries, docs, scale=20.0).item() == pytest.approx(expected.item(), rel=1e-6)
    mask = torch.zeros(8, 16, dtype=torch.bool)
    mask[0, 3] = mask[0, 0] = True                     # the own positive is never masked
    masked = search.masked_info_nce(queries, docs, mask, scale=20.0)
    logits = 20.0 * queries @ docs.T
    logits[0, 3] = float("-inf")
    assert masked.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.arange(8)).item(), rel=1e-6)


# --- the two-tower ------------------------------------------------------------------------------------------

FAST = search.QuerySearchConfig(benchmark=SMALL, batch_size=16, steps_per_unit=15, units=2, head_hidden=32,
                                hard_negative_pool=10, ks=(5, 10), selection_metric="ndcg@10", num_threads=1)


@pytest.fixture
def patched(monkeypatch, isolated_dirs, tiny):
    dataset, _ = tiny
    monkeypatch.setattr(search, "load_dataset", lambda name: dataset)
    return isolated_dirs


def _train(config, directory, seed=0):
    torch.manual_seed(seed)   # as run() does: the heads' initial weights
    benchmark, texts, _ = search.load_benchmark(config)
    model = search.build_two_tower(config)
    task = search.TwoTowerTask(model, benchmark, texts, config, seed, progress=False)
    settings = search.LoopSettings(max_units=config.units, eval_every=1, selection_metric=config.selection_metric)
    return task, search.run_training(task, settings, directory, seed=seed, progress=False)


def test_two_tower_learns_and_mining_excludes_relevant_products(patched):
    _, in_batch = _train(dataclasses.replace(FAST, hard_negatives=False), patched / "in_batch")
    losses = [record["loss"] for record in in_batch.history]
    assert losses[-1] < losses[0]
    task, result = _train(FAST, patched / "run")   # unit 2 draws mined negatives (a harder loss, not comparable)
    assert task.negatives is not None and len(task.negatives) == len(task.train_queries)
    for query, pool in zip(task.train_queries, task.negatives):
        assert (task.benchmark.grades(query, pool) < FAST.false_negative_grade).all()
    assert result.history[1]["mined_negatives"] and not result.history[0]["mined_negatives"]


def test_two_tower_resume_is_exact(patched):
    config = dataclasses.replace(FAST, units=3)
    _, full = _train(config, patched / "full")
    _train(dataclasses.replace(config, units=1), patched / "cut")
    _, resumed = _train(config, patched / "cut")
    assert [record["loss"] for record in resumed.history] == [record["loss"] for record in full.history]
    assert resumed.best_metrics == full.best_metrics


def test_run_writes_per_query_results_and_untrained_two_tower_equals_frozen(patched):
    frozen = search.run(dataclasses.replace(FAST, method="frozen"), 0, patched / "frozen", progress=False)
    bm25 = search.run(dataclasses.replace(FAST, method="bm25"), 0, patched / "bm25", progress=False)
    trained = search.run(FAST, 0, patched / "two_tower", progress=False)
    for report in (frozen, bm25, trained):
        assert 0.0 <= report["test"]["ndcg@10"] <= 1.0
    per_query = search.load_per_query(patched / "two_tower")
    assert per_query["test_ndcg_at_10"].shape == (30,)
    assert per_query["test_ndcg_at_10"].mean() == pytest.approx(trained["test"]["ndcg@10"], abs=1e-6)
    # an identity head over the frozen encoder is the frozen row
    model = search.build_two_tower(FAST)
    base = torch.nn.functional.normalize(torch.randn(4, model.dim), dim=-1)
    assert torch.allclose(model.query_head(base), base, atol=1e-6)
    assert trained["valid"]["ndcg@10"] >= frozen["valid"]["ndcg@10"] - 0.05


def test_partial_fine_tuning_trains_only_the_top_layers(patched):
    config = dataclasses.replace(FAST, trainable_layers=1, units=1, steps_per_unit=2, batch_size=4)
    model = search.build_two_tower(config)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    benchmark, texts, _ = search.load_benchmark(config)
    task = search.TwoTowerTask(model, benchmark, texts, config, 0, progress=False)
    task.train_unit(0)
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    assert any(".layer.5." in name for name in changed)
    assert not any(".layer.0." in name or "embeddings" in name for name in changed)
    assert set(task.trainable_state()) >= changed


def test_bad_configs_are_refused():
    for bad in (dict(method="dense"), dict(loss="hinge"), dict(trainable_layers=-2), dict(selection_metric="ndcg@7"),
                dict(false_negative_grade=4), dict(batch_size=1)):
        with pytest.raises(ValueError):
            search.QuerySearchConfig(**bad)


def test_dense_search_refuses_nan_and_shape_mismatch():
    products = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="dims"):
        search.dense_search(products, np.ones((2, 3), dtype=np.float32), 2)
    bad = products.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        search.dense_search(bad, products, 2)


def test_every_combination_slot_is_known():
    for slot, value in itertools.chain.from_iterable(
            query.slots for query in generate_benchmark(tiny_catalogue(), SMALL).queries):
        assert slot in ("article", "brand", "gender", "colour", "usage", "season") and value


# --- real data (skipped without MMQ_DATA_DIR) -------------------------------------------------------------

def test_real_myntra_benchmark_is_the_committed_one(real_data_dir, isolated_dirs):
    """The default benchmark regenerates identically (its sha256 is the one every chapter-2/4 report records)."""
    from mmq.data import load_dataset

    dataset = load_dataset("myntra", root=real_data_dir)
    benchmark = generate_benchmark(dataset)
    assert benchmark.sha256() == "d6375822666bef1974566a2ae4ec0def3199d7edf9c3b10a0983fe213745f7e9"
    summary = benchmark.summary()
    assert summary["test"]["queries"] == 1000 and summary["valid"]["queries"] == 500
    assert summary["test"]["exact_min"] >= 1
    texts = product_texts(dataset)
    assert len(texts) == benchmark.num_items == 44441 and all(text.strip() for text in texts)
    # smoke: BM25 over the real catalogue finds relevant products for real test queries (the table has .31)
    queries = benchmark.split("test")[:100]
    ranked = search.BM25Search(texts).search([query.text for query in queries], 10)[0]
    ndcg = graded_metrics(ranked, lambda row: benchmark.grades(queries[row]), (10,))["ndcg@10"].mean()
    assert 0.15 < ndcg < 0.6


def test_relative_claims_use_paired_intervals():
    from baselines.two_tower.table import relative_claim

    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, size=(1, 400))
    better = base + 0.1
    assert "**holds**" in relative_claim("a", better, "b", base, metric="ndcg@10")
    assert "**fails**" in relative_claim("a", base, "b", better, metric="ndcg@10")
    # +0.1 absolute on a mean near 0.5 is about +20%: it beats b by 10% but not by 50%
    assert "**holds**" in relative_claim("a", better, "b", base, metric="ndcg@10", relative=0.10)
    assert "**fails**" in relative_claim("a", better, "b", base, metric="ndcg@10", relative=0.50)
    assert "not tested" in relative_claim("a", None, "b", base, metric="ndcg@10")
