"""Amazon 2014 Office Products in the LC-Rec style JSON format.

``Office.inter.json``: ``{user_index: [item_index, ...]}`` in time order.
``Office.item.json``: ``{item_index: {title, description, brand, categories}}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mmq.data.paths import require_file
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset

OFFICE_TEXT_FIELDS = ("title", "description", "brand", "categories")


def load_office(root: Path | None = None) -> InteractionDataset:
    """Load Office Products (item text: title, description, brand, categories)."""
    report = ImportReport(dataset="office")
    inter_path = require_file("amazon14/office/Office.inter.json", root)
    item_path = require_file("amazon14/office/Office.item.json", root)
    with open(inter_path, encoding="utf-8") as handle:
        sequences = json.load(handle)
    with open(item_path, encoding="utf-8") as handle:
        item_records = json.load(handle)
    if not isinstance(sequences, dict) or not isinstance(item_records, dict):
        raise DataFormatError("Office JSON files must be objects keyed by user / item index")
    rows = []
    for item_id, record in item_records.items():
        if not isinstance(record, dict):
            report.add("malformed_item_records", example=str(item_id))
            continue
        rows.append({"item_id": str(item_id), **{field: _as_text(record.get(field)) for field in OFFICE_TEXT_FIELDS}})
    items = pd.DataFrame(rows, columns=["item_id", *OFFICE_TEXT_FIELDS])
    for field in OFFICE_TEXT_FIELDS:
        report.add(f"empty_{field}", int((items[field].str.strip() == "").sum()))
    items["image"] = ""
    users, item_ids, positions = [], [], []
    for user, sequence in sequences.items():
        if not isinstance(sequence, list) or not sequence:
            report.add("malformed_rows", example=f"user {user}")
            continue
        users.extend([str(user)] * len(sequence))
        item_ids.extend(str(item) for item in sequence)
        positions.extend(range(len(sequence)))
    return build_dataset("office", items, users, item_ids, report=report, text_fields=OFFICE_TEXT_FIELDS,
                         positions=np.asarray(positions))


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(part) for part in value)
    return str(value).strip()
