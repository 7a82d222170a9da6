"""The LC-Rec style JSON format (Amazon 2014 Office Products here).

``<Name>.inter.json``: ``{user_index: [item_index, ...]}`` in time order.
``<Name>.item.json``: ``{item_index: {title, description, brand, categories, ...}}``.
The two paths and the item fields kept as text are parameters, so any folder in this format loads
through a dataset YAML with ``format: lc_rec`` (see ``datasets/office.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmq.data.paths import require_file
from mmq.data.reading import read_json
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset

OFFICE_TEXT_FIELDS = ("title", "description", "brand", "categories")
OFFICE_FILES = ("amazon14/office/Office.inter.json", "amazon14/office/Office.item.json")


def load_office(root: Path | None = None) -> InteractionDataset:
    """Load Office Products (item text: title, description, brand, categories)."""
    return load_lc_rec("office", *OFFICE_FILES, root=root)


def load_lc_rec(name: str, interactions: str, items: str, *, text_fields: tuple[str, ...] = OFFICE_TEXT_FIELDS,
                root: Path | None = None) -> InteractionDataset:
    """Load an LC-Rec JSON pair: ``interactions`` (user -> item sequence) and ``items`` (item -> record)."""
    report = ImportReport(dataset=name)
    inter_path = require_file(interactions, root)
    item_path = require_file(items, root)
    sequences = read_json(inter_path)
    item_records = read_json(item_path)
    for path, loaded, shape in ((inter_path, sequences, "{user: [item, ...]}"),
                                (item_path, item_records, "{item: {field: text}}")):
        if not isinstance(loaded, dict):
            raise DataFormatError(f"{path}: expected a JSON object {shape}, got {type(loaded).__name__}")
    rows = []
    for item_id, record in item_records.items():
        if not isinstance(record, dict):
            report.add("malformed_item_records", example=str(item_id))
            continue
        rows.append({"item_id": str(item_id), **{field: _as_text(record.get(field)) for field in text_fields}})
    items_frame = pd.DataFrame(rows, columns=["item_id", *text_fields])
    for field in text_fields:
        report.add(f"empty_{field}", int((items_frame[field].str.strip() == "").sum()))
    items_frame["image"] = ""
    users, item_ids, positions = [], [], []
    for user, sequence in sequences.items():
        if not isinstance(sequence, list) or not sequence:
            report.add("malformed_rows", example=f"user {user}")
            continue
        users.extend([str(user)] * len(sequence))
        item_ids.extend(str(item) for item in sequence)
        positions.extend(range(len(sequence)))
    return build_dataset(name, items_frame, users, item_ids, report=report, text_fields=tuple(text_fields),
                         positions=np.asarray(positions))


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(part) for part in value)
    return str(value).strip()
