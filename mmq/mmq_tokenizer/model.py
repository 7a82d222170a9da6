"""The stage-1 shared-specific MMQ network (docs/method.md §2): experts, gates, quantizer, decoders.

Expert order (= SID order): shared experts on the concatenation [e_t, e_v, ...], then each
modality's specific experts in ``config.modalities`` order. Shared experts weigh 1, specific
experts weigh their modality's softmax gate:

    z   = sum_i z_s,i + sum_m sum_i g_m,i z_m,i
    z_q = sum_i q(z_s,i) + sum_m sum_i g_m,i q(z_m,i)
    x_hat = Dec(z + sg(z_q - z));   e_m_hat = Dec_m(z_m + sg(z_q,m - z_m)),  z_m = sum_i g_m,i z_m,i

Any number of modalities works (one, two, three, ...). A modality with 0 specific experts only
feeds the shared experts: it has no gate, no Dec_m and no L_aux term. Every expert group is an
:class:`~mmq.mmq_tokenizer.experts.ExpertGroup` of ``config.expert_type``.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
from einops import einsum
from torch import Tensor, nn

from mmq.mmq_tokenizer.config import MMQConfig
from mmq.mmq_tokenizer.experts import ExpertGroup, ModalityGate, build_expert_group
from mmq.semantic_ids.layers import mlp as decoder_mlp  # Dec and the auxiliary Dec_m
from mmq.mmq_tokenizer.losses import (auxiliary_loss, codebook_loss, commitment_loss, gate_balance_loss,
                                      orthogonality_loss, reconstruction_loss, stage1_objective)
from mmq.mmq_tokenizer.quantizer import ExpertCodebooks


class ExpertLatents(NamedTuple):
    """Every expert's latent and its mixing weight."""

    latents: Tensor  # [batch, experts, d] raw expert outputs
    weights: Tensor  # [batch, experts] 1 for shared experts, the modality gate for specific ones


class MMQOutput(NamedTuple):
    """Output of :class:`MMQModel`."""

    reconstruction: Tensor                      # [batch, sum of modality dims]
    auxiliary_reconstructions: dict[str, Tensor]  # modality -> [batch, d_m]
    codes: Tensor                               # [batch, experts] int64, SID order
    weights: Tensor                             # [batch, experts] gates (1 for shared)
    losses: dict[str, Tensor]                   # reconstruction, auxiliary, orthogonality, codebook, commitment,
                                                # gate_balance, total
    logits: Tensor | None = None                # [batch, experts, K] with gradient, when asked (stage 2)


def straight_through(latent: Tensor, quantized: Tensor) -> Tensor:
    """z + sg(z_q - z): forward equals z_q, gradient flows to z (straight-through estimator)."""
    return latent + (quantized - latent).detach()


class MMQModel(nn.Module):
    """Shared + specific expert groups, per-modality gates, per-expert codebooks, Dec and Dec_m."""

    def __init__(self, *, config: MMQConfig, input_dims: Mapping[str, int]) -> None:
        super().__init__()
        self.config = config
        self.modalities = tuple(config.modalities)
        self.input_dims = {name: int(input_dims[name]) for name in self.modalities}
        total_dim, dim = sum(self.input_dims.values()), config.code_dim
        self.counts = dict(zip(self.modalities, config.num_specific_experts))
        self.shared = self._experts(config.num_shared_experts, total_dim) if config.num_shared_experts else None
        gated = [name for name in self.modalities if self.counts[name]]  # modalities with specific experts
        self.specific = nn.ModuleDict({name: self._experts(self.counts[name], self.input_dims[name]) for name in gated})
        self.gates = nn.ModuleDict({name: ModalityGate(input_dim=self.input_dims[name], num_experts=self.counts[name],
                                                       hidden_dim=config.gate_hidden_dim) for name in gated})
        self.quantizer = ExpertCodebooks(num_experts=config.num_experts, codebook_size=config.codebook_size, dim=dim,
                                         lookup=config.lookup, use_ema=config.codebook_update == "ema",
                                         ema_decay=config.ema_decay)
        self.decoder = decoder_mlp(dim, config.decoder_hidden_dims, total_dim)
        self.auxiliary_decoders = nn.ModuleDict({
            name: decoder_mlp(dim, config.decoder_hidden_dims, self.input_dims[name]) for name in gated})
        if config.orthogonality_scope == "cross_group":
            widths = {name: weights[0].numel() for name, weights in zip(self._group_names(), self.expert_groups())}
            if len(set(widths.values())) > 1:
                raise ValueError(f"orthogonality_scope 'cross_group' needs every expert's final weight to have one "
                                 f"flattened width, got {widths} (expert_type {config.expert_type!r})")
        # mean gates over the training items: decode(codes) without inputs mixes experts with these
        self.register_buffer("mean_weights", torch.ones(config.num_experts))

    def _experts(self, num_experts: int, input_dim: int) -> ExpertGroup:
        """One group of ``config.expert_type`` experts (built through ``experts.EXPERT_TYPES``)."""
        return build_expert_group(self.config.expert_type, num_experts=num_experts, input_dim=input_dim,
                                  code_dim=self.config.code_dim, hidden_dims=self.config.expert_hidden_dims)

    def _group_names(self) -> list[str]:
        """Names of the L_ortho groups, in :meth:`expert_groups` order."""
        return (["shared"] if self.shared is not None else []) + list(self.specific)

    def expert_groups(self) -> list[Tensor]:
        """Each group's ``final_weights`` ``[experts, ...]`` (shared, then each modality): the L_ortho groups."""
        groups = [self.shared.final_weights] if self.shared is not None else []
        return groups + [self.specific[name].final_weights for name in self.specific]

    def _group_latents(self, group: ExpertGroup, inputs: Tensor) -> Tensor:
        """``[batch, input_dim] -> [batch, experts, d]``, checked (a new expert type fails here, clearly)."""
        latents = group(inputs)
        expected = (inputs.shape[0], group.num_experts, self.config.code_dim)
        if tuple(latents.shape) != expected:
            raise ValueError(f"expert_type {self.config.expert_type!r} ({type(group).__name__}) returned shape "
                             f"{tuple(latents.shape)}, expected [batch, experts, code_dim] = {expected}")
        return latents

    def expert_latents(self, inputs: Mapping[str, Tensor]) -> ExpertLatents:
        """Raw latents and mixing weights of every expert, SID order."""
        first = inputs[self.modalities[0]]
        latents, weights = [], []
        if self.shared is not None:
            concatenated = torch.cat([inputs[name] for name in self.modalities], dim=-1)  # [batch, sum of dims]
            latents.append(self._group_latents(self.shared, concatenated))  # [batch, N_s, d]
            weights.append(first.new_ones(first.shape[0], self.shared.num_experts))
        for name, group in self.specific.items():
            latents.append(self._group_latents(group, inputs[name]))  # [batch, N_m, d]
            weights.append(self.gates[name](inputs[name]))  # [batch, N_m]
        return ExpertLatents(torch.cat(latents, dim=1), torch.cat(weights, dim=1))

    def expert_logits(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Per-expert code logits ``[batch, experts, K]`` (cos(z_i, q_j)): the stage-2 soft-index hook."""
        return self.quantizer.logits(self.expert_latents(inputs).latents)

    def _modality_slices(self) -> dict[str, slice]:
        start, slices = self.config.num_shared_experts, {}
        for name in self.specific:
            slices[name] = slice(start, start + self.counts[name])
            start += self.counts[name]
        return slices

    def forward(self, inputs: Mapping[str, Tensor], *, with_logits: bool = False) -> MMQOutput:
        """Quantize every expert, reconstruct the concatenation and each modality, return named losses.

        ``with_logits`` also returns the differentiable per-expert code logits of the same latents
        (stage 2 needs logits and L_recon / L_aux of one forward pass).
        """
        latents, weights = self.expert_latents(inputs)
        quantizer_output = self.quantizer(latents)
        unit, quantized = quantizer_output.latents, quantizer_output.quantized  # [batch, experts, d]
        fused = einsum(weights, unit, "b e, b e d -> b d")  # z
        fused_quantized = einsum(weights, quantized, "b e, b e d -> b d")  # z_q
        reconstruction = self.decoder(straight_through(fused, fused_quantized))
        auxiliary, slices = {}, self._modality_slices()
        for name, part in slices.items():
            specific = einsum(weights[:, part], unit[:, part], "b e, b e d -> b d")
            specific_quantized = einsum(weights[:, part], quantized[:, part], "b e, b e d -> b d")
            auxiliary[name] = self.auxiliary_decoders[name](straight_through(specific, specific_quantized))
        concatenated = torch.cat([inputs[name] for name in self.modalities], dim=-1)
        losses = {
            "reconstruction": reconstruction_loss(concatenated, reconstruction),
            "auxiliary": auxiliary_loss(inputs, auxiliary).to(reconstruction),
            "orthogonality": orthogonality_loss(self.expert_groups(),
                                                scope=self.config.orthogonality_scope).to(reconstruction),
            "codebook": codebook_loss(unit, quantized),
            "commitment": commitment_loss(unit, quantized),
            "gate_balance": gate_balance_loss([weights[:, part] for part in slices.values()]).to(reconstruction),
        }
        return MMQOutput(reconstruction, auxiliary, quantizer_output.codes, weights,
                         stage1_objective(losses, self.config),
                         self.quantizer.logits(latents) if with_logits else None)

    def encode_codes(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Semantic IDs ``[batch, experts]`` in SID order."""
        return self.quantizer.assign(self.expert_latents(inputs).latents)

    def decode_codes(self, codes: Tensor, weights: Tensor | None = None) -> Tensor:
        """Dec(z_q) ``[batch, sum dims]`` from codes alone (training-mean gates unless ``weights`` given)."""
        weights = self.mean_weights.expand(codes.shape[0], -1) if weights is None else weights
        return self.decoder(einsum(weights, self.quantizer.lookup_codes(codes), "b e, b e d -> b d"))
