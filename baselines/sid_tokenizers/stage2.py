"""Behavior-aware fine-tuning (MMQ stage 2) plugged into the MA-RQ-VAE baseline.

Level ``l``'s logits are ``-||r_l - c||^2`` ([choice]: RQ-VAE looks codes up by L2, so its soft index
uses negative squared distances where MMQ uses cosines; the hard forward pass is unchanged), the
residual passes on ``r_l - ind_l @ C_l``; L_recon from the RQ-VAE decoder, no L_aux.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from baselines.sid_tokenizers.rq_vae_model import squared_distances
from mmq.finetune.soft_index import soft_straight_through
from mmq.finetune.sources import LiveTokenizerSource, SourceOutput


class RQVAECodes(LiveTokenizerSource):
    """An RQ-VAE (on the concatenated normalised modalities) fine-tuned through soft indices."""

    def __init__(self, model: nn.Module, inputs: np.ndarray, tau: float) -> None:
        super().__init__({"concatenated": inputs}, tau)
        self.model = model
        quantizer = model.quantizer
        self.codebook_sizes = (quantizer.codebook_size,) * quantizer.num_levels

    def forward(self, items: Tensor, *, with_losses: bool = False) -> SourceOutput:
        inputs = self.batch(items)["concatenated"]
        latent = self.model.encoder(inputs)
        codebooks = self.model.quantizer.codebooks  # [L, K, d]
        residual, quantized, indices = latent, torch.zeros_like(latent), []
        for level in range(codebooks.shape[0]):
            level_indices = soft_straight_through(-squared_distances(residual, codebooks[level]), self.tau)
            selected = level_indices @ codebooks[level]  # the hard code vector in the forward pass
            indices.append(level_indices)
            quantized, residual = quantized + selected, residual - selected
        indices = torch.stack(indices, dim=1)
        if not with_losses:
            return SourceOutput(indices, {})
        # the RQ-VAE's own L_recon (decoder on z + sg(z_q - z)), computed here so that no EMA
        # codebook update of the quantizer's training forward runs during fine-tuning
        reconstruction = self.model.decoder(latent + (quantized - latent).detach())
        return SourceOutput(indices, {"reconstruction": (reconstruction - inputs).square().sum(dim=1).mean(),
                                      "auxiliary": inputs.new_zeros(())})
