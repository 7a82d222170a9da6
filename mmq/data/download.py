"""Fetch the public originals (online users) and verify files against known sha256 sums.

Amazon 2014 5-core reviews + metadata come from the dataset's public host (raw format, imported
with ``load_dataset("<category>_raw")``); MovieLens latest-small from GroupLens. The offline
copies the project ships with (``shared/data``) are checked against ``KNOWN_SHA256``.
"""

from __future__ import annotations

import logging
import shutil
import urllib.request
import zipfile
from pathlib import Path

from mmq.artifacts import atomic_path, sha256_of_file
from mmq.data.amazon_raw import RAW_CATEGORIES, RAW_FOLDER

LOGGER = logging.getLogger(__name__)

AMAZON_BASE_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"

# sha256 of the files in the project's data directory (from shared/data/README.md)
KNOWN_SHA256 = {
    "amazon14/beauty/item_id_to_int.json": "3d1a1d362c7daeddf616057fae8fa24af9d70902fdaf4631852231a9953afa50",
    "amazon14/beauty/products_lookup.csv": "65133eca0615999df67fc5b26a93a7da762e53e613a083fd6b9e37174896d128",
    "amazon14/beauty/user_sequence.txt": "47197cbee7bdc1896926e10d96b807dce0aecb9a1f0c2ccc887c21090237c9b7",
    "amazon14/office/Office.inter.json": "10f983c76de3d2443ae68bf50bc6231962ab493f4d08c7e716e2f183ae70d698",
    "amazon14/office/Office.item.json": "df013666416847d0f3468f08d9f68877faf251f71b51247050e98da5b705b5c7",
    "amazon14/sports/user_sequence.txt": "240fd0484501ca53769c016cb1bc674ac7e420aef562b88cea1439b94a3ba044",
    "amazon14/toys/user_sequence.txt": "9c2f2cce5323c5e5fd840896a68f0274aba4c241c54f0bc77ac9183094004071",
    "movielens/imdb5000_movie_metadata.csv": "ee65e153a601b2fe6ff4f4db87cabf715d304635bb7a662a0f7fd6db21c621bc",
    "movielens/ml-latest-small/README.txt": "63d22ac138e80fae37021797ed8e1b9424b5239dc576a137422adf783ae3f404",
    "movielens/ml-latest-small/links.csv": "028a4a1d17751ca9276e0e0718cfc22356350f224a996e1ec348c23274b9209d",
    "movielens/ml-latest-small/movies.csv": "c47b783f23eb304413307e1bb05335e427737da20ec8d3c0e96335567dd5f3dc",
    "movielens/ml-latest-small/ratings.csv": "80da8b3393dae325bbba5a31f291a6ba55d8d4f4396de3c456f2c1635b1b70e8",
    "movielens/ml-latest-small/tags.csv": "68eec00a0820c2faa8863a6df7032f13d5899a4462bce9a97213905297ff3d34",
    "movielens/posters.zip": "db21583346fd39d10744f6539a7c35a658d04a16e5dce19e9a852b94e6f606ea",
    "myntra/images.zip": "336169f0b03d478701457fa0e6d893c55a0ab596e3938ed35e6281c4100e8bb1",
    "myntra/styles.csv.zip": "2d5c74f249c44da1690bbdd2221e526e57d170eea8260d03605f7446813e92c1",
}


class ChecksumError(RuntimeError):
    """A file's sha256 differs from the known one."""


def verify(root: Path, names: list[str] | None = None) -> dict[str, str]:
    """Status per known file under ``root``: ``ok``, ``missing`` or ``MISMATCH <sha>``."""
    status = {}
    for relative in names or sorted(KNOWN_SHA256):
        path = Path(root) / relative
        if not path.is_file():
            status[relative] = "missing"
            continue
        digest = sha256_of_file(path)
        status[relative] = "ok" if digest == KNOWN_SHA256[relative] else f"MISMATCH {digest}"
    return status


def fetch(url: str, destination: Path, expected_sha256: str | None = None, timeout: float = 60.0) -> str:
    """Download ``url`` to ``destination`` atomically; check sha256 when known. Returns the sha256."""
    LOGGER.info("downloading %s -> %s", url, destination)
    with atomic_path(destination) as temporary:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(temporary, "wb") as handle:
            shutil.copyfileobj(response, handle, length=1 << 20)
        digest = sha256_of_file(temporary)
        if expected_sha256 is not None and digest != expected_sha256:
            raise ChecksumError(f"{url}: sha256 {digest} differs from the expected {expected_sha256}")
    return digest


def fetch_amazon(root: Path, categories: list[str]) -> dict[str, str]:
    """Raw 5-core reviews + metadata per category into ``<root>/amazon14_raw/`` (sha256 recorded)."""
    digests = {}
    for category in categories:
        name = RAW_CATEGORIES[category]
        for file_name in (f"reviews_{name}_5.json.gz", f"meta_{name}.json.gz"):
            destination = Path(root) / RAW_FOLDER / file_name
            if destination.is_file():
                digests[str(destination)] = sha256_of_file(destination)
                continue
            digests[str(destination)] = fetch(f"{AMAZON_BASE_URL}/{file_name}", destination)
    return digests


def fetch_movielens(root: Path) -> dict[str, str]:
    """ml-latest-small into ``<root>/movielens/ml-latest-small/``, each CSV checked against KNOWN_SHA256."""
    archive = Path(root) / "movielens" / "ml-latest-small.zip"
    if not archive.is_file():
        fetch(MOVIELENS_URL, archive)
    with zipfile.ZipFile(archive) as opened:
        for member in opened.namelist():
            if member.endswith("/"):
                continue
            destination = Path(root) / "movielens" / member
            with atomic_path(destination) as temporary:
                temporary.write_bytes(opened.read(member))
    status = verify(root, [name for name in KNOWN_SHA256 if name.startswith("movielens/ml-latest-small/")])
    bad = {name: value for name, value in status.items() if value != "ok"}
    if bad:
        raise ChecksumError(f"MovieLens files differ from the known release: {bad}")
    return status
