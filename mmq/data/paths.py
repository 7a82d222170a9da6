"""Where the data lives: ``MMQ_DATA_DIR`` (default ``./data``) and ``MMQ_CACHE_DIR`` (``./cache``)."""

from __future__ import annotations

import os
from pathlib import Path

# How a user gets each missing file; keyed by the top folder under the data directory.
HOW_TO_GET = {
    "amazon14": (
        "Offline copies ship with the project's shared data (set MMQ_DATA_DIR to that folder). "
        "Online: `python scripts/download_data.py --dataset amazon` fetches the public Amazon 2014 "
        "5-core reviews + metadata (raw format, loaded with source='raw')."
    ),
    "amazon14_raw": "Run `python scripts/download_data.py --dataset amazon` (needs internet).",
    "movielens": (
        "Run `python scripts/download_data.py --dataset movielens` for ml-latest-small (needs internet); "
        "posters.zip and imdb5000_movie_metadata.csv come with the project's shared data."
    ),
    "myntra": (
        "Fashion Product Images (Small) from Kaggle: put images.zip and styles.csv.zip under "
        "<MMQ_DATA_DIR>/myntra/ (Kaggle needs a login, so there is no automatic download)."
    ),
}


class MissingDataError(FileNotFoundError):
    """A data file the importer needs is missing; the message says which, where and how to get it."""


def data_dir() -> Path:
    """The data directory from ``MMQ_DATA_DIR`` (default ``./data``)."""
    return Path(os.environ.get("MMQ_DATA_DIR", "data")).expanduser()


def cache_dir() -> Path:
    """Processed tables and features go here (``MMQ_CACHE_DIR``, default ``./cache``)."""
    return Path(os.environ.get("MMQ_CACHE_DIR", "cache")).expanduser()


def require_file(relative: str, root: Path | None = None) -> Path:
    """Return ``root/relative`` or raise ``MissingDataError`` naming the file and how to get it."""
    root = data_dir() if root is None else Path(root)
    path = root / relative
    if not path.is_file():
        top = Path(relative).parts[0]
        hint = HOW_TO_GET.get(top, "See README.md, section Data.")
        raise MissingDataError(
            f"missing data file {relative!r} (looked in {path.resolve()}; data directory from "
            f"MMQ_DATA_DIR={os.environ.get('MMQ_DATA_DIR', '<unset, default ./data>')}). {hint}"
        )
    return path
