"""Per-event results beside report.json: the file format, its sha256 check, and -- for tiny generative,
SASRec and ranking runs through the real entry point -- metrics recomputed from it equal the reported ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmq.metrics import auc, gauc, ranking_metrics
from mmq.metrics.per_event import (PER_EVENT_FILE, PerEventError, load_per_event, next_item_arrays, ranking_arrays,
                                   save_per_event)
from mmq.recommenders.evaluation import metrics_from_ranks, score_ranked, target_ranks


def _reported_ks(split_metrics: dict) -> tuple[int, ...]:
    return tuple(sorted(int(name.split("@")[1]) for name in split_metrics if name.startswith("recall@")))


def _check_next_item_run(directory, metrics: dict, list_length: int) -> None:
    """The saved ranks reproduce every reported valid / test metric exactly."""
    arrays = load_per_event(directory, metrics)
    splits = ["valid", "test"] + (["valid_no_exclusion", "test_no_exclusion"] if "test_no_exclusion" in metrics else [])
    assert sorted(arrays) == sorted(["k", *(f"{split}_{name}" for split in splits for name in ("rank", "user"))])
    assert int(arrays["k"]) == list_length and arrays["k"].shape == ()
    assert "differs_from_report" not in metrics["per_event"]
    for split in splits:
        ranks, users = arrays[f"{split}_rank"], arrays[f"{split}_user"]
        assert ranks.dtype == np.int32 and users.dtype == np.int32
        np.testing.assert_array_equal(users, np.arange(len(users)))
        recomputed = metrics_from_ranks(ranks, int(arrays["k"]), ks=_reported_ks(metrics[split]))
        assert recomputed == metrics[split]
    assert (arrays["test_rank"] > 0).any()  # the tiny runs do find some targets: the comparison is not vacuous


def test_target_ranks_match_a_naive_loop_and_metrics_from_ranks_equal_ranking_metrics():
    rng = np.random.default_rng(3)
    for width, ks in [(20, (5, 10, 20)), (10, (5, 10)), (7, (1, 3, 7))]:
        ranked = np.stack([rng.permutation(40)[:width] for _ in range(257)])
        ranked[rng.random(ranked.shape) < 0.1] = -1                        # pads (e.g. after history exclusion)
        targets = np.where(rng.random(257) < 0.6, ranked[:, 0], rng.integers(0, 40, 257))
        targets = np.where(targets < 0, 39, targets)
        ranks = target_ranks(ranked, targets)
        naive = [next((position + 1 for position, item in enumerate(row) if item == target), 0)
                 for row, target in zip(ranked, targets)]
        np.testing.assert_array_equal(ranks, naive)
        assert ranks.dtype == np.int32
        assert metrics_from_ranks(ranks, width, ks) == ranking_metrics(ranked, targets, ks=ks)  # exactly
        scored = score_ranked(ranked, targets, ks)
        assert scored.list_length == width and scored.metrics == ranking_metrics(ranked, targets, ks=ks)
    with pytest.raises(ValueError, match="more than once"):
        target_ranks(np.array([[1, 1, 2]]), np.array([1]))
    with pytest.raises(ValueError, match="every k"):
        metrics_from_ranks(np.array([1, 0]), 5, ks=(10,))


def test_save_and_load_round_trip_with_sha256_check(tmp_path):
    arrays = {**next_item_arrays({"test": np.array([0, 3, 1])}, {"test": np.arange(3)}, 5),
              **ranking_arrays("valid", scores=np.array([0.5, -1.25], dtype=np.float32).astype(np.float64),
                               labels=np.array([1.0, 0.0], dtype=np.float32), users=np.array([4, 2]),
                               items=np.array([7, 9]))}
    entry = save_per_event(tmp_path, arrays)
    assert entry["path"] == PER_EVENT_FILE and entry["arrays"] == list(arrays) and len(entry["sha256"]) == 64
    assert save_per_event(tmp_path, arrays)["sha256"] == entry["sha256"]   # same arrays, same bytes
    assert not [path for path in tmp_path.iterdir() if path.name != PER_EVENT_FILE]  # no temporary left behind
    loaded = load_per_event(tmp_path, {"per_event": entry})
    for name, values in arrays.items():
        np.testing.assert_array_equal(loaded[name], values)
        assert loaded[name].dtype == values.dtype
    assert loaded["valid_label"].dtype == np.int8 and loaded["valid_score"].dtype == np.float32
    with np.load(tmp_path / PER_EVENT_FILE) as archive:                    # a plain .npz for numpy itself
        np.testing.assert_array_equal(archive["test_rank"], [0, 3, 1])
    # runs made before per-event files existed: nothing is required
    assert load_per_event(tmp_path, {"test": {"ndcg@10": 0.1}}) is None
    # an altered or missing file is refused with the reason
    save_per_event(tmp_path, {**arrays, "test_rank": np.array([1, 3, 1], dtype=np.int32)})
    with pytest.raises(PerEventError, match="sha256"):
        load_per_event(tmp_path, {"per_event": entry})
    (tmp_path / PER_EVENT_FILE).unlink()
    with pytest.raises(PerEventError, match="missing"):
        load_per_event(tmp_path, {"per_event": entry})
    with pytest.raises(ValueError, match="int8, int32 or float32"):
        save_per_event(tmp_path, {"test_rank": np.array([1, 2], dtype=np.int64)})
    with pytest.raises(ValueError, match="float32"):
        ranking_arrays("test", scores=np.array([0.1, 0.2]), labels=np.array([0, 1]), users=np.array([0, 1]),
                       items=np.array([0, 1]))
    with pytest.raises(ValueError, match="lie in"):
        next_item_arrays({"test": np.array([6])}, {"test": np.array([0])}, 5)


def test_sasrec_run_saves_ranks_that_reproduce_its_metrics(isolated_dirs, monkeypatch, tiny_beauty):
    from mmq.registry import run_directory, run_or_load

    tiny_beauty(isolated_dirs / "data")
    monkeypatch.setenv("MMQ_DATA_DIR", str(isolated_dirs / "data"))
    config = isolated_dirs / "tiny_sasrec.yaml"
    config.write_text("kind: sasrec\ndataset: beauty\nkcore: 0\nmax_history: 5\nhidden_size: 8\nnum_heads: 2\n"
                      "feedforward_size: 16\nbatch_size: 16\nepochs: 3\neval_every: 2\ncpu: true\n")
    metrics = run_or_load(config, 0, progress=False)["metrics"]
    directory = run_directory(config, 0)
    assert json.loads((directory / "report.json").read_text())["metrics"]["per_event"] == metrics["per_event"]
    _check_next_item_run(directory, metrics, list_length=20)


def test_generative_run_saves_ranks_that_reproduce_its_metrics(isolated_dirs, mmq_world):
    from mmq.registry import run_directory, run_or_load

    dataset, data = mmq_world.synthetic_dataset(num_users=30, num_items=60, per_user=12)
    sid_config = mmq_world.install(dataset, data)
    config = isolated_dirs / "tiny_generative.yaml"
    config.write_text(json.dumps({"kind": "generative", "dataset": "synthetic", "semantic_ids": str(sid_config),
                                  "max_history": 5, "causal": {"dim": 16, "num_heads": 2, "decoder_hidden": 16},
                                  "training": {"batch_size": 16, "max_epochs": 2, "eval_every": 1, "cpu": True},
                                  "evaluation": {"beam_size": 10}}))
    metrics = run_or_load(config, 0, progress=False)["metrics"]
    assert _reported_ks(metrics["test"]) == (5, 10)
    _check_next_item_run(run_directory(config, 0), metrics, list_length=10)


def test_ranking_run_saves_scores_that_reproduce_its_auc(isolated_dirs, mmq_world):
    from mmq.ranking.data import ranking_data
    from mmq.registry import run_directory, run_or_load

    dataset, data = mmq_world.synthetic_dataset()
    mmq_world.install(dataset, data)
    config = isolated_dirs / "tiny_ranking.yaml"
    config.write_text(json.dumps({"kind": "ranking", "item_features": "id",
                                  "ppnet": {"embedding_dim": 8, "hidden_dims": [16], "gate_hidden_dim": 8},
                                  "training": {"max_epochs": 2, "batch_size": 64}}))
    metrics = run_or_load(config, 0, progress=False)["metrics"]
    arrays = load_per_event(run_directory(config, 0), metrics)
    splits = ranking_data(dataset).splits
    for split in ("valid", "test"):
        scores, labels = arrays[f"{split}_score"], arrays[f"{split}_label"]
        assert scores.dtype == np.float32 and labels.dtype == np.int8
        assert len(scores) == metrics[split]["num_samples"]
        np.testing.assert_array_equal(arrays[f"{split}_user"], splits[split].users)
        np.testing.assert_array_equal(arrays[f"{split}_item"], splits[split].items)
        np.testing.assert_array_equal(labels, splits[split].labels)
        assert auc(labels, scores) == metrics[split]["auc"]
        assert gauc(arrays[f"{split}_user"], labels, scores)["gauc"] == metrics[split]["gauc"]
