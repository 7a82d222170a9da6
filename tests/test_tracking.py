"""TensorBoard scalars: what a history record becomes, and event files written by a real ranking loop."""

from __future__ import annotations

import math

import pytest

from mmq.training.tracking import TENSORBOARD_DIRECTORY, scalars


def test_scalars_flatten_records_and_drop_what_is_not_a_number():
    record = {"epoch": 3, "loss": 6.5, "valid": {"ndcg@10": 0.04, "recall@10": 0.07}, "note": "x",
              "improved": True, "nan": math.nan}
    assert scalars(record) == {"loss": 6.5, "valid/ndcg@10": 0.04, "valid/recall@10": 0.07}


def test_a_training_loop_writes_tensorboard_scalars_when_enabled(isolated_dirs, monkeypatch, mmq_world):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from mmq.finetune.sources import NoCodes
    from mmq.ranking.data import ranking_data
    from mmq.ranking.ppnet import PPNet, PPNetConfig
    from mmq.ranking.train import RankingTrainingConfig, fit_ranking

    monkeypatch.setenv("MMQ_TENSORBOARD", "1")
    dataset, _ = mmq_world.synthetic_dataset()
    data = ranking_data(dataset)
    model = PPNet(num_users=data.num_users, num_items=data.num_items,
                  config=PPNetConfig(embedding_dim=4, hidden_dims=(8,), gate_hidden_dim=4))
    directory = isolated_dirs / "run"
    fit_ranking(model, NoCodes(data.num_items), data, RankingTrainingConfig(max_epochs=2, batch_size=64),
                directory, seed=0, progress=False)
    event_files = list((directory / TENSORBOARD_DIRECTORY).rglob("events.out.tfevents.*"))
    assert event_files
    accumulator = event_accumulator.EventAccumulator(str(event_files[0].parent))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert any(tag.endswith("auc") for tag in tags) and any("ranking" in tag for tag in tags), tags
    assert {event.step for event in accumulator.Scalars(sorted(tags)[0])} == {1, 2}
