"""The chapter-2 two-tower model: MiniLM towers + residual heads, the masked in-batch loss, cached encoder outputs.

See :mod:`baselines.two_tower.search` for the experiment (training loop, hard-negative mining, evaluation).
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mmq import artifacts
from mmq.data.paths import cache_dir
from mmq.features.text import load_text_encoder, texts_sha256

if TYPE_CHECKING:
    from baselines.two_tower.search import QuerySearchConfig

LOGGER = logging.getLogger(__name__)


# --- losses ------------------------------------------------------------------------------------

def masked_info_nce(queries: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor | None = None, *,
                    scale: float = 20.0) -> torch.Tensor:
    """In-batch softmax loss: query i's positive is candidate i; ``mask[i, j]`` True drops candidate j for query i.

    ``queries`` ``[B, d]`` and ``candidates`` ``[C >= B, d]`` are normalised (cosine similarity); the first B
    candidates are the positives, the rest (hard negatives) are shared by all queries, as in MNRL.
    """
    logits = scale * queries @ candidates.T
    if mask is not None:
        mask = mask.clone()
        mask[torch.arange(len(queries)), torch.arange(len(queries))] = False   # never drop one's own positive
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


# --- model ---------------------------------------------------------------------------------------

class Head(nn.Module):
    """Residual MLP head, ``normalize(x + W2 gelu(W1 x))``; W2 starts at zero, so a new head is the identity."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.inner = nn.Linear(dim, hidden)
        self.outer = nn.Linear(hidden, dim)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features + self.outer(F.gelu(self.inner(features))), dim=-1)


class TwoTower(nn.Module):
    """MiniLM query / product towers (shared or separate encoders) + residual heads, normalised outputs.

    ``trainable_layers``: top transformer layers fine-tuned (0: the encoder is frozen and only the heads train,
    so the encoder's outputs can be cached; -1: every layer and the embeddings).
    """

    def __init__(self, encoder: nn.Module, *, shared: bool, query_max_tokens: int, product_max_tokens: int,
                 head_hidden: int, trainable_layers: int) -> None:
        super().__init__()
        self.query_encoder = encoder
        self.product_encoder = encoder if shared or trainable_layers == 0 else copy.deepcopy(encoder)
        self.shared = shared
        self.trainable_layers = trainable_layers
        dim = encoder.get_embedding_dimension()
        self.query_head = Head(dim, head_hidden)
        self.product_head = Head(dim, head_hidden)
        self.max_tokens = {"query": query_max_tokens, "product": product_max_tokens}
        for tower in {id(self.query_encoder): self.query_encoder, id(self.product_encoder): self.product_encoder}.values():
            _freeze_lower_layers(tower, trainable_layers)

    @property
    def dim(self) -> int:
        return self.query_head.outer.out_features

    def encoder_of(self, side: str) -> nn.Module:
        return self.query_encoder if side == "query" else self.product_encoder

    def head_of(self, side: str) -> Head:
        return self.query_head if side == "query" else self.product_head

    def base(self, texts: list[str], side: str) -> torch.Tensor:
        """The encoder's sentence embeddings (before the head)."""
        encoder = self.encoder_of(side)
        features = encoder.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens[side],
                                     return_tensors="pt")
        return encoder(features)["sentence_embedding"]

    def embed(self, texts: list[str], side: str) -> torch.Tensor:
        return self.head_of(side)(self.base(texts, side))

    @torch.no_grad()
    def encode_base(self, texts: list[str], side: str, *, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Encoder outputs of many texts, float32 ``[len(texts), dim]`` (length-sorted batches: less padding)."""
        encoder = self.encoder_of(side)
        was_training = encoder.training
        encoder.eval()
        order = np.argsort([len(text) for text in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in tqdm(range(0, len(texts), batch_size), desc=f"encode {side}s", disable=not progress, leave=False):
            rows = order[start:start + batch_size]
            out[rows] = self.base([texts[row] for row in rows], side).numpy()
        encoder.train(was_training)
        return out

    @torch.no_grad()
    def apply_head(self, base: np.ndarray, side: str) -> np.ndarray:
        return self.head_of(side)(torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))).numpy()

    def encode(self, texts: list[str], side: str, *, batch_size: int = 256, progress: bool = False) -> np.ndarray:
        return self.apply_head(self.encode_base(texts, side, batch_size=batch_size, progress=progress), side)

    def token_overflow(self, texts: list[str], side: str) -> int:
        """How many texts are longer than the tower's token limit (they are truncated)."""
        lengths = [len(ids) for ids in self.encoder_of(side).tokenizer(texts, truncation=False)["input_ids"]]
        return int(sum(length > self.max_tokens[side] for length in lengths))


def _freeze_lower_layers(encoder: nn.Module, trainable_layers: int) -> None:
    if trainable_layers < 0:
        return
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    if trainable_layers == 0:
        return
    layers = encoder[0].auto_model.encoder.layer
    if trainable_layers > len(layers):
        raise ValueError(f"trainable_layers {trainable_layers} > the encoder's {len(layers)} layers")
    for layer in layers[len(layers) - trainable_layers:]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)


def build_two_tower(config: QuerySearchConfig) -> TwoTower:
    encoder = load_text_encoder(config.text_encoder, device="cpu")
    return TwoTower(encoder, shared=config.shared_towers, query_max_tokens=config.query_max_tokens,
                    product_max_tokens=config.product_max_tokens, head_hidden=config.head_hidden,
                    trainable_layers=config.trainable_layers)


def cached_base(model: TwoTower, texts: list[str], side: str, config: QuerySearchConfig, *,
                progress: bool = False) -> np.ndarray:
    """Frozen-encoder outputs of ``texts``, cached under ``<cache>/query_search/`` by content (texts, encoder,
    token limit); only valid while the encoder is frozen (``trainable_layers == 0``) or for the frozen row."""
    key = artifacts.short_hash(texts_sha256(texts), config.text_encoder, model.max_tokens[side], length=16)
    path = cache_dir() / "query_search" / f"{side}-{key}.npy"
    if path.exists():
        cached = np.load(path)
        if cached.shape == (len(texts), model.dim) and np.isfinite(cached).all():
            return cached
        LOGGER.warning("ignoring malformed cache %s (shape %s)", path, cached.shape)
    base = model.encode_base(texts, side, batch_size=config.encode_batch_size, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.save_npy(path, base)
    return base
