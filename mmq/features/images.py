"""Item images: read by reference from zip archives, letterbox to a square, cache as uint8 pixels.

An item's ``image`` column holds ``"<archive relative to MMQ_DATA_DIR, or absolute>:<member>"`` (e.g.
``myntra/images.zip:15970.jpg``) or ``""``. Each process keeps its own open ``ZipFile`` per
archive (DataLoader workers re-open after fork). A missing archive, missing member or undecodable
file never stops a run: the item is masked (``valid=False``, zero pixels) and counted by reason in
an ``ImageReadReport``; nothing is substituted silently. Decoded pixels are cached as
``[num_items, 3, size, size]`` uint8 .npy keyed by CONTENT (:func:`image_content_key`): every item's
reference plus the CRC-32 and size its archive records for that member (read from the zip's
central directory, no decoding), the letterbox size and fill. Replacing a photo inside the archive,
or the archive itself, gives a new key; an unchanged archive is a cache hit.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mmq import artifacts
from mmq.data.paths import cache_dir, data_dir
from mmq.data.schema import ImportReport, InteractionDataset

LOGGER = logging.getLogger(__name__)

OK, NO_REFERENCE, MISSING_ARCHIVE, MISSING_MEMBER, UNREADABLE = range(5)
STATUS_NAMES = ("ok", "no_reference", "missing_archive", "missing_member", "unreadable")


class DecodedImages(NamedTuple):
    """Pixels of every item, which items decoded, and the per-reason counts."""

    pixels: np.ndarray   # [num_items, 3, size, size] uint8 (zeros where invalid)
    valid: np.ndarray    # [num_items] bool
    report: ImportReport


class ArchiveReader:
    """Reads ``archive:member`` references, keeping one open ZipFile per archive per process."""

    def __init__(self, root: Path | None = None):
        self.root = data_dir() if root is None else Path(root)
        self._archives: dict[str, zipfile.ZipFile | None] = {}
        self._pid = os.getpid()

    def _archive(self, relative: str) -> zipfile.ZipFile | None:
        if os.getpid() != self._pid:  # forked worker: never share a file handle with the parent
            self._archives, self._pid = {}, os.getpid()
        if relative not in self._archives:
            path = self.root / relative
            try:
                self._archives[relative] = zipfile.ZipFile(path) if path.is_file() else None
            except (OSError, zipfile.BadZipFile):
                self._archives[relative] = None
        return self._archives[relative]

    def read(self, reference: str) -> tuple[Image.Image | None, int]:
        """The RGB image for ``reference`` and a status code (``OK`` or why it is missing)."""
        if not reference or ":" not in reference:
            return None, NO_REFERENCE
        relative, member = reference.rsplit(":", 1)
        archive = self._archive(relative)
        if archive is None:
            return None, MISSING_ARCHIVE
        try:
            data = archive.read(member)
        except KeyError:
            return None, MISSING_MEMBER
        try:
            image = Image.open(io.BytesIO(data))
            return image.convert("RGB"), OK
        except Exception:  # PIL raises many types on corrupt data; one bad image must not end a run
            return None, UNREADABLE


def letterbox(image: Image.Image, size: int, fill: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Fit ``image`` into a ``size`` x ``size`` square keeping its aspect ratio -> uint8 [3, size, size]."""
    width, height = image.size
    scale = size / max(width, height)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    resized = image.resize((new_width, new_height), Image.BILINEAR)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(resized, ((size - new_width) // 2, (size - new_height) // 2))
    return np.asarray(canvas, dtype=np.uint8).transpose(2, 0, 1)  # [3, size, size]


class ArchiveImages(torch.utils.data.Dataset):
    """``(index, pixels uint8 [3, size, size], status)`` per reference, for a DataLoader."""

    def __init__(self, references: list[str], size: int, root: Path | None = None,
                 fill: tuple[int, int, int] = (255, 255, 255)):
        self.references, self.size, self.fill = list(references), size, fill
        self.reader = ArchiveReader(root)

    def __len__(self) -> int:
        return len(self.references)

    def __getitem__(self, index: int):
        image, status = self.reader.read(self.references[index])
        if image is None:
            return index, np.zeros((3, self.size, self.size), np.uint8), status
        try:
            return index, letterbox(image, self.size, self.fill), status
        except Exception:  # truncated JPEGs can fail only when decoded by resize
            return index, np.zeros((3, self.size, self.size), np.uint8), UNREADABLE


def decode_images(references: list[str], size: int, *, root: Path | None = None, num_workers: int = 0,
                  fill: tuple[int, int, int] = (255, 255, 255), name: str = "images",
                  progress: bool = True) -> DecodedImages:
    """Decode every reference to letterboxed uint8 pixels; bad or missing images are masked and counted."""
    images = ArchiveImages(references, size, root, fill)
    loader = torch.utils.data.DataLoader(images, batch_size=256, num_workers=num_workers,
                                         collate_fn=_collate_numpy)
    pixels = np.zeros((len(references), 3, size, size), np.uint8)
    statuses = np.full(len(references), OK, np.int64)
    for indices, batch, status in tqdm(loader, desc=f"decode {name}", disable=not progress, mininterval=5):
        pixels[indices], statuses[indices] = batch, status
    report = ImportReport(dataset=name)
    for code in np.unique(statuses[statuses != OK]):
        examples = np.flatnonzero(statuses == code)
        report.add(STATUS_NAMES[code], len(examples), example=references[examples[0]] or f"item {examples[0]}")
    report.log()
    return DecodedImages(pixels, statuses == OK, report)


def _collate_numpy(batch):
    indices, pixels, statuses = zip(*batch)
    return np.array(indices), np.stack(pixels), np.array(statuses)


def image_content_key(dataset: InteractionDataset, root: Path | None = None) -> str:
    """sha256 of every item's image reference with its member's CRC-32 and size (``None`` if absent)."""
    root = data_dir() if root is None else Path(root)
    members: dict[str, dict[str, list[int]] | None] = {}
    digest = hashlib.sha256()
    for reference in dataset.items["image"].fillna("").tolist():
        entry = None
        if reference and ":" in reference:
            relative, member = reference.rsplit(":", 1)
            if relative not in members:
                members[relative] = _archive_members(root / relative)
            entry = (members[relative] or {}).get(member)
        digest.update(json.dumps([reference, entry]).encode("utf-8"))
    return digest.hexdigest()


def _archive_members(path: Path) -> dict[str, list[int]] | None:
    """``member -> [CRC-32, size]`` from a zip's central directory; ``None`` if it cannot be opened."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {info.filename: [info.CRC, info.file_size] for info in archive.infolist()}
    except (OSError, zipfile.BadZipFile):
        return None


def image_cache_path(dataset: InteractionDataset, size: int, *, root: Path | None = None,
                     fill: tuple[int, int, int] = (255, 255, 255)) -> Path:
    """Cache path of the decoded pixels, keyed by the images' content (references + CRCs), size and fill."""
    key = artifacts.short_hash(dataset.items["item_id"].tolist(), image_content_key(dataset, root), size, fill)
    return cache_dir() / "images" / dataset.name / f"pixels-{size}-{key}.npy"


def item_image_pixels(dataset: InteractionDataset, size: int, *, root: Path | None = None, num_workers: int = 0,
                      force: bool = False, progress: bool = True) -> DecodedImages:
    """Cached uint8 pixels ``[num_items, 3, size, size]`` + validity mask + read report (decoded once)."""
    path = image_cache_path(dataset, size, root=root)
    valid_path, report_path = path.with_suffix(".valid.npy"), path.with_suffix(".json")
    if not force and path.exists() and valid_path.exists() and report_path.exists():
        meta = artifacts.read_json(report_path)
        report = ImportReport(dataset.name, Counter(meta["counts"]), meta["examples"])
        return DecodedImages(np.load(path, mmap_mode="r"), np.load(valid_path), report)
    decoded = decode_images(dataset.items["image"].fillna("").tolist(), size, root=root, num_workers=num_workers,
                            name=dataset.name, progress=progress)
    artifacts.save_npy(path, decoded.pixels)
    artifacts.save_npy(valid_path, decoded.valid)
    artifacts.write_json(report_path, {**decoded.report.as_dict(), "num_items": dataset.num_items,
                                       "num_valid": int(decoded.valid.sum()), "size": size})
    LOGGER.info("%s: decoded %d/%d images at %dx%d -> %s", dataset.name, int(decoded.valid.sum()),
                dataset.num_items, size, size, path)
    return decoded
