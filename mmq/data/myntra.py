"""Myntra Fashion Product Images (Small): product photos + text attributes, no behaviour.

``styles.csv`` (inside ``styles.csv.zip``) has 10 columns; about 22 rows carry an extra comma in
``productDisplayName`` (the last column). Those rows are repaired by joining the surplus fields
back into the name, and counted; rows with too few fields are counted and dropped.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import pandas as pd

from mmq.data.paths import require_file
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset

STYLE_COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
                 "season", "year", "usage", "productDisplayName")
MYNTRA_TEXT_FIELDS = ("title", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
                      "season", "usage")


def read_styles(archive_path: Path, report: ImportReport) -> pd.DataFrame:
    """Parse ``styles.csv`` from its zip, repairing rows with commas in the product name."""
    with zipfile.ZipFile(archive_path) as archive:
        members = [name for name in archive.namelist() if name.endswith("styles.csv")]
        if not members:
            raise DataFormatError(f"{archive_path}: no styles.csv inside")
        text = archive.read(members[0]).decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    if tuple(header) != STYLE_COLUMNS:
        raise DataFormatError(f"{archive_path}: unexpected header {header}; expected {list(STYLE_COLUMNS)}")
    rows = []
    for line_number, fields in enumerate(reader, start=2):
        if not fields:
            continue
        if len(fields) > len(STYLE_COLUMNS):
            fields = fields[: len(STYLE_COLUMNS) - 1] + [",".join(fields[len(STYLE_COLUMNS) - 1:])]
            report.add("repaired_rows_extra_comma", example=f"line {line_number}")
        elif len(fields) < len(STYLE_COLUMNS):
            report.add("malformed_rows", example=f"line {line_number}: {len(fields)} fields")
            continue
        rows.append(fields)
    return pd.DataFrame(rows, columns=list(STYLE_COLUMNS))


def load_myntra(root: Path | None = None) -> InteractionDataset:
    """Load products that have a photo; text = display name + attributes."""
    report = ImportReport(dataset="myntra")
    styles = read_styles(require_file("myntra/styles.csv.zip", root), report)
    images_path = require_file("myntra/images.zip", root)
    with zipfile.ZipFile(images_path) as archive:
        images = {Path(name).stem for name in archive.namelist() if name.lower().endswith(".jpg")}
    duplicated = styles["id"].duplicated()
    report.add("duplicate_ids", int(duplicated.sum()))
    styles = styles.loc[~duplicated]
    has_image = styles["id"].isin(images)
    report.add("rows_without_image", int((~has_image).sum()))
    report.add("images_without_row", len(images - set(styles["id"])))
    styles = styles.loc[has_image].rename(columns={"id": "item_id", "productDisplayName": "title"})
    styles["image"] = "myntra/images.zip:" + styles["item_id"] + ".jpg"
    report.add("empty_titles", int((styles["title"].str.strip() == "").sum()))
    items = styles[["item_id", *MYNTRA_TEXT_FIELDS, "year", "image"]].reset_index(drop=True)
    return build_dataset("myntra", items, [], [], report=report, text_fields=MYNTRA_TEXT_FIELDS)
