"""Collaborative item embeddings: hand-checked counts and PPMI, no leakage of validation/test items, cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmq.data.schema import ImportReport, build_dataset
from mmq.features.collaborative import (CollaborativeConfig, collaborative_embeddings, cooccurrence_matrix,
                                        item_collaborative_embeddings, ppmi)

CONFIG = CollaborativeConfig(dim=4, window=2)


def dataset_from(sequences: dict[str, list[int]], num_items: int = 12):
    """P5-style dataset (positions, no timestamps) over items ``i0..i{num_items-1}``."""
    item_ids = [f"i{index}" for index in range(num_items)]
    items = pd.DataFrame({"item_id": item_ids, "title": item_ids, "image": ""})
    users, column, positions = [], [], []
    for user, sequence in sequences.items():
        users += [user] * len(sequence)
        column += [f"i{item}" for item in sequence]
        positions += list(range(len(sequence)))
    return build_dataset("toy_collab", items, users, column, report=ImportReport(dataset="toy_collab"),
                         text_fields=("title",), positions=np.array(positions))


SEQUENCES = {"u0": [0, 1, 2, 3, 4, 10], "u1": [1, 2, 3, 5, 11], "u2": [4, 5, 6, 7, 0, 1],
             "u3": [6, 7, 8, 2, 3], "u4": [0, 2, 4, 6, 8, 9]}


def test_cooccurrence_counts_by_hand():
    counts = cooccurrence_matrix([np.array([0, 1, 2]), np.array([2, 1, 1])], num_items=4, window=1).toarray()
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = 1  # (0,1)
    expected[1, 2] = expected[2, 1] = 2  # (1,2) and (2,1); the repeated (1,1) is dropped
    np.testing.assert_array_equal(counts, expected)
    window_two = cooccurrence_matrix([np.array([0, 1, 2])], num_items=3, window=2).toarray()
    assert window_two[0, 2] == 1 and window_two[2, 0] == 1
    with pytest.raises(ValueError, match="outside"):
        cooccurrence_matrix([np.array([0, 7])], num_items=3, window=1)


def test_ppmi_matches_formula():
    counts = cooccurrence_matrix([np.array([0, 1]), np.array([1, 2]), np.array([0, 1])], num_items=3, window=1)
    dense = counts.toarray()
    total, rows = dense.sum(), dense.sum(1)
    context = dense.sum(0) ** 0.75 / (dense.sum(0) ** 0.75).sum()
    with np.errstate(divide="ignore"):
        expected = np.maximum(np.log(dense / total) - np.log(rows[:, None] / total) - np.log(context[None, :]), 0)
    expected[dense == 0] = 0
    np.testing.assert_allclose(ppmi(counts, 0.75).toarray(), expected, rtol=1e-10)


def test_no_leakage_validation_and_test_items_do_not_change_embeddings(isolated_dirs):
    base = item_collaborative_embeddings(dataset_from(SEQUENCES), CONFIG)
    changed = {user: sequence[:-2] + [11, 10] for user, sequence in SEQUENCES.items()}  # new valid/test items
    moved = item_collaborative_embeddings(dataset_from(changed), CONFIG, force=True)
    np.testing.assert_array_equal(moved.embeddings, base.embeddings)
    np.testing.assert_array_equal(moved.valid, base.valid)
    # sanity: changing a TRAINING item does change them
    trained = dict(SEQUENCES, u4=[0, 9, 4, 6, 8, 9])
    assert not np.array_equal(item_collaborative_embeddings(dataset_from(trained), CONFIG).embeddings,
                              base.embeddings)


def test_items_without_training_cooccurrence_get_flagged_zero_rows(isolated_dirs):
    result = item_collaborative_embeddings(dataset_from(SEQUENCES), CONFIG)
    # items 9, 10, 11 only ever appear as a user's last two (validation / test) items
    assert result.valid.tolist() == [True] * 9 + [False] * 3
    np.testing.assert_array_equal(result.embeddings[~result.valid], 0.0)
    np.testing.assert_allclose(np.linalg.norm(result.embeddings[result.valid], axis=1), 1.0, rtol=1e-5)
    assert result.embeddings.shape == (12, 4) and result.embeddings.dtype == np.float32


def test_cached_and_deterministic(isolated_dirs):
    dataset = dataset_from(SEQUENCES)
    first = item_collaborative_embeddings(dataset, CONFIG)
    cached = list((isolated_dirs / "cache" / "features" / "toy_collab").glob("collaborative-*.npy"))
    assert len(cached) == 2 and any(path.name.endswith(".valid.npy") for path in cached)
    np.testing.assert_array_equal(item_collaborative_embeddings(dataset, CONFIG).embeddings, first.embeddings)
    recomputed = collaborative_embeddings([np.array(s[:-2]) for s in SEQUENCES.values()], 12, CONFIG)
    np.testing.assert_array_equal(recomputed.embeddings, first.embeddings)


def test_cache_is_keyed_by_training_content(isolated_dirs, monkeypatch):
    """Edited training interactions (same item ids, same name) recompute; an identical rebuild is a cache hit."""
    from mmq.features import collaborative

    calls = []
    real = collaborative.collaborative_embeddings

    def counting(*arguments, **keywords):
        calls.append(1)
        return real(*arguments, **keywords)

    monkeypatch.setattr(collaborative, "collaborative_embeddings", counting)
    first = item_collaborative_embeddings(dataset_from(SEQUENCES), CONFIG)
    item_collaborative_embeddings(dataset_from(dict(SEQUENCES)), CONFIG)
    assert len(calls) == 1
    edited = dict(SEQUENCES, u2=[4, 5, 8, 7, 0, 1])  # one training item replaced
    second = item_collaborative_embeddings(dataset_from(edited), CONFIG)
    assert len(calls) == 2 and not np.array_equal(first.embeddings, second.embeddings)
