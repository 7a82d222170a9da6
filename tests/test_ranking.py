"""PPNet ranking: model variants, the chronological split, resumable training, end-to-end runs with
frozen and behavior-fine-tuned SIDs (the shared stage-2 machinery is tested in test_stage2.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmq.finetune.soft_index import one_hot_codes
from mmq.finetune.sources import NoCodes
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer
from mmq.ranking.ppnet import PPNet, PPNetConfig


def test_ppnet_variants_and_gates():
    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 0, 1])
    indices = one_hot_codes(torch.tensor([[0, 1], [2, 2], [1, 0]]), 3)
    for features in ("id", "sid", "id+sid"):
        model = PPNet(num_users=3, num_items=4, item_features=features, codebook_sizes=(3, 3),
                      config=PPNetConfig(embedding_dim=4, sid_embedding_dim=2, hidden_dims=(8, 4), gate_hidden_dim=4))
        logits = model(users, items, indices if "sid" in features else None)
        assert logits.shape == (3,) and torch.isfinite(logits).all()
        assert (model.item is None) == (features == "sid") and (model.sid is None) == (features == "id")
    with pytest.raises(ValueError, match="sid_indices"):
        model(users, items)
    with pytest.raises(ValueError, match="codebook sizes"):
        PPNet(num_users=3, num_items=4, item_features="sid")
    with pytest.raises(ValueError, match="item_features"):
        PPNet(num_users=3, num_items=4, item_features="title")


def test_ranking_data_is_chronological_with_long_tail_buckets(mmq_world):
    from mmq.ranking.data import ranking_data

    dataset, _ = mmq_world.synthetic_dataset()
    data = ranking_data(dataset)
    frame = dataset.interactions
    assert sum(len(split) for split in data.splits.values()) == len(frame)
    last_train = frame["timestamp"].sort_values().iloc[len(data.splits["train"]) - 1]
    first_test = frame["timestamp"].sort_values().iloc[len(frame) - len(data.splits["test"])]
    assert last_train < first_test
    buckets = data.long_tail_items(0.25)
    exposure = data.train_exposure
    assert exposure[buckets["head"]].min() >= exposure[buckets["tail"]].max()
    assert np.isin(buckets["head"], data.splits["test"].items).all()
    with pytest.raises(ValueError, match="fraction"):
        data.long_tail_items(0.9)


def test_end_to_end_ranking_runs_with_frozen_and_fine_tuned_sids(isolated_dirs, monkeypatch, mmq_world):
    from mmq.config import ConfigError
    from mmq.generative.experiment import load_semantic_ids
    from mmq.registry import run_directory, run_or_load, semantic_id_run

    dataset, data = mmq_world.synthetic_dataset()
    sid_config = mmq_world.install(dataset, data)
    common = {"ppnet": {"embedding_dim": 8, "sid_embedding_dim": 4, "hidden_dims": [16], "gate_hidden_dim": 8},
              "training": {"max_epochs": 3, "batch_size": 64, "patience": 3}}
    reports = {}
    for name, extra in {"itemid": {"item_features": "id"},
                        "frozen": {"item_features": "id+sid", "semantic_ids": str(sid_config)},
                        "finetuned": {"item_features": "id+sid", "semantic_ids": str(sid_config), "finetune": True}}.items():
        path = isolated_dirs / f"rank_{name}.yaml"
        path.write_text(json.dumps({"kind": "ranking", **common, **extra}))
        reports[name] = run_or_load(path, 0, progress=False)["metrics"]
    for metrics in reports.values():
        assert 0.0 <= metrics["test"]["auc"] <= 1.0 and metrics["training"]["epochs_run"] == 3
        assert {"auc_head", "auc_tail", "gauc"} <= set(metrics["test"])
    stage1 = np.load(run_directory(sid_config, 0) / "semantic_ids.npy")
    run = run_directory(isolated_dirs / "rank_finetuned.yaml", 0)
    finetuned = np.load(run / "semantic_ids.npy")
    assert finetuned.shape == stage1.shape and (run / "tokenizer" / "model.pt").exists()
    info = reports["finetuned"]["finetuned"]
    assert info["changed_item_fraction"] == pytest.approx(float((finetuned[:, :6] != stage1[:, :6]).any(1).mean()))
    assert "train_reconstruction" in reports["finetuned"]["training"]["history"][0]
    assert "train_reconstruction" not in reports["frozen"]["training"]["history"][0]
    assert reports["frozen"]["semantic_ids"]["sha256"] == reports["finetuned"]["semantic_ids"]["sha256"]
    # stage 1 was untouched by fine-tuning (the live source works on its own copy of the weights)
    np.testing.assert_array_equal(MMQTokenizer.load(run_directory(sid_config, 0) / "tokenizer")
                                  .encode(data), stage1[:, :6])
    # a fine-tuning ranking config is a SID source for downstream runs (e.g. generative retrieval)
    table, digest = load_semantic_ids(str(isolated_dirs / "rank_finetuned.yaml"), 0)
    np.testing.assert_array_equal(table, finetuned)
    assert digest == info["semantic_id_table"]["sha256"]
    with pytest.raises(ValueError, match="finetune: true"):
        semantic_id_run(isolated_dirs / "rank_frozen.yaml", 0)
    bad = isolated_dirs / "bad.yaml"
    for text, message in [("item_features: sid\n", "semantic_ids"), ("finetune: true\n", "finetune"),
                          ("ppnet: {depth: 3}\n", "depth")]:
        bad.write_text("kind: ranking\n" + text)
        with pytest.raises((ConfigError, ValueError), match=message):
            run_or_load(bad, 0)


def test_ranking_training_resumes_to_the_same_result(isolated_dirs, mmq_world):
    from mmq.ranking.data import ranking_data
    from mmq.ranking.train import RankingTrainingConfig, fit_ranking

    dataset, _ = mmq_world.synthetic_dataset()
    data = ranking_data(dataset)

    def train(directory, epochs):
        torch.manual_seed(0)
        model = PPNet(num_users=data.num_users, num_items=data.num_items, config=PPNetConfig(
            embedding_dim=8, hidden_dims=(16,), gate_hidden_dim=8, dropout=0.0))
        config = RankingTrainingConfig(max_epochs=epochs, batch_size=64, patience=10)
        return fit_ranking(model, NoCodes(data.num_items), data, config, directory, seed=0, progress=False), model

    whole, model_whole = train(isolated_dirs / "whole", 4)
    train(isolated_dirs / "split", 2)
    resumed, model_resumed = train(isolated_dirs / "split", 4)
    assert resumed["epochs_run"] == 4 and resumed["best_epoch"] == whole["best_epoch"]
    for a, b in zip(model_whole.parameters(), model_resumed.parameters()):
        torch.testing.assert_close(a, b)


def test_ppnet_learns_a_user_item_pattern(mmq_world):
    from mmq.ranking.data import ranking_data
    from mmq.ranking.train import RankingTrainingConfig, fit_ranking, predict, ranking_metrics

    dataset, _ = mmq_world.synthetic_dataset(num_users=30, num_items=20, per_user=20)
    data = ranking_data(dataset)
    data.splits["train"] = data.splits["test"] = data.splits["valid"] = data.splits["train"]  # fit the training set
    model = PPNet(num_users=data.num_users, num_items=data.num_items,
                  config=PPNetConfig(embedding_dim=8, hidden_dims=(32,), gate_hidden_dim=8, dropout=0.0, init_std=0.1))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as directory:
        fit_ranking(model, NoCodes(data.num_items), data, RankingTrainingConfig(max_epochs=40, batch_size=32,
                                                                                learning_rate=1e-2, patience=40),
                    Path(directory), seed=0, progress=False)
    metrics = ranking_metrics(data.splits["test"], predict(model, NoCodes(data.num_items), data.splits["test"]))
    assert metrics["auc"] > 0.9


def test_per_user_split_gives_every_user_history_and_a_seeded_tie_order():
    import pandas as pd

    from mmq.data.schema import ImportReport, InteractionDataset
    from mmq.data.splits import per_user_chronological_split

    rng = np.random.default_rng(0)
    rows = []
    for user, count in enumerate([20, 10, 5, 3, 2]):
        for position in range(count):  # timestamps with ties (position // 2)
            rows.append((user, int(rng.integers(0, 30)), float(rng.choice([2.0, 4.5])), float(position // 2), position))
    interactions = pd.DataFrame(rows, columns=["user_index", "item_index", "rating", "timestamp", "position"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(30)], "title": ["t"] * 30})
    dataset = InteractionDataset("tiny", items, interactions, ImportReport(dataset="tiny"), ("title",))
    split = per_user_chronological_split(dataset, split_seed=0)
    test_counts = split.test.groupby("user_index").size().to_dict()
    valid_counts = split.valid.groupby("user_index").size().to_dict()
    assert test_counts == {0: 2, 1: 1, 2: 1, 3: 1} and valid_counts == {0: 2, 1: 1, 2: 1, 3: 1}
    assert 4 not in set(split.test["user_index"]) and (split.train["user_index"] == 4).sum() == 2  # < 3 ratings
    for user in range(4):  # each user's test ratings are no earlier than their training ratings
        assert split.train.loc[split.train["user_index"] == user, "timestamp"].max() <= \
            split.test.loc[split.test["user_index"] == user, "timestamp"].min()
    assert len(split.train) + len(split.valid) + len(split.test) == len(interactions)
    again = per_user_chronological_split(dataset, split_seed=0)
    assert again.test.equals(split.test)
    other = [per_user_chronological_split(dataset, split_seed=seed).test["position"].tolist() for seed in range(1, 6)]
    assert any(positions != split.test["position"].tolist() for positions in other)  # ties follow the seed
    with pytest.raises(ValueError, match="test_fraction"):
        per_user_chronological_split(dataset, test_fraction=0.6)


def test_popularity_stratified_items_draw_one_per_stratum():
    from mmq.data.splits import popularity_stratified_items

    counts = np.random.default_rng(1).integers(1, 500, size=103)
    chosen = popularity_stratified_items(counts, 0.2, seed=7)
    order = np.lexsort((np.arange(103), counts))
    strata = np.searchsorted(np.arange(0, 103, 5), np.argsort(order)[chosen], side="right") - 1
    assert len(set(strata.tolist())) == len(chosen) and 20 <= len(chosen) <= 21  # at most one per stratum
    np.testing.assert_array_equal(chosen, popularity_stratified_items(counts, 0.2, seed=7))
    assert not np.array_equal(chosen, popularity_stratified_items(counts, 0.2, seed=8))
    with pytest.raises(ValueError, match="fraction"):
        popularity_stratified_items(counts, 1.5, seed=0)


def test_cold_item_protocol_holds_items_out_of_training_and_ppnet_shares_their_id_row(mmq_world):
    from mmq.ranking.data import ranking_data

    dataset, _ = mmq_world.synthetic_dataset()
    data = ranking_data(dataset, protocol="cold_items", cold_fraction=0.2)
    cold = data.cold_items
    assert len(cold) == pytest.approx(0.2 * dataset.num_items, abs=1)
    assert not np.isin(data.splits["train"].items, cold).any()
    assert np.isin(data.splits["test"].items, cold).any()
    assert (data.train_exposure[cold] == 0).all()
    buckets = data.item_buckets()
    assert set(buckets) == {"head", "tail", "cold", "warm"}
    assert len(np.intersect1d(buckets["cold"], buckets["warm"])) == 0
    per_user = ranking_data(dataset, protocol="per_user")
    assert len(per_user.cold_items) == 0 and set(per_user.item_buckets()) == {"head", "tail"}
    assert set(per_user.splits["test"].users) <= set(per_user.splits["train"].users)
    with pytest.raises(ValueError, match="protocol"):
        ranking_data(dataset, protocol="leave_one_out")

    model = PPNet(num_users=3, num_items=6, unknown_items=[1, 4],
                  config=PPNetConfig(embedding_dim=4, hidden_dims=(8,), gate_hidden_dim=4)).eval()
    assert model.item.num_embeddings == 7
    users = torch.tensor([0, 0, 0])
    logits = model(users, torch.tensor([1, 4, 2]))
    assert logits[0] == logits[1] and logits[0] != logits[2]  # both cold items read the unknown row
    with pytest.raises(ValueError, match="unknown_items"):
        PPNet(num_users=3, num_items=6, unknown_items=[6])


def test_ranking_config_rejects_unknown_protocols():
    from mmq.ranking.experiment import RankingConfig

    assert RankingConfig().protocol == "global"
    with pytest.raises(ValueError, match="protocol must be one of"):
        RankingConfig(protocol="per-user")
    with pytest.raises(ValueError, match="cold_fraction"):
        RankingConfig(protocol="cold_items", cold_fraction=0.0)


def test_cold_item_ranking_run_reports_cold_auc_and_records_bucket_masks(isolated_dirs, mmq_world):
    from mmq.metrics.per_event import load_per_event
    from mmq.registry import run_directory, run_or_load

    dataset, data = mmq_world.synthetic_dataset()
    sid_config = mmq_world.install(dataset, data)
    path = isolated_dirs / "rank_cold.yaml"
    path.write_text(json.dumps({"kind": "ranking", "item_features": "id+sid", "semantic_ids": str(sid_config),
                                "protocol": "cold_items", "cold_fraction": 0.25,
                                "ppnet": {"embedding_dim": 8, "sid_embedding_dim": 4, "hidden_dims": [16],
                                          "gate_hidden_dim": 8},
                                "training": {"max_epochs": 2, "batch_size": 64}}))
    metrics = run_or_load(path, 0, progress=False)["metrics"]
    assert {"auc_cold", "auc_warm", "num_samples_cold"} <= set(metrics["test"])
    assert metrics["protocol"]["name"] == "cold_items" and metrics["protocol"]["num_cold_items"] > 0
    arrays = load_per_event(run_directory(path, 0), metrics)
    cold = arrays["test_in_cold"].astype(bool)
    assert cold.sum() == metrics["test"]["num_samples_cold"] and (arrays["test_in_warm"] == 1 - cold).all()
    from mmq.metrics import auc
    assert auc(arrays["test_label"][cold], arrays["test_score"][cold]) == pytest.approx(metrics["test"]["auc_cold"],
                                                                                        abs=1e-5)
