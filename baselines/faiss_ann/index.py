"""FAISS approximate-nearest-neighbour indexes: build, search and recall against exact search.

Everything index related is delegated to faiss (``faiss.index_factory``); this module only
adds input validation, deterministic training-set sampling / seeding and batched search.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import faiss
import numpy as np

from mmq.arrays import check_finite_rows

logger = logging.getLogger(__name__)

_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


@dataclass(frozen=True)
class IndexSpec:
    """Recipe for one faiss index: factory string, metric and search-time parameters."""

    factory: str
    metric: str = "ip"
    nprobe: int | None = None
    ef_search: int | None = None
    train_size: int | None = None
    seed: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        if self.metric not in _METRICS:
            raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {self.metric!r}")
        for field in ("nprobe", "ef_search", "train_size"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{field} must be a positive int or None, got {value!r}")
        if not self.factory.strip():
            raise ValueError("factory string must be non-empty")

    @property
    def display_name(self) -> str:
        """Name shown in tables: ``name``, else the factory string plus any nprobe / efSearch."""
        if self.name is not None:
            return self.name
        params = [f"nprobe={self.nprobe}"] * (self.nprobe is not None) + [
            f"efSearch={self.ef_search}"
        ] * (self.ef_search is not None)
        return " ".join([self.factory, *params])

    @property
    def faiss_metric(self) -> int:
        """The faiss metric constant for ``metric``."""
        return _METRICS[self.metric]


def _as_matrix(x: np.ndarray, *, what: str) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 2-D array, raising ValueError on bad input."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [n, dim], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} must have a floating dtype (float32 preferred), got {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{what} must be non-empty, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    check_finite_rows(arr, name=f"{what} (shape {arr.shape})")
    return arr


def _ivf_or_none(index: faiss.Index):
    """Return the (downcast) IndexIVF inside ``index``, or None if it has none."""
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return None


def _seed_index(index: faiss.Index, seed: int) -> None:
    """Set the k-means seeds faiss exposes (IVF coarse quantizer, PQ codebooks)."""
    ivf = _ivf_or_none(index)
    if ivf is not None:
        ivf.cp.seed = seed
        if hasattr(ivf, "pq"):
            ivf.pq.cp.seed = seed
    base = faiss.downcast_index(index)
    if hasattr(base, "pq") and hasattr(base.pq, "cp"):
        base.pq.cp.seed = seed


def _apply_search_params(index: faiss.Index, spec: IndexSpec) -> None:
    """Apply nprobe / efSearch through faiss.ParameterSpace (works for IVF, HNSW, IVF-PQ)."""
    params = faiss.ParameterSpace()
    if spec.nprobe is not None:
        ivf = _ivf_or_none(index)
        if ivf is None:
            raise ValueError(f"nprobe given but index {spec.factory!r} is not an IVF index")
        nprobe = min(int(spec.nprobe), int(ivf.nlist))
        if nprobe != spec.nprobe:
            logger.info("clamping nprobe %d to nlist %d for %s", spec.nprobe, nprobe, spec.factory)
        params.set_index_parameter(index, "nprobe", nprobe)
    if spec.ef_search is not None:
        try:
            params.set_index_parameter(index, "efSearch", int(spec.ef_search))
        except RuntimeError as exc:
            raise ValueError(
                f"ef_search given but index {spec.factory!r} has no HNSW efSearch parameter"
            ) from exc


def _training_sample(vectors: np.ndarray, spec: IndexSpec) -> np.ndarray:
    """Deterministically subsample at most ``spec.train_size`` rows (seeded by ``spec.seed``)."""
    n = vectors.shape[0]
    if spec.train_size is None or spec.train_size >= n:
        return vectors
    rng = np.random.default_rng(spec.seed)
    rows = np.sort(rng.choice(n, size=spec.train_size, replace=False))
    return np.ascontiguousarray(vectors[rows])


def build_index(vectors: np.ndarray, spec: IndexSpec) -> faiss.Index:
    """Create the faiss index described by ``spec``, train it if needed and add ``vectors``."""
    data = _as_matrix(vectors, what="vectors")
    n, dim = data.shape
    try:
        index = faiss.index_factory(dim, spec.factory, spec.faiss_metric)
    except RuntimeError as exc:
        raise ValueError(f"faiss could not build factory {spec.factory!r} for dim {dim}: {exc}") from exc
    _seed_index(index, spec.seed)
    _apply_search_params(index, spec)  # fail fast on bad params, before any training
    if not index.is_trained:
        train = _training_sample(data, spec)
        ivf = _ivf_or_none(index)
        if ivf is not None and train.shape[0] < ivf.nlist:
            raise ValueError(
                f"{spec.factory!r} needs at least nlist={ivf.nlist} training vectors but got "
                f"{train.shape[0]} (database {n}, train_size {spec.train_size}); "
                f"use a smaller nlist (~4*sqrt(n)) or more data"
            )
        try:
            index.train(train)
        except RuntimeError as exc:
            raise ValueError(
                f"training {spec.factory!r} on {train.shape[0]} vectors failed "
                f"(too few points for the codebooks?): {exc}"
            ) from exc
    index.add(data)
    logger.debug("built %s: ntotal=%d dim=%d", spec.display_name, index.ntotal, dim)
    return index


def search(
    index: faiss.Index, queries: np.ndarray, k: int, *, batch_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Batched top-``k`` search; returns (scores [n,k] float32, ids [n,k] int64)."""
    q = _as_matrix(queries, what="queries")
    if q.shape[1] != index.d:
        raise ValueError(f"query dim {q.shape[1]} does not match index dim {index.d}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    k, batch_size = int(k), int(batch_size)
    scores = np.empty((q.shape[0], k), dtype=np.float32)
    ids = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], batch_size):
        stop = min(start + batch_size, q.shape[0])
        scores[start:stop], ids[start:stop] = index.search(q[start:stop], k)
    return scores, ids


def recall_against_exact(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k (recall vs exact/Flat search)."""
    approx = np.asarray(approx_ids)
    exact = np.asarray(exact_ids)
    if approx.ndim != 2 or exact.ndim != 2 or approx.shape[0] != exact.shape[0]:
        raise ValueError(f"id arrays must be 2-D with equal rows, got {approx.shape} and {exact.shape}")
    if k < 1 or k > approx.shape[1] or k > exact.shape[1]:
        raise ValueError(f"k={k} must be in [1, min columns] for shapes {approx.shape}, {exact.shape}")
    if approx.shape[0] == 0:
        raise ValueError("recall needs at least one query")
    hits = 0
    for a_row, e_row in zip(approx[:, :k].tolist(), exact[:, :k].tolist()):
        hits += len((set(a_row) - {-1}) & (set(e_row) - {-1}))
    return hits / (k * approx.shape[0])


def _round_pow2(x: float) -> int:
    """Nearest power of two to ``x`` (at least 1)."""
    return 1 << max(0, round(math.log2(max(x, 1.0))))


def default_specs(num_vectors: int, dim: int, *, metric: str = "ip", seed: int = 0) -> list[IndexSpec]:
    """Sensible Flat / IVF-Flat / HNSW32 / IVF-PQ specs for a catalogue of ``num_vectors`` x ``dim``."""
    if num_vectors < 1 or dim < 1:
        raise ValueError(f"need num_vectors >= 1 and dim >= 1, got {num_vectors}, {dim}")
    # nlist ~ 4*sqrt(n), as a power of two, capped so every centroid gets >= 39 training points
    nlist = _round_pow2(4.0 * math.sqrt(num_vectors))
    while nlist > 1 and nlist * 39 > num_vectors:
        nlist //= 2
    nprobe = min(nlist, 16 if nlist >= 512 else 8)
    # ~40 training points per list (faiss warns below 39); caps k-means cost on big catalogues
    train_size = 40 * nlist if num_vectors > 40 * nlist else None
    # PQ: m sub-quantizers of ~8 dims each, m dividing dim; fewer bits when data is tiny
    m = next(c for c in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1) if dim % c == 0 and c <= max(1, dim // 8))
    nbits = 8 if num_vectors >= 39 * 256 else max(1, min(8, int(math.log2(max(2, num_vectors // 39)))))
    # "np": skip faiss' polysemous training (slow annealing, useless without Hamming filtering)
    pq = f"PQ{m}np" if nbits == 8 else f"PQ{m}x{nbits}np"
    pq_train = max(40 * nlist, 39 * (1 << nbits))  # the PQ codebooks are trained on the same sample
    return [
        IndexSpec("Flat", metric=metric, seed=seed),
        IndexSpec(f"IVF{nlist},Flat", metric=metric, nprobe=nprobe, train_size=train_size, seed=seed),
        IndexSpec("HNSW32", metric=metric, ef_search=64, seed=seed),
        IndexSpec(f"IVF{nlist},{pq}", metric=metric, nprobe=nprobe,
                  train_size=pq_train if pq_train < num_vectors else None, seed=seed),
    ]


DEFAULT_SPECS = default_specs  # alias: the default spec list is size-dependent, hence a function
