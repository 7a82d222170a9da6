"""Data layer: importers for every supported format, one processed form, k-core, splits."""

from mmq.data.kcore import apply_kcore, kcore_mask
from mmq.data.paths import MissingDataError, cache_dir, data_dir, require_file
from mmq.data.registry import DATASETS, load_dataset
from mmq.data.schema import DataFormatError, ImportReport, InteractionDataset
from mmq.data.splits import ChronologicalSplit, LeaveOneOutSplit, chronological_split, leave_one_out

__all__ = [
    "DATASETS", "ChronologicalSplit", "DataFormatError", "ImportReport", "InteractionDataset",
    "LeaveOneOutSplit", "MissingDataError", "apply_kcore", "cache_dir", "chronological_split",
    "data_dir", "kcore_mask", "leave_one_out", "load_dataset", "require_file",
]
