"""Smoke tests on the real datasets (skipped when MMQ_DATA_DIR holds no data)."""

from __future__ import annotations

import pytest

from mmq.data import DATASETS, chronological_split, leave_one_out, load_dataset

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("name", ["beauty", "sports", "toys", "office", "movielens", "movielens_all", "myntra"])
def test_published_statistics(name, real_data_dir, isolated_dirs):
    stats = load_dataset(name, root=real_data_dir).statistics()
    assert {key: stats[key] for key in ("users", "items", "interactions")} == DATASETS[name].expected


def test_beauty_leave_one_out_and_titles(real_data_dir, isolated_dirs):
    dataset = load_dataset("beauty", root=real_data_dir)
    split = leave_one_out(dataset)
    assert len(split.test_target) == 22363
    assert max(len(history) for history in split.test_history) == 20
    assert dataset.report.counts["empty_titles"] == 7
    assert dataset.items["title"].str.len().gt(0).sum() == 12101 - 7


def test_movielens_chronological_and_posters(real_data_dir, isolated_dirs):
    dataset = load_dataset("movielens", root=real_data_dir)
    split = chronological_split(dataset)
    assert split.train["timestamp"].max() < split.valid["timestamp"].min()
    assert split.valid["timestamp"].max() < split.test["timestamp"].min()
    assert 0.08 < len(split.test) / len(dataset.interactions) < 0.12
    assert 0.3 < split.train["label"].mean() < 0.8  # rating > 3 is common but not universal
    assert dataset.items["image"].str.startswith("movielens/posters.zip:").all()


def test_shipped_checksums(real_data_dir):
    from mmq.data.download import verify

    status = verify(real_data_dir)
    assert {name: value for name, value in status.items() if value != "ok"} == {}
