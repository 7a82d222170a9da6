"""Shared fixtures: isolated cache/checkpoint folders and the real-data directory (optional)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

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
