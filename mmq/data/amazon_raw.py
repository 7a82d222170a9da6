"""Amazon 2014 review data in its original published format (the online download path).

``reviews_<Category>_5.json.gz``: one JSON object per line (reviewerID, asin, overall,
unixReviewTime, ...). ``meta_<Category>.json.gz``: one object per line, JSON or a Python literal
(the 2014 dumps use ``eval``-style dicts), with asin, title, description, categories, brand,
price, imUrl. Truncated gzip files and non-UTF-8 bytes are errors naming the file and line; a line
that is neither JSON nor a literal is counted (``malformed_*_rows``, examples ``file:line``). Any pair
of files in this format loads through a dataset YAML with ``format: amazon_raw``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd

from mmq.data.paths import require_file
from mmq.data.reading import iter_lines
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset

RAW_CATEGORIES = {
    "beauty": "Beauty",
    "sports": "Sports_and_Outdoors",
    "toys": "Toys_and_Games",
    "office": "Office_Products",
}
RAW_TEXT_FIELDS = ("title", "description", "brand", "categories")
RAW_FOLDER = "amazon14_raw"


def parse_record(line: str) -> dict | None:
    """Parse one line as JSON, falling back to a Python literal; ``None`` when neither works."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return record if isinstance(record, dict) else None


def iter_records(path: Path, report: ImportReport, what: str):
    """Yield parsed records of a (gzipped) JSON-lines file, counting malformed lines."""
    for line_number, line in iter_lines(path):
        if not line.strip():
            continue
        record = parse_record(line)
        if record is None:
            report.add(f"malformed_{what}_rows", example=f"{path.name}:{line_number}")
            continue
        yield record


def flatten_categories(value) -> str:
    """``[["Beauty", "Makeup"], ["Beauty", "Face"]]`` -> ``"Beauty, Makeup, Face"`` (order kept)."""
    if not value:
        return ""
    if isinstance(value, str):
        return value
    parts: list[str] = []
    for path in value:
        for name in path if isinstance(path, (list, tuple)) else [path]:
            if str(name) not in parts:
                parts.append(str(name))
    return ", ".join(parts)


def load_amazon_raw(category: str, root: Path | None = None) -> InteractionDataset:
    """Load a category from the raw 2014 files under ``<data>/amazon14_raw/``."""
    if category not in RAW_CATEGORIES:
        raise ValueError(f"unknown Amazon category {category!r}; known: {sorted(RAW_CATEGORIES)}")
    reviews, meta = raw_category_files(category)
    return load_amazon_raw_files(category, reviews, meta, root=root, report_name=f"{category} (raw)")


def raw_category_files(category: str) -> tuple[str, str]:
    """The reviews and metadata files of a category, relative to the data directory."""
    name = RAW_CATEGORIES[category]
    return f"{RAW_FOLDER}/reviews_{name}_5.json.gz", f"{RAW_FOLDER}/meta_{name}.json.gz"


def load_amazon_raw_files(name: str, reviews: str, meta: str, *, text_fields: tuple[str, ...] = RAW_TEXT_FIELDS,
                          root: Path | None = None, report_name: str | None = None) -> InteractionDataset:
    """Load a reviews file + a metadata file; ``text_fields`` are metadata keys kept as item text."""
    clashing = sorted(set(text_fields) & {"item_id", "price", "image_url", "image"})
    if clashing:
        raise ValueError(f"{name}: text fields {clashing} clash with the item table's own columns")
    report = ImportReport(dataset=report_name or name)
    reviews_path = require_file(reviews, root)
    meta_path = require_file(meta, root)
    users, item_ids, timestamps, ratings = [], [], [], []
    for record in iter_records(reviews_path, report, "review"):
        try:
            user, asin = str(record["reviewerID"]), str(record["asin"])
            timestamp = float(record["unixReviewTime"])
            rating = float(record.get("overall", float("nan")))
        except (KeyError, TypeError, ValueError):
            report.add("malformed_review_rows", example=str(record)[:120])
            continue
        users.append(user)
        item_ids.append(asin)
        timestamps.append(timestamp)
        ratings.append(rating)
    if not users:
        raise DataFormatError(f"{reviews_path}: no valid reviews")
    reviewed = set(item_ids)
    metadata = {}
    for record in iter_records(meta_path, report, "meta"):
        asin = record.get("asin")
        if asin is None:
            report.add("malformed_meta_rows", example=str(record)[:120])
        elif asin in reviewed:
            metadata[str(asin)] = record
    unique_items = list(dict.fromkeys(item_ids))
    rows = []
    for asin in unique_items:
        record = metadata.get(asin, {})
        rows.append({
            "item_id": asin,
            **{field: _field_text(field, record.get(field)) for field in text_fields},
            "price": float(record["price"]) if isinstance(record.get("price"), (int, float)) else float("nan"),
            "image_url": str(record.get("imUrl", "") or ""),
        })
    report.add("items_without_metadata", sum(asin not in metadata for asin in unique_items))
    items = pd.DataFrame(rows)
    if "title" in text_fields:
        report.add("empty_titles", int((items["title"] == "").sum()))
    items["image"] = ""  # images are URLs in the raw metadata (column image_url), not local files
    return build_dataset(name, items, users, item_ids, report=report, text_fields=tuple(text_fields),
                         timestamps=timestamps, ratings=ratings)


def _field_text(field: str, value) -> str:
    """A metadata value as item text: category paths flattened, anything else stripped."""
    if field == "categories":
        return flatten_categories(value)
    return str(value or "").strip()
