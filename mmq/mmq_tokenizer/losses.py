"""Stage-1 MMQ losses (docs/method.md §2.6), each a small function citing its equation.

Squared errors are summed over coordinates and averaged over the batch, the scale of the
``reconstruction_l2_sq`` column of every tokenizer-quality report.
"""

from __future__ import annotations

from typing import Mapping

import torch
from einops import rearrange
from torch import Tensor

from mmq.mmq_tokenizer.config import ORTHOGONALITY_SCOPES, MMQConfig


def squared_error(target: Tensor, prediction: Tensor) -> Tensor:
    """Mean over the batch of ||target - prediction||^2."""
    return (target - prediction).square().sum(dim=-1).mean()


def reconstruction_loss(concatenated: Tensor, reconstruction: Tensor) -> Tensor:
    """L_recon = ||[e_t, e_v] - Dec(z + sg(z_q - z))||^2 (MMQ eq. L_recon)."""
    return squared_error(concatenated, reconstruction)


def auxiliary_loss(inputs: Mapping[str, Tensor], reconstructions: Mapping[str, Tensor]) -> Tensor:
    """L_aux = sum_m ||e_m - Dec_m(gated quantized specific latents of m)||^2 (MMQ eq. L_aux)."""
    terms = [squared_error(inputs[name], reconstructions[name]) for name in reconstructions]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def orthogonality_loss(groups: list[Tensor], *, scope: str = "within_group") -> Tensor:
    """L_ortho = sum_groups ||V V^T - I||_F^2, V = row-normalised flattened W_i (MMQ eq. L_ortho).

    ``groups``: one ``[experts, ...]`` stack of final expert weights per group (shared, each
    modality's specific experts; ``[experts, d, d]`` for the MLP experts), each expert's weight
    flattened to v_i. A group of one expert contributes 0. ``scope="cross_group"`` [ours] stacks
    every group's experts into one V instead (one Gram matrix, pairs across groups penalised too);
    the flattened weights must then have one common width.
    """
    if scope not in ORTHOGONALITY_SCOPES:
        raise ValueError(f"unknown orthogonality scope {scope!r}; valid scopes: {list(ORTHOGONALITY_SCOPES)}")
    flattened = [rearrange(weights, "e ... -> e (...)") for weights in groups]  # [experts, d*d] for d x d weights
    if scope == "cross_group" and flattened:
        widths = sorted({vectors.shape[1] for vectors in flattened})
        if len(widths) > 1:
            raise ValueError(f"orthogonality_scope 'cross_group' needs final expert weights of one flattened "
                             f"width, got widths {widths}")
        flattened = [torch.cat(flattened, dim=0)]  # [all experts, d*d]
    total = groups[0].new_zeros(()) if groups else torch.zeros(())
    for vectors in flattened:
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        gram = vectors @ vectors.T  # [experts, experts]
        identity = torch.eye(gram.shape[0], device=gram.device, dtype=gram.dtype)
        total = total + (gram - identity).square().sum()
    return total


def gate_balance_loss(gates: list[Tensor]) -> Tensor:
    """sum_m CV^2 of the batch-mean gate of modality m's experts (Shazeer et al. 2017 importance loss) [choice].

    Not in the paper: without it the softmax gates collapse onto one expert per modality (the
    other specific experts get weight ~0 and their SID digits stop carrying reconstruction
    signal); ``gate_balance_weight: 0`` gives the paper's objective exactly.
    """
    total = gates[0].new_zeros(()) if gates else torch.zeros(())
    for gate in gates:
        if gate.shape[1] > 1:
            importance = gate.mean(dim=0)  # [experts]
            total = total + importance.var(unbiased=False) / importance.mean().square().clamp_min(1e-12)
    return total


def codebook_loss(latents: Tensor, quantized: Tensor) -> Tensor:
    """||sg(z_i) - q_i||^2 summed over experts, mean over batch (VQ-VAE codebook term) [choice]."""
    return (latents.detach() - quantized).square().sum(dim=-1).sum(dim=-1).mean()


def commitment_loss(latents: Tensor, quantized: Tensor) -> Tensor:
    """||z_i - sg(q_i)||^2 summed over experts, mean over batch (VQ-VAE commitment term) [choice]."""
    return (latents - quantized.detach()).square().sum(dim=-1).sum(dim=-1).mean()


def stage1_objective(losses: Mapping[str, Tensor], config: MMQConfig) -> dict[str, Tensor]:
    """Named losses plus ``total`` = 12 L_recon + 10 L_aux + 0.005 L_ortho + VQ + gate terms (MMQ eq. L_stage1)."""
    weights = {
        "reconstruction": config.reconstruction_weight,
        "auxiliary": config.auxiliary_weight,
        "orthogonality": config.orthogonality_weight,
        "codebook": config.codebook_weight if config.codebook_update == "loss" else 0.0,
        "commitment": config.commitment_weight,
        "gate_balance": config.gate_balance_weight,
    }
    named = dict(losses)
    zero = losses["reconstruction"].new_zeros(())
    named["total"] = sum((weight * losses[name] for name, weight in weights.items() if weight), zero)
    return named
