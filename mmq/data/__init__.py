"""Data layer: importers for every supported format, dataset YAMLs, one processed form, k-core, splits."""

from mmq.data.expected import DataMismatchError
from mmq.data.kcore import apply_kcore, kcore_mask
from mmq.data.paths import MissingDataError, cache_dir, data_dir, require_file
from mmq.data.registry import DATASETS, dataset_spec, known_datasets, load_dataset
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset
from mmq.data.splits import ChronologicalSplit, LeaveOneOutSplit, chronological_split, leave_one_out

__all__ = [
    "DATASETS", "ChronologicalSplit", "DataFormatError", "DataMismatchError", "ImportReport", "InteractionDataset",
    "LeaveOneOutSplit", "MissingDataError", "apply_kcore", "cache_dir", "chronological_split", "data_dir",
    "dataset_spec", "kcore_mask", "known_datasets", "leave_one_out", "load_dataset", "require_file",
]
