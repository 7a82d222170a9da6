"""Course chapter 1: FAISS approximate-nearest-neighbour retrieval baselines."""

from .benchmark import benchmark_indexes, clustered_vectors, format_benchmark
from .index import (
    DEFAULT_SPECS,
    IndexSpec,
    build_index,
    default_specs,
    recall_against_exact,
    search,
)

__all__ = [
    "DEFAULT_SPECS",
    "IndexSpec",
    "benchmark_indexes",
    "build_index",
    "clustered_vectors",
    "default_specs",
    "format_benchmark",
    "recall_against_exact",
    "search",
]
