"""Resumable tokenizer fits: MMQ stage 1, RQ-VAE and the MA/MS RQ-VAE wrappers killed after a window and
resumed on the same folder give the uninterrupted fit's codes, weights and training log; a fit run through
``fit_and_save_semantic_ids`` leaves no state behind and never resumes a state of another seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mmq.training.loop as loop_module
from baselines.sid_tokenizers import make_modality_tokenizer, make_tokenizer
from mmq.mmq_tokenizer import MMQConfig, MMQTokenizer
from mmq.semantic_ids.fitting import FIT_DIRECTORY, fit_and_save_semantic_ids, fit_key
from mmq.training import STATE_FILE

MMQ = MMQConfig(codebook_size=8, code_dim=16, gate_hidden_dim=8, decoder_hidden_dims=(16,), num_steps=40,
                batch_size=32, restart_every=10, kmeans_iterations=5, progress=False)   # 4 windows of 10 steps
VAE = dict(codebook_size=8, latent_dim=8, hidden_dims=(16,), batch_size=64, num_steps=30, kmeans_iterations=5,
           num_threads=1, progress=False)   # 301 items: 4 steps per epoch
MAKERS = {   # name -> (unfitted tokenizer, units logged by an uninterrupted fit)
    "mmq": (lambda: MMQTokenizer(MMQ), 4),
    "rq_vae": (lambda: make_tokenizer("rq_vae", code_length=3, **VAE), 8),   # 7 epochs + a ragged 2-step one
    "ma_rq_vae": (lambda: make_modality_tokenizer("ma", "rq_vae", code_length=3, **VAE), 8),
    "ms_rq_vae": (lambda: make_modality_tokenizer("ms", "rq_vae", code_length=3, **VAE), 16),   # 8 per modality
}


class Interrupted(Exception):
    """Stands in for a killed process."""


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """Clustered text and image vectors (odd sizes) sharing a cluster id."""
    rng = np.random.default_rng(0)
    clusters = rng.integers(0, 6, 301)
    return {name: (rng.normal(size=(6, dim))[clusters] + 0.3 * rng.normal(size=(301, dim))).astype(np.float32)
            for name, dim in {"text": 12, "image": 7}.items()}


def inputs(name: str, data: dict[str, np.ndarray]):
    return data["text"] if name == "rq_vae" else data


def inner_models(tokenizer) -> dict[str, torch.nn.Module]:
    """Every trained model of a tokenizer (one per modality for MS)."""
    if hasattr(tokenizer, "tokenizers"):
        return {name: inner.model for name, inner in tokenizer.tokenizers.items()}
    return {"model": getattr(tokenizer, "tokenizer", tokenizer).model}


def training_logs(tokenizer) -> dict[str, list[dict]]:
    if hasattr(tokenizer, "tokenizers"):
        return {name: inner.training_log for name, inner in tokenizer.tokenizers.items()}
    return {"model": getattr(tokenizer, "tokenizer", tokenizer).training_log}


def assert_same_fit(left, right, data) -> None:
    """Same codes, bit-identical weights (buffers included) and the same training log."""
    np.testing.assert_array_equal(left.encode(data), right.encode(data))
    for (name, model), (_, other) in zip(inner_models(left).items(), inner_models(right).items()):
        assert model.state_dict().keys() == other.state_dict().keys()
        for key, value in model.state_dict().items():
            assert torch.equal(value, other.state_dict()[key]), (name, key)
    assert training_logs(left) == training_logs(right)


def count_units(monkeypatch, *, die_at: int | None = None) -> list[int]:
    """Record every unit the loop logs (after its state is written); raise Interrupted at the ``die_at``-th."""
    logged: list[int] = []

    def log(metrics, step, **_):
        logged.append(step)
        if len(logged) == die_at:
            raise Interrupted

    monkeypatch.setattr(loop_module, "log_metrics", log)
    return logged


def states(directory: Path) -> dict[str, int]:
    """Units done of every state under ``directory`` (by folder relative to it)."""
    return {str(path.parent.relative_to(directory)): torch.load(path, weights_only=False)["loop"]["units"]
            for path in sorted(directory.rglob(STATE_FILE))}


@pytest.mark.parametrize("name, die_at", [("mmq", 2), ("rq_vae", 3), ("ma_rq_vae", 5), ("ms_rq_vae", 3),
                                          ("ms_rq_vae", 11)])
def test_a_killed_fit_resumes_to_the_uninterrupted_one(tmp_path, monkeypatch, data, name, die_at):
    make, total = MAKERS[name]
    embeddings = inputs(name, data)
    whole = make().fit(embeddings, seed=0)   # in memory, as before checkpoints existed
    with monkeypatch.context() as patch:
        count_units(patch, die_at=die_at)
        with pytest.raises(Interrupted):
            make().fit(embeddings, seed=0, checkpoint_directory=tmp_path)
    if name == "ms_rq_vae":   # a state per modality: text done (8 units) before image starts
        expected = {"text": die_at} if die_at <= 8 else {"text": 8, "image": die_at - 8}
    else:
        expected = {".": die_at}
    assert states(tmp_path) == expected
    with monkeypatch.context() as patch:
        logged = count_units(patch)
        resumed = make().fit(embeddings, seed=0, checkpoint_directory=tmp_path)
    assert len(logged) == total - die_at   # it resumed: only the remaining units were trained
    assert_same_fit(whole, resumed, embeddings)


def test_without_the_saved_state_a_resumed_rq_vae_fit_differs(tmp_path, monkeypatch, data):
    """The resume test has teeth: restarting the fit without the batch-order generator changes the codes."""
    from baselines.sid_tokenizers.rq_vae import RQVAETrainingTask

    make, _ = MAKERS["rq_vae"]
    whole = make().fit(data["text"], seed=0)
    with monkeypatch.context() as patch:
        count_units(patch, die_at=3)
        with pytest.raises(Interrupted):
            make().fit(data["text"], seed=0, checkpoint_directory=tmp_path)
    real_load = RQVAETrainingTask.load_state_dict
    monkeypatch.setattr(RQVAETrainingTask, "load_state_dict",
                        lambda task, state: real_load(task, {**state, "generator": torch.Generator().get_state()}))
    resumed = make().fit(data["text"], seed=0, checkpoint_directory=tmp_path)
    with pytest.raises(AssertionError):
        assert_same_fit(whole, resumed, data["text"])


def semantic_ids_run(directory: Path, name: str, data, seed: int) -> np.ndarray:
    make, _ = MAKERS[name]
    fit_and_save_semantic_ids(make(), inputs(name, data), seed=seed, dedup=True, run_directory=directory,
                              num_threads=1)
    return np.load(directory / "semantic_ids.npy")


@pytest.mark.parametrize("name", ["mmq", "ms_rq_vae"])
def test_a_killed_semantic_id_run_resumes_and_leaves_no_state(tmp_path, monkeypatch, data, name):
    whole = semantic_ids_run(tmp_path / "whole", name, data, seed=0)
    assert not list((tmp_path / "whole").rglob(STATE_FILE))
    with monkeypatch.context() as patch:
        count_units(patch, die_at=2)
        with pytest.raises(Interrupted):
            semantic_ids_run(tmp_path / "killed", name, data, seed=0)
    key = fit_key(MAKERS[name][0](), inputs(name, data), 0)
    assert key.startswith("seed0-") and states(tmp_path / "killed" / FIT_DIRECTORY / key)
    with monkeypatch.context() as patch:
        logged = count_units(patch)
        resumed = semantic_ids_run(tmp_path / "killed", name, data, seed=0)
    assert len(logged) == MAKERS[name][1] - 2
    np.testing.assert_array_equal(whole, resumed)
    assert not (tmp_path / "killed" / FIT_DIRECTORY).exists()   # states deleted once the SID table is saved


def test_a_state_of_another_seed_or_setting_is_never_resumed(tmp_path, monkeypatch, data):
    fresh = {seed: semantic_ids_run(tmp_path / f"fresh{seed}", "mmq", data, seed=seed) for seed in (0, 1)}
    with monkeypatch.context() as patch:   # seed 0 killed mid-fit: its state stays in the run folder
        count_units(patch, die_at=2)
        with pytest.raises(Interrupted):
            semantic_ids_run(tmp_path / "run", "mmq", data, seed=0)
    with monkeypatch.context() as patch:
        logged = count_units(patch)
        other_seed = semantic_ids_run(tmp_path / "run", "mmq", data, seed=1)
    assert len(logged) == 4   # trained from scratch in a folder of its own
    np.testing.assert_array_equal(other_seed, fresh[1])
    assert not np.array_equal(fresh[0], fresh[1])
    # a finished fit leaves nothing behind: the next seed-0 fit starts from scratch and matches a fresh one
    with monkeypatch.context() as patch:
        logged = count_units(patch)
        np.testing.assert_array_equal(semantic_ids_run(tmp_path / "run", "mmq", data, seed=0), fresh[0])
    assert len(logged) == 4
    # the key names the seed, the settings and the data; a direct fit on another seed's state is refused
    key = fit_key(MMQTokenizer(MMQ), data, 0)
    assert key != fit_key(MMQTokenizer(MMQ, num_steps=50), data, 0)
    assert key != fit_key(MMQTokenizer(MMQ), {**data, "text": data["text"] + 1}, 0)
    assert key != fit_key(MMQTokenizer(MMQ), data, 1) and key == fit_key(MMQTokenizer(MMQ), dict(data), 0)
    with monkeypatch.context() as patch:
        count_units(patch, die_at=1)
        with pytest.raises(Interrupted):
            MMQTokenizer(MMQ).fit(data, seed=0, checkpoint_directory=tmp_path / "direct")
    with pytest.raises(ValueError, match="seed 0, not 1"):
        MMQTokenizer(MMQ).fit(data, seed=1, checkpoint_directory=tmp_path / "direct")


@pytest.mark.parametrize("method", ["rq_kmeans", "opq"])
def test_tokenizers_without_steps_accept_and_ignore_a_checkpoint_directory(tmp_path, data, method):
    hyper = {"codebook_size": 8}
    with_folder = make_tokenizer(method, code_length=2, **hyper).fit(data["text"], seed=0,
                                                                     checkpoint_directory=tmp_path / "state")
    in_memory = make_tokenizer(method, code_length=2, **hyper).fit(data["text"], seed=0)
    np.testing.assert_array_equal(with_folder.encode(data["text"]), in_memory.encode(data["text"]))
    assert not (tmp_path / "state").exists()
