"""Chapter-1 query building, history filtering and evaluation against naive references."""

from __future__ import annotations

import numpy as np
import pytest

from baselines.faiss_ann.content_retrieval import (build_flat, drop_history, evaluate_split, history_queries,
                                                   pad_histories)


def test_pad_histories_right_aligned_and_truncated():
    padded = pad_histories([np.array([1, 2, 3]), np.array([4])], max_history=2)
    assert padded.tolist() == [[2, 3], [-1, 4]]


@pytest.mark.parametrize("decay", [0.0, 0.5, 1.0])
def test_history_queries_match_naive_loop(decay):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(9, 5)).astype(np.float32)
    histories = [np.array([3, 1, 4]), np.array([7]), np.array([2, 8, 5, 0])]
    queries = history_queries(pad_histories(histories, 4), embeddings, decay)
    for row, history in enumerate(histories):
        weights = np.array([decay ** age for age in range(len(history) - 1, -1, -1)])
        expected = (weights[:, None] * embeddings[history]).sum(axis=0)
        expected /= np.linalg.norm(expected)
        assert np.allclose(queries[row], expected, atol=1e-6)


def test_history_queries_reject_bad_input():
    with pytest.raises(ValueError, match="decay"):
        history_queries(np.array([[0]]), np.ones((1, 2)), 1.5)
    with pytest.raises(ValueError, match="at least one history item"):
        history_queries(np.array([[-1, -1]]), np.ones((1, 2)), 0.5)


def test_drop_history_keeps_rank_order():
    ids = np.array([[5, 1, 6, 2, 7], [3, -1, 9, 8, 0]])
    histories = np.array([[1, 2], [-1, 9]])
    assert drop_history(ids, histories, 3).tolist() == [[5, 6, 7], [3, 8, 0]]


def test_evaluate_finds_nearest_unseen_item():
    # items on a circle; the next item is always the unseen neighbour of the last history item
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    histories = [np.array([0, 1]), np.array([5, 6])]
    targets = np.array([2, 7])
    metrics, ranked, queries_per_second = evaluate_split(build_flat(embeddings), embeddings, histories, targets,
                                                         decay=0.0, ks=(1, 2), max_history=20)
    # item 1's neighbours are 0 (in the history, so removed) and 2
    assert ranked[:, 0].tolist() == [2, 7]
    assert not np.isin(ranked[0], histories[0]).any() and not np.isin(ranked[1], histories[1]).any()
    assert metrics["recall@1"] == 1.0 and metrics["ndcg@2"] == 1.0
    assert queries_per_second > 0
