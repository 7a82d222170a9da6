"""``load_dataset(name)``: the one place dataset names resolve; import, k-core, check, cache.

Names come from dataset YAMLs (:mod:`mmq.data.dataset_config`): the shipped ones in ``datasets/`` at
the repository root (``DATASETS``), any in the folder named by ``MMQ_DATASETS_DIR``, or a YAML path
given instead of a name (``load_dataset("path/to/my_dataset.yaml")``).

The processed tables are cached under ``<MMQ_CACHE_DIR>/processed/<name>-<key>/`` keyed by the
data directory, the YAML's format / paths / options, the source files' sizes and modification
times (nanoseconds), the k-core and the importer version, so a rerun reads parquet instead of
re-parsing and a changed source file or YAML is re-imported. Loaded at its default k-core, a dataset
with published statistics must match them (:mod:`mmq.data.expected`), from the cache too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from mmq import artifacts
from mmq.config import ConfigError
from mmq.data.dataset_config import DatasetSpec, read_dataset_folder, read_dataset_yaml
from mmq.data.expected import check_expected
from mmq.data.fingerprint import note_loaded
from mmq.data.kcore import apply_kcore
from mmq.data.paths import cache_dir, data_dir, require_file, resolve_data_path
from mmq.data.schema import ImportReport, InteractionDataset

LOGGER = logging.getLogger(__name__)
IMPORTER_VERSION = 2
SHIPPED_DATASETS_DIR = Path(__file__).resolve().parents[2] / "datasets"
DATASETS_DIR_VARIABLE = "MMQ_DATASETS_DIR"

# The shipped datasets (datasets/*.yaml), by name.
DATASETS: dict[str, DatasetSpec] = read_dataset_folder(SHIPPED_DATASETS_DIR) if SHIPPED_DATASETS_DIR.is_dir() else {}

__all__ = ["DATASETS", "DatasetSpec", "dataset_spec", "known_datasets", "load_dataset"]


def known_datasets() -> dict[str, DatasetSpec]:
    """Every dataset a name resolves to: ``DATASETS`` plus the YAMLs in ``MMQ_DATASETS_DIR``."""
    specs = dict(DATASETS)
    extra = os.environ.get(DATASETS_DIR_VARIABLE, "").strip()
    if extra:
        folder = Path(extra).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"{DATASETS_DIR_VARIABLE}={extra} is not a directory of dataset YAMLs")
        for name, spec in read_dataset_folder(folder).items():
            if name in specs:
                raise ConfigError(f"dataset {name!r} is defined twice: {specs[name].config_path} and "
                                  f"{spec.config_path}; rename one")
            specs[name] = spec
    return specs


def dataset_spec(name: str | Path) -> DatasetSpec:
    """The spec of a dataset name, or of a dataset YAML given by its path."""
    text = str(name)
    specs = known_datasets()
    if text in specs:
        return specs[text]
    if text.endswith((".yaml", ".yml")) or os.sep in text:
        return read_dataset_yaml(Path(text).expanduser())
    folders = [str(SHIPPED_DATASETS_DIR)]
    if os.environ.get(DATASETS_DIR_VARIABLE, "").strip():
        folders.append(f"{DATASETS_DIR_VARIABLE}={os.environ[DATASETS_DIR_VARIABLE]}")
    raise ValueError(f"unknown dataset {text!r}; known datasets: {sorted(specs)} (the YAMLs in "
                     f"{' and '.join(folders)}); a dataset YAML can also be given by its path")


def load_dataset(name: str, *, root: Path | None = None, kcore: int | None = None, use_cache: bool = True,
                 allow_mismatch: bool = False) -> InteractionDataset:
    """Load dataset ``name`` (a known name or a YAML path) in processed form, k-core filtered.

    At the default k-core a dataset with published statistics must match them; ``allow_mismatch``
    (or ``MMQ_ALLOW_DATA_MISMATCH=1``) turns the DataMismatchError into a warning.
    """
    spec = dataset_spec(name)
    dataset_name = spec.name or str(name)
    root = data_dir() if root is None else Path(root)
    requested_kcore, kcore = kcore, spec.default_kcore if kcore is None else kcore
    folder = cache_dir() / "processed" / f"{dataset_name}-{artifacts.short_hash(_cache_key(spec, root, kcore))}"
    if use_cache and (folder / "DONE").exists():
        dataset = _read_processed(folder, dataset_name)
    else:
        _require_sources(spec, root)
        dataset = dataclasses.replace(apply_kcore(spec.loader(root), kcore), name=dataset_name)
        if use_cache:
            _write_processed(folder, dataset, _cache_key(spec, root, kcore))
    if spec.expected and kcore == spec.default_kcore:
        check_expected(dataset_name, dataset, spec.expected, config_path=spec.config_path,
                       source_files=spec.source_files, allow_mismatch=allow_mismatch)
    note_loaded(str(name), requested_kcore, dataset)
    return dataset


def _cache_key(spec: DatasetSpec, root: Path, kcore: int) -> list:
    """What decides the processed tables: data directory, YAML identity, source files' stat, k-core."""
    key: list = [str(root.resolve()), kcore, IMPORTER_VERSION, spec.identity()]
    for relative in spec.source_files:
        path = resolve_data_path(relative, root)
        key.append([relative, *([path.stat().st_size, path.stat().st_mtime_ns] if path.exists() else [None])])
    return key


def _require_sources(spec: DatasetSpec, root: Path) -> None:
    """Every path of the YAML exists (except those the format lets be absent), else MissingDataError."""
    where = spec.config_path or spec.name
    for key, relative in spec.paths.items():
        if key not in spec.absent_ok:
            require_file(relative, root, named_in=f"{where} (paths.{key})")


def _write_processed(folder: Path, dataset: InteractionDataset, cache_key: list) -> None:
    artifacts.save_parquet(folder / "items.parquet", dataset.items)
    artifacts.save_parquet(folder / "interactions.parquet", dataset.interactions)
    artifacts.write_json(folder / "meta.json", {"report": dataset.report.as_dict(),
                                                "text_fields": list(dataset.text_fields),
                                                "cache_key": cache_key})
    artifacts.write_text(folder / "DONE", "ok\n")


def _read_processed(folder: Path, name: str) -> InteractionDataset:
    meta = artifacts.read_json(folder / "meta.json")
    report = ImportReport(dataset=name, counts=Counter(meta["report"]["counts"]),
                          examples=meta["report"]["examples"])
    return InteractionDataset(name, pd.read_parquet(folder / "items.parquet"),
                              pd.read_parquet(folder / "interactions.parquet"), report,
                              tuple(meta["text_fields"]))
