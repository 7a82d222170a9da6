"""Download the public datasets (online users) or verify a data directory's checksums (offline).

    python scripts/download_data.py --verify                      # check MMQ_DATA_DIR against known sha256
    python scripts/download_data.py --dataset amazon --categories beauty office
    python scripts/download_data.py --dataset movielens

Posters (movielens/posters.zip) and Myntra photos are not fetched: the posters were assembled from
several public repositories and Myntra needs a Kaggle login; see README.md, section Data.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmq.cli import setup

from mmq.data import data_dir
from mmq.data.amazon_raw import RAW_CATEGORIES
from mmq.data.download import fetch_amazon, fetch_movielens, verify


def main(argv: list[str] | None = None) -> int:
    """Download or verify; exit 1 on a checksum mismatch, 2 when no known file is present at all."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["amazon", "movielens"], nargs="*", default=[])
    parser.add_argument("--categories", nargs="+", default=sorted(RAW_CATEGORIES), choices=sorted(RAW_CATEGORIES))
    parser.add_argument("--verify", action="store_true", help="check known files' sha256 (no network)")
    parser.add_argument("--root", type=Path, default=None, help="default: MMQ_DATA_DIR")
    arguments = parser.parse_args(argv)
    setup()
    root = arguments.root or data_dir()
    if "amazon" in arguments.dataset:
        for path, digest in fetch_amazon(root, arguments.categories).items():
            print(f"{digest}  {path}  (no published checksum; recorded)")
    if "movielens" in arguments.dataset:
        fetch_movielens(root)
        print("MovieLens latest-small: checksums ok")
    if arguments.verify or not arguments.dataset:
        status = verify(root)
        for name, value in status.items():
            print(f"{value:>8}  {name}")
        if any(value.startswith("MISMATCH") for value in status.values()):
            return 1
        if all(value == "missing" for value in status.values()):
            print(f"error: none of the {len(status)} known files is under {root}: nothing verified "
                  "(set MMQ_DATA_DIR or --root)", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
