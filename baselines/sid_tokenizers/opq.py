"""OPQ: an orthogonal rotation (faiss OPQMatrix) followed by a product quantizer.

The SID is the tuple of the M sub-space codes (parallel, unordered positions, not residual).
faiss PQ needs ``codebook_size`` = 2^nbits; inputs whose dim is not a multiple of M are
zero-padded (the padding is dropped again on decode).
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from baselines.sid_tokenizers.common import UniformCodebookTokenizer
from mmq.semantic_ids.base import (
    load_array,
    read_tokenizer_json,
    require_fitted,
    save_array,
    validate_codes,
    validate_embeddings,
    write_tokenizer_json,
)


def unpack_codes(packed: np.ndarray, num_subspaces: int, nbits: int) -> np.ndarray:
    """faiss packed PQ codes (uint8, LSB-first bit stream) -> int64 ``[n, M]``."""
    if nbits == 8:
        return packed[:, :num_subspaces].astype(np.int64)
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, : num_subspaces * nbits]
    bits = bits.reshape(packed.shape[0], num_subspaces, nbits).astype(np.int64)  # [n, M, nbits]
    return bits @ (1 << np.arange(nbits, dtype=np.int64))


def pack_codes(codes: np.ndarray, nbits: int, code_size: int) -> np.ndarray:
    """Inverse of :func:`unpack_codes`: int ``[n, M]`` -> uint8 ``[n, code_size]``."""
    if nbits == 8:
        return np.ascontiguousarray(codes, dtype=np.uint8)
    bits = ((codes[:, :, None] >> np.arange(nbits)) & 1).astype(np.uint8)  # [n, M, nbits]
    bits = bits.reshape(codes.shape[0], -1)
    padding = code_size * 8 - bits.shape[1]
    bits = np.pad(bits, ((0, 0), (0, padding)))
    return np.packbits(bits, axis=1, bitorder="little")


class OPQTokenizer(UniformCodebookTokenizer):
    """Rotate with a learned orthogonal matrix, then quantize M sub-vectors with K = 2^nbits codes."""

    kind = "opq"
    code_length_field = "num_subspaces"

    def __init__(
        self,
        *,
        num_subspaces: int = 3,  # M = code length
        codebook_size: int = 256,  # K per sub-space; must be a power of two (faiss PQ)
        opq_iterations: int = 25,  # alternations rotation <-> PQ inside OPQMatrix.train
        pq_iterations: int = 25,  # k-means iterations of the final product quantizer
        max_train_points: int = 256 * 256,  # OPQMatrix subsamples above this many points
    ) -> None:
        if num_subspaces < 1:
            raise ValueError("num_subspaces must be >= 1")
        if codebook_size < 2 or codebook_size & (codebook_size - 1) or codebook_size > 1 << 16:
            raise ValueError(f"codebook_size must be a power of two in [2, 65536], got {codebook_size}")
        self.num_subspaces = num_subspaces
        self.codebook_size = codebook_size
        self.nbits = codebook_size.bit_length() - 1
        self.opq_iterations = opq_iterations
        self.pq_iterations = pq_iterations
        self.max_train_points = max_train_points
        self.dim: int | None = None
        self.index: faiss.IndexPreTransform | None = None

    @property
    def padded_dim(self) -> int:
        require_fitted(self.dim is not None, self)
        return -(-self.dim // self.num_subspaces) * self.num_subspaces

    def fit(self, embeddings: np.ndarray, *, seed: int = 0,
            checkpoint_directory: Path | None = None) -> "OPQTokenizer":
        """Train the OPQ rotation and the product quantizer (faiss), seeded.

        ``checkpoint_directory`` is ignored: there are no gradient steps to resume.
        """
        embeddings = validate_embeddings(embeddings)
        if embeddings.shape[0] < self.codebook_size:
            raise ValueError(f"need >= codebook_size={self.codebook_size} items, got {embeddings.shape[0]}")
        if embeddings.shape[0] < -(-embeddings.shape[1] // self.num_subspaces) * self.num_subspaces:
            # faiss' OPQ rotation training crashes the process (segfault) with fewer points than dims
            raise ValueError(f"OPQ needs at least as many items as dimensions: {embeddings.shape[0]} items, "
                             f"{embeddings.shape[1]} dims")
        self.dim = embeddings.shape[1]
        # OPQMatrix subsamples and initialises with a fixed internal seed: shuffling the rows
        # with our seed makes both the subsample and the k-means initialisations seed-dependent.
        shuffled = embeddings[np.random.default_rng(seed).permutation(embeddings.shape[0])]
        padded_dim = self.padded_dim
        rotation = faiss.OPQMatrix(padded_dim, self.num_subspaces, padded_dim)
        rotation.niter = self.opq_iterations
        rotation.max_train_points = self.max_train_points
        rotation_pq = faiss.ProductQuantizer(padded_dim, self.num_subspaces, self.nbits)
        rotation_pq.cp.seed = seed
        rotation.pq = rotation_pq  # OPQMatrix uses this PQ (and its seed) while training
        quantizer = faiss.IndexPQ(padded_dim, self.num_subspaces, self.nbits)
        quantizer.pq.cp.seed = seed + 1
        quantizer.pq.cp.niter = self.pq_iterations
        index = faiss.IndexPreTransform(rotation, quantizer)
        index.train(self._pad(shuffled))
        rotation.pq = None  # drop the Python-owned training PQ before it can be freed
        self.index = index
        self._keepalive = (rotation, quantizer)
        return self

    def _pad(self, embeddings: np.ndarray) -> np.ndarray:
        padding = self.padded_dim - embeddings.shape[1]
        if padding == 0:
            return np.ascontiguousarray(embeddings)
        return np.ascontiguousarray(np.pad(embeddings, ((0, 0), (0, padding))))

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """The M sub-space codes of the rotated vectors, int64 ``[n, M]``."""
        require_fitted(self.index is not None, self)
        embeddings = validate_embeddings(embeddings, expected_dim=self.dim)
        packed = self.index.sa_encode(self._pad(embeddings))  # rotate + PQ, uint8 [n, code_size]
        return unpack_codes(packed, self.num_subspaces, self.nbits)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """PQ decode, then the inverse rotation; float32 ``[n, d]``."""
        require_fitted(self.index is not None, self)
        codes = validate_codes(codes, self.codebook_sizes)
        packed = pack_codes(codes, self.nbits, self.index.sa_code_size())
        return self.index.sa_decode(packed)[:, : self.dim].astype(np.float32)

    def save(self, directory: str | os.PathLike) -> None:
        """Write the serialized faiss index (``index.npy``) and ``tokenizer.json``."""
        require_fitted(self.index is not None, self)
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_array(directory, "index", faiss.serialize_index(self.index))
        write_tokenizer_json(directory, self.kind, {"hyper": self.hyper_parameters(), "dim": self.dim})

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "OPQTokenizer":
        """Rebuild a fitted tokenizer from :meth:`save` output."""
        payload = read_tokenizer_json(directory, cls.kind)
        tokenizer = cls(**payload["hyper"])
        tokenizer.dim = int(payload["dim"])
        tokenizer.index = faiss.deserialize_index(load_array(directory, "index"))
        return tokenizer
