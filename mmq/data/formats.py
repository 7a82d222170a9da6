"""The file formats a dataset YAML can name, each mapped to its importer.

A format declares which ``paths:`` keys a dataset YAML must give, which it may give, and which
other YAML keys (options) it accepts; :func:`build_loader` turns a validated YAML into the
``loader(root)`` the registry calls. Adding a format = one importer + one ``DataFormat`` entry.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from mmq.data.amazon_office import OFFICE_TEXT_FIELDS, load_lc_rec
from mmq.data.amazon_p5 import load_p5_files
from mmq.data.amazon_raw import RAW_TEXT_FIELDS, load_amazon_raw_files
from mmq.data.movielens import load_movielens_files
from mmq.data.myntra import load_myntra_files
from mmq.data.schema import InteractionDataset

Loader = Callable[[Path | None], InteractionDataset]  # root -> dataset
# (name, paths, options, root) -> dataset
Importer = Callable[[str, dict[str, str], dict[str, Any], Path | None], InteractionDataset]


@dataclasses.dataclass(frozen=True)
class DataFormat:
    """One supported file layout: its path keys, its options and its importer."""

    description: str
    importer: Importer
    required_paths: tuple[str, ...]
    optional_paths: tuple[str, ...] = ()
    may_be_absent: tuple[str, ...] = ()     # path keys whose file may be missing on disk (counted)
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # option key -> default


def _p5(name: str, paths: dict[str, str], options: dict[str, Any], root: Path | None) -> InteractionDataset:
    return load_p5_files(name, paths["sequences"], titles=paths.get("titles"), title_ids=paths.get("title_ids"),
                         root=root)


def _lc_rec(name: str, paths: dict[str, str], options: dict[str, Any], root: Path | None) -> InteractionDataset:
    return load_lc_rec(name, paths["interactions"], paths["items"], text_fields=tuple(options["text_fields"]),
                       root=root)


def _amazon_raw(name: str, paths: dict[str, str], options: dict[str, Any], root: Path | None) -> InteractionDataset:
    return load_amazon_raw_files(name, paths["reviews"], paths["meta"], text_fields=tuple(options["text_fields"]),
                                 root=root)


def _movielens(name: str, paths: dict[str, str], options: dict[str, Any], root: Path | None) -> InteractionDataset:
    return load_movielens_files(name, ratings=paths["ratings"], movies=paths["movies"], tags=paths.get("tags"),
                                links=paths.get("links"), imdb=paths.get("imdb"), posters=paths.get("posters"),
                                require_image=options["require_image"], root=root)


def _myntra(name: str, paths: dict[str, str], options: dict[str, Any], root: Path | None) -> InteractionDataset:
    return load_myntra_files(name, paths["styles"], paths["images"], root=root)


FORMATS: dict[str, DataFormat] = {
    "p5": DataFormat(
        "P5 / TIGER: sequences = user_sequence.txt (USER ITEM ITEM ... per line, in time order); "
        "titles = products_lookup.csv (,global_product_id,name) + title_ids = item_id_to_int.json, both or neither",
        _p5, ("sequences",), ("titles", "title_ids")),
    "lc_rec": DataFormat(
        "LC-Rec JSON: interactions = {user: [item, ...]} in time order; items = {item: {field: text}}",
        _lc_rec, ("interactions", "items"), options={"text_fields": list(OFFICE_TEXT_FIELDS)}),
    "amazon_raw": DataFormat(
        "Amazon 2014 raw: reviews = reviews_<Cat>_5.json.gz, meta = meta_<Cat>.json.gz (one object per line)",
        _amazon_raw, ("reviews", "meta"), options={"text_fields": list(RAW_TEXT_FIELDS)}),
    "movielens": DataFormat(
        "MovieLens CSV: ratings.csv, movies.csv (+ tags.csv, links.csv, an IMDB-5000 table joined through "
        "links, a posters zip of <movieId>.jpg)",
        _movielens, ("ratings", "movies"), ("tags", "links", "imdb", "posters"), may_be_absent=("imdb",),
        options={"require_image": False}),
    "myntra": DataFormat(
        "Fashion Product Images: styles = zip holding styles.csv, images = zip of <id>.jpg",
        _myntra, ("styles", "images")),
}


def build_loader(format_name: str, name: str, paths: dict[str, str], options: dict[str, Any]) -> Loader:
    """``loader(root)`` importing ``paths`` (relative to ``root`` or absolute) in ``format_name``."""
    data_format = FORMATS[format_name]

    def loader(root: Path | None) -> InteractionDataset:
        return data_format.importer(name, paths, options, root)

    return loader
