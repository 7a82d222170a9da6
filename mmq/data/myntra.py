"""Myntra Fashion Product Images (Small): product photos + text attributes, no behaviour.

``styles.csv`` (inside ``styles.csv.zip``) has 10 columns; about 22 rows carry an extra comma in
``productDisplayName`` (the last column). Those rows are repaired by joining the surplus fields
back into the name, and counted; rows with too few fields are counted and dropped. A truncated
archive, non-UTF-8 bytes or a CSV a strict parser cannot read is an error naming the archive, the
member and the line. Both paths are parameters (a dataset YAML with ``format: myntra``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from mmq.data.paths import require_file
from mmq.data.reading import decode_utf8, open_zip, read_zip_member
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset, build_dataset

STYLE_COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
                 "season", "year", "usage", "productDisplayName")
MYNTRA_TEXT_FIELDS = ("title", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
                      "season", "usage")


def read_styles(archive_path: Path, report: ImportReport) -> pd.DataFrame:
    """Parse ``styles.csv`` from its zip, repairing rows with commas in the product name."""
    with open_zip(archive_path) as archive:
        members = [name for name in archive.namelist() if name.endswith("styles.csv")]
        if not members:
            raise DataFormatError(f"{archive_path}: no styles.csv inside")
        where = f"{archive_path}, member {members[0]}"
        text = decode_utf8(read_zip_member(archive, archive_path, members[0]), where)
    reader = csv.reader(io.StringIO(text), strict=True)
    rows = []
    try:
        header = next(reader, [])
        if tuple(header) != STYLE_COLUMNS:
            raise DataFormatError(f"{where}: unexpected header {header}; expected {list(STYLE_COLUMNS)}")
        for fields in reader:
            if not fields:
                continue
            if len(fields) > len(STYLE_COLUMNS):
                fields = fields[: len(STYLE_COLUMNS) - 1] + [",".join(fields[len(STYLE_COLUMNS) - 1:])]
                report.add("repaired_rows_extra_comma", example=f"line {reader.line_num}")
            elif len(fields) < len(STYLE_COLUMNS):
                report.add("malformed_rows", example=f"line {reader.line_num}: {len(fields)} fields")
                continue
            rows.append(fields)
    except csv.Error as error:
        raise DataFormatError(f"{where}, line {reader.line_num}: malformed CSV ({error})") from None
    return pd.DataFrame(rows, columns=list(STYLE_COLUMNS))


def load_myntra(root: Path | None = None) -> InteractionDataset:
    """Load products that have a photo; text = display name + attributes."""
    return load_myntra_files("myntra", "myntra/styles.csv.zip", "myntra/images.zip", root=root)


def load_myntra_files(name: str, styles: str, images: str, *, root: Path | None = None) -> InteractionDataset:
    """Load a ``styles.csv`` zip + a photo zip (``<id>.jpg``); products without a photo are dropped."""
    report = ImportReport(dataset=name)
    products = read_styles(require_file(styles, root), report)
    with open_zip(require_file(images, root)) as archive:
        image_ids = {Path(member).stem for member in archive.namelist() if member.lower().endswith(".jpg")}
    duplicated = products["id"].duplicated()
    report.add("duplicate_ids", int(duplicated.sum()))
    products = products.loc[~duplicated]
    has_image = products["id"].isin(image_ids)
    report.add("rows_without_image", int((~has_image).sum()))
    report.add("images_without_row", len(image_ids - set(products["id"])))
    products = products.loc[has_image].rename(columns={"id": "item_id", "productDisplayName": "title"})
    products["image"] = f"{images}:" + products["item_id"] + ".jpg"
    report.add("empty_titles", int((products["title"].str.strip() == "").sum()))
    items = products[["item_id", *MYNTRA_TEXT_FIELDS, "year", "image"]].reset_index(drop=True)
    return build_dataset(name, items, [], [], report=report, text_fields=MYNTRA_TEXT_FIELDS)
