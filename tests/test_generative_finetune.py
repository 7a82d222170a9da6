"""MMQ stage 2 on the generative task: soft-index generator inputs, joint training, re-derived SIDs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmq.finetune.soft_index import one_hot_codes
from mmq.finetune.sources import MMQCodes
from mmq.generative.causal import CausalSidRecommender
from mmq.generative.finetune import GenerativeFinetuneConfig, JointTokenizer
from mmq.mmq_tokenizer.tokenizer import MMQTokenizer


def small_model(sizes, dropout=0.2):
    torch.manual_seed(0)
    return CausalSidRecommender(codebook_sizes=sizes, max_length=5, dim=16, num_heads=2, decoder_hidden=16,
                                dropout=dropout).eval()


def test_soft_inputs_and_loss_equal_the_hard_lookup_in_the_forward_pass():
    sizes = (6, 4, 3)  # two semantic positions + the de-dup digit
    model = small_model(sizes)
    rng = np.random.default_rng(0)
    codes = torch.from_numpy(np.stack([rng.integers(0, 6, 8), rng.integers(0, 4, 8), rng.integers(0, 3, 8)], 1))
    indices = one_hot_codes(codes[:, :2], 6)
    torch.testing.assert_close(model.embed_soft(indices, codes[:, 2]), model.embed_codes(codes))
    history = codes[:5][None]  # one user, five items
    states = model.encode(history)
    torch.testing.assert_close(model.encode_vectors(model.embed_codes(history), history[..., 0] >= 0), states)
    targets = codes[3:8][None]
    hard = model(history, targets).loss
    for soft_targets in (False, True):
        soft = model.soft_loss(states[0], one_hot_codes(targets[0, :, :2], 6), targets[0, :, 2], soft_targets=soft_targets)
        torch.testing.assert_close(soft, hard)
    with pytest.raises(ValueError, match=r"\[n, 2, >=6\]"):
        model.embed_soft(indices[:, :1], codes[:, 2])


def test_joint_loss_reaches_the_experts_and_soft_targets_add_a_label_gradient(fitted_mmq):
    tokenizer, data = fitted_mmq
    history = torch.tensor([[-1, 3, 7, 12, 5], [1, 2, 3, 4, 50]])
    targets = torch.tensor([[-1, 7, 12, 5, 9], [2, 3, 4, 50, -1]])
    gradients = {}
    for soft_targets in (False, True):
        model = type(tokenizer.model)(config=tokenizer.config, input_dims=tokenizer.dims)
        model.load_state_dict(tokenizer.model.state_dict())
        joint = JointTokenizer(MMQCodes(model, tokenizer.prepare(data), tau=0.1),
                               GenerativeFinetuneConfig(soft_targets=soft_targets), dedup_capacity=8)
        np.testing.assert_array_equal(joint.table()[:, :-1], tokenizer.encode(data))
        generator = small_model(joint.codebook_sizes).train()
        torch.manual_seed(1)  # same dropout masks in both modes
        loss, terms = joint.loss(generator, history, targets)
        assert set(terms) == {"generation", "reconstruction", "auxiliary"} and torch.isfinite(loss)
        terms["generation"].backward()
        assert generator.prefix_embeddings[0].weight.grad.abs().sum() > 0
        gradients[soft_targets] = model.shared.final_weights.grad.clone()
        assert gradients[soft_targets].abs().sum() > 0                # generator loss -> experts
    assert not torch.allclose(gradients[False], gradients[True])      # the label term moves the codes too


def fresh_joint(tokenizer, data, **options):
    model = type(tokenizer.model)(config=tokenizer.config, input_dims=tokenizer.dims)
    model.load_state_dict(tokenizer.model.state_dict())
    anchor = tokenizer.encode(data)
    return JointTokenizer(MMQCodes(model, tokenizer.prepare(data), tau=0.1), GenerativeFinetuneConfig(**options),
                          dedup_capacity=16, anchor_codes=anchor), model


def test_study_options_add_their_terms_and_leave_the_default_loss_alone(fitted_mmq):
    tokenizer, data = fitted_mmq
    history = torch.tensor([[-1, 3, 7, 12, 5], [1, 2, 3, 4, 50]])
    targets = torch.tensor([[-1, 7, 12, 5, 9], [2, 3, 4, 50, -1]])
    losses = {}
    for name, options in {"default": {}, "stability": {"stability_weight": 1.0},
                          "stage1": {"stage1_terms_weight": 1.0}, "contrastive": {"contrastive_weight": 1.0}}.items():
        joint, model = fresh_joint(tokenizer, data, **options)
        generator = small_model(joint.codebook_sizes).eval()
        loss, terms = joint.loss(generator, history, targets)
        losses[name] = (float(loss.detach()), {key: float(value.detach()) for key, value in terms.items()})
        if name != "default":
            loss.backward()
            assert model.shared.final_weights.grad.abs().sum() > 0
    base, base_terms = losses["default"]
    assert set(base_terms) == {"generation", "reconstruction", "auxiliary"}
    total, terms = losses["stability"]
    assert total == pytest.approx(base + terms["stability"], rel=1e-5) and terms["stability"] > 0
    total, terms = losses["stage1"]
    assert total == pytest.approx(base + terms["codebook"] + terms["commitment"] + terms["gate_balance"], rel=1e-5)
    total, terms = losses["contrastive"]
    assert total == pytest.approx(base + terms["contrastive"], rel=1e-5) and terms["contrastive"] > 0
    joint, model = fresh_joint(tokenizer, data, freeze_codebooks=True)
    group = joint.parameter_group(1e-3)["params"]
    assert all(parameter is not model.quantizer.codebooks for parameter in group) and len(group) > 0
    with pytest.raises(ValueError, match="contrastive_temperature"):
        GenerativeFinetuneConfig(contrastive_temperature=0)


def test_stable_dedup_digits_change_only_for_items_whose_codes_changed():
    from mmq.semantic_ids.dedup import dedup_digits, stable_dedup_digits

    previous = np.array([[0, 0], [0, 0], [0, 0], [1, 1], [2, 2]])
    digits = dedup_digits(previous)                                       # 0, 1, 2, 0, 0
    moved = previous.copy()
    moved[0] = [1, 1]                                                     # item 0 joins item 3's group
    stable = stable_dedup_digits(moved, previous, digits)
    assert stable.tolist() == [1, 1, 2, 0, 0]                             # items 1, 2 keep theirs
    assert dedup_digits(moved).tolist() == [0, 0, 1, 1, 0]                # the default renumbers items 1-3
    assert len({(*row, digit) for row, digit in zip(moved.tolist(), stable.tolist())}) == 5
    with pytest.raises(ValueError, match="same items"):
        stable_dedup_digits(moved, previous[:4], digits[:4])


def test_dedup_capacity_overflow_is_a_clear_error(fitted_mmq):
    tokenizer, data = fitted_mmq
    joint = JointTokenizer(MMQCodes(tokenizer.model, tokenizer.prepare(data), tau=0.1), GenerativeFinetuneConfig(), 50)
    joint.dedup_capacity = 0
    with pytest.raises(RuntimeError, match="dedup_capacity"):
        joint.table()
    with pytest.raises(ValueError, match="tau"):
        GenerativeFinetuneConfig(tau=0)


def test_end_to_end_generative_fine_tuning_run(isolated_dirs, monkeypatch, mmq_world):
    from mmq.config import ConfigError
    from mmq.generative.experiment import load_semantic_ids
    from mmq.registry import is_usable, missing_runs, run_directory, run_or_load

    dataset, data = mmq_world.synthetic_dataset(num_users=30, num_items=60, per_user=12)
    sid_config = mmq_world.install(dataset, data)
    common = {"kind": "generative", "dataset": "synthetic", "semantic_ids": str(sid_config), "max_history": 5,
              "causal": {"dim": 16, "num_heads": 2, "decoder_hidden": 16},
              "training": {"batch_size": 16, "max_epochs": 4, "eval_every": 2, "patience": 4},
              "evaluation": {"beam_size": 10}}
    frozen_path, tuned_path = isolated_dirs / "gen_frozen.yaml", isolated_dirs / "gen_ft.yaml"
    frozen_path.write_text(json.dumps(common))
    tuned_path.write_text(json.dumps({**common, "finetune": True, "finetuning": {"tokenizer_lr_ratio": 1.0},
                                      "init_from": str(frozen_path)}))
    frozen = run_or_load(frozen_path, 0, progress=False)["metrics"]
    tuned = run_or_load(tuned_path, 0, progress=False)["metrics"]
    stage1 = np.load(run_directory(sid_config, 0) / "semantic_ids.npy")
    run = run_directory(tuned_path, 0)
    table = np.load(run / "semantic_ids.npy")
    assert table.shape == stage1.shape and len(np.unique(table, axis=0)) == len(table)
    assert (run / "tokenizer" / "model.pt").exists() and (run / "best_source.pt").exists()
    info = tuned["finetuned"]
    assert info["changed_item_fraction"] == pytest.approx(float((table[:, :-1] != stage1[:, :-1]).any(1).mean()))
    assert info["changed_item_fraction"] > 0  # lr ratio 1: the tokenizer did move
    assert {"changed_item_fraction", "train_reconstruction"} <= set(tuned["training"]["history"][1])
    assert "finetuned" not in frozen and frozen["semantic_ids"]["sha256"] == tuned["semantic_ids"]["sha256"]
    # warm start: the generator began from the frozen run's chosen weights (de-dup rows resized)
    assert tuned["init_from"]["best_epoch"] == frozen["training"]["best_epoch"]
    assert "code_embeddings.6.weight" in tuned["init_from"]["resized"]
    for metrics in (frozen, tuned):
        assert 0.0 <= metrics["test"]["ndcg@10"] <= 1.0
    # the chosen tokenizer re-derives exactly the saved table, and stage 1 is untouched
    np.testing.assert_array_equal(MMQTokenizer.load(run / "tokenizer").encode(data), table[:, :-1])
    np.testing.assert_array_equal(MMQTokenizer.load(run_directory(sid_config, 0) / "tokenizer")
                                  .encode(data), stage1[:, :-1])
    # a generative stage-2 config is itself a SID source
    reread, digest = load_semantic_ids(str(tuned_path), 0)
    np.testing.assert_array_equal(reread, table)
    assert digest == info["semantic_id_table"]["sha256"]
    # a finished run whose weights are absent (a fresh clone) is rebuilt when another run consumes it,
    # and the rebuild reproduces it exactly
    (run_directory(frozen_path, 0) / "best.pt").unlink()
    assert not is_usable(frozen_path, 0) and [entry[0] for entry in missing_runs(tuned_path, 0)] == []
    rebuilt = run_or_load(frozen_path, 0, progress=False, consumed=True)["metrics"]
    assert (run_directory(frozen_path, 0) / "best.pt").exists() and rebuilt["test"] == frozen["test"]
    bad = isolated_dirs / "bad.yaml"
    for text, message in [({**common, "finetune": True, "backbone": "t5"}, "causal backbone"),
                          ({**common, "finetuning": {"temperature": 1}}, "temperature")]:
        bad.write_text(json.dumps(text))
        with pytest.raises((ConfigError, ValueError, FileNotFoundError), match=message):
            run_or_load(bad, 0)


@pytest.mark.parametrize("options", [{}, {"stable_dedup": True, "stability_weight": 0.5, "contrastive_weight": 0.5}],
                         ids=["default", "study_options"])
def test_interrupted_joint_run_resumes_to_the_same_tokenizer(isolated_dirs, fitted_mmq, options):
    from mmq.generative.train import TrainingConfig, fit
    from mmq.recommenders.sequences import training_windows
    from mmq.generative.sid_trie import SemanticIdTrie
    from mmq.recommenders.evaluation import NextItemEvaluationConfig

    tokenizer, data = fitted_mmq
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 60, 8) for _ in range(20)]
    windows = training_windows(sequences, 5)
    valid_histories, valid_targets = [s[:-1] for s in sequences], np.array([s[-1] for s in sequences])

    def train(directory, epochs):
        model = type(tokenizer.model)(config=tokenizer.config, input_dims=tokenizer.dims)
        model.load_state_dict(tokenizer.model.state_dict())
        joint = JointTokenizer(MMQCodes(model, tokenizer.prepare(data), tau=0.1),
                               GenerativeFinetuneConfig(tokenizer_lr_ratio=1.0, **options), dedup_capacity=8,
                               anchor_codes=tokenizer.encode(data))
        table = joint.table()
        generator = small_model(joint.codebook_sizes, dropout=0.0)  # no dropout: torch's RNG is not checkpointed
        fit(generator, TrainingConfig(batch_size=8, max_epochs=epochs, eval_every=1, patience=10),
            directory, inputs=windows.inputs, targets=windows.targets, semantic_ids=table,
            trie=SemanticIdTrie(table, joint.codebook_sizes), valid_histories=valid_histories,
            valid_targets=valid_targets, max_history=5, seed=0, progress=False, joint=joint,
            evaluation=NextItemEvaluationConfig(beam_size=10), valid_seen=valid_histories)
        return joint.table()

    whole = train(isolated_dirs / "whole", 3)
    train(isolated_dirs / "split", 1)
    np.testing.assert_array_equal(train(isolated_dirs / "split", 3), whole)
