"""The tokenizer protocol shared by every semantic-ID tokenizer, plus validation and save helpers.

A tokenizer maps item embeddings ``[num_items, dim]`` to semantic IDs ``[num_items, code_length]``
(int64) and back to reconstructions ``[num_items, dim]`` (float32). Every tokenizer saves itself
as a directory holding ``tokenizer.json`` (kind + hyper-parameters + fitted shapes) and its weights
as ``.npy`` / ``.pt`` files, all written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmq.arrays import check_finite_rows
from mmq.artifacts import atomic_path, read_json, save_npy, write_json

TOKENIZER_JSON = "tokenizer.json"


@runtime_checkable
class Tokenizer(Protocol):
    """What every semantic-ID tokenizer provides (RQ-KMeans, OPQ, RQ-VAE, MA/MS wrappers)."""

    @property
    def code_length(self) -> int:
        """Number of code positions per item."""

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Codebook size of each code position (length ``code_length``)."""

    def fit(self, embeddings: Any, *, seed: int = 0, checkpoint_directory: Path | None = None) -> "Tokenizer":
        """Learn codebooks from ``embeddings``; returns ``self``.

        ``checkpoint_directory``: where a tokenizer trained by gradient steps (MMQ, RQ-VAE) keeps its
        resumable training state (``state.pt``, through :func:`mmq.training.run_training`); a fit killed
        and restarted on the same folder with the same seed, settings and data gives the same codes as
        an uninterrupted one. A state of another seed is refused, so a caller keys the folder by seed,
        settings and data (:func:`mmq.semantic_ids.fitting.fit_and_save_semantic_ids` does). Tokenizers
        without steps (RQ-KMeans, OPQ) accept and ignore it; None trains in memory.
        """

    def encode(self, embeddings: Any) -> np.ndarray:
        """Semantic IDs, int64 ``[num_items, code_length]``."""

    def decode(self, codes: np.ndarray) -> Any:
        """Reconstructed embeddings (float32) for ``codes``."""

    def save(self, directory: str | os.PathLike) -> None:
        """Write hyper-parameters and weights under ``directory``."""


# ---------------------------------------------------------------------------------------------
# Validation


def validate_embeddings(
    embeddings: Any, *, expected_dim: int | None = None, name: str = "embeddings"
) -> np.ndarray:
    """Return ``embeddings`` as a C-contiguous float32 ``[n, d]`` array, or raise ValueError."""
    array = np.asarray(embeddings)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [num_items, dim], got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    check_finite_rows(array, name=name)
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise ValueError(
            f"{name} dimension mismatch: tokenizer was fitted on dim {expected_dim}, "
            f"got dim {array.shape[1]}"
        )
    return array


def validate_codes(codes: Any, codebook_sizes: tuple[int, ...], *, name: str = "codes") -> np.ndarray:
    """Return ``codes`` as int64 ``[n, len(codebook_sizes)]`` within range, or raise ValueError."""
    array = np.asarray(codes)
    if array.ndim != 2 or array.shape[1] != len(codebook_sizes):
        raise ValueError(
            f"{name} must have shape [num_items, {len(codebook_sizes)}], got {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    sizes = np.asarray(codebook_sizes, dtype=np.int64)
    if array.size and ((array < 0).any() or (array >= sizes).any()):
        raise ValueError(f"{name} out of range: each position must lie in [0, codebook_size)")
    return array


def require_fitted(fitted: bool, owner: object) -> None:
    """Raise RuntimeError if ``owner`` has not been fitted (or loaded)."""
    if not fitted:
        raise RuntimeError(f"{type(owner).__name__} is not fitted; call fit() or load() first")


# ---------------------------------------------------------------------------------------------
# Save / load helpers (atomic writes via mmq.artifacts)


def write_tokenizer_json(directory: str | os.PathLike, kind: str, payload: dict) -> None:
    """Write ``tokenizer.json`` = {"kind": kind, **payload} atomically."""
    write_json(Path(directory) / TOKENIZER_JSON, {"kind": kind, **payload})


def read_tokenizer_json(directory: str | os.PathLike, kind: str | None = None) -> dict:
    """Read ``tokenizer.json``; check its kind when ``kind`` is given."""
    payload = read_json(Path(directory) / TOKENIZER_JSON)
    if kind is not None and payload.get("kind") != kind:
        raise ValueError(f"{directory} holds a {payload.get('kind')!r} tokenizer, not {kind!r}")
    return payload


def save_array(directory: str | os.PathLike, name: str, array: np.ndarray) -> None:
    """Save ``array`` as ``directory/name.npy`` atomically."""
    save_npy(Path(directory) / f"{name}.npy", np.ascontiguousarray(array))


def load_array(directory: str | os.PathLike, name: str) -> np.ndarray:
    """Load ``directory/name.npy``."""
    return np.load(Path(directory) / f"{name}.npy", allow_pickle=False)


def save_torch_state(path: str | os.PathLike, state_dict: dict) -> None:
    """Save a torch state dict atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    with atomic_path(path) as temporary:
        temporary.write_bytes(buffer.getvalue())


def load_torch_state(path: str | os.PathLike) -> dict:
    """Load a torch state dict saved by :func:`save_torch_state` onto the CPU."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------------------------
# Quality report


def items_per_code_stats(codes: np.ndarray, codebook_sizes: tuple[int, ...]) -> list[dict]:
    """Per position: how many items each *used* code holds (min/mean/median/max) and codes used."""
    stats = []
    for position, size in enumerate(codebook_sizes):
        counts = np.bincount(codes[:, position], minlength=size)
        used = counts[counts > 0]
        stats.append(
            {
                "codes_used": int(used.size),
                "min": int(used.min()),
                "mean": float(used.mean()),
                "median": float(np.median(used)),
                "max": int(used.max()),
            }
        )
    return stats


def quality_report(tokenizer: Tokenizer, embeddings: Any) -> dict:
    """Reconstruction error, SID quality (entropy, utilization, collisions) and items per code.

    ``reconstruction_mse`` is the mean over all coordinates; ``reconstruction_l2_sq`` the mean over
    items of ||x - x_hat||^2 (the paper's L_recon scale). For modality wrappers the target is the
    (normalised) concatenation of modalities as the wrapper sees it.
    """
    from mmq.metrics.semantic_ids import semantic_id_quality

    codes = tokenizer.encode(embeddings)
    reconstruction = tokenizer.decode(codes)
    if isinstance(embeddings, dict):
        target = tokenizer.prepare(embeddings)  # modality wrapper: normalised dict
        order = list(target)
        target = np.concatenate([target[name] for name in order], axis=1)
        reconstruction = np.concatenate([reconstruction[name] for name in order], axis=1)
    else:
        target = validate_embeddings(embeddings)
    squared_error = np.square(target.astype(np.float64) - reconstruction.astype(np.float64))
    sizes = tuple(int(size) for size in tokenizer.codebook_sizes)
    quality = semantic_id_quality(codes, sizes)
    return {
        "num_items": int(codes.shape[0]),
        "code_length": int(tokenizer.code_length),
        "codebook_sizes": list(sizes),
        "reconstruction_mse": float(squared_error.mean()),
        "reconstruction_l2_sq": float(squared_error.sum(axis=1).mean()),
        "semantic_id_quality": quality,
        "items_per_code": items_per_code_stats(codes, sizes),
    }
