"""Where the data lives: ``MMQ_DATA_DIR`` (default ``./data``) and ``MMQ_CACHE_DIR`` (``./cache``).

A data file is named relative to the data directory (``amazon14/beauty/user_sequence.txt``) or by an
absolute path (a user's own dataset outside it); both resolve through :func:`resolve_data_path`.
"""

from __future__ import annotations

import os
from pathlib import Path

# How a user gets each missing file; keyed by the top folder under the data directory.
HOW_TO_GET = {
    "amazon14": (
        "Offline copies ship with the project's shared data (set MMQ_DATA_DIR to that folder). "
        "Online: `python scripts/download_data.py --dataset amazon` fetches the public Amazon 2014 "
        "5-core reviews + metadata (raw format, loaded with load_dataset('<category>_raw'))."
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


def resolve_data_path(relative: str | Path, root: Path | None = None) -> Path:
    """``root/relative`` (root: the data directory), or ``relative`` itself when it is absolute."""
    root = data_dir() if root is None else Path(root)
    return root / Path(relative).expanduser()


def require_file(relative: str | Path, root: Path | None = None, *, named_in: str | None = None) -> Path:
    """Return the resolved path or raise ``MissingDataError`` naming the file and how to get it.

    ``named_in`` (e.g. ``"datasets/beauty.yaml (paths.sequences)"``) says where the path was written.
    """
    path = resolve_data_path(relative, root)
    if not path.is_file():
        top = Path(relative).parts[0] if Path(relative).parts else ""
        hint = HOW_TO_GET.get(top, "See README.md, section Extend / Add your own dataset.")
        source = f" The path is given in {named_in}." if named_in else ""
        raise MissingDataError(
            f"missing data file {str(relative)!r} (looked in {path.resolve()}; data directory from "
            f"MMQ_DATA_DIR={os.environ.get('MMQ_DATA_DIR', '<unset, default ./data>')}).{source} {hint}"
        )
    return path
