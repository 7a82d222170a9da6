"""Beauty user-history two-tower: towers, InfoNCE, hard-negative mining, learning, exact resume, config, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baselines.two_tower.user_history import (TrainingExamples, UserHistoryTwoTower, UserTwoTowerConfig,
                                              info_nce_loss, load_best, mine_hard_negatives, rank_next_items,
                                              train_user_two_tower, training_examples)
from mmq.recommenders.sequences import PAD


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _text(num_items: int = 23, dim: int = 10, seed: int = 0) -> np.ndarray:
    features = np.random.default_rng(seed).normal(size=(num_items, dim)).astype(np.float32)
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def _config(**overrides) -> UserTwoTowerConfig:
    values = dict(max_history=6, embedding_dim=16, dropout=0.2, batch_size=16, epochs=4, eval_every=1, patience=0,
                  hard_negative_pool=5, cpu=True)
    return UserTwoTowerConfig(**{**values, **overrides})


def _model(config: UserTwoTowerConfig, num_items: int = 23, seed: int = 0) -> UserHistoryTwoTower:
    torch.manual_seed(seed)
    return UserHistoryTwoTower(_text(num_items), **config.model_arguments())


# --- towers and loss -------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["attention", "mean", "last"])
def test_towers_are_normalised_and_left_padding_changes_nothing(pooling):
    model = _model(_config(pooling=pooling)).eval()
    short = torch.tensor([[4, 11, 6]])
    padded = torch.tensor([[PAD, PAD, PAD, 4, 11, 6]])
    batch = torch.tensor([[PAD, PAD, PAD, 4, 11, 6], [5, 5, 1, 2, 8, 13]])
    with torch.no_grad():
        alone = model.encode_users(short)
        torch.testing.assert_close(model.encode_users(padded), alone, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.encode_users(batch)[:1], alone, rtol=1e-5, atol=1e-6)
        users, items = model.encode_users(batch), model.all_items()
        torch.testing.assert_close(users.norm(dim=1), torch.ones(2))
        torch.testing.assert_close(items.norm(dim=1), torch.ones(23))
        assert model.score_histories(batch).shape == (2, 23)
        with pytest.raises(ValueError, match="histories must be"):
            model.encode_users(torch.zeros(2, 7, dtype=torch.long))   # longer than max_history


def test_item_ids_start_at_zero_and_stay_out_of_the_text_only_model():
    with_ids, text_only = _model(_config()), _model(_config(item_ids=False))
    assert torch.count_nonzero(with_ids.item_ids.weight) == 0
    assert text_only.item_ids is None and "text" not in text_only.state_dict()   # frozen features are not saved


def test_the_loss_is_info_nce_at_the_temperature_over_positives_and_hard_negatives():
    generator = torch.Generator().manual_seed(0)
    queries, positives, negatives = (torch.nn.functional.normalize(torch.randn(5, 8, generator=generator), dim=1)
                                     for _ in range(3))
    temperature = 0.07
    loss = info_nce_loss(temperature).compute_loss_from_embeddings([queries, positives, negatives], None)
    logits = queries @ torch.cat([positives, negatives]).T / temperature          # [5, 10]
    naive = torch.nn.functional.cross_entropy(logits, torch.arange(5))
    torch.testing.assert_close(loss, naive, rtol=1e-5, atol=1e-6)
    in_batch = info_nce_loss(temperature).compute_loss_from_embeddings([queries, positives], None)
    torch.testing.assert_close(in_batch, torch.nn.functional.cross_entropy(queries @ positives.T / temperature,
                                                                           torch.arange(5)), rtol=1e-5, atol=1e-6)


# --- hard-negative mining --------------------------------------------------------------------


def test_training_examples_are_every_prefix_with_its_user():
    sequences = [np.array([3, 4, 5, 6]), np.array([7]), np.array([1, 2])]
    examples = training_examples(sequences, num_items=10, max_history=2)
    np.testing.assert_array_equal(examples.targets, [4, 5, 6, 2])
    np.testing.assert_array_equal(examples.users, [0, 0, 0, 2])
    np.testing.assert_array_equal(examples.histories, [[PAD, 3], [3, 4], [4, 5], [PAD, 1]])
    np.testing.assert_array_equal(examples.user_items, [3, 4, 5, 6, 17, 21, 22])   # user * 10 + item


def test_mining_never_returns_the_target_or_a_user_item_and_stays_in_the_top_pool():
    rng = np.random.default_rng(0)
    num_items, dim = 40, 6
    items = rng.normal(size=(num_items, dim)).astype(np.float32)
    sequences = [rng.choice(num_items, size=rng.integers(3, 12), replace=False) for _ in range(25)]
    examples = training_examples(sequences, num_items, max_history=5)
    # adversarial queries: each example's query is its target's own vector, so the target (and, through the
    # user's other items, many false negatives) sit at the top of the FAISS ranking
    queries = items[examples.targets] + 0.01 * rng.normal(size=(len(examples), dim)).astype(np.float32)
    pool = 8
    negatives, fallbacks = mine_hard_negatives(queries, items, examples.users, examples.user_items, pool=pool,
                                               rng=np.random.default_rng(1), batch_size=7)
    assert negatives.shape == (len(examples),) and fallbacks == 0
    top = np.argsort(-(queries @ items.T), axis=1)[:, :pool]
    for row, negative in enumerate(negatives):
        user_items = set(sequences[examples.users[row]].tolist())
        assert negative != examples.targets[row] and negative not in examples.histories[row]
        assert negative not in user_items
        assert negative in top[row]                       # a hard negative, not a random item
    # several draws over the same pool: not always the same item
    again, _ = mine_hard_negatives(queries, items, examples.users, examples.user_items, pool=pool,
                                   rng=np.random.default_rng(2))
    assert (again != negatives).any()


def test_mining_falls_back_to_a_random_allowed_item_when_the_whole_pool_is_excluded():
    items = np.eye(6, dtype=np.float32)
    sequences = [np.array([0, 1, 2])]                     # the user's items are the query's whole top 3
    examples = training_examples(sequences, 6, max_history=3)
    queries = np.tile(np.array([[3.0, 2.0, 1.0, 0.0, 0.0, 0.0]], dtype=np.float32), (len(examples), 1))
    negatives, fallbacks = mine_hard_negatives(queries, items, examples.users, examples.user_items, pool=3,
                                               rng=np.random.default_rng(0))
    assert fallbacks == len(examples) and set(negatives.tolist()) <= {3, 4, 5}


# --- training ----------------------------------------------------------------------------------


def _successor_data(num_items: int = 25):
    """Item i is always followed by i + 1; validation asks for the successor of the last item."""
    sequences = [np.arange(start, min(start + length, num_items)) for start in range(num_items - 2)
                 for length in (3, 5, 7)]
    examples = training_examples(sequences, num_items, max_history=6)
    valid = ([np.arange(max(0, end - 4), end) for end in range(2, num_items)],
             np.arange(2, num_items, dtype=np.int64))
    return examples, valid


@pytest.mark.parametrize("hard_negatives", [False, True])
def test_learns_the_successor_pattern(tmp_path, hard_negatives):
    num_items = 25
    examples, valid = _successor_data(num_items)
    config = _config(hard_negatives=hard_negatives, dropout=0.0, epochs=30, learning_rate=2e-2, batch_size=32,
                     eval_every=10, hard_negative_pool=4)
    model = _model(config, num_items)
    result = train_user_two_tower(model, examples, valid, config, tmp_path, seed=0, progress=False)
    losses = [entry["train_loss"] for entry in result.history]
    assert losses[-1] < 0.5 * losses[0]
    assert [entry["hard_negatives"] for entry in result.history] == [hard_negatives and epoch >= 1
                                                                     for epoch in range(30)]
    assert result.best_valid["recall@5"] > 0.9
    best = load_best(_model(config, num_items, seed=1), result.best_path)
    ranked = rank_next_items(best, [np.array([2, 3, 4]), np.array([8, 9, 10, 11])], max_history=6, k=1)
    assert ranked[:, 0].tolist() == [5, 12]


def _train(directory, epochs: int, examples: TrainingExamples, valid):
    config = _config(epochs=epochs, eval_every=2, patience=3, hard_negative_start=1)
    torch.manual_seed(0)
    model = UserHistoryTwoTower(_text(23), **config.model_arguments())
    result = train_user_two_tower(model, examples, valid, config, directory, seed=0, progress=False)
    return result


def _without_timing(value):
    timing = ("epoch_seconds", "train_examples_per_second", "mining_seconds", "train_seconds")
    if isinstance(value, dict):
        return {key: _without_timing(item) for key, item in value.items() if key not in timing}
    if isinstance(value, list):
        return [_without_timing(item) for item in value]
    return value


def _assert_same(left, right):
    if isinstance(left, dict):
        assert left.keys() == right.keys()
        for key in left:
            _assert_same(left[key], right[key])
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right)
        for a, b in zip(left, right):
            _assert_same(a, b)
    elif isinstance(left, torch.Tensor):
        assert torch.equal(left, right)
    else:
        assert left == right


def test_an_interrupted_run_resumes_to_the_uninterrupted_one(tmp_path):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 23, rng.integers(4, 10)) for _ in range(30)]
    examples = training_examples([s[:-1] for s in sequences], 23, max_history=6)
    valid = ([s[:-1][-6:] for s in sequences], np.array([s[-1] for s in sequences]))
    whole = _train(tmp_path / "whole", 5, examples, valid)
    _train(tmp_path / "resumed", 2, examples, valid)              # stops after epoch 2 (mining starts at epoch 2)
    assert torch.load(tmp_path / "resumed" / "state.pt", weights_only=False)["loop"]["units"] == 2
    resumed = _train(tmp_path / "resumed", 5, examples, valid)    # continues from epoch 3
    assert _without_timing(whole.history) == _without_timing(resumed.history)
    assert [entry["hard_negatives"] for entry in resumed.history] == [False, True, True, True, True]
    assert whole.best_epoch == resumed.best_epoch and whole.best_valid == resumed.best_valid
    states = [torch.load(folder / "state.pt", weights_only=False) for folder in (tmp_path / "whole",
                                                                                 tmp_path / "resumed")]
    _assert_same(states[0]["task"], states[1]["task"])
    _assert_same(torch.load(tmp_path / "whole" / "best.pt", weights_only=False),
                 torch.load(tmp_path / "resumed" / "best.pt", weights_only=False))
    # and the check can fail: a third run with another seed ends elsewhere
    other = train_user_two_tower(_model(_config(epochs=5, eval_every=2), seed=3), examples, valid,
                                 _config(epochs=5, eval_every=2), tmp_path / "other", seed=3, progress=False)
    assert _without_timing(other.history) != _without_timing(whole.history)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("pooling", "max", "pooling must be one of"),
    ("temperature", 0.0, "temperature must be > 0"),
    ("temperature", -0.1, "temperature must be > 0"),
    ("batch_size", 1, "batch_size must be >= 2"),
    ("hard_negative_pool", 0, "hard_negative_pool must be >= 1"),
    ("hard_negative_start", -1, "hard_negative_start must be >= 0"),
    ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
    ("selection_metric", "ndcg@7", "selection_metric must be one of"),
    ("epochs", 0, "epochs must be >= 1"),
    ("learning_rate", 0.0, "learning_rate must be > 0"),
    ("profile", "tpu", "profile must be"),
])
def test_bad_config_values_raise_clear_errors(field, value, message):
    with pytest.raises(ValueError, match=message):
        UserTwoTowerConfig(**{field: value})


def test_committed_yamls_load_and_differ_only_in_hard_negatives():
    from mmq.registry import load_experiment

    kind, mined = load_experiment("experiments/ch2/beauty_user_two_tower.yaml")
    _, in_batch = load_experiment("experiments/ch2/beauty_user_two_tower_inbatch.yaml")
    assert kind.name == "user_two_tower" and isinstance(mined, UserTwoTowerConfig)
    assert mined.hard_negatives and not in_batch.hard_negatives
    assert {field for field in mined.__dataclass_fields__
            if getattr(mined, field) != getattr(in_batch, field)} == {"hard_negatives"}


def test_a_bad_value_in_a_yaml_is_a_config_error(isolated_dirs):
    from mmq.config import ConfigError
    from mmq.registry import load_experiment

    config = isolated_dirs / "bad.yaml"
    config.write_text("kind: user_two_tower\ntemperature: 0\n")
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        load_experiment(config)
    config.write_text("kind: user_two_tower\nhard_negative: true\n")
    with pytest.raises(ConfigError, match="hard_negative"):
        load_experiment(config)


# --- end to end ---------------------------------------------------------------------------------


def test_end_to_end_run_writes_report_and_per_event_results(isolated_dirs, monkeypatch, tiny_beauty):
    from baselines.two_tower import user_history
    from mmq.metrics.per_event import load_per_event
    from mmq.recommenders.evaluation import metrics_from_ranks
    from mmq.registry import run_or_load

    tiny_beauty(isolated_dirs / "data")
    monkeypatch.setenv("MMQ_DATA_DIR", str(isolated_dirs / "data"))
    # random "title embeddings": no sentence encoder in a unit test
    monkeypatch.setattr(user_history, "item_text_embeddings",
                        lambda dataset, config, progress=True: _text(dataset.num_items, 12))
    config = isolated_dirs / "experiments" / "tiny_user_two_tower.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("kind: user_two_tower\ndataset: beauty\nkcore: 0\nmax_history: 5\nembedding_dim: 8\n"
                      "batch_size: 16\nepochs: 3\nhard_negative_pool: 5\ncpu: true\n")
    report = run_or_load(config, 0, progress=False)
    metrics = report["metrics"]
    assert set(metrics) >= {"valid", "test", "best_epoch", "epochs_run", "train_seconds", "profile", "num_params",
                            "per_event", "mining_seconds"}
    assert metrics["epochs_run"] == 3 and metrics["profile"] == "cpu" and metrics["best_epoch"] in (1, 2, 3)
    assert [entry["hard_negatives"] for entry in metrics["history"]] == [False, True, True]
    folder = next((isolated_dirs / "checkpoints").rglob("report.json")).parent
    assert (folder / "DONE").exists() and (folder / "best.pt").exists()
    assert json.loads((folder / "report.json").read_text())["config"]["embedding_dim"] == 8
    arrays = load_per_event(folder, metrics)
    for split in ("valid", "test"):
        assert metrics_from_ranks(arrays[f"{split}_rank"], int(arrays["k"])) == pytest.approx(metrics[split])
    assert "differs_from_report" not in metrics["per_event"]
