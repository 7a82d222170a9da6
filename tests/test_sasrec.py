"""SASRec-CE baseline: causality, padding invariance, learning a toy pattern, checkpoints, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from baselines.sasrec.model import SASRec, next_item_loss
from baselines.sasrec.train import load_best
from mmq.recommenders.sequences import PAD, training_windows


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


def _model(num_items: int = 23, **overrides) -> SASRec:
    torch.manual_seed(0)
    arguments = dict(num_items=num_items, max_length=7, hidden_size=12, num_layers=2, num_heads=3,
                     feedforward_size=20, dropout=0.3)
    return SASRec(**{**arguments, **overrides}).eval()


def test_changing_a_future_item_leaves_earlier_positions_unchanged():
    model = _model()
    items = torch.tensor([[PAD, PAD, 3, 9, 14, 2, 7], [1, 2, 3, 4, 5, 6, 7]])
    changed = items.clone()
    changed[:, 4] = torch.tensor([20, 0])
    with torch.no_grad():
        before, after = model(items).hidden, model(changed).hidden
    torch.testing.assert_close(before[:, :4], after[:, :4], rtol=0, atol=0)
    assert not torch.allclose(before[:, 4:], after[:, 4:])


def test_left_padding_does_not_change_a_right_aligned_sequence():
    model = _model()
    short = torch.tensor([[4, 11, 6]])
    padded = torch.tensor([[PAD, PAD, PAD, PAD, 4, 11, 6]])
    batch = torch.tensor([[PAD, PAD, PAD, PAD, 4, 11, 6], [5, 5, 1, 2, 8, 13, 22]])  # with a full row beside it
    with torch.no_grad():
        alone = model(short).hidden
        torch.testing.assert_close(model(padded).hidden[:, -3:], alone, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(batch).hidden[:1, -3:], alone, rtol=1e-5, atol=1e-6)
        assert torch.isfinite(model(batch).hidden).all()   # fully padded rows stay finite (no NaN)
        assert model.score_histories(padded).shape == (1, 23)


def test_loss_matches_a_naive_per_position_cross_entropy():
    model = _model()
    inputs = torch.tensor([[PAD, PAD, 3, 9, 14, 2, 7]])
    targets = torch.tensor([[PAD, PAD, 9, 14, 2, 7, 1]])
    with torch.no_grad():
        hidden = model(inputs).hidden
        scores = model.item_scores(hidden[0])                                  # [length, num_items]
        naive = np.mean([-float(torch.log_softmax(scores[t], dim=0)[targets[0, t]]) for t in range(2, 7)])
        assert float(next_item_loss(model, hidden, targets)) == pytest.approx(naive, rel=1e-5)


def test_learns_successor_pattern_and_ranks_the_true_next_item_first():
    num_items = 17
    sequences = [np.arange(start, min(start + length, num_items))           # item i is always followed by i + 1
                 for start in range(num_items - 2) for length in (3, 6, 9)]
    windows = training_windows(sequences, max_length=7)
    inputs, targets = torch.from_numpy(windows.inputs), torch.from_numpy(windows.targets)
    model = _model(num_items, dropout=0.0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(50):
        loss = next_item_loss(model, model(inputs).hidden, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.2 * losses[0]
    model.eval()
    histories = torch.tensor([[PAD, PAD, PAD, PAD, 2, 3, 4], [PAD, PAD, PAD, 8, 9, 10, 11]])
    with torch.no_grad():
        assert model.score_histories(histories).argmax(dim=1).tolist() == [5, 12]


def test_checkpoint_round_trip_gives_identical_scores(tmp_path):
    model = _model()
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict()}, path)
    reloaded = load_best(_model(dropout=0.0), path).eval()   # dropout is not a weight; eval ignores it anyway
    items = torch.tensor([[PAD, 3, 9, 14, 2, 7, 0]])
    with torch.no_grad():
        assert torch.equal(model.score_histories(items), reloaded.score_histories(items))


def _tiny_config(folder, epochs: int = 3) -> str:
    config = folder / "experiments" / "tiny_sasrec.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("kind: sasrec\ndataset: beauty\nkcore: 0\nmax_history: 5\nhidden_size: 8\nnum_heads: 2\n"
                      f"feedforward_size: 16\nbatch_size: 16\nepochs: {epochs}\neval_every: 2\ncpu: true\n")
    return str(config)


def test_end_to_end_run_writes_report_resumes_and_skips(isolated_dirs, monkeypatch, tiny_beauty):
    from mmq.registry import run_or_load

    tiny_beauty(isolated_dirs / "data")
    monkeypatch.setenv("MMQ_DATA_DIR", str(isolated_dirs / "data"))
    config = _tiny_config(isolated_dirs)
    report = run_or_load(config, 0, progress=False)
    metrics = report["metrics"]
    assert set(metrics) >= {"valid", "test", "best_epoch", "epochs_run", "train_seconds", "profile", "num_params"}
    for split in ("valid", "test"):
        assert {"recall@5", "recall@10", "ndcg@5", "ndcg@10", "recall@20"} <= set(metrics[split])
        assert all(0.0 <= value <= 1.0 for value in metrics[split].values())
    assert metrics["epochs_run"] == 3 and metrics["best_epoch"] in (2, 3) and metrics["profile"] == "cpu"
    assert [entry["epoch"] for entry in metrics["history"] if "valid" in entry] == [2, 3]
    report_path = next((isolated_dirs / "checkpoints").rglob("report.json"))
    assert (report_path.parent / "DONE").exists() and (report_path.parent / "best.pt").exists()
    assert json.loads(report_path.read_text())["config"]["hidden_size"] == 8
    # a finished run is reused, not retrained
    stamp = report_path.stat().st_mtime_ns
    assert run_or_load(config, 0, progress=False)["metrics"] == metrics and report_path.stat().st_mtime_ns == stamp
    # an interrupted run (state.pt, no DONE) resumes after its last evaluation: raising the epoch budget
    # continues from epoch 3 instead of starting over
    (report_path.parent / "DONE").unlink()
    config = _tiny_config(isolated_dirs, epochs=4)
    resumed = run_or_load(config, 0, progress=False)["metrics"]
    assert resumed["epochs_run"] == 4 and [entry["epoch"] for entry in resumed["history"]] == [1, 2, 3, 4]


def test_unknown_config_key_raises(isolated_dirs):
    from mmq.registry import run_or_load
    from mmq.config import ConfigError

    config = isolated_dirs / "bad.yaml"
    config.write_text("kind: sasrec\ndataset: beauty\nnum_blocks: 3\n")
    with pytest.raises(ConfigError, match="num_blocks"):
        run_or_load(config, 0)


def test_full_history_exclusion_masks_items_outside_the_input_window():
    from baselines.sasrec.train import rank_next_items

    model = _model()
    history = np.arange(1, 13)                         # 12 items; the model reads the last 7
    window = rank_next_items(model, [history], max_length=7, k=23 - 7)[0]
    full = rank_next_items(model, [history], max_length=7, k=23 - 12, seen=[history])[0]
    nothing = rank_next_items(model, [history], max_length=7, k=23, seen=[np.empty(0, dtype=np.int64)])[0]
    assert not set(window) & set(history[-7:]) and set(history[:5]) <= set(window)   # default: the window only
    assert not set(full) & set(history)                                              # full: every earlier item
    assert sorted(nothing) == list(range(23))                                        # empty seen: nothing masked
    assert list(full) == [item for item in nothing if item not in set(history)][:len(full)]   # same order otherwise
    with pytest.raises(ValueError, match="seen has 2 entries for 1 histories"):
        rank_next_items(model, [history], max_length=7, k=3, seen=[history, history])


def test_full_exclusion_run_scores_test_both_ways_and_rejects_unknown_modes(isolated_dirs, monkeypatch, tiny_beauty):
    from baselines.sasrec.experiment import SASRecConfig
    from mmq.metrics.per_event import load_per_event
    from mmq.registry import run_or_load, run_directory

    tiny_beauty(isolated_dirs / "data")
    monkeypatch.setenv("MMQ_DATA_DIR", str(isolated_dirs / "data"))
    config = _tiny_config(isolated_dirs, epochs=2)
    with open(config, "a") as handle:
        handle.write("history_exclusion: full\n")
    metrics = run_or_load(config, 0, progress=False)["metrics"]
    assert metrics["history_exclusion"] == "full" and set(metrics["test_no_exclusion"]) == set(metrics["test"])
    arrays = load_per_event(run_directory(config, 0), metrics)
    assert {"test_rank", "test_no_exclusion_rank", "test_no_exclusion_user"} <= set(arrays)
    assert np.array_equal(arrays["test_user"], arrays["test_no_exclusion_user"])
    with pytest.raises(ValueError, match="history_exclusion must be one of"):
        SASRecConfig(history_exclusion="last_20")
