"""Modality wrappers (MA / MS, the paper's baseline variants) and the tokenizer factory.

Inputs are dicts of named modality embeddings ``{"text": [n, d_t], "image": [n, d_v], ...}``.

- MA (modality-aligned): L2-normalise each modality, concatenate (in ``modalities`` order), one
  tokenizer with the full code length.
- MS (modality-separated): one tokenizer per modality; the code length is split between
  modalities (default: as even as possible, earlier modalities get the remainder); codes are
  concatenated in ``modalities`` order.

Both ``decode`` methods return a dict ``{modality: [n, d_m]}`` of reconstructions of the
*normalised* inputs (MA splits its concatenated reconstruction back by modality dims);
``prepare`` gives the matching targets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mmq.semantic_ids.base import read_tokenizer_json, require_fitted, validate_codes, write_tokenizer_json
from mmq.semantic_ids.modalities import ModalityInputs
from baselines.sid_tokenizers.opq import OPQTokenizer
from baselines.sid_tokenizers.rq_kmeans import RQKMeansTokenizer
from baselines.sid_tokenizers.rq_vae import RQVAETokenizer
from baselines.sid_tokenizers.stage2 import RQVAECodes

TOKENIZER_CLASSES = {cls.kind: cls for cls in (RQVAETokenizer, RQKMeansTokenizer, OPQTokenizer)}
CODE_LENGTH_ARGUMENT = {"rq_vae": "num_levels", "rq_kmeans": "num_levels", "opq": "num_subspaces"}


def make_tokenizer(method: str, *, code_length: int | None = None, **hyper):
    """Build an unfitted tokenizer: ``method`` in {"rq_vae", "rq_kmeans", "opq"}.

    ``code_length`` maps to ``num_levels`` (RQ methods) or ``num_subspaces`` (OPQ); other keyword
    arguments go to the tokenizer's constructor.
    """
    if method not in TOKENIZER_CLASSES:
        raise ValueError(f"unknown tokenizer method {method!r}; valid: {sorted(TOKENIZER_CLASSES)}")
    if code_length is not None:
        hyper[CODE_LENGTH_ARGUMENT[method]] = code_length
    return TOKENIZER_CLASSES[method](**hyper)


def split_code_length(code_length: int, num_modalities: int) -> tuple[int, ...]:
    """As even as possible, earlier modalities get the remainder: (3, 2) -> (2, 1)."""
    if code_length < num_modalities:
        raise ValueError(f"code_length {code_length} < {num_modalities} modalities")
    base, remainder = divmod(code_length, num_modalities)
    return tuple(base + (index < remainder) for index in range(num_modalities))


class ModalityAlignedTokenizer(ModalityInputs):
    """MA: normalise each modality, concatenate, one tokenizer of the full code length."""

    kind = "modality_aligned"

    def __init__(
        self,
        *,
        method: str,  # "rq_vae" | "rq_kmeans" | "opq"
        code_length: int = 3,
        modalities: Sequence[str] = ("text", "image"),
        normalise: bool = True,  # L2-normalise each modality before concatenating
        **hyper,  # passed to the inner tokenizer
    ) -> None:
        super().__init__(modalities=modalities, normalise=normalise)
        self.method = method
        self.hyper = dict(hyper)
        self.tokenizer = make_tokenizer(method, code_length=code_length, **hyper)

    @property
    def code_length(self) -> int:
        return self.tokenizer.code_length

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return self.tokenizer.codebook_sizes

    def _concatenate(self, prepared: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([prepared[name] for name in self.modalities], axis=1)

    def fit(self, embeddings: Mapping[str, np.ndarray], *, seed: int = 0,
            checkpoint_directory: Path | None = None) -> "ModalityAlignedTokenizer":
        """Fit the inner tokenizer on the normalised concatenation (resumable in ``checkpoint_directory``)."""
        self.dims = None
        prepared = self.prepare(embeddings)
        self.dims = {name: array.shape[1] for name, array in prepared.items()}
        self.tokenizer.fit(self._concatenate(prepared), seed=seed, checkpoint_directory=checkpoint_directory)
        return self

    def encode(self, embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
        """Semantic IDs ``[n, code_length]``."""
        require_fitted(self.dims is not None, self)
        return self.tokenizer.encode(self._concatenate(self.prepare(embeddings)))

    def decode(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Reconstruction split back into modalities: ``{name: [n, d_name]}``."""
        require_fitted(self.dims is not None, self)
        reconstruction = self.tokenizer.decode(codes)
        boundaries = np.cumsum([self.dims[name] for name in self.modalities])[:-1]
        return dict(zip(self.modalities, np.split(reconstruction, boundaries, axis=1)))

    def stage2_source(self, embeddings: Mapping[str, np.ndarray], tau: float) -> RQVAECodes:
        """The trainable stage-2 source (MMQ's behavior fine-tuning plugged into MA-RQ-VAE)."""
        if self.method != "rq_vae":
            raise ValueError(f"behavior fine-tuning needs a learned lookup; MA-{self.method} has none "
                             "(k-means / OPQ codebooks are not trained by gradients)")
        prepared = self.prepare(embeddings)
        concatenated = np.concatenate([prepared[name] for name in self.modalities], axis=1)
        return RQVAECodes(self.tokenizer.model, concatenated, tau)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``tokenizer.json`` and the inner tokenizer under ``directory/inner``."""
        require_fitted(self.dims is not None, self)
        self.tokenizer.save(Path(directory) / "inner")
        write_tokenizer_json(
            directory,
            self.kind,
            {
                "method": self.method,
                "modalities": list(self.modalities),
                "normalise": self.normalise,
                "dims": self.dims,
            },
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ModalityAlignedTokenizer":
        """Rebuild from :meth:`save` output."""
        payload = read_tokenizer_json(directory, cls.kind)
        inner = TOKENIZER_CLASSES[payload["method"]].load(Path(directory) / "inner")
        wrapper = cls.__new__(cls)
        ModalityInputs.__init__(wrapper, modalities=payload["modalities"], normalise=payload["normalise"])
        wrapper.method, wrapper.hyper, wrapper.tokenizer = payload["method"], {}, inner
        wrapper.dims = {name: int(dim) for name, dim in payload["dims"].items()}
        return wrapper


class ModalitySeparatedTokenizer(ModalityInputs):
    """MS: one tokenizer per modality, code length split across modalities, codes concatenated."""

    kind = "modality_separated"

    def __init__(
        self,
        *,
        method: str,  # "rq_vae" | "rq_kmeans" | "opq"
        code_length: int = 3,
        modalities: Sequence[str] = ("text", "image"),
        code_length_split: Sequence[int] | None = None,  # per modality; default split_code_length
        normalise: bool = True,  # L2-normalise each modality
        **hyper,  # passed to every inner tokenizer
    ) -> None:
        super().__init__(modalities=modalities, normalise=normalise)
        split = tuple(code_length_split or split_code_length(code_length, len(self.modalities)))
        if len(split) != len(self.modalities) or sum(split) != code_length or min(split) < 1:
            raise ValueError(
                f"code_length_split {split} must give each of {self.modalities} >= 1 code "
                f"and sum to code_length={code_length}"
            )
        self.method = method
        self.hyper = dict(hyper)
        self.code_length_split = split
        self.tokenizers = {
            name: make_tokenizer(method, code_length=length, **hyper)
            for name, length in zip(self.modalities, split)
        }

    @property
    def code_length(self) -> int:
        return sum(self.tokenizers[name].code_length for name in self.modalities)

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        return sum((self.tokenizers[name].codebook_sizes for name in self.modalities), ())

    def fit(self, embeddings: Mapping[str, np.ndarray], *, seed: int = 0,
            checkpoint_directory: Path | None = None) -> "ModalitySeparatedTokenizer":
        """Fit each modality's tokenizer on its own (normalised) embeddings, seed + position.

        ``checkpoint_directory``: each modality's fit resumes from its own ``checkpoint_directory/<modality>``.
        """
        self.dims = None
        prepared = self.prepare(embeddings)
        self.dims = {name: array.shape[1] for name, array in prepared.items()}
        for position, name in enumerate(self.modalities):
            folder = None if checkpoint_directory is None else Path(checkpoint_directory) / name
            self.tokenizers[name].fit(prepared[name], seed=seed + position, checkpoint_directory=folder)
        return self

    def encode(self, embeddings: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenated per-modality codes ``[n, code_length]`` in ``modalities`` order."""
        require_fitted(self.dims is not None, self)
        prepared = self.prepare(embeddings)
        return np.concatenate(
            [self.tokenizers[name].encode(prepared[name]) for name in self.modalities], axis=1
        )

    def decode(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """Per-modality reconstructions ``{name: [n, d_name]}``."""
        require_fitted(self.dims is not None, self)
        codes = validate_codes(codes, self.codebook_sizes)
        boundaries = np.cumsum(self.code_length_split)[:-1]
        pieces = np.split(codes, boundaries, axis=1)
        return {name: self.tokenizers[name].decode(piece) for name, piece in zip(self.modalities, pieces)}

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``tokenizer.json`` and each modality's tokenizer under ``directory/<modality>``."""
        require_fitted(self.dims is not None, self)
        for name in self.modalities:
            self.tokenizers[name].save(Path(directory) / name)
        write_tokenizer_json(
            directory,
            self.kind,
            {
                "method": self.method,
                "modalities": list(self.modalities),
                "code_length_split": list(self.code_length_split),
                "normalise": self.normalise,
                "dims": self.dims,
            },
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "ModalitySeparatedTokenizer":
        """Rebuild from :meth:`save` output."""
        payload = read_tokenizer_json(directory, cls.kind)
        wrapper = cls.__new__(cls)
        ModalityInputs.__init__(wrapper, modalities=payload["modalities"], normalise=payload["normalise"])
        wrapper.method, wrapper.hyper = payload["method"], {}
        wrapper.code_length_split = tuple(payload["code_length_split"])
        inner_class = TOKENIZER_CLASSES[payload["method"]]
        wrapper.tokenizers = {name: inner_class.load(Path(directory) / name) for name in wrapper.modalities}
        wrapper.dims = {name: int(dim) for name, dim in payload["dims"].items()}
        return wrapper


def make_modality_tokenizer(mode: str, method: str, **hyper):
    """``mode`` "ma" -> :class:`ModalityAlignedTokenizer`, "ms" -> :class:`ModalitySeparatedTokenizer`."""
    classes = {"ma": ModalityAlignedTokenizer, "ms": ModalitySeparatedTokenizer}
    if mode not in classes:
        raise ValueError(f"unknown modality mode {mode!r}; valid: {sorted(classes)}")
    return classes[mode](method=method, **hyper)


def load_tokenizer(directory: str | os.PathLike):
    """Load any tokenizer saved by this package (dispatches on ``tokenizer.json``'s kind)."""
    kind = read_tokenizer_json(directory)["kind"]
    classes = {**TOKENIZER_CLASSES, "modality_aligned": ModalityAlignedTokenizer,
               "modality_separated": ModalitySeparatedTokenizer}
    if kind not in classes:
        raise ValueError(f"{directory}: unknown tokenizer kind {kind!r}")
    return classes[kind].load(directory)
