"""Optional GPU placement of faiss indexes (one or several GPUs), with a CPU fallback.

``device``: ``"cpu"`` (never touch a GPU), ``"gpu"`` (use every visible GPU; warn and stay on the CPU when faiss
has no GPU support or sees no GPU), ``"auto"`` (GPU when available, silently CPU otherwise). Several GPUs either
hold a full copy each (``mode="replicas"``: more queries/s) or a slice of the database each
(``mode="shards"``: more vectors). faiss's GPU indexes cover Flat, IVF-Flat, IVF-PQ and IVF-SQ; HNSW and the
fast-scan / refine wrappers stay on the CPU (reported as such). The conversion is faiss's own
``index_cpu_to_all_gpus`` / ``index_cpu_to_gpu_multiple_py``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import faiss

LOGGER = logging.getLogger(__name__)
DEVICES = ("cpu", "gpu", "auto")
GPU_MODES = ("replicas", "shards")


class Placement(NamedTuple):
    """An index and where it ended up (``"cpu"`` or ``"gpu:<n>"``), with the reason when not on a GPU."""

    index: faiss.Index
    device: str
    note: str


def num_gpus() -> int:
    """GPUs faiss can use (0 for the faiss-cpu wheel)."""
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def check_device(device: str, mode: str) -> None:
    """Reject an unknown device or multi-GPU mode, naming the valid ones."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}, got {device!r}")
    if mode not in GPU_MODES:
        raise ValueError(f"gpu mode must be one of {list(GPU_MODES)}, got {mode!r}")


def place(index: faiss.Index, device: str = "cpu", *, mode: str = "replicas") -> Placement:
    """Move ``index`` to the GPU(s) when ``device`` asks for it and it is possible; else keep it on the CPU."""
    check_device(device, mode)
    if device == "cpu":
        return Placement(index, "cpu", "")
    gpus = num_gpus()
    if gpus == 0:
        note = "faiss sees no GPU (faiss-cpu wheel or no device); searched on the CPU"
        if device == "gpu":
            LOGGER.warning(note)
        return Placement(index, "cpu", note)
    options = faiss.GpuMultipleClonerOptions()
    options.shard = mode == "shards"
    try:
        return Placement(faiss.index_cpu_to_all_gpus(index, co=options), f"gpu:{gpus}", mode)
    except RuntimeError as exc:   # e.g. HNSW, fast-scan and refine indexes have no GPU version
        note = f"no GPU version of this index ({str(exc).splitlines()[0][:120]}); searched on the CPU"
        LOGGER.info(note)
        return Placement(index, "cpu", note)


def parameter_space(placement: Placement):
    """The ParameterSpace that sets search parameters on this placement (GPU indexes need the GPU one)."""
    if placement.device.startswith("gpu"):
        return faiss.GpuParameterSpace()
    return faiss.ParameterSpace()
