"""Tests for the iterated k-core filter and the two evaluation splits (leave-one-out, chronological)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmq.data.kcore import apply_kcore, kcore_mask
from mmq.data.schema import INTERACTION_COLUMNS, ImportReport, build_dataset
from mmq.data.splits import SequenceSplitConfig, chronological_split, leave_one_out


def make_dataset(rows, item_ids, *, with_time=True, name="toy"):
    """rows: (user_id, item_id, timestamp, rating) in file order; items get a ``title`` text field."""
    items = pd.DataFrame({"item_id": item_ids, "title": [f"title {item}" for item in item_ids], "image": ""})
    users = [row[0] for row in rows]
    item_col = [row[1] for row in rows]
    kwargs = {}
    if with_time:
        kwargs = {"timestamps": np.array([row[2] for row in rows], dtype=float),
                  "ratings": np.array([row[3] for row in rows], dtype=float)}
    return build_dataset(name, items, users, item_col, report=ImportReport(dataset=name),
                         text_fields=("title",), **kwargs)


def make_sequences(sequences: dict[str, list[str]], item_ids):
    """P5-style dataset (positions given, no timestamps or ratings)."""
    items = pd.DataFrame({"item_id": item_ids, "title": item_ids, "image": ""})
    users, item_col, positions = [], [], []
    for user, sequence in sequences.items():
        users += [user] * len(sequence)
        item_col += sequence
        positions += list(range(len(sequence)))
    return build_dataset("seq", items, users, item_col, report=ImportReport(dataset="seq"),
                         text_fields=("title",), positions=np.array(positions))


# ----------------------------------------------------------------------------------------------
# k-core
# ----------------------------------------------------------------------------------------------


def test_kcore_mask_iterates_until_stable():
    # k=2. Round 1: item 3 has one interaction -> row 7 goes. Round 2: user 3 now has one -> row 6.
    # Round 3: item 2 now has one -> row 5. Round 4: user 2 now has one -> row 4. Round 5: stable.
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    items = np.array([0, 1, 0, 1, 1, 2, 2, 3])
    mask = kcore_mask(users, items, 2)
    assert mask.tolist() == [True, True, True, True, False, False, False, False]
    # a single pass would only have dropped row 7
    assert kcore_mask(users, items, 2, max_rounds=100).sum() == 4
    with pytest.raises(RuntimeError, match="did not converge"):
        kcore_mask(users, items, 2, max_rounds=2)


def test_kcore_mask_edge_cases():
    users = np.array([0, 0, 1, 1])
    items = np.array([0, 1, 0, 1])
    assert kcore_mask(users, items, 2).all()
    assert not kcore_mask(users, items, 3).any()
    assert kcore_mask(users, items, 1).all()
    assert kcore_mask(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 5).tolist() == []


CASCADE_ROWS = [
    # user, item, timestamp, rating
    ("alice", "X1", 1, 5.0),
    ("alice", "X0", 2, 4.0),   # X0 appears once -> removed in round 1
    ("alice", "X2", 3, 3.0),
    ("bob", "X1", 4, 2.0),
    ("bob", "X2", 5, 1.0),
    ("carol", "X2", 6, 5.0),
    ("carol", "X3", 7, 4.0),
    ("dave", "X3", 8, 3.0),
    ("dave", "X4", 9, 2.0),    # X4 once -> round 1; dave then has one -> round 2;
]                              # X3 then has one (carol) -> round 3; carol then has one -> round 4


def test_apply_kcore_cascade_reindexes_and_reports():
    dataset = make_dataset(CASCADE_ROWS, ["X0", "X1", "X2", "X3", "X4"])
    filtered = apply_kcore(dataset, 2)
    assert filtered.items["item_id"].tolist() == ["X1", "X2"]
    assert filtered.items["item_index"].tolist() == [0, 1]
    assert filtered.items["title"].tolist() == ["title X1", "title X2"]
    frame = filtered.interactions
    assert list(frame.columns) == list(INTERACTION_COLUMNS)
    assert frame["user_id"].tolist() == ["alice", "alice", "bob", "bob"]
    assert frame["user_index"].tolist() == [0, 0, 1, 1]
    assert frame["item_index"].tolist() == [0, 1, 0, 1]
    assert frame["position"].tolist() == [0, 1, 0, 1]  # alice's X0 (old position 1) is gone
    assert frame["timestamp"].tolist() == [1.0, 3.0, 4.0, 5.0]
    assert frame["rating"].tolist() == [5.0, 3.0, 2.0, 1.0]
    counts = filtered.report.counts
    assert counts["interactions_removed_by_2core"] == 5
    assert counts["users_removed_by_2core"] == 2
    assert counts["items_removed_by_2core"] == 3
    assert filtered.num_users == 2 and filtered.num_items == 2
    assert filtered.text_fields == ("title",)


def test_apply_kcore_keeps_sequence_order_without_timestamps():
    dataset = make_sequences({"u0": ["c", "rare", "a", "b"], "u1": ["b", "a", "c"], "u2": ["a", "c", "b"]},
                             ["rare", "a", "b", "c"])
    filtered = apply_kcore(dataset, 3)
    assert filtered.items["item_id"].tolist() == ["a", "b", "c"]
    assert [s.tolist() for s in filtered.sequences()] == [[2, 0, 1], [1, 0, 2], [0, 2, 1]]
    assert filtered.interactions["position"].tolist() == [0, 1, 2] * 3


def test_apply_kcore_k_at_most_one_is_identity():
    dataset = make_dataset(CASCADE_ROWS, ["X0", "X1", "X2", "X3", "X4"])
    assert apply_kcore(dataset, 1) is dataset
    assert apply_kcore(dataset, 0) is dataset
    assert dict(dataset.report.counts) == {}


# ----------------------------------------------------------------------------------------------
# leave-one-out
# ----------------------------------------------------------------------------------------------


def test_leave_one_out_hand_example():
    dataset = make_sequences({"u0": ["i0", "i1", "i2", "i3", "i4"], "u1": ["i4", "i3", "i2"]},
                             ["i0", "i1", "i2", "i3", "i4"])
    split = leave_one_out(dataset, max_history=2)
    assert [s.tolist() for s in split.train_sequences] == [[0, 1, 2], [4]]
    assert [s.tolist() for s in split.valid_history] == [[1, 2], [4]]
    assert split.valid_target.tolist() == [3, 3]
    assert [s.tolist() for s in split.test_history] == [[2, 3], [4, 3]]
    assert split.test_target.tolist() == [4, 2]
    assert split.valid_target.dtype == np.int64 and split.test_target.dtype == np.int64
    assert split.num_items == 5 and split.max_history == 2
    histories, targets = split.history_and_target("test")
    assert targets is split.test_target and histories is split.test_history
    assert split.history_and_target("valid")[1] is split.valid_target
    with pytest.raises(ValueError, match="'train'"):
        split.history_and_target("train")


def test_leave_one_out_default_history_is_20():
    sequence = [f"i{n}" for n in range(30)]
    dataset = make_sequences({"u": sequence}, sequence)
    split = leave_one_out(dataset)
    assert split.max_history == 20
    assert split.test_history[0].tolist() == list(range(9, 29))
    assert split.valid_history[0].tolist() == list(range(8, 28))
    assert split.train_sequences[0].tolist() == list(range(28))


def test_leave_one_out_rejects_short_users_and_bad_history():
    dataset = make_sequences({"u0": ["a", "b", "c"], "u1": ["a", "b"]}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="1 users have fewer than 3 interactions.*user_index 1"):
        leave_one_out(dataset)
    assert leave_one_out(dataset, min_length=2).test_target.tolist() == [2, 1]
    with pytest.raises(ValueError, match="max_history"):
        leave_one_out(make_sequences({"u0": ["a", "b", "c"]}, ["a", "b", "c"]), max_history=0)


def test_multi_event_split_predicts_each_of_the_last_items_from_everything_before_it():
    dataset = make_sequences({"u0": ["i0", "i1", "i2", "i3", "i4", "i5"], "u1": ["i5", "i4", "i3", "i2"]},
                             ["i0", "i1", "i2", "i3", "i4", "i5"])
    split = leave_one_out(dataset, max_history=2, config=SequenceSplitConfig(test_events=2))
    assert [s.tolist() for s in split.train_sequences] == [[0, 1, 2], [5]]
    assert split.valid_target.tolist() == [3, 4] and [s.tolist() for s in split.valid_history] == [[1, 2], [5]]
    assert split.test_target.tolist() == [4, 5, 3, 2] and split.event_users("test").tolist() == [0, 0, 1, 1]
    assert [s.tolist() for s in split.test_history] == [[2, 3], [3, 4], [5, 4], [4, 3]]
    assert [s.tolist() for s in split.seen_items("test")] == [[0, 1, 2, 3], [0, 1, 2, 3, 4], [5, 4], [5, 4, 3]]
    assert split.event_users("valid").tolist() == [0, 1]
    one = leave_one_out(dataset, max_history=2, config=SequenceSplitConfig(test_events=1))
    default = leave_one_out(dataset, max_history=2)
    assert one.test_target.tolist() == default.test_target.tolist() == [5, 2]
    assert [s.tolist() for s in one.seen_items("test")] == [[0, 1, 2, 3, 4], [5, 4, 3]]
    with pytest.raises(ValueError, match="fewer than 5 interactions.*fewer test_events than 3"):
        leave_one_out(dataset, config=SequenceSplitConfig(test_events=3))
    with pytest.raises(ValueError, match="test_events"):
        SequenceSplitConfig(test_events=0)


def test_tie_shuffle_reorders_only_equal_timestamps_and_is_seeded():
    rows = [("u", f"i{n}", float(n // 3), 4.0) for n in range(12)] + [("v", "i0", 1.0, 3.0), ("v", "i1", 2.0, 3.0),
                                                                      ("v", "i2", 3.0, 3.0)]
    dataset = make_dataset(rows, [f"i{n}" for n in range(12)])
    file_order = leave_one_out(dataset).train_sequences[0].tolist()
    assert file_order == list(range(10))
    orders = {seed: leave_one_out(dataset, config=SequenceSplitConfig(tie_shuffle_seed=seed)) for seed in (0, 1, 2)}
    shuffled = [split.train_sequences[0].tolist() + [int(split.valid_target[0]), int(split.test_target[0])]
                for split in orders.values()]
    for order in shuffled:   # every block of three equal timestamps keeps its three items
        assert [sorted(order[start:start + 3]) for start in range(0, 12, 3)] == \
            [list(range(start, start + 3)) for start in range(0, 12, 3)]
    assert len({tuple(order) for order in shuffled}) > 1
    again = leave_one_out(dataset, config=SequenceSplitConfig(tie_shuffle_seed=1))
    assert again.test_target.tolist() == orders[1].test_target.tolist()
    assert orders[0].train_sequences[1].tolist() == [0]   # user v: distinct timestamps keep their order
    with pytest.raises(ValueError, match="timestamp"):
        leave_one_out(make_sequences({"u0": ["a", "b", "c"]}, ["a", "b", "c"]),
                      config=SequenceSplitConfig(tie_shuffle_seed=0))


# ----------------------------------------------------------------------------------------------
# chronological split
# ----------------------------------------------------------------------------------------------


def chrono_dataset():
    # 20 interactions, 4 users, distinct timestamps 100..119 in shuffled file order
    order = np.random.default_rng(0).permutation(20)
    ratings = [1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 0.5, 4.5, 3.0, 5.0] * 2
    rows = [(f"u{t % 4}", f"i{t % 5}", 100.0 + t, ratings[t]) for t in order]
    return make_dataset(rows, [f"i{n}" for n in range(5)])


def test_chronological_split_by_global_time():
    dataset = chrono_dataset()
    split = chronological_split(dataset)
    # test_start = round(20 * 0.9) = 18; valid_start = round(18 * 0.9) = 16
    assert split.train["timestamp"].tolist() == [100.0 + t for t in range(16)]
    assert split.valid["timestamp"].tolist() == [116.0, 117.0]
    assert split.test["timestamp"].tolist() == [118.0, 119.0]
    assert split.train_end_time == 117.0 and split.test_start_time == 118.0
    assert split.train["timestamp"].max() < split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() < split.test["timestamp"].min()
    # label = rating > 3 (3.0 is negative, 3.5 positive)
    expected = [1 if r > 3 else 0 for r in [1.0, 2.0, 3.0, 3.5, 4.0, 5.0, 0.5, 4.5, 3.0, 5.0] * 2]
    labels = pd.concat([split.train, split.valid, split.test])["label"].tolist()
    assert labels == expected
    assert split.test["label"].tolist() == [0, 1]  # ratings 3.0, 5.0
    assert split.train["label"].dtype == np.int8
    assert len(split.train) + len(split.valid) + len(split.test) == 20
    assert set(INTERACTION_COLUMNS) <= set(split.train.columns)


def test_chronological_split_fractions_and_threshold():
    split = chronological_split(chrono_dataset(), test_fraction=0.25, valid_fraction=0.2, positive_threshold=4.0)
    assert (len(split.train), len(split.valid), len(split.test)) == (12, 3, 5)
    assert split.test["rating"].tolist() == [5.0, 0.5, 4.5, 3.0, 5.0]
    assert split.test["label"].tolist() == [1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match="test_fraction"):
        chronological_split(chrono_dataset(), test_fraction=1.0)
    with pytest.raises(ValueError, match="valid_fraction"):
        chronological_split(chrono_dataset(), valid_fraction=0.0)


def test_chronological_split_needs_timestamps_and_ratings():
    dataset = make_sequences({"u0": ["a", "b", "c"]}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="timestamps and ratings.*leave_one_out"):
        chronological_split(dataset)


def test_chronological_split_never_cuts_inside_a_timestamp():
    # 10 interactions; the 90% cut (index 9) falls inside a run of equal timestamps 105 (indices 5..9)
    times = [100, 101, 102, 103, 104, 105, 105, 105, 105, 105]
    rows = [(f"u{k % 3}", f"i{k % 4}", float(t), 4.0) for k, t in enumerate(times)]
    split = chronological_split(make_dataset(rows, [f"i{n}" for n in range(4)]))
    assert split.test["timestamp"].tolist() == [105.0] * 5  # the whole tie goes to test
    assert split.train["timestamp"].max() < split.valid["timestamp"].min() <= split.valid["timestamp"].max() < 105.0
    same_time = [(f"u{k % 3}", f"i{k % 4}", 100.0, 4.0) for k in range(10)]
    with pytest.raises(ValueError, match="too few distinct timestamps"):
        chronological_split(make_dataset(same_time, [f"i{n}" for n in range(4)]))
