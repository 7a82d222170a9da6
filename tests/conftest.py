"""Shared fixtures: isolated cache/checkpoint folders, the real-data directory (optional), a tiny
Beauty-format data folder, and a tiny MMQ "world" (synthetic ratings + modalities + a SID config)
for the stage-2 and downstream tests."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import baselines  # noqa: F401  (registers the baseline kinds, as every entry point does)
from mmq.mmq_tokenizer.config import MMQConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["MMQ_TENSORBOARD"] = "0"  # no TensorBoard event files from tests (one test turns them on)

try:  # tiny models on a few shared cores: one torch thread avoids thread thrashing (several x faster here)
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Point cache and checkpoints at a temporary folder (never the user's real ones)."""
    monkeypatch.setenv("MMQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MMQ_CHECKPOINTS", str(tmp_path / "checkpoints"))
    return tmp_path


@pytest.fixture
def real_data_dir() -> Path:
    """The real datasets (``MMQ_DATA_DIR``); the test is skipped when they are absent."""
    root = Path(os.environ.get("MMQ_DATA_DIR", "data"))
    if not (root / "amazon14").is_dir():
        pytest.skip(f"real data not found under MMQ_DATA_DIR={root}")
    return root


WORDS = ["lipstick", "shampoo", "mascara", "perfume", "lotion", "nail polish", "eyeliner", "conditioner"]


def write_tiny_beauty(root, num_users=30, num_items=40, seed=0):
    """P5-format sequences + titles where consecutive items share a product word."""
    rng = np.random.default_rng(seed)
    folder = root / "amazon14" / "beauty"
    folder.mkdir(parents=True)
    asins = [f"B{index:05d}" for index in range(num_items)]
    titles = [f"{['Red', 'Blue', 'Green', 'Gold', 'Pink'][index % 5]} {WORDS[(index // 5) % len(WORDS)]}"
              for index in range(num_items)]
    lines = []
    for user in range(num_users):
        start = rng.integers(0, num_items - 8)
        length = rng.integers(4, 8)
        lines.append(" ".join([f"U{user}", *asins[start:start + length]]))
    (folder / "user_sequence.txt").write_text("\n".join(lines) + "\n")
    with open(folder / "products_lookup.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "global_product_id", "name"])
        for index, title in enumerate(titles):
            writer.writerow([index, 100 + index, title])
    (folder / "item_id_to_int.json").write_text(json.dumps({asin: 100 + k for k, asin in enumerate(asins)}))


@pytest.fixture
def tiny_beauty():
    """``write(root, num_users=30, num_items=40, seed=0)``: a P5-format Beauty folder under ``root``."""
    return write_tiny_beauty


# --- a tiny MMQ world for stage-2 / downstream tests ------------------------------------------

TINY_MMQ = MMQConfig(codebook_size=8, code_dim=16, gate_hidden_dim=8, decoder_hidden_dims=(16,), num_steps=40,
                 batch_size=32, restart_every=10, progress=False)


def modality_data(num_items=60, seed=0):
    rng = np.random.default_rng(seed)
    return {"text": rng.normal(size=(num_items, 12)).astype(np.float32),
            "image": rng.normal(size=(num_items, 10)).astype(np.float32)}


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


def _install_mmq_world(directory, monkeypatch, dataset, data):
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
        key: value for key, value in dataclasses.asdict(TINY_MMQ).items()
        if key in ("codebook_size", "code_dim", "gate_hidden_dim", "decoder_hidden_dims", "num_steps", "batch_size",
                   "restart_every", "progress")}}))
    return sid_config


@pytest.fixture
def mmq_world(isolated_dirs, monkeypatch):
    """The tiny MMQ world: ``tiny`` (an MMQConfig), ``modality_data``, ``synthetic_dataset`` and
    ``install(dataset, data)``, which serves them to every run and returns a tiny MMQ SID config path."""
    return types.SimpleNamespace(
        tiny=TINY_MMQ, modality_data=modality_data, synthetic_dataset=synthetic_dataset,
        install=lambda dataset, data: _install_mmq_world(isolated_dirs, monkeypatch, dataset, data))


@pytest.fixture(scope="session")
def fitted_mmq():
    """A tiny MMQ tokenizer fitted on ``modality_data()`` (seed 0) and that data."""
    from mmq.mmq_tokenizer.tokenizer import MMQTokenizer

    data = modality_data()
    return MMQTokenizer(TINY_MMQ).fit(data, seed=0), data


@pytest.fixture
def one_thread():
    """Tiny models run fastest (and steadiest on shared cores) with one torch thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
