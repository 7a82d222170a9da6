"""Small torch building blocks shared by the learned tokenizers (MMQ's decoders, RQ-VAE's encoder/decoder)."""

from __future__ import annotations

from typing import Sequence

from torch import nn


def mlp(input_dim: int, hidden_dims: Sequence[int], output_dim: int) -> nn.Sequential:
    """Linear-ReLU stack ending in a plain linear layer."""
    layers: list[nn.Module] = []
    width = input_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, output_dim))
    return nn.Sequential(*layers)
