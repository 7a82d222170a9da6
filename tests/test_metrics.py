"""Tests for mmq.metrics: ranking, classification (AUC/GAUC) and semantic-ID quality."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmq.metrics import (
    as_target_sets,
    auc,
    code_entropy,
    codebook_utilization,
    collision_rate,
    gauc,
    hit_rate_at_k,
    items_per_code,
    mrr,
    ndcg_at_k,
    num_unique_ids,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    semantic_id_quality,
    topk_from_scores,
)

LOG2_3 = math.log2(3)
LOG2_5 = math.log2(5)

# Single target: q0 hit at rank 2, q1 hit at rank 1, q2 never hit.
SINGLE_RANKED = np.array([[3, 1, 4, 2, 0], [4, 0, 1, 2, 3], [0, 1, 2, 3, 4]])
SINGLE_TARGETS = np.array([1, 4, 7])

# Multi target: q0 targets {2,1} hit at ranks 2 and 4; q1 targets {9,3,0} hit at ranks 1 and 4.
MULTI_RANKED = np.array([[5, 2, 8, 1], [0, 1, 2, 3]])
MULTI_TARGETS = [np.array([2, 1]), np.array([9, 3, 0])]


def test_single_target_hand_computed() -> None:
    # k=2: q0 hit at rank 2, q1 at rank 1, q2 none -> recall (1+1+0)/3, precision (1/2+1/2+0)/3.
    assert recall_at_k(SINGLE_RANKED, SINGLE_TARGETS, 2) == pytest.approx(2 / 3)
    assert precision_at_k(SINGLE_RANKED, SINGLE_TARGETS, 2) == pytest.approx(1 / 3)
    assert hit_rate_at_k(SINGLE_RANKED, SINGLE_TARGETS, 2) == pytest.approx(2 / 3)
    # ndcg@2 = (1/log2(3) + 1/log2(2) + 0) / 3, ideal DCG is 1 for a single target.
    assert ndcg_at_k(SINGLE_RANKED, SINGLE_TARGETS, 2) == pytest.approx((1 / LOG2_3 + 1) / 3)
    # mrr = (1/2 + 1/1 + 0) / 3 = 0.5; mrr@1 = (0 + 1 + 0) / 3.
    assert mrr(SINGLE_RANKED, SINGLE_TARGETS) == pytest.approx(0.5)
    assert mrr(SINGLE_RANKED, SINGLE_TARGETS, k=1) == pytest.approx(1 / 3)
    per_query = ndcg_at_k(SINGLE_RANKED, SINGLE_TARGETS, 2, per_query=True)
    np.testing.assert_allclose(per_query, [1 / LOG2_3, 1.0, 0.0])


def test_multi_target_hand_computed() -> None:
    # k=4: recall q0 = 2/2, q1 = 2/3 -> mean 5/6; precision (2/4 + 2/4) / 2 = 1/2.
    assert recall_at_k(MULTI_RANKED, MULTI_TARGETS, 4) == pytest.approx(5 / 6)
    assert precision_at_k(MULTI_RANKED, MULTI_TARGETS, 4) == pytest.approx(0.5)
    # q0: DCG = 1/log2(3) + 1/log2(5), IDCG (2 targets) = 1 + 1/log2(3).
    # q1: DCG = 1 + 1/log2(5), IDCG (3 targets) = 1 + 1/log2(3) + 1/log2(4).
    ndcg_q0 = (1 / LOG2_3 + 1 / LOG2_5) / (1 + 1 / LOG2_3)
    ndcg_q1 = (1 + 1 / LOG2_5) / (1 + 1 / LOG2_3 + 1 / 2)
    assert ndcg_at_k(MULTI_RANKED, MULTI_TARGETS, 4) == pytest.approx((ndcg_q0 + ndcg_q1) / 2)
    # k=2: recall q0 = 1/2, q1 = 1/3 -> 5/12; ndcg@2 = (a/(1+a) + 1/(1+a)) / 2 = 1/2 with a = 1/log2(3).
    assert recall_at_k(MULTI_RANKED, MULTI_TARGETS, 2) == pytest.approx(5 / 12)
    assert ndcg_at_k(MULTI_RANKED, MULTI_TARGETS, 2) == pytest.approx(0.5)
    # mrr = (1/2 + 1/1) / 2.
    assert mrr(MULTI_RANKED, MULTI_TARGETS) == pytest.approx(0.75)


def test_ranking_metrics_keys_and_padding() -> None:
    ranked = np.array([[2, 5, -1, -1], [-1, -1, -1, -1]])
    results = ranking_metrics(ranked, np.array([5, 0]), ks=(1, 4))
    expected_keys = {f"{name}@{k}" for name in ("recall", "precision", "hit_rate", "ndcg", "mrr") for k in (1, 4)}
    assert set(results) == expected_keys | {"mrr"}
    # Only q0 hits, at rank 2; padding (-1) never counts: recall@4 = 1/2, precision@4 = (1/4)/2, mrr = (1/2)/2.
    assert results["recall@1"] == 0.0
    assert results["recall@4"] == pytest.approx(0.5)
    assert results["precision@4"] == pytest.approx(0.125)
    assert results["mrr"] == pytest.approx(0.25)
    assert results["ndcg@4"] == pytest.approx((1 / LOG2_3) / 2)
    assert all(isinstance(value, float) for value in results.values())


def _naive_metrics(ranked: np.ndarray, target_sets: list[set[int]], k: int) -> tuple[float, float, float]:
    """Per-query Python loop reference for recall@k, ndcg@k and mrr@k."""
    recalls, ndcgs, reciprocal_ranks = [], [], []
    for row, targets in zip(ranked, target_sets):
        top = list(row[:k])
        recalls.append(sum(item in targets for item in top) / len(targets))
        dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(top) if item in targets)
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(targets), k)))
        ndcgs.append(dcg / ideal)
        first = next((rank for rank, item in enumerate(top) if item in targets), None)
        reciprocal_ranks.append(0.0 if first is None else 1 / (first + 1))
    return float(np.mean(recalls)), float(np.mean(ndcgs)), float(np.mean(reciprocal_ranks))


@pytest.mark.parametrize("multi", [False, True])
def test_vectorised_matches_naive_loop(multi: bool) -> None:
    rng = np.random.default_rng(0)
    num_queries, num_items, k = 40, 30, 10
    ranked = np.stack([rng.permutation(num_items)[:15] for _ in range(num_queries)])
    if multi:
        targets = [rng.choice(num_items, size=rng.integers(1, 6), replace=False) for _ in range(num_queries)]
    else:
        targets = rng.integers(0, num_items, size=num_queries)
    target_sets = [set(np.atleast_1d(target).tolist()) for target in targets]
    expected_recall, expected_ndcg, expected_mrr = _naive_metrics(ranked, target_sets, k)
    assert recall_at_k(ranked, targets, k) == pytest.approx(expected_recall)
    assert ndcg_at_k(ranked, targets, k) == pytest.approx(expected_ndcg)
    assert mrr(ranked, targets, k) == pytest.approx(expected_mrr)
    results = ranking_metrics(ranked, targets, ks=(k,))
    assert results[f"ndcg@{k}"] == pytest.approx(expected_ndcg)


@pytest.mark.parametrize("block_elements", [1 << 22, 120])
def test_topk_matches_full_argsort_with_ties(block_elements: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mmq.metrics.ranking.MAX_BLOCK_ELEMENTS", block_elements)  # 120 -> blocks of 2 queries
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, size=(20, 50)).astype(np.float64)  # many ties
    top = topk_from_scores(scores, 7)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :7]  # stable => lower index first on ties
    assert top.dtype == np.int64
    np.testing.assert_array_equal(top, expected)


def test_topk_exclusion_and_padding() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(5, 12))
    exclude = [rng.choice(12, size=size, replace=False) for size in (0, 3, 5, 1, 10)]
    top = topk_from_scores(scores, 4, exclude=exclude)
    for row, excluded in enumerate(exclude):
        kept = [item for item in np.argsort(-scores[row], kind="stable") if item not in set(excluded)][:4]
        kept += [-1] * (4 - len(kept))  # the last query has only 2 items left, so it is padded
        np.testing.assert_array_equal(top[row], kept)


def test_as_target_sets_normalises() -> None:
    assert as_target_sets([3, 1]).tolist() == [3, 1]
    sets = as_target_sets([[2, 2, 1], np.array([0])])
    assert [target.tolist() for target in sets] == [[1, 2], [0]]


def test_ranking_errors() -> None:
    with pytest.raises(ValueError, match="NaN"):
        topk_from_scores(np.array([[0.1, np.nan]]), 1)
    with pytest.raises(ValueError, match="k must be positive"):
        topk_from_scores(np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="query 1 has an empty target set"):
        recall_at_k(MULTI_RANKED, [np.array([1]), np.array([], dtype=int)], 2)
    with pytest.raises(ValueError, match="targets has 2 queries but ranked has 3"):
        recall_at_k(SINGLE_RANKED, np.array([1, 2]), 2)
    with pytest.raises(ValueError, match="width 5 but max\\(ks\\)=10"):
        ranking_metrics(SINGLE_RANKED, SINGLE_TARGETS, ks=(5, 10))
    with pytest.raises(ValueError, match="exceeds the ranked list length"):
        ndcg_at_k(SINGLE_RANKED, SINGLE_TARGETS, 6)
    with pytest.raises(ValueError, match="repeated item"):
        mrr(np.array([[1, 1]]), np.array([1]))


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=200)
    scores = np.round(rng.normal(size=200) + labels, 1)  # rounding creates ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_gauc_matches_per_user_sklearn_loop() -> None:
    rng = np.random.default_rng(4)
    user_ids = rng.integers(0, 15, size=300)
    labels = rng.integers(0, 2, size=300)
    labels[user_ids == 3] = 1  # user 3 has a single class and must be skipped
    scores = np.round(rng.normal(size=300) + 0.5 * labels, 1)
    weighted_sum, total_weight, used, skipped = 0.0, 0, 0, 0
    for user in np.unique(user_ids):
        mask = user_ids == user
        if len(np.unique(labels[mask])) < 2:
            skipped += 1
            continue
        weighted_sum += roc_auc_score(labels[mask], scores[mask]) * mask.sum()
        total_weight += mask.sum()
        used += 1
    result = gauc(user_ids, labels, scores)
    assert result["gauc"] == pytest.approx(weighted_sum / total_weight)
    assert (result["num_users_used"], result["num_users_skipped"]) == (used, skipped)
    assert skipped >= 1


def test_classification_errors() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auc(np.array([1, 1, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="lengths differ"):
        auc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        auc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="binary"):
        auc(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="no user has both"):
        gauc(np.array([0, 1]), np.array([0, 1]), np.array([0.1, 0.2]))


def test_entropy_hand_examples() -> None:
    uniform = np.array([[0, 5], [1, 5], [2, 5], [3, 5]])  # position 0 uniform over 4 codes, position 1 constant
    np.testing.assert_allclose(code_entropy(uniform), [math.log(4), 0.0])


def test_utilization_collisions_and_histogram() -> None:
    codes = np.array([[0, 1], [0, 1], [1, 2], [2, 0]])
    # position 0 uses {0,1,2} of 4, position 1 uses {0,1,2} of 6.
    np.testing.assert_allclose(codebook_utilization(codes, [4, 6]), [3 / 4, 3 / 6])
    np.testing.assert_allclose(codebook_utilization(codes, 3), [1.0, 1.0])
    # Items 0 and 1 share (0, 1): 2 of 4 items collide; 3 unique IDs.
    assert collision_rate(codes) == pytest.approx(0.5)
    assert num_unique_ids(codes) == 3
    assert collision_rate(np.array([[0, 1], [1, 0]])) == 0.0
    np.testing.assert_array_equal(items_per_code(codes, 0, codebook_size=4), [2, 1, 1, 0])


def test_semantic_id_quality_is_json_serialisable() -> None:
    codes = np.array([[0, 1], [0, 1], [1, 2], [2, 0]])
    summary = semantic_id_quality(codes, 4)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["collision_rate"] == pytest.approx(0.5)
    assert summary["unique_ids"] == 3 and summary["num_items"] == 4
    assert summary["utilization_per_position"] == pytest.approx([0.75, 0.75])


def test_semantic_id_errors() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        code_entropy(np.array([[0, -1]]))
    with pytest.raises(ValueError, match="out of range for codebook size 4"):
        codebook_utilization(np.array([[0, 4]]), 4)
    with pytest.raises(ValueError, match="2-D"):
        collision_rate(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="empty"):
        semantic_id_quality(np.zeros((0, 3), dtype=int), 4)
