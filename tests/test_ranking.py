"""MMQ stage 2 (soft-index straight-through, trainable SID sources) and the PPNet ranking runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from mmq.finetune.soft_index import SidEmbedding, one_hot_codes, soft_straight_through
from baselines.sid_tokenizers.stage2 import RQVAECodes
from mmq.finetune.sources import FrozenCodes, MMQCodes, NoCodes
from mmq.mmq_tokenizer.config import MMQConfig
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer
from mmq.ranking.ppnet import PPNet, PPNetConfig

TINY = MMQConfig(codebook_size=8, code_dim=16, gate_hidden_dim=8, decoder_hidden_dims=(16,), num_steps=40,
                 batch_size=32, restart_every=10, progress=False)


def modality_data(num_items=60, seed=0):
    rng = np.random.default_rng(seed)
    return {"text": rng.normal(size=(num_items, 12)).astype(np.float32),
            "image": rng.normal(size=(num_items, 10)).astype(np.float32)}


@pytest.fixture(scope="module")
def fitted_mmq():
    data = modality_data()
    return MMQTokenizer(TINY).fit(data, seed=0), data


def test_soft_straight_through_is_hard_forward_and_soft_backward():
    logits = torch.tensor([[0.1, 0.9, 0.3], [0.5, -0.2, 0.4]], requires_grad=True)
    indices = soft_straight_through(logits, tau=0.5)
    assert torch.equal(indices.detach(), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    weights = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
    (indices * weights).sum().backward()
    reference = logits.detach().clone().requires_grad_(True)
    (torch.softmax(reference / 0.5, dim=-1) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, reference.grad)
    assert logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="tau"):
        soft_straight_through(logits, tau=0.0)


def test_sid_embedding_of_one_hot_indices_equals_a_table_lookup():
    embedding = SidEmbedding((5, 3), dim=4)
    codes = torch.tensor([[4, 2], [0, 1], [3, 0]])
    output = embedding(one_hot_codes(codes, 5))
    expected = torch.stack([embedding.tables[0, codes[:, 0]], embedding.tables[1, codes[:, 1]]], dim=1)
    torch.testing.assert_close(output, expected)
    with pytest.raises(ValueError, match=r"\[n, 2, 5\]"):
        embedding(torch.zeros(3, 2, 4))


def test_mmq_source_reproduces_stage1_codes_and_passes_gradients_to_every_part(fitted_mmq):
    tokenizer, data = fitted_mmq
    live = MMQTokenizer(TINY)
    live.model, live.dims = type(tokenizer.model)(config=TINY, input_dims=tokenizer.dims), dict(tokenizer.dims)
    live.model.load_state_dict(tokenizer.model.state_dict())
    source = MMQCodes(live.model, live.prepare(data), tau=0.1)
    np.testing.assert_array_equal(source.codes(), tokenizer.encode(data))
    output = source(torch.arange(20), with_losses=True)
    assert output.indices.shape == (20, 6, 8) and set(output.losses) == {"reconstruction", "auxiliary"}
    downstream = SidEmbedding((8,) * 6, dim=3)
    (downstream(output.indices).square().sum() + output.losses["reconstruction"] + output.losses["auxiliary"]).backward()
    model = source.model
    for name, parameter in [("shared", model.shared.final_weights), ("gate", next(model.gates["text"].parameters())),
                            ("codebooks", model.quantizer.codebooks), ("decoder", next(model.decoder.parameters()))]:
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert source.trainable and "input_text" not in source.state_dict()  # cached features stay out of checkpoints


def test_downstream_loss_alone_reaches_the_experts_through_soft_indices(fitted_mmq):
    tokenizer, data = fitted_mmq
    model = type(tokenizer.model)(config=TINY, input_dims=tokenizer.dims)
    model.load_state_dict(tokenizer.model.state_dict())
    source = MMQCodes(model, tokenizer.prepare(data), tau=0.1)
    SidEmbedding((8,) * 6, dim=3)(source(torch.arange(30)).indices).sum().backward()
    assert model.specific["image"].final_weights.grad.abs().sum() > 0
    assert model.decoder[0].weight.grad is None  # no L_recon asked: the decoder is untouched


def test_rq_vae_source_matches_the_tokenizer_and_trains_the_encoder():
    from baselines.sid_tokenizers.modality import make_modality_tokenizer

    data = modality_data()
    tokenizer = make_modality_tokenizer("ma", "rq_vae", code_length=3, codebook_size=8, num_steps=30, batch_size=32,
                                        modalities=("text", "image"))
    tokenizer.fit(data, seed=0)
    prepared = tokenizer.prepare(data)
    source = RQVAECodes(tokenizer.tokenizer.model, np.concatenate([prepared["text"], prepared["image"]], axis=1), 0.1)
    np.testing.assert_array_equal(source.codes(), tokenizer.encode(data))
    output = source(torch.arange(25), with_losses=True)
    (output.indices * torch.randn_like(output.indices)).sum().add(output.losses["reconstruction"]).backward()
    assert next(source.model.encoder.parameters()).grad.abs().sum() > 0
    assert float(output.losses["auxiliary"]) == 0.0


def test_frozen_and_absent_codes_never_train():
    codes = np.array([[0, 2], [1, 1], [3, 0]])
    source = FrozenCodes(codes, (4, 3))
    assert not source.trainable and not list(source.parameters())
    assert source(torch.tensor([2, 0])).indices.argmax(-1).tolist() == [[3, 0], [0, 2]]
    np.testing.assert_array_equal(source.codes(), codes)
    with pytest.raises(ValueError, match="outside the codebooks"):
        FrozenCodes(np.array([[0, 3]]), (4, 3))
    with pytest.raises(ValueError, match=r"\[items, 2\]"):
        FrozenCodes(np.array([0, 1]), (4, 3))
    assert NoCodes(5)(torch.arange(3)).indices is None


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


def synthetic_dataset(num_users=40, num_items=60, per_user=30, seed=0):
    """Ratings where a user likes items whose content matches the user's taste (learnable)."""
    from mmq.data.schema import ImportReport, InteractionDataset

    rng = np.random.default_rng(seed)
    data = modality_data(num_items, seed)
    taste = rng.normal(size=(num_users, 12))
    rows = []
    for user in range(num_users):
        chosen = rng.choice(num_items, per_user, replace=False)
        for position, item in enumerate(chosen):
            liked = taste[user] @ data["text"][item] > 0
            rows.append((user, item, 4.5 if liked else 2.0, float(user * 0.01 + position * 1000 + rng.random()),
                         position))
    interactions = pd.DataFrame(rows, columns=["user_index", "item_index", "rating", "timestamp", "position"])
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)], "title": ["t"] * num_items})
    dataset = InteractionDataset("synthetic", items, interactions, ImportReport(dataset="synthetic"), ("title",))
    return dataset, data


def test_ranking_data_is_chronological_with_long_tail_buckets():
    from mmq.ranking.data import ranking_data

    dataset, _ = synthetic_dataset()
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


def fake_mmq_world(directory, monkeypatch, dataset, data):
    """Serve ``dataset`` and its item modalities ``data`` to every run; write a tiny MMQ SID config."""
    # modules imported before load_dataset is patched: a module importing it by name during the
    # patch would keep the fake for the rest of the session
    import mmq.data
    from mmq.generative import experiment as generative_experiment
    from mmq.mmq_tokenizer import experiment as tokenizer_experiment
    from mmq.features import modalities as tokenizer_inputs
    from mmq.finetune import runs as finetune_runs
    import mmq.ranking.experiment  # noqa: F401
    import baselines  # noqa: F401

    monkeypatch.setattr(mmq.data, "load_dataset", lambda name, kcore=None: dataset)
    monkeypatch.setattr(generative_experiment, "load_dataset", lambda name, kcore=None: dataset)
    fake_inputs = lambda config: (data, {"dataset": "synthetic", "num_items": len(data["text"])})  # noqa: E731
    monkeypatch.setattr(tokenizer_experiment, "load_item_modalities", fake_inputs)
    monkeypatch.setattr(tokenizer_inputs, "load_item_modalities", fake_inputs)
    monkeypatch.setattr(finetune_runs, "load_item_modalities", fake_inputs)
    sid_config = directory / "tiny_mmq.yaml"
    sid_config.write_text(json.dumps({"kind": "mmq_tokenizer", "mmq": {
        key: value for key, value in dataclasses.asdict(TINY).items()
        if key in ("codebook_size", "code_dim", "gate_hidden_dim", "decoder_hidden_dims", "num_steps", "batch_size",
                   "restart_every", "progress")}}))
    return sid_config


def test_end_to_end_ranking_runs_with_frozen_and_fine_tuned_sids(isolated_dirs, monkeypatch):
    from mmq.config import ConfigError
    from mmq.generative.experiment import load_semantic_ids
    from mmq.registry import run_or_load, semantic_id_run

    dataset, data = synthetic_dataset()
    sid_config = fake_mmq_world(isolated_dirs, monkeypatch, dataset, data)
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
    stage1 = np.load(isolated_dirs / "checkpoints" / "tiny_mmq" / "seed0" / "semantic_ids.npy")
    run = isolated_dirs / "checkpoints" / "rank_finetuned" / "seed0"
    finetuned = np.load(run / "semantic_ids.npy")
    assert finetuned.shape == stage1.shape and (run / "tokenizer" / "model.pt").exists()
    info = reports["finetuned"]["finetuned"]
    assert info["changed_item_fraction"] == pytest.approx(float((finetuned[:, :6] != stage1[:, :6]).any(1).mean()))
    assert "train_reconstruction" in reports["finetuned"]["training"]["history"][0]
    assert "train_reconstruction" not in reports["frozen"]["training"]["history"][0]
    assert reports["frozen"]["semantic_ids"]["sha256"] == reports["finetuned"]["semantic_ids"]["sha256"]
    # stage 1 was untouched by fine-tuning (the live source works on its own copy of the weights)
    np.testing.assert_array_equal(MMQTokenizer.load(isolated_dirs / "checkpoints" / "tiny_mmq" / "seed0" / "tokenizer")
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


def test_ranking_training_resumes_to_the_same_result(isolated_dirs):
    from mmq.ranking.data import ranking_data
    from mmq.ranking.train import RankingTrainingConfig, fit_ranking

    dataset, _ = synthetic_dataset()
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


def test_ppnet_learns_a_user_item_pattern():
    from mmq.ranking.data import ranking_data
    from mmq.ranking.train import RankingTrainingConfig, fit_ranking, predict, ranking_metrics

    dataset, _ = synthetic_dataset(num_users=30, num_items=20, per_user=20)
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
