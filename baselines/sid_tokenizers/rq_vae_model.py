"""RQ-VAE modules: MLP encoder -> residual vector quantizer -> MLP decoder (torch, no I/O).

Losses follow VQ-VAE / RQ-VAE (van den Oord et al. 2017; Lee et al. 2022; TIGER, Rajput et al.
2023): L = ||x - Dec(z_q)||^2 + sum_l ||sg(r_l) - e_l||^2 + beta * sum_l ||r_l - sg(e_l)||^2,
with the straight-through estimator z_q = z + sg(sum_l e_l - z). With ``use_ema`` the codebook
term is replaced by exponential-moving-average codebook updates.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from mmq.semantic_ids.layers import mlp


class QuantizerOutput(NamedTuple):
    """Output of :class:`ResidualQuantizer`."""

    quantized: Tensor  # [batch, dim] straight-through quantized latent
    codes: Tensor  # [batch, levels] int64
    residuals: Tensor  # [batch, levels, dim] detached input residual of each level
    losses: dict[str, Tensor]  # codebook, commitment (summed over levels)


class RQVAEOutput(NamedTuple):
    """Output of :class:`RQVAE`."""

    reconstruction: Tensor  # [batch, input_dim]
    codes: Tensor  # [batch, levels]
    losses: dict[str, Tensor]  # reconstruction, codebook, commitment, total


def squared_distances(points: Tensor, codebook: Tensor) -> Tensor:
    """Squared L2 distances ``[batch, K]`` between points ``[batch, d]`` and codebook ``[K, d]``."""
    return (
        points.square().sum(dim=1, keepdim=True)
        - 2.0 * points @ codebook.T
        + codebook.square().sum(dim=1)[None, :]
    )


def codebook_loss(residual: Tensor, selected: Tensor) -> Tensor:
    """||sg(r) - e||^2, mean over the batch (VQ-VAE eq. 3, second term)."""
    return (residual.detach() - selected).square().sum(dim=1).mean()


def commitment_loss(residual: Tensor, selected: Tensor) -> Tensor:
    """||r - sg(e)||^2, mean over the batch (VQ-VAE eq. 3, third term; weighted by beta)."""
    return (residual - selected.detach()).square().sum(dim=1).mean()


class ResidualQuantizer(nn.Module):
    """L levels of K codes; level l quantizes the residual left by levels < l (L2 nearest code)."""

    def __init__(
        self,
        *,
        num_levels: int,
        codebook_size: int,
        dim: int,
        use_ema: bool = False,
        ema_decay: float = 0.99,
        ema_epsilon: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.codebook_size = codebook_size
        self.use_ema = use_ema
        self.ema_decay = ema_decay
        self.ema_epsilon = ema_epsilon
        codebooks = torch.randn(num_levels, codebook_size, dim) / dim**0.5  # [L, K, d]
        self.codebooks = nn.Parameter(codebooks, requires_grad=not use_ema)
        if use_ema:
            self.register_buffer("ema_cluster_size", torch.ones(num_levels, codebook_size))
            self.register_buffer("ema_embedding_sum", codebooks.clone())

    def quantize_level(self, residual: Tensor, level: int) -> Tensor:
        """Nearest code of ``level`` for each residual row, int64 ``[batch]``."""
        return squared_distances(residual, self.codebooks[level]).argmin(dim=1)

    @torch.no_grad()
    def set_codes_(self, level: int, code_ids: Tensor, vectors: Tensor) -> None:
        """Overwrite codes ``code_ids`` of ``level`` (k-means init and dead-code restarts)."""
        self.codebooks[level, code_ids] = vectors
        if self.use_ema:
            self.ema_cluster_size[level, code_ids] = 1.0
            self.ema_embedding_sum[level, code_ids] = vectors

    @torch.no_grad()
    def _ema_update(self, level: int, residual: Tensor, codes: Tensor) -> None:
        one_hot = nn.functional.one_hot(codes, self.codebook_size).type(residual.dtype)  # [b, K]
        decay = self.ema_decay
        self.ema_cluster_size[level].mul_(decay).add_(one_hot.sum(dim=0), alpha=1 - decay)
        self.ema_embedding_sum[level].mul_(decay).add_(one_hot.T @ residual, alpha=1 - decay)
        size = self.ema_cluster_size[level]
        smoothed = (size + self.ema_epsilon) / (size.sum() + self.codebook_size * self.ema_epsilon)
        smoothed = smoothed * size.sum()  # Laplace smoothing keeps empty codes finite
        self.codebooks[level].copy_(self.ema_embedding_sum[level] / smoothed[:, None])

    def forward(self, latent: Tensor) -> QuantizerOutput:
        residual = latent
        quantized_sum = torch.zeros_like(latent)
        codes, residuals = [], []
        codebook_term = latent.new_zeros(())
        commitment_term = latent.new_zeros(())
        for level in range(self.num_levels):
            level_codes = self.quantize_level(residual.detach(), level)  # [batch]
            if self.use_ema and self.training:
                self._ema_update(level, residual.detach(), level_codes)
            selected = self.codebooks[level][level_codes]  # [batch, dim]
            if not self.use_ema:
                codebook_term = codebook_term + codebook_loss(residual, selected)
            commitment_term = commitment_term + commitment_loss(residual, selected)
            codes.append(level_codes)
            residuals.append(residual.detach())
            quantized_sum = quantized_sum + selected
            residual = residual - selected.detach()
        quantized = latent + (quantized_sum - latent).detach()  # straight-through estimator
        return QuantizerOutput(
            quantized=quantized,
            codes=torch.stack(codes, dim=1),  # [batch, levels]
            residuals=torch.stack(residuals, dim=1),  # [batch, levels, dim]
            losses={"codebook": codebook_term, "commitment": commitment_term},
        )

    def assign(self, latent: Tensor) -> Tensor:
        """Codes only (no losses, no bookkeeping): the fast inference path, ``[batch, levels]``."""
        residual = latent
        codes = []
        for level in range(self.num_levels):
            level_codes = self.quantize_level(residual, level)  # [batch]
            codes.append(level_codes)
            residual = residual - self.codebooks[level][level_codes]
        return torch.stack(codes, dim=1)

    def lookup(self, codes: Tensor) -> Tensor:
        """Sum of the code vectors of every level, ``[batch, dim]``."""
        levels = torch.arange(self.num_levels, device=codes.device)
        return self.codebooks[levels[None, :], codes].sum(dim=1)  # [batch, levels, dim] -> sum


class RQVAE(nn.Module):
    """MLP encoder, residual quantizer and MLP decoder; forward returns :class:`RQVAEOutput`."""

    def __init__(
        self,
        *,
        input_dim: int,
        hidden_dims: Sequence[int] = (512, 256, 128),
        latent_dim: int = 32,
        num_levels: int = 3,
        codebook_size: int = 256,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        use_ema: bool = False,
        ema_decay: float = 0.99,
    ) -> None:
        super().__init__()
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.encoder = mlp(input_dim, hidden_dims, latent_dim)
        self.quantizer = ResidualQuantizer(
            num_levels=num_levels,
            codebook_size=codebook_size,
            dim=latent_dim,
            use_ema=use_ema,
            ema_decay=ema_decay,
        )
        self.decoder = mlp(latent_dim, tuple(reversed(hidden_dims)), input_dim)

    def forward(self, inputs: Tensor) -> RQVAEOutput:
        quantizer_output = self.quantizer(self.encoder(inputs))
        reconstruction = self.decoder(quantizer_output.quantized)
        reconstruction_term = (reconstruction - inputs).square().sum(dim=1).mean()
        losses = {"reconstruction": reconstruction_term, **quantizer_output.losses}
        losses["total"] = (
            reconstruction_term
            + self.codebook_weight * losses["codebook"]
            + self.commitment_weight * losses["commitment"]
        )
        return RQVAEOutput(reconstruction, quantizer_output.codes, losses)

    def encode_codes(self, inputs: Tensor) -> Tensor:
        """Semantic IDs ``[batch, levels]`` of ``inputs``."""
        return self.quantizer.assign(self.encoder(inputs))

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Reconstruction ``[batch, input_dim]`` of ``codes``."""
        return self.decoder(self.quantizer.lookup(codes))
