"""Vector corpora for the chapter-3 ANN study: every real item-text embedding, and synthetic look-alikes.

Real corpus: the MiniLM (all-MiniLM-L6-v2, 384-d, normalised) text embedding of every item that has text here
-- Amazon Beauty titles, Office titles, MovieLens title + year + genres, Myntra product texts (the chapter-2
product tower's input). Sports and Toys ship no item text, so they contribute nothing. Real queries: Beauty
users' history queries (mean of the history's title embeddings, the chapter-1 query) and the chapter-2 test
queries (frozen MiniLM).

Synthetic corpus: a mixture fitted to the real embeddings and sampled at any size. Method (``MixtureModel``):
faiss k-means with ``num_components`` centroids on the real vectors; per component, the top ``rank``
principal directions of its residuals with their variances, plus an isotropic remainder carrying the rest of
the residual variance; a sample is ``centroid + V diag(sd) z + sigma * e`` renormalised to unit length.
Component weights are the real cluster sizes. ``chapter 3`` checks the fit by comparing index recall on the
real set and on a synthetic set of the same size (``report["fit_check"]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator

import faiss
import numpy as np

from mmq.arrays import check_finite_rows

LOGGER = logging.getLogger(__name__)
SAMPLE_CHUNK = 131_072   # rows per generated chunk (part of the synthetic corpus' definition)


@dataclasses.dataclass(frozen=True)
class RealCorpus:
    """Real item vectors and real query vectors, with where each block came from."""

    vectors: np.ndarray                 # [num_items, dim] float32, unit norm
    queries: np.ndarray                 # [num_queries, dim] float32, unit norm
    item_sources: dict[str, int]        # dataset -> number of item vectors (in concatenation order)
    query_sources: dict[str, int]       # query set -> number of queries

    def fingerprint(self) -> str:
        """sha256 of the vectors and queries (names cached indexes and reports)."""
        return vectors_sha256(self.vectors, self.queries)


def vectors_sha256(*arrays: np.ndarray) -> str:
    """sha256 over float32 arrays (shape included)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class MixtureModel:
    """A fitted low-rank-plus-isotropic Gaussian mixture over unit vectors (see the module docstring)."""

    centroids: np.ndarray     # [components, dim]
    weights: np.ndarray       # [components] sums to 1
    directions: np.ndarray    # [components, rank, dim] orthonormal rows
    scales: np.ndarray        # [components, rank] standard deviation along each direction
    sigma: np.ndarray         # [components] isotropic standard deviation per coordinate

    @property
    def dim(self) -> int:
        """Vector width."""
        return int(self.centroids.shape[1])

    def sample(self, num: int, seed: int) -> np.ndarray:
        """``num`` unit vectors [num, dim] float32; a pure function of (model, num, seed)."""
        chunks = list(self.sample_chunks(num, seed))
        return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, self.dim), np.float32)

    def sample_chunks(self, num: int, seed: int) -> Iterator[np.ndarray]:
        """The draws of ``sample`` in chunks of ``SAMPLE_CHUNK`` rows (for corpora too big to hold twice)."""
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        components = np.random.default_rng(seed).choice(len(self.weights), size=num, p=self.weights)
        rank = self.directions.shape[1]
        for start in range(0, num, SAMPLE_CHUNK):
            rng = np.random.default_rng([seed, start])
            comp = components[start:start + SAMPLE_CHUNK]
            z = rng.standard_normal((len(comp), rank), dtype=np.float32) * self.scales[comp]      # [n, rank]
            x = self.centroids[comp] + np.einsum("nr,nrd->nd", z, self.directions[comp])         # [n, dim]
            x += rng.standard_normal((len(comp), self.dim), dtype=np.float32) * self.sigma[comp, None]
            yield _normalise(x)

    def fingerprint(self) -> str:
        """sha256 of the model's arrays."""
        return vectors_sha256(self.centroids, self.weights, self.directions, self.scales, self.sigma)

    def to_npz(self) -> dict[str, np.ndarray]:
        """Arrays for ``np.savez``."""
        return dataclasses.asdict(self)


def fit_mixture(vectors: np.ndarray, *, num_components: int = 256, rank: int = 16, seed: int = 0,
                kmeans_iterations: int = 20) -> MixtureModel:
    """Fit ``MixtureModel`` to unit vectors (faiss k-means, then a per-component SVD of the residuals)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 2 * num_components:
        raise ValueError(f"need a 2-D array with at least {2 * num_components} rows to fit {num_components} "
                         f"components, got shape {x.shape}")
    if rank < 0 or rank >= x.shape[1]:
        raise ValueError(f"rank must be in [0, dim), got {rank} for dim {x.shape[1]}")
    check_finite_rows(x, name="vectors to fit")
    num, dim = x.shape
    kmeans = faiss.Kmeans(dim, num_components, niter=kmeans_iterations, seed=seed, verbose=False)
    kmeans.train(x)
    _, assign = kmeans.index.search(x, 1)
    assign = assign[:, 0]
    centroids = np.zeros((num_components, dim), np.float32)
    directions = np.zeros((num_components, rank, dim), np.float32)
    scales = np.zeros((num_components, rank), np.float32)
    sigma = np.zeros(num_components, np.float32)
    counts = np.bincount(assign, minlength=num_components)
    for c in range(num_components):
        members = x[assign == c]
        if len(members) == 0:
            continue
        centroids[c] = members.mean(axis=0)
        residual = members - centroids[c]                                   # [n_c, dim]
        if len(members) < 2:
            continue
        _, singular, vt = np.linalg.svd(residual, full_matrices=False)
        variance = singular ** 2 / (len(members) - 1)                      # per principal direction
        kept = min(rank, len(variance))
        directions[c, :kept] = vt[:kept]
        scales[c, :kept] = np.sqrt(variance[:kept])
        sigma[c] = np.sqrt(variance[kept:].sum() / max(dim - kept, 1))     # the rest, spread isotropically
    weights = counts / counts.sum()
    LOGGER.info("fitted a %d-component rank-%d mixture to %d vectors (%d empty components)", num_components, rank,
                num, int((counts == 0).sum()))
    return MixtureModel(centroids, weights.astype(np.float64), directions, scales, sigma)


def load_mixture(arrays) -> MixtureModel:
    """A ``MixtureModel`` from ``np.load(path)`` of ``to_npz`` output."""
    return MixtureModel(**{field.name: np.asarray(arrays[field.name]) for field in dataclasses.fields(MixtureModel)})


# dataset -> MiniLM text recipe of its items (the recipes the project's other tables use)
REAL_ITEM_TEXTS = {"beauty": ("title",), "office": ("title",), "movielens": ("title", "year", "genres")}


def _cached_text_vectors(texts: list[str], what: str, *, progress: bool) -> np.ndarray:
    """MiniLM embeddings of ``texts`` cached under ``<cache>/ann/`` by content (texts + encoder settings)."""
    from mmq import artifacts
    from mmq.data.paths import cache_dir
    from mmq.features import TextFeatureConfig
    from mmq.features.text import encode_texts, texts_sha256

    config = TextFeatureConfig()
    path = cache_dir() / "ann" / f"{what}-{artifacts.short_hash(texts_sha256(texts), config.encoder, config.max_seq_length)}.npy"
    if path.exists():
        cached = np.load(path)
        if cached.shape[0] == len(texts) and np.isfinite(cached).all():
            return cached
        LOGGER.warning("ignoring malformed cache %s (shape %s)", path, cached.shape)
    vectors = encode_texts(texts, config, progress=progress)
    artifacts.save_npy(path, vectors)
    return vectors


def load_real_corpus(*, beauty_queries: int = 4000, seed: int = 0, progress: bool = True) -> RealCorpus:
    """Every real item-text vector here (Beauty, Office, MovieLens, Myntra) + real queries (see module docstring).

    ``beauty_queries``: how many Beauty test users' history queries to keep (a seeded sample; all when larger).
    """
    from baselines.faiss_ann.content_retrieval import history_queries, pad_histories
    from baselines.two_tower.queries import generate_benchmark, product_texts, QueryBenchmarkConfig
    from baselines.two_tower.search import query_texts
    from mmq.data import leave_one_out, load_dataset
    from mmq.features import TextFeatureConfig, item_text_embeddings

    blocks, item_sources = [], {}
    for name, recipe in REAL_ITEM_TEXTS.items():
        dataset = load_dataset(name)
        blocks.append(item_text_embeddings(dataset, TextFeatureConfig(recipe=recipe), progress=progress))
        item_sources[name] = len(blocks[-1])
        if name == "beauty":
            beauty, beauty_vectors = dataset, blocks[-1]
    myntra = load_dataset("myntra")
    blocks.append(_cached_text_vectors(product_texts(myntra), "myntra-products", progress=progress))
    item_sources["myntra"] = len(blocks[-1])

    split = leave_one_out(beauty)
    histories, _ = split.history_and_target("test")
    rows = np.random.default_rng(seed).permutation(len(histories))[:beauty_queries]
    padded = pad_histories([histories[row] for row in np.sort(rows)], 20)
    user_queries = history_queries(padded, beauty_vectors, decay=1.0)           # the chapter-1 mean-of-history query
    benchmark = generate_benchmark(myntra, QueryBenchmarkConfig())
    texts, _ = query_texts(benchmark.split("test"))
    search_queries = _cached_text_vectors(texts, "myntra-test-queries", progress=progress)
    return RealCorpus(vectors=_normalise(np.concatenate(blocks)), queries=_normalise(np.concatenate([user_queries,
                      search_queries])), item_sources=item_sources,
                      query_sources={"beauty_history_mean": len(user_queries), "ch2_test_queries": len(search_queries)})
