"""Amazon 2014 review data in its original published format (the online download path).

``reviews_<Category>_5.json.gz``: one JSON object per line (reviewerID, asin, overall,
unixReviewTime, ...). ``meta_<Category>.json.gz``: one object per line, JSON or a Python literal
(the 2014 dumps use ``eval``-style dicts), with asin, title, description, categories, brand,
price, imUrl.
"""

from __future__ import annotations

import ast
import gzip
import json
from pathlib import Path

import pandas as pd

from mmq.data.paths import require_file
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
    """Yield parsed records of a gzipped JSON-lines file, counting malformed lines."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
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
    name = RAW_CATEGORIES[category]
    report = ImportReport(dataset=f"{category} (raw)")
    reviews_path = require_file(f"{RAW_FOLDER}/reviews_{name}_5.json.gz", root)
    meta_path = require_file(f"{RAW_FOLDER}/meta_{name}.json.gz", root)
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
            "title": str(record.get("title", "") or "").strip(),
            "description": str(record.get("description", "") or "").strip(),
            "brand": str(record.get("brand", "") or "").strip(),
            "categories": flatten_categories(record.get("categories")),
            "price": float(record["price"]) if isinstance(record.get("price"), (int, float)) else float("nan"),
            "image_url": str(record.get("imUrl", "") or ""),
        })
    report.add("items_without_metadata", sum(asin not in metadata for asin in unique_items))
    items = pd.DataFrame(rows)
    report.add("empty_titles", int((items["title"] == "").sum()))
    items["image"] = ""  # images are URLs in the raw metadata (column image_url), not local files
    return build_dataset(category, items, users, item_ids, report=report, text_fields=RAW_TEXT_FIELDS,
                         timestamps=timestamps, ratings=ratings)
