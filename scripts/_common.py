"""Shared command-line setup for scripts: logging and offline defaults."""

from __future__ import annotations

import logging
import os


def setup() -> None:
    """Configure logging and default to offline Hugging Face loading."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
