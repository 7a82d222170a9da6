"""Amazon 2014 5-core in the P5 / TIGER format: ``user_sequence.txt`` (+ optional titles).

``user_sequence.txt``: one line per user, ``USER_ID ITEM ITEM ...`` in time order (no timestamps,
no ratings). Titles (Beauty here): ``products_lookup.csv`` (``,global_product_id,name``) joined
through ``item_id_to_int.json`` (``{ITEM_ID: global_product_id}``). Any folder in this format loads
through a dataset YAML with ``format: p5`` (see ``datasets/beauty.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmq.data.paths import require_file
from mmq.data.reading import check_csv, iter_lines, read_json
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset

BEAUTY_TITLE_FILES = ("amazon14/beauty/products_lookup.csv", "amazon14/beauty/item_id_to_int.json")


def read_user_sequences(path: Path, report: ImportReport) -> tuple[list[str], list[str], list[int]]:
    """Parse ``USER ITEM ITEM ...`` lines into flat (user, item, position) columns."""
    users: list[str] = []
    items: list[str] = []
    positions: list[int] = []
    seen_users: set[str] = set()
    for line_number, line in iter_lines(path):
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


def read_titles(lookup_path: Path, mapping_path: Path, report: ImportReport) -> dict[str, str]:
    """Item id -> product title from a ``products_lookup.csv`` + ``item_id_to_int.json`` pair."""
    check_csv(lookup_path, same_width=True)
    lookup = pd.read_csv(lookup_path, keep_default_na=False, dtype={"name": str})
    if not {"global_product_id", "name"} <= set(lookup.columns):
        raise DataFormatError(f"{lookup_path}: expected columns global_product_id,name; got {list(lookup.columns)}")
    try:
        title_of_product = dict(zip(lookup["global_product_id"].astype(int), lookup["name"]))
    except ValueError as error:
        raise DataFormatError(f"{lookup_path}: column global_product_id must hold integers ({error})") from None
    asin_to_product = read_json(mapping_path)
    if not isinstance(asin_to_product, dict):
        raise DataFormatError(f"{mapping_path}: expected a JSON object {{item_id: global_product_id}}, "
                              f"got {type(asin_to_product).__name__}")
    titles = {}
    for asin, product in asin_to_product.items():
        try:
            product = int(product)
        except (TypeError, ValueError):
            raise DataFormatError(f"{mapping_path}: item {asin!r} maps to {product!r}, not an integer "
                                  "global_product_id") from None
        if product not in title_of_product:
            report.add("titles_missing_from_lookup", example=asin)
            continue
        titles[asin] = title_of_product[product]
    return titles


def load_p5(category: str, root: Path | None = None) -> InteractionDataset:
    """Load ``amazon14/<category>/user_sequence.txt``; Beauty also gets its titles."""
    titles, title_ids = BEAUTY_TITLE_FILES if category == "beauty" else (None, None)
    return load_p5_files(category, f"amazon14/{category}/user_sequence.txt", titles=titles, title_ids=title_ids,
                         root=root)


def load_p5_files(name: str, sequences: str, *, titles: str | None = None, title_ids: str | None = None,
                  root: Path | None = None) -> InteractionDataset:
    """Load a P5-format folder: sequences, plus titles when both title files are given."""
    report = ImportReport(dataset=name)
    path = require_file(sequences, root)
    users, item_ids, positions = read_user_sequences(path, report)
    unique_items = list(dict.fromkeys(item_ids))  # order of first appearance
    items = pd.DataFrame({"item_id": unique_items})
    text_fields: tuple[str, ...] = ()
    if titles is not None and title_ids is not None:
        title_of_item = read_titles(require_file(titles, root), require_file(title_ids, root), report)
        items["title"] = [title_of_item.get(item, "") for item in unique_items]
        report.add("items_without_title_entry", int(sum(item not in title_of_item for item in unique_items)))
        report.add("empty_titles", int((items["title"].str.strip() == "").sum()))
        report.add("catalogue_items_without_interactions", len(set(title_of_item) - set(unique_items)))
        text_fields = ("title",)
    items["image"] = ""
    return build_dataset(name, items, users, item_ids, report=report, text_fields=text_fields,
                         positions=np.asarray(positions))
