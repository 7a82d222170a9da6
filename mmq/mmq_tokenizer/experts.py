"""Expert types and gates of the shared-specific tokenizer (docs/method.md §2.2-2.3).

An expert type is a subclass of :class:`ExpertGroup`: the ``num_experts`` experts of one group
(the shared experts on the concatenation, or one modality's specific experts) reading the same
input, evaluated together, plus the weight W_i of each expert that L_ortho regularises. The
model builds every group by name through :data:`EXPERT_TYPES` (``MMQConfig.expert_type``):

    EXPERT_TYPES = {"mlp": MLPExperts}        # the paper's experts [choice: MLP ending in d x d]

Adding an expert type is one :class:`ExpertGroup` subclass, one entry here (or one
:func:`register_expert_type` call) and one config value (``mmq: {expert_type: <name>}``).
"""

from __future__ import annotations

import abc
import math
from typing import Sequence

import torch
from einops import einsum
from torch import Tensor, nn


class ExpertGroup(nn.Module, abc.ABC):
    """Interface of an expert type: ``num_experts`` experts on one ``[batch, input_dim]`` input.

    Subclasses take exactly these keyword-only constructor arguments, return ``[batch, experts,
    code_dim]`` from :meth:`forward` (expert i's latent z_i at ``[:, i]``) and expose
    :attr:`final_weights` ``[experts, ...]``: the W_i of L_ortho, one row per expert (flattened).
    """

    def __init__(self, *, num_experts: int, input_dim: int, code_dim: int, hidden_dims: Sequence[int] = ()) -> None:
        super().__init__()
        self.num_experts, self.input_dim, self.code_dim = num_experts, input_dim, code_dim

    @property
    @abc.abstractmethod
    def final_weights(self) -> Tensor:
        """Each expert's regularised weight ``[experts, ...]`` (W_i of L_ortho; a leaf parameter)."""

    @abc.abstractmethod
    def forward(self, inputs: Tensor) -> Tensor:
        """``[batch, input_dim] -> [batch, experts, code_dim]``."""


class MLPExperts(ExpertGroup):
    """``num_experts`` MLPs ``input_dim -> hidden... -> d -> d`` (ReLU between layers) on one input.

    Stored as stacked weights and evaluated with one einsum per layer instead of a Python loop
    over experts. Each expert ends in a d x d linear layer whose weight W_i is what L_ortho
    regularises.
    """

    def __init__(self, *, num_experts: int, input_dim: int, code_dim: int, hidden_dims: Sequence[int] = ()) -> None:
        super().__init__(num_experts=num_experts, input_dim=input_dim, code_dim=code_dim, hidden_dims=hidden_dims)
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


EXPERT_TYPES: dict[str, type[ExpertGroup]] = {"mlp": MLPExperts}  # MMQConfig.expert_type -> class


def register_expert_type(name: str, expert_class: type[ExpertGroup]) -> type[ExpertGroup]:
    """Make ``expert_class`` available as ``MMQConfig(expert_type=name)``; returns the class.

    Registering the same class under the same name again is a no-op; another class under a taken
    name is an error (a name means one architecture, so saved configs stay unambiguous).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"an expert type name must be a non-empty string, got {name!r}")
    if not (isinstance(expert_class, type) and issubclass(expert_class, ExpertGroup)):
        raise TypeError(f"expert type {name!r} must be a subclass of ExpertGroup, got {expert_class!r}")
    if EXPERT_TYPES.get(name, expert_class) is not expert_class:
        raise ValueError(f"expert type {name!r} is already registered as {EXPERT_TYPES[name].__name__}")
    EXPERT_TYPES[name] = expert_class
    return expert_class


def expert_type_class(name: str) -> type[ExpertGroup]:
    """The class registered as ``name``; an unknown name is a ValueError listing the valid ones."""
    if name not in EXPERT_TYPES:
        raise ValueError(f"unknown expert_type {name!r}; valid expert types: {sorted(EXPERT_TYPES)} "
                         "(add one with mmq.mmq_tokenizer.experts.register_expert_type)")
    return EXPERT_TYPES[name]


def build_expert_group(expert_type: str, *, num_experts: int, input_dim: int, code_dim: int,
                       hidden_dims: Sequence[int] = ()) -> ExpertGroup:
    """``num_experts`` experts of type ``expert_type`` on one ``[batch, input_dim]`` input."""
    return expert_type_class(expert_type)(num_experts=num_experts, input_dim=input_dim, code_dim=code_dim,
                                          hidden_dims=tuple(hidden_dims))


class ModalityGate(nn.Module):
    """g_m = softmax(MLP_m(e_m) + b_m) over the modality's specific experts (MMQ eq. gating)."""

    def __init__(self, *, input_dim: int, num_experts: int, hidden_dim: int) -> None:
        super().__init__()
        self.network = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_experts))
        self.bias = nn.Parameter(torch.zeros(num_experts))  # b_m of the paper

    def forward(self, inputs: Tensor) -> Tensor:
        """``[batch, input_dim] -> [batch, experts]``, rows sum to 1."""
        return torch.softmax(self.network(inputs) + self.bias, dim=-1)
