"""Datasets described by small YAML files: ``name``, ``format``, ``paths``, ``kcore``, ``expected``.

::

    name: beauty                 # how configs and load_dataset name it (= the file name)
    format: p5                   # p5 | lc_rec | amazon_raw | movielens | myntra (mmq.data.formats)
    paths:                       # relative to the data directory (MMQ_DATA_DIR) or absolute
      sequences: amazon14/beauty/user_sequence.txt
    kcore: 5                     # default k-core of load_dataset (default 5)
    expected: {users: 22363, items: 12101, interactions: 198502}   # optional published statistics

Format options are further top-level keys: ``text_fields`` (lc_rec, amazon_raw: which item-record
fields become item text) and ``require_image`` (movielens: keep only movies with a poster). An
unknown key, an unknown format or a missing required path is a ``ConfigError`` naming the file.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Callable

from mmq.config import ConfigError, read_yaml_mapping
from mmq.data.formats import FORMATS, build_loader
from mmq.data.schema import InteractionDataset

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TOP_LEVEL_KEYS = ("name", "format", "paths", "kcore", "expected")
EXPECTED_KEYS = ("users", "items", "interactions")
DEFAULT_KCORE = 5


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How to import one named dataset (read from its YAML)."""

    loader: Callable[[Path | None], InteractionDataset]
    source_files: tuple[str, ...]     # every path of the YAML (keys the processed cache)
    default_kcore: int
    expected: dict                    # published statistics (users, items, interactions) after the default k-core
    name: str = ""
    format: str = ""
    paths: dict = dataclasses.field(default_factory=dict)    # YAML key -> path
    options: dict = dataclasses.field(default_factory=dict)  # format options, defaults filled in
    absent_ok: tuple[str, ...] = ()   # path keys whose file may be missing on disk
    config_path: Path | None = None   # the YAML it came from

    def identity(self) -> dict[str, Any]:
        """What decides the imported tables apart from the files' bytes (part of the cache key)."""
        return {"format": self.format, "paths": dict(self.paths), "options": dict(self.options)}


def read_dataset_yaml(path: str | Path) -> DatasetSpec:
    """Parse and validate one dataset YAML; every problem is a ConfigError naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset config not found: {path}")
    values = read_yaml_mapping(path)
    format_name = values.get("format")
    if format_name not in FORMATS:
        raise ConfigError(f"{path}: format {format_name!r} is not one of {sorted(FORMATS)}")
    data_format = FORMATS[format_name]
    valid_keys = (*TOP_LEVEL_KEYS, *data_format.options)
    unknown = sorted(set(values) - set(valid_keys))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys for format {format_name!r}: "
                          f"{sorted(valid_keys)}")
    name = values.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"{path}: name must be a word of letters, digits, '_', '-' or '.', got {name!r}")
    paths = _paths(path, format_name, values.get("paths"))
    options = {key: _option(path, key, values.get(key, default)) for key, default in data_format.options.items()}
    _check_combinations(path, format_name, paths, options)
    kcore = values.get("kcore", DEFAULT_KCORE)
    if isinstance(kcore, bool) or not isinstance(kcore, int) or kcore < 0:
        raise ConfigError(f"{path}: kcore must be an integer >= 0, got {kcore!r}")
    return DatasetSpec(loader=build_loader(format_name, name, paths, options), source_files=tuple(paths.values()),
                       default_kcore=kcore, expected=_expected(path, values.get("expected", {})), name=name,
                       format=format_name, paths=paths, options=options,
                       absent_ok=tuple(key for key in paths if key in data_format.may_be_absent),
                       config_path=path)


def read_dataset_folder(folder: Path) -> dict[str, DatasetSpec]:
    """Every ``*.yaml`` / ``*.yml`` in ``folder``, by name; a name must equal its file name."""
    specs: dict[str, DatasetSpec] = {}
    for path in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        spec = read_dataset_yaml(path)
        if spec.name != path.stem:
            raise ConfigError(f"{path}: name {spec.name!r} differs from the file name; rename the file to "
                              f"{spec.name}{path.suffix} or set name: {path.stem}")
        if spec.name in specs:
            raise ConfigError(f"dataset {spec.name!r} is defined twice: {specs[spec.name].config_path} and {path}")
        specs[spec.name] = spec
    return specs


def _paths(path: Path, format_name: str, paths: Any) -> dict[str, str]:
    data_format = FORMATS[format_name]
    valid = (*data_format.required_paths, *data_format.optional_paths)
    if not isinstance(paths, dict):
        raise ConfigError(f"{path}: paths must be a mapping of {list(valid)} to files, got {paths!r}")
    unknown = sorted(set(paths) - set(valid))
    missing = [key for key in data_format.required_paths if key not in paths]
    if unknown or missing:
        raise ConfigError(f"{path}: paths for format {format_name!r}: unknown {unknown}, missing {missing}; "
                          f"required {list(data_format.required_paths)}, optional "
                          f"{list(data_format.optional_paths)} ({data_format.description})")
    for key, value in paths.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: paths.{key} must be a file path, got {value!r}")
    return {key: paths[key] for key in valid if key in paths}


def _option(path: Path, key: str, value: Any) -> Any:
    if key == "text_fields":
        if (not isinstance(value, list) or not value or len(set(map(str, value))) != len(value)
                or not all(isinstance(field, str) and field for field in value)):
            raise ConfigError(f"{path}: text_fields must be a non-empty list of distinct field names, got {value!r}")
        return list(value)
    if key == "require_image":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: require_image must be true or false, got {value!r}")
        return value
    raise ConfigError(f"{path}: no validation for option {key!r}")  # a new format option needs a rule here


def _check_combinations(path: Path, format_name: str, paths: dict[str, str], options: dict[str, Any]) -> None:
    if format_name == "p5" and ("titles" in paths) != ("title_ids" in paths):
        raise ConfigError(f"{path}: p5 titles need both paths.titles (products_lookup.csv) and paths.title_ids "
                          "(item_id_to_int.json), or neither")
    if format_name == "movielens" and "imdb" in paths and "links" not in paths:
        raise ConfigError(f"{path}: paths.imdb joins through links.csv; add paths.links")
    if format_name == "movielens" and options.get("require_image") and "posters" not in paths:
        raise ConfigError(f"{path}: require_image: true needs paths.posters")
    if format_name == "amazon_raw":
        clashing = sorted(set(options["text_fields"]) & {"item_id", "price", "image_url", "image"})
        if clashing:
            raise ConfigError(f"{path}: text_fields {clashing} clash with the item table's own columns")


def _expected(path: Path, expected: Any) -> dict[str, int]:
    if not isinstance(expected, dict) or set(expected) - set(EXPECTED_KEYS):
        raise ConfigError(f"{path}: expected must map some of {list(EXPECTED_KEYS)} to counts, got {expected!r}")
    for key, value in expected.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{path}: expected.{key} must be a count >= 0, got {value!r}")
    return {key: expected[key] for key in EXPECTED_KEYS if key in expected}
