"""Amazon 2014 5-core in the P5 / TIGER format: ``user_sequence.txt`` (+ Beauty titles).

``user_sequence.txt``: one line per user, ``USER_ID ITEM ITEM ...`` in time order (no timestamps,
no ratings). Beauty titles: ``products_lookup.csv`` (``,global_product_id,name``) joined through
``item_id_to_int.json`` (``{ASIN: global_product_id}``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mmq.data.paths import require_file
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset


def read_user_sequences(path: Path, report: ImportReport) -> tuple[list[str], list[str], list[int]]:
    """Parse ``USER ITEM ITEM ...`` lines into flat (user, item, position) columns."""
    users: list[str] = []
    items: list[str] = []
    positions: list[int] = []
    seen_users: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            tokens = line.split()
            if not tokens:
                report.add("blank_lines")
                continue
            if len(tokens) < 2:
                report.add("malformed_rows", example=f"line {line_number}: user without items")
                continue
            user, sequence = tokens[0], tokens[1:]
            if user in seen_users:
                report.add("duplicate_users", example=f"line {line_number}: {user}")
                continue
            seen_users.add(user)
            users.extend([user] * len(sequence))
            items.extend(sequence)
            positions.extend(range(len(sequence)))
    if not users:
        raise DataFormatError(f"{path}: no user sequences found")
    return users, items, positions


def read_beauty_titles(root: Path | None, report: ImportReport) -> dict[str, str]:
    """ASIN -> product title from ``products_lookup.csv`` + ``item_id_to_int.json``."""
    lookup_path = require_file("amazon14/beauty/products_lookup.csv", root)
    mapping_path = require_file("amazon14/beauty/item_id_to_int.json", root)
    lookup = pd.read_csv(lookup_path, keep_default_na=False, dtype={"name": str})
    if not {"global_product_id", "name"} <= set(lookup.columns):
        raise DataFormatError(f"{lookup_path}: expected columns global_product_id,name; got {list(lookup.columns)}")
    title_of_product = dict(zip(lookup["global_product_id"].astype(int), lookup["name"]))
    with open(mapping_path, encoding="utf-8") as handle:
        asin_to_product = json.load(handle)
    titles = {}
    for asin, product in asin_to_product.items():
        if int(product) not in title_of_product:
            report.add("titles_missing_from_lookup", example=asin)
            continue
        titles[asin] = title_of_product[int(product)]
    return titles


def load_p5(category: str, root: Path | None = None) -> InteractionDataset:
    """Load ``amazon14/<category>/user_sequence.txt``; Beauty also gets its titles."""
    report = ImportReport(dataset=category)
    path = require_file(f"amazon14/{category}/user_sequence.txt", root)
    users, item_ids, positions = read_user_sequences(path, report)
    unique_items = list(dict.fromkeys(item_ids))  # order of first appearance
    items = pd.DataFrame({"item_id": unique_items})
    text_fields: tuple[str, ...] = ()
    if category == "beauty":
        titles = read_beauty_titles(root, report)
        items["title"] = [titles.get(item, "") for item in unique_items]
        report.add("items_without_title_entry", int(sum(item not in titles for item in unique_items)))
        report.add("empty_titles", int((items["title"].str.strip() == "").sum()))
        report.add("catalogue_items_without_interactions", len(set(titles) - set(unique_items)))
        text_fields = ("title",)
    items["image"] = ""
    return build_dataset(category, items, users, item_ids, report=report, text_fields=text_fields,
                         positions=np.asarray(positions))
