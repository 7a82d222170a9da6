"""The /recommend backends on tiny random models (generative beam search, user two-tower + faiss, SASRec): history
items never returned, k respected, equal to a brute-force ranking, recommend() == recommend_batch(), short lists
flagged, bad requests refused, loader errors naming the training command; one real Beauty smoke test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.serving.engine import UnknownItemError
from baselines.serving.recommend import (BACKENDS, DEFAULT_RUNS, GenerativeRecommender, SASRecRecommender,
                                         TwoTowerRecommender, load_recommender)
from mmq.recommenders.sequences import pad_histories

NUM_ITEMS, WINDOW = 37, 5                 # odd sizes; histories up to 12 items are longer than the window
CATALOGUE = tuple(f"i{item:03d}" for item in range(NUM_ITEMS))
RECORDS = {item: {"title": f"title of {item}"} for item in CATALOGUE}
COMMON = {"version": "tiny-seed0", "catalogue": CATALOGUE, "records": RECORDS, "max_history_items": 32}


def tiny_semantic_ids(seed: int = 0) -> np.ndarray:
    """37 distinct SIDs of 3 levels (4 x 4 x 3 codes)."""
    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4), np.arange(3), indexing="ij"), axis=-1).reshape(-1, 3)
    return grid[np.random.default_rng(seed).permutation(len(grid))[:NUM_ITEMS]]


def build(backend: str):
    """A tiny randomly initialised model of ``backend`` behind its recommender."""
    torch.manual_seed(0)
    if backend == "generative":
        from mmq.generative.causal import CausalSidRecommender

        semantic_ids = tiny_semantic_ids()
        model = CausalSidRecommender(codebook_sizes=(4, 4, 3), max_length=WINDOW, dim=16, num_layers=1,
                                     num_heads=2, ffn_multiplier=2, decoder_hidden=24)
        return GenerativeRecommender(model, semantic_ids, batch_rows=64, **COMMON)
    if backend == "two_tower":
        from baselines.two_tower.user_history import UserHistoryTwoTower

        text = np.random.default_rng(1).normal(size=(NUM_ITEMS, 12)).astype(np.float32)
        model = UserHistoryTwoTower(text, embedding_dim=8, max_history=WINDOW, pooling="attention")
        torch.nn.init.normal_(model.item_ids.weight)                 # not the zero start: IDs matter
        torch.nn.init.normal_(model.attention_vector)
        return TwoTowerRecommender(model, batch_size=4, **COMMON)
    from baselines.sasrec.model import SASRec

    model = SASRec(num_items=NUM_ITEMS, max_length=WINDOW, hidden_size=8, num_layers=1, num_heads=1,
                   feedforward_size=16, dropout=0.3)
    return SASRecRecommender(model, batch_size=4, **COMMON)


@pytest.fixture(scope="module", params=BACKENDS)
def recommender(request):
    return build(request.param)


def random_histories(count: int = 14, seed: int = 3) -> list[np.ndarray]:
    """Histories of 1..12 items (some with repeats), shorter and longer than the window."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, NUM_ITEMS, size=rng.integers(1, 13)) for _ in range(count)]


def ids(history) -> list[str]:
    return [CATALOGUE[item] for item in history]


def test_history_items_are_never_returned_and_k_is_respected(recommender):
    for history in random_histories():
        for k in (1, 4, 10):
            result = recommender.recommend(ids(history), k)
            returned = [item["item_id"] for item in result.items]
            assert len(returned) == k and len(set(returned)) == k and result.complete and result.note is None
            assert not set(returned) & set(ids(history))              # the FULL history, not only the window
            assert all(item["title"] == RECORDS[item["item_id"]]["title"] for item in result.items)
            scores = [item["score"] for item in result.items]
            assert scores == sorted(scores, reverse=True)
            assert result.version == "tiny-seed0" and {"encode", "retrieve", "total"} <= set(result.timings_ms)


def test_recommend_and_recommend_batch_agree_and_are_deterministic(recommender):
    histories = random_histories()
    batch = recommender.recommend_batch(histories, 6)
    assert batch.shape == (len(histories), 6) and batch.dtype == np.int64
    single = [[CATALOGUE.index(item["item_id"]) for item in recommender.recommend(ids(history), 6).items]
              for history in histories]
    assert batch.tolist() == single
    np.testing.assert_array_equal(recommender.recommend_batch(histories, 6), batch)
    assert recommender.recommend(ids(histories[0]), 6).items == recommender.recommend(ids(histories[0]), 6).items


def test_short_lists_are_flagged_and_padded(recommender):
    history = list(range(30))                                          # 7 unseen items left
    result = recommender.recommend(ids(history), 10)
    assert len(result.items) == NUM_ITEMS - 30 and not result.complete and "7 of the 37" in result.note
    assert {item["item_id"] for item in result.items} == set(CATALOGUE[30:])
    row = recommender.recommend_batch([history], 10)[0]
    assert sorted(row[:7].tolist()) == list(range(30, NUM_ITEMS)) and (row[7:] == -1).all()


def brute_force(scores: np.ndarray, history, k: int) -> list[int]:
    """Top-k of full-catalogue scores outside the history."""
    scores = scores.astype(np.float64).copy()
    scores[np.asarray(history)] = -np.inf
    return np.argsort(-scores, kind="stable")[:k].tolist()


@torch.no_grad()
def test_two_tower_equals_brute_force_over_the_catalogue():
    recommender = build("two_tower")
    items = recommender.model.all_items().numpy()
    for history in random_histories():
        users = recommender.model.encode_users(torch.from_numpy(pad_histories([history], WINDOW))).numpy()
        scores = (users @ items.T)[0]
        result = recommender.recommend(ids(history), 8)
        assert [CATALOGUE.index(item["item_id"]) for item in result.items] == brute_force(scores, history, 8)
        np.testing.assert_allclose([item["score"] for item in result.items],
                                   scores[brute_force(scores, history, 8)], atol=1e-5)


@torch.no_grad()
def test_sasrec_equals_brute_force_over_the_catalogue():
    recommender = build("sasrec")
    for history in random_histories():
        scores = recommender.model.score_histories(torch.from_numpy(pad_histories([history], WINDOW)))[0].numpy()
        result = recommender.recommend(ids(history), 8)
        assert [CATALOGUE.index(item["item_id"]) for item in result.items] == brute_force(scores, history, 8)


@torch.no_grad()
def test_generative_scores_are_sid_log_probabilities_and_an_exhaustive_beam_is_exact():
    from mmq.generative.beam_search import score_all_items

    recommender = build("generative")
    for history in random_histories(6):
        codes = recommender.lookup[torch.from_numpy(pad_histories([history], WINDOW))]
        log_probs = score_all_items(recommender.model, recommender.model.user_context(codes), recommender.trie)[0]
        result = recommender.recommend(ids(history), 5)
        rows = [CATALOGUE.index(item["item_id"]) for item in result.items]
        np.testing.assert_allclose([item["score"] for item in result.items], log_probs[rows].numpy(), atol=1e-4)
        unseen = NUM_ITEMS - len(set(history.tolist()))                # k + history = catalogue: the beam is exhaustive
        exhaustive = recommender.recommend(ids(history), unseen)
        assert [CATALOGUE.index(item["item_id"]) for item in exhaustive.items] == \
            brute_force(log_probs.numpy(), history, unseen)


def test_bad_requests_are_refused(recommender):
    with pytest.raises(UnknownItemError) as error:
        recommender.recommend(["i001", "nope", "i002", "nope", "also-nope"], 5)
    assert error.value.args[0] == ["nope", "also-nope"]
    with pytest.raises(ValueError, match="empty"):
        recommender.recommend([], 5)
    with pytest.raises(ValueError, match="33 items; at most 32"):
        recommender.recommend(ids([*range(NUM_ITEMS), 0, 1, 2, 3])[:33], 5)
    with pytest.raises(ValueError, match="k must be >= 1"):
        recommender.recommend(["i001"], 0)
    with pytest.raises(ValueError, match="list of item ids"):
        recommender.recommend("i001", 5)
    with pytest.raises(ValueError, match="item indices"):
        recommender.recommend_batch([[1, 2], [NUM_ITEMS]], 5)
    with pytest.raises(ValueError, match="empty"):
        recommender.recommend_batch([[1, 2], []], 5)


def test_loader_errors_name_the_backends_and_the_training_command(isolated_dirs):
    from mmq import registry

    with pytest.raises(ValueError, match="choices: \\['generative', 'two_tower', 'sasrec'\\]"):
        load_recommender("popularity")
    with pytest.raises(ValueError, match="serves 'sasrec' runs"):
        load_recommender("sasrec", run="experiments/ch2/beauty_user_two_tower.yaml")
    run = "experiments/generative/beauty_sasrec.yaml"
    with pytest.raises(FileNotFoundError, match=f"python scripts/run.py {run} --seeds 3$"):
        load_recommender("sasrec", seed=3)
    directory = registry.run_directory(run, 3)
    directory.mkdir(parents=True)
    (directory / "DONE").write_text("done\n")                          # a finished run whose weights are absent
    with pytest.raises(FileNotFoundError, match=f"best.pt is absent.*python scripts/run.py {run} --seeds 3 --force"):
        load_recommender("sasrec", seed=3)


def test_real_beauty_two_tower_and_generative_recommend_for_one_user():
    """Real run folders + Beauty data when present (weights are git-ignored; skips otherwise)."""
    from mmq import registry
    from mmq.data import leave_one_out, load_dataset

    root = Path(os.environ.get("MMQ_DATA_DIR", "data"))
    if not (root / "amazon14" / "beauty").is_dir():
        pytest.skip(f"real data not found under MMQ_DATA_DIR={root}")
    dataset = load_dataset("beauty")
    history = leave_one_out(dataset).history_and_target("test")[0][0]
    item_ids = dataset.items.sort_values("item_index")["item_id"].astype(str).tolist()
    for backend in ("two_tower", "generative"):
        run, _ = DEFAULT_RUNS[backend]
        _, config = registry.load_experiment(run)
        if not (registry.run_directory(run, 0) / "best.pt").exists():
            pytest.skip(f"{run} has no weights here (git-ignored)")
        if backend == "generative" and not registry.is_usable(config.semantic_ids, 0):
            pytest.skip(f"the SID run {config.semantic_ids} is not on this machine")
        if backend == "two_tower":
            from mmq.features.text import text_feature_path

            if not text_feature_path(dataset, config.text).exists():
                pytest.skip("Beauty title embeddings are not cached (encoding them takes minutes)")
        recommender = load_recommender(backend, num_threads=torch.get_num_threads())
        result = recommender.recommend([item_ids[item] for item in history], 10)
        returned = {item["item_id"] for item in result.items}
        assert len(returned) == 10 and result.complete and not returned & {item_ids[item] for item in history}
        assert all(item["title"] for item in result.items) and result.timings_ms["total"] > 0
