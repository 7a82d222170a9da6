"""Parallel per-expert quantizer: one codebook per expert, cosine (paper) or L2 (ablation) lookup.

Not residual: expert i's latent z_i is matched against its own codebook only, c_i = argmax_j
cos(z_i, q_j) (docs/method.md §2.4). With ``lookup="cosine"`` latents and codes live on the
unit sphere (both are L2-normalised before lookup, codebook and commitment terms), so the code
of an item does not depend on the scale of its latent. With ``lookup="l2"`` raw latents are
matched to raw codes by squared distance (standard VQ).

Stage 2 (behaviour-aware fine-tuning, docs/method.md §4.1) needs the per-expert logits p = [cos(z_i, q_1)
.. cos(z_i, q_K)]; :meth:`ExpertCodebooks.logits` returns them ``[batch, experts, K]`` so a soft
index ``softmax(p / tau) + sg(onehot(argmax p) - softmax(p / tau))`` can replace the hard lookup.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import einsum
from torch import Tensor, nn


class QuantizerOutput(NamedTuple):
    """Output of :class:`ExpertCodebooks` (all per expert)."""

    latents: Tensor    # [batch, experts, d] latents as the lookup sees them (unit norm for cosine)
    quantized: Tensor  # [batch, experts, d] selected code vectors (gradient reaches the codebooks)
    codes: Tensor      # [batch, experts] int64


class ExpertCodebooks(nn.Module):
    """``num_experts`` codebooks of ``codebook_size`` codes of width ``dim``."""

    def __init__(self, *, num_experts: int, codebook_size: int, dim: int, lookup: str = "cosine",
                 use_ema: bool = False, ema_decay: float = 0.99, ema_epsilon: float = 1e-5) -> None:
        super().__init__()
        if lookup not in ("cosine", "l2"):
            raise ValueError(f"lookup must be 'cosine' or 'l2', got {lookup!r}")
        self.num_experts, self.codebook_size, self.lookup = num_experts, codebook_size, lookup
        self.use_ema, self.ema_decay, self.ema_epsilon = use_ema, ema_decay, ema_epsilon
        codebooks = torch.randn(num_experts, codebook_size, dim) / dim**0.5  # [E, K, d]
        self.codebooks = nn.Parameter(codebooks, requires_grad=not use_ema)
        if use_ema:
            self.register_buffer("ema_cluster_size", torch.ones(num_experts, codebook_size))
            self.register_buffer("ema_embedding_sum", codebooks.clone())

    def prepare(self, latents: Tensor) -> Tensor:
        """Latents as the lookup sees them: unit-normalised for cosine, unchanged for L2."""
        return F.normalize(latents, dim=-1) if self.lookup == "cosine" else latents

    def code_vectors(self) -> Tensor:
        """The codebooks as used for lookup and reconstruction ``[E, K, d]``."""
        return F.normalize(self.codebooks, dim=-1) if self.lookup == "cosine" else self.codebooks

    def logits(self, latents: Tensor) -> Tensor:
        """Per-expert similarity to every code ``[batch, E, K]``: cos(z_i, q_j), or -||z_i - q_j||^2 for L2."""
        latents, codes = self.prepare(latents), self.code_vectors()
        dots = einsum(latents, codes, "b e d, e k d -> b e k")
        if self.lookup == "cosine":
            return dots
        return 2.0 * dots - latents.square().sum(-1, keepdim=True) - codes.square().sum(-1)[None]

    def assign(self, latents: Tensor) -> Tensor:
        """Codes only ``[batch, E]`` (the inference path)."""
        return self.logits(latents).argmax(dim=-1)

    def lookup_codes(self, codes: Tensor) -> Tensor:
        """Code vectors of ``codes`` ``[batch, E] -> [batch, E, d]``."""
        experts = torch.arange(self.num_experts, device=codes.device)
        return self.code_vectors()[experts[None, :], codes]

    @torch.no_grad()
    def set_codes_(self, expert: int, code_ids: Tensor, vectors: Tensor) -> None:
        """Overwrite codes of one expert (k-means initialisation and dead-code restarts)."""
        self.codebooks[expert, code_ids] = vectors
        if self.use_ema:
            self.ema_cluster_size[expert, code_ids] = 1.0
            self.ema_embedding_sum[expert, code_ids] = vectors

    @torch.no_grad()
    def _ema_update(self, latents: Tensor, codes: Tensor) -> None:
        one_hot = F.one_hot(codes, self.codebook_size).type(latents.dtype)  # [b, E, K]
        decay = self.ema_decay
        self.ema_cluster_size.mul_(decay).add_(one_hot.sum(dim=0), alpha=1 - decay)
        self.ema_embedding_sum.mul_(decay).add_(einsum(one_hot, latents, "b e k, b e d -> e k d"), alpha=1 - decay)
        size = self.ema_cluster_size
        total = size.sum(dim=1, keepdim=True)
        smoothed = (size + self.ema_epsilon) / (total + self.codebook_size * self.ema_epsilon) * total
        self.codebooks.copy_(self.ema_embedding_sum / smoothed[..., None])

    def forward(self, latents: Tensor) -> QuantizerOutput:
        """Quantize ``[batch, E, d]`` expert latents independently against their own codebooks."""
        prepared = self.prepare(latents)
        codes = self.logits(latents.detach()).argmax(dim=-1)  # [batch, E]
        if self.use_ema and self.training:
            self._ema_update(prepared.detach(), codes)
        return QuantizerOutput(latents=prepared, quantized=self.lookup_codes(codes), codes=codes)
