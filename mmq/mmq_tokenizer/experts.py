"""Experts and gates of the shared-specific tokenizer (MMQ_SPEC §2, "Experts" and "Gating").

An :class:`ExpertGroup` holds ``num_experts`` independent MLPs that read the same input (the
concatenation for shared experts, one modality for specific experts). They are stored as stacked
weights and evaluated with one einsum per layer instead of a Python loop over experts. Each
expert ends in a d x d linear layer whose weight W_i is what L_ortho regularises.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from einops import einsum
from torch import Tensor, nn


class ExpertGroup(nn.Module):
    """``num_experts`` MLPs ``input_dim -> hidden... -> d -> d`` (ReLU between layers) on one input."""

    def __init__(self, *, num_experts: int, input_dim: int, code_dim: int, hidden_dims: Sequence[int] = ()) -> None:
        super().__init__()
        self.num_experts = num_experts
        widths = [input_dim, *hidden_dims, code_dim, code_dim]  # the last layer is the d x d W_i
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / math.sqrt(width_in)  # nn.Linear's default initialisation, per expert
            self.weights.append(nn.Parameter(torch.empty(num_experts, width_in, width_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_experts, width_out).uniform_(-bound, bound)))

    @property
    def final_weights(self) -> Tensor:
        """The experts' last d x d weights ``[experts, d, d]`` (W_i of L_ortho)."""
        return self.weights[-1]

    def forward(self, inputs: Tensor) -> Tensor:
        """``[batch, input_dim] -> [batch, experts, d]``."""
        hidden = einsum(inputs, self.weights[0], "b i, e i o -> b e o") + self.biases[0]
        for weight, bias in zip(self.weights[1:], self.biases[1:]):
            hidden = einsum(torch.relu(hidden), weight, "b e i, e i o -> b e o") + bias  # [batch, experts, width]
        return hidden


class ModalityGate(nn.Module):
    """g_m = softmax(MLP_m(e_m) + b_m) over the modality's specific experts (MMQ eq. gating)."""

    def __init__(self, *, input_dim: int, num_experts: int, hidden_dim: int) -> None:
        super().__init__()
        self.network = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_experts))
        self.bias = nn.Parameter(torch.zeros(num_experts))  # b_m of the paper

    def forward(self, inputs: Tensor) -> Tensor:
        """``[batch, input_dim] -> [batch, experts]``, rows sum to 1."""
        return torch.softmax(self.network(inputs) + self.bias, dim=-1)
