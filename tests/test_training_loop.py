"""The shared training loop: early stopping, selection, atomic resumable state; resumed == uninterrupted
for every trainer built on it (generative, ranking, SASRec, image tower, MMQ stage 1), dropout on."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

import mmq.training.loop as loop_module
from mmq.semantic_ids.base import load_torch_state, save_torch_state
from mmq.training import (STATE_FILE, LoopSettings, TrainingTask, capture_rng_state, restore_rng_state,
                          run_training)

TIMING = ("epoch_seconds", "train_targets_per_second", "train_images_per_second", "train_seconds")


class Interrupted(Exception):
    """Stands in for a killed process."""


class ToyTask(TrainingTask):
    """A dropout MLP on data drawn from every global RNG; validation scores follow a script."""

    def __init__(self, scores=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6)) -> None:
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.scores = scores

    def train_unit(self, index):
        self.model.train()
        inputs = torch.randn(16, 4) + float(np.random.normal()) + random.random()
        loss = self.model(inputs).pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    def evaluate(self, index):
        return {"score": self.scores[index], "other": -1.0}

    def save_best(self, path, number, metrics):
        save_torch_state(path, {"model": self.model.state_dict(), "epoch": number})

    def state_dict(self):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


def settings(max_units=6, **overrides):
    return LoopSettings(max_units=max_units, selection_metric="score", **overrides)


def kill_after(monkeypatch, unit):
    """Make the loop die right after unit ``unit`` has written its state (at its log call)."""
    def log_then_die(metrics, step, **_):
        if step == unit:
            raise Interrupted
    monkeypatch.setattr(loop_module, "log_metrics", log_then_die)


def saved_state(directory: Path) -> dict:
    return torch.load(directory / STATE_FILE, weights_only=False)


def without_timing(value):
    if isinstance(value, dict):
        return {key: without_timing(item) for key, item in value.items() if key not in TIMING}
    if isinstance(value, list):
        return [without_timing(item) for item in value]
    return value


def assert_same_tensors(left, right):
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            assert_same_tensors(left[key], right[key])
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right)
        for a, b in zip(left, right):
            assert_same_tensors(a, b)
    elif isinstance(left, torch.Tensor):
        assert torch.equal(left, right)
    elif isinstance(left, np.ndarray):
        np.testing.assert_array_equal(left, right)
    else:
        assert left == right or (left != left and right != right)   # NaN == NaN here


def assert_same_run(whole: Path, resumed: Path):
    """Final task state (weights, optimiser, ...), loop progress and best weights agree bit for bit."""
    a, b = saved_state(whole), saved_state(resumed)
    assert_same_tensors(a["task"], b["task"])
    assert_same_tensors(a["rng"], b["rng"])
    assert without_timing(a["loop"]) == without_timing(b["loop"])
    assert (whole / "best.pt").exists() == (resumed / "best.pt").exists()
    if (whole / "best.pt").exists():
        assert_same_tensors(torch.load(whole / "best.pt", weights_only=False),
                            torch.load(resumed / "best.pt", weights_only=False))


# --- the loop itself -------------------------------------------------------------------------


def test_early_stopping_after_patience_and_best_selection(tmp_path):
    snapshots = {}

    class Recording(ToyTask):
        def train_unit(self, index):
            fields = super().train_unit(index)
            snapshots[index + 1] = {k: v.clone() for k, v in self.model.state_dict().items()}
            return fields

    # 0.3 at unit 4 only ties the best (unit 2): not an improvement
    result = run_training(Recording(scores=(0.1, 0.3, 0.2, 0.3, 0.25, 0.9)), settings(patience=3), tmp_path, seed=0,
                          progress=False)
    assert result.units_run == 5 and result.stopped_early and result.best_unit == 2 and result.best_score == 0.3
    assert result.best_metrics == {"score": 0.3, "other": -1.0}
    assert [record["epoch"] for record in result.history] == [1, 2, 3, 4, 5]
    assert all(record["valid"]["score"] == score for record, score in zip(result.history, (0.1, 0.3, 0.2, 0.3)))
    best = load_torch_state(tmp_path / "best.pt")
    assert best["epoch"] == 2
    assert_same_tensors(best["model"], snapshots[2])


def test_validation_every_n_units_and_always_after_the_last(tmp_path):
    result = run_training(ToyTask(scores=(9, 0.5, 9, 0.4, 0.6)), settings(5, eval_every=2, patience=1), tmp_path,
                          seed=0, progress=False)
    assert [("valid" in record) for record in result.history] == [False, True, False, True]   # stops after 4
    result = run_training(ToyTask(scores=(9, 0.5, 9, 0.6, 0.7)), settings(5, eval_every=2, patience=0),
                          tmp_path / "never", seed=0, progress=False)
    assert [("valid" in record) for record in result.history] == [False, True, False, True, True]
    assert result.best_unit == 5 and not result.stopped_early


def test_resumed_run_equals_the_uninterrupted_one_only_with_the_rng_state(tmp_path, monkeypatch):
    run_training(ToyTask(), settings(), tmp_path / "whole", seed=0, progress=False)
    run_training(ToyTask(), settings(max_units=3), tmp_path / "budget", seed=0, progress=False)
    resumed = run_training(ToyTask(), settings(), tmp_path / "budget", seed=0, progress=False)
    assert resumed.units_run == 6 and [record["epoch"] for record in resumed.history] == [1, 2, 3, 4, 5, 6]
    assert_same_run(tmp_path / "whole", tmp_path / "budget")
    with monkeypatch.context() as patch:
        kill_after(patch, 2)
        with pytest.raises(Interrupted):
            run_training(ToyTask(), settings(), tmp_path / "killed", seed=0, progress=False)
    assert saved_state(tmp_path / "killed")["loop"]["units"] == 2
    run_training(ToyTask(), settings(), tmp_path / "killed", seed=0, progress=False)
    assert_same_run(tmp_path / "whole", tmp_path / "killed")
    # the test has teeth: without restoring the RNG states, dropout masks and data differ after a resume
    run_training(ToyTask(), settings(max_units=3), tmp_path / "no_rng", seed=0, progress=False)
    monkeypatch.setattr(loop_module, "restore_rng_state", lambda state: None)
    run_training(ToyTask(), settings(), tmp_path / "no_rng", seed=0, progress=False)
    with pytest.raises(AssertionError):
        assert_same_run(tmp_path / "whole", tmp_path / "no_rng")


def test_a_run_killed_while_writing_its_state_keeps_the_previous_one(tmp_path, monkeypatch):
    writes = []
    real_write_bytes = Path.write_bytes

    def torn_write(self, data):
        writes.append(self.name)
        if sum(STATE_FILE in name for name in writes) == 3:   # the third state file: half written, then killed
            real_write_bytes(self, data[: len(data) // 2])
            raise Interrupted
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", torn_write)
    with pytest.raises(Interrupted):
        run_training(ToyTask(scores=(0.1,) * 6), settings(), tmp_path, seed=0, progress=False)   # best.pt once
    monkeypatch.undo()
    assert saved_state(tmp_path)["loop"]["units"] == 2
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.pt", STATE_FILE]   # no temporary left
    assert run_training(ToyTask(scores=(0.1,) * 6), settings(), tmp_path, seed=0, progress=False).units_run == 6


def test_state_of_another_seed_or_format_is_refused(tmp_path):
    run_training(ToyTask(), settings(2), tmp_path, seed=0, progress=False)
    with pytest.raises(ValueError, match="seed 0, not 1"):
        run_training(ToyTask(), settings(), tmp_path, seed=1, progress=False)
    torch.save({"model": {}, "progress": {}}, tmp_path / STATE_FILE)   # a trainer's state before this loop
    with pytest.raises(ValueError, match="older trainer"):
        run_training(ToyTask(), settings(), tmp_path, seed=0, progress=False)


def test_rng_state_round_trip_and_in_memory_runs_write_nothing(tmp_path, monkeypatch):
    state = capture_rng_state()
    first = (random.random(), np.random.normal(), torch.rand(3))
    restore_rng_state(state)
    second = (random.random(), np.random.normal(), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])
    logged = []
    monkeypatch.setattr(loop_module, "log_metrics", lambda metrics, step, **_: logged.append((step, dict(metrics))))
    result = run_training(ToyTask(), LoopSettings(max_units=3, unit="window"), None, seed=0, progress=False)
    assert [step for step, _ in logged] == [1, 2, 3] and [metrics for _, metrics in logged] == result.history
    assert result.best_unit == 0 and result.best_score is None and "valid" not in result.history[0]
    assert not any(tmp_path.iterdir())


# --- every trainer on the loop: interrupted after an epoch, resumed == uninterrupted (dropout on) ------


def interrupted_and_whole(tmp_path, train, *, full, interrupt_at, monkeypatch=None):
    """Train ``full`` units in one go and, in another folder, stop after ``interrupt_at`` units and resume.

    Without ``monkeypatch`` the first session runs with the smaller budget (``train(directory, budget)``);
    with it the first session is killed after unit ``interrupt_at`` of the full schedule.
    """
    whole = train(tmp_path / "whole", full)
    if monkeypatch is None:
        train(tmp_path / "resumed", interrupt_at)
    else:
        with monkeypatch.context() as patch:
            kill_after(patch, interrupt_at)
            with pytest.raises(Interrupted):
                train(tmp_path / "resumed", full)
    assert saved_state(tmp_path / "resumed")["loop"]["units"] == interrupt_at
    resumed = train(tmp_path / "resumed", full)
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")
    return whole, resumed


@pytest.mark.parametrize("stage", ["frozen", "joint"])
def test_generative_resumes_to_the_uninterrupted_run(tmp_path, stage, request):
    from mmq.finetune.sources import MMQCodes
    from mmq.generative.causal import CausalSidRecommender
    from mmq.generative.finetune import GenerativeFinetuneConfig, JointTokenizer
    from mmq.generative.sid_trie import SemanticIdTrie
    from mmq.generative.train import TrainingConfig, fit
    from mmq.recommenders.evaluation import NextItemEvaluationConfig
    from mmq.recommenders.sequences import training_windows

    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 60, 8) for _ in range(24)]
    windows = training_windows(sequences, 5)
    valid_histories, valid_targets = [s[:-1] for s in sequences], np.array([s[-1] for s in sequences])
    items = np.arange(60)
    table, sizes = np.stack([items % 5, (items // 5) % 4, items // 20], 1), (5, 4, 3)

    def train(directory, epochs):
        joint, semantic_ids, codebook_sizes = None, table, sizes
        if stage == "joint":
            tokenizer, data = request.getfixturevalue("fitted_mmq")
            model = type(tokenizer.model)(config=tokenizer.config, input_dims=tokenizer.dims)
            model.load_state_dict(tokenizer.model.state_dict())
            joint = JointTokenizer(MMQCodes(model, tokenizer.prepare(data), tau=0.1),
                                   GenerativeFinetuneConfig(tokenizer_lr_ratio=1.0), dedup_capacity=8)
            semantic_ids, codebook_sizes = joint.table(), joint.codebook_sizes
        torch.manual_seed(0)
        generator = CausalSidRecommender(codebook_sizes=codebook_sizes, max_length=5, dim=16, num_heads=2,
                                         decoder_hidden=16, dropout=0.2)
        summary = fit(generator, TrainingConfig(batch_size=8, max_epochs=epochs, eval_every=1, patience=10, cpu=True),
                      directory, inputs=windows.inputs, targets=windows.targets, semantic_ids=semantic_ids,
                      trie=SemanticIdTrie(semantic_ids, codebook_sizes), valid_histories=valid_histories,
                      valid_targets=valid_targets, max_history=5, seed=0, progress=False, joint=joint,
                      evaluation=NextItemEvaluationConfig(beam_size=10), valid_seen=valid_histories)
        return without_timing(summary), None if joint is None else joint.table()

    (whole, whole_table), (resumed, resumed_table) = interrupted_and_whole(tmp_path, train, full=4, interrupt_at=2)
    assert whole == resumed and resumed["epochs_run"] == 4
    if stage == "joint":
        np.testing.assert_array_equal(whole_table, resumed_table)
        assert_same_tensors(load_torch_state(tmp_path / "whole" / "best_source.pt"),
                            load_torch_state(tmp_path / "resumed" / "best_source.pt"))


@pytest.mark.parametrize("source_kind", ["ids", "mmq_stage2"])
def test_ranking_resumes_to_the_uninterrupted_run(tmp_path, source_kind, mmq_world, request):
    from mmq.finetune.sources import MMQCodes, NoCodes
    from mmq.ranking.data import ranking_data
    from mmq.ranking.ppnet import PPNet, PPNetConfig
    from mmq.ranking.train import RankingTrainingConfig, fit_ranking

    dataset, _ = mmq_world.synthetic_dataset()
    data = ranking_data(dataset)

    def train(directory, epochs):
        source, sizes, features = NoCodes(data.num_items), None, "id"
        if source_kind == "mmq_stage2":
            tokenizer, modalities = request.getfixturevalue("fitted_mmq")
            model = type(tokenizer.model)(config=tokenizer.config, input_dims=tokenizer.dims)
            model.load_state_dict(tokenizer.model.state_dict())
            source = MMQCodes(model, tokenizer.prepare(modalities), tau=0.1)
            sizes, features = source.codebook_sizes, "id+sid"
        torch.manual_seed(0)
        model = PPNet(num_users=data.num_users, num_items=data.num_items, item_features=features,
                      codebook_sizes=sizes, config=PPNetConfig(embedding_dim=8, hidden_dims=(16,), gate_hidden_dim=8,
                                                               dropout=0.3))
        config = RankingTrainingConfig(max_epochs=epochs, batch_size=64, patience=10)
        return without_timing(fit_ranking(model, source, data, config, directory, seed=0, progress=False))

    whole, resumed = interrupted_and_whole(tmp_path, train, full=4, interrupt_at=2)
    assert whole == resumed and resumed["epochs_run"] == 4


def test_sasrec_resumes_to_the_uninterrupted_run(tmp_path):
    from baselines.sasrec.experiment import SASRecConfig
    from baselines.sasrec.model import SASRec
    from baselines.sasrec.train import train_sasrec
    from mmq.recommenders.sequences import training_windows

    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 23, rng.integers(4, 10)) for _ in range(30)]
    windows = training_windows([s[:-1] for s in sequences], max_length=7)
    valid = ([s[:-1] for s in sequences], np.array([s[-1] for s in sequences]))

    def train(directory, epochs):
        config = SASRecConfig(max_history=7, hidden_size=12, num_heads=3, feedforward_size=20, dropout=0.3,
                              batch_size=16, epochs=epochs, eval_every=2, patience=3, cpu=True)
        torch.manual_seed(0)
        result = train_sasrec(SASRec(**config.model_arguments(23)), windows, valid, config, directory, seed=0,
                              progress=False)
        return without_timing({**result._asdict(), "best_path": None})

    whole, resumed = interrupted_and_whole(tmp_path, train, full=5, interrupt_at=2)
    assert whole == resumed and [("valid" in entry) for entry in resumed["history"]] == [False, True, False, True,
                                                                                           True]


def test_image_tower_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    from mmq.image_tower.data import split_items
    from mmq.image_tower.model import ImageTextModel, ImageTowerConfig
    from mmq.image_tower.train import TrainConfig, train_stage

    rng = np.random.default_rng(0)
    classes = np.arange(48) % 4
    pixels = np.clip(rng.normal(120, 60, (48, 3, 32, 32)), 0, 255).astype(np.uint8)
    texts = np.eye(12, dtype=np.float32)[classes] + rng.normal(0, 0.1, (48, 12)).astype(np.float32)
    labels = np.eye(4, dtype=bool)[classes]
    split = split_items(np.ones(48, bool), valid_size=12, test_size=4, seed=1)
    tower = ImageTowerConfig(embed_dim=16, image_size=32, layers=(1, 1, 1, 1), width=8, text_dim=12)

    def train(directory, epochs):   # the schedule spans ``epochs``: interrupt by killing the run instead
        torch.manual_seed(0)
        config = TrainConfig(epochs=epochs, batch_size=16, warmup_steps=1, cpu=True,
                             selection_metric="text_to_image/category_precision@10")
        result = train_stage(ImageTextModel(config=tower), config, directory, pixels=pixels, texts=texts,
                             labels=labels, split=split, seed=0, progress=False)
        return without_timing(result.history), result.best_epoch

    whole, resumed = interrupted_and_whole(tmp_path, train, full=3, interrupt_at=1, monkeypatch=monkeypatch)
    assert whole == resumed and [entry["epoch"] for entry in resumed[0]] == [1, 2, 3]


def test_mmq_stage1_resumes_to_the_same_semantic_ids(tmp_path, monkeypatch, fitted_mmq):
    from mmq.mmq_tokenizer.model import MMQModel
    from mmq.mmq_tokenizer.train import train_stage1

    tokenizer, data = fitted_mmq
    tensors = {name: torch.from_numpy(array) for name, array in tokenizer.prepare(data).items()}
    models = {}

    def train(directory, windows):   # 4 windows of 10 steps; the cosine schedule spans them all: kill instead
        torch.manual_seed(0)
        models[directory] = MMQModel(config=tokenizer.config, input_dims=tokenizer.dims)
        return train_stage1(models[directory], tensors, tokenizer.config, seed=0, directory=directory)

    whole, resumed = interrupted_and_whole(tmp_path, train, full=4, interrupt_at=2, monkeypatch=monkeypatch)
    assert whole == resumed and [entry["step"] for entry in resumed] == [10, 20, 30, 40]
    assert_same_tensors(models[tmp_path / "whole"].state_dict(), models[tmp_path / "resumed"].state_dict())
    torch.manual_seed(0)
    in_memory = MMQModel(config=tokenizer.config, input_dims=tokenizer.dims)
    assert train_stage1(in_memory, tensors, tokenizer.config, seed=0) == whole   # a folder changes nothing
