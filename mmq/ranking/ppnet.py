"""PPNet-style CTR model (docs/method.md §5.2, discriminative ranking).

PPNet (Kuaishou's parameter-personalised network): a gate network reads the ID priors (user and
item ID embeddings) plus a stop-gradient copy of the DNN input and scales every hidden layer's
units by ``2 * sigmoid(.)``, so each user/item gets its own effective DNN. Item features:

- ``id``:      item-ID embedding only (the paper's no-SID baseline, PPNet-ItemID);
- ``sid``:     SID embeddings replace the item ID (``ind @ E`` per position, concatenated);
- ``id+sid``:  SID embeddings augment the item ID.

SIDs enter as indices ``[n, L, K]`` (:mod:`mmq.finetune.soft_index`), so the same model trains on
frozen stage-1 codes or jointly with a tokenizer through the soft straight-through estimator.
Written by hand: no maintained library ships PPNet (it is a few Linear layers).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from mmq.finetune.soft_index import SidEmbedding

ITEM_FEATURES = ("id", "sid", "id+sid")


@dataclasses.dataclass(frozen=True)
class PPNetConfig:
    """Widths of the ranking model [choice: the paper gives none]."""

    embedding_dim: int = 32                 # user / item-ID embeddings
    sid_embedding_dim: int = 16             # per SID position (concatenated: L x 16)
    hidden_dims: tuple[int, ...] = (128, 64)
    gate_hidden_dim: int = 64
    dropout: float = 0.1
    init_std: float = 0.01                  # embeddings (unseen items keep ~0 ID vectors)

    def __post_init__(self) -> None:
        if not self.hidden_dims or min(self.hidden_dims) < 1 or self.embedding_dim < 1 or self.sid_embedding_dim < 1:
            raise ValueError("hidden_dims must be non-empty and every width >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class PPNet(nn.Module):
    """User + item features -> gated DNN -> click/like logit."""

    def __init__(self, *, num_users: int, num_items: int, item_features: str = "id",
                 codebook_sizes: Sequence[int] | None = None, config: PPNetConfig = PPNetConfig(),
                 unknown_items: Sequence[int] | None = None) -> None:
        """``unknown_items``: items held out of training (cold items); their ID lookups share one extra
        unknown-item row, so an item-ID model scores them all alike (SIDs still tell them apart)."""
        super().__init__()
        if item_features not in ITEM_FEATURES:
            raise ValueError(f"item_features must be one of {ITEM_FEATURES}, got {item_features!r}")
        uses_sid = "sid" in item_features
        if uses_sid and not codebook_sizes:
            raise ValueError(f"item_features={item_features!r} needs the SID codebook sizes")
        self.item_features, self.config = item_features, config
        dim = config.embedding_dim
        self.user = nn.Embedding(num_users, dim)
        self.item = None
        if item_features != "sid":
            self.item = nn.Embedding(num_items + (1 if unknown_items is not None else 0), dim)
            if unknown_items is not None:
                unknown = torch.as_tensor(np.asarray(unknown_items, dtype=np.int64))
                if unknown.numel() and (unknown.min() < 0 or unknown.max() >= num_items):
                    raise ValueError(f"unknown_items must be item indices in [0, {num_items})")
                rows = torch.arange(num_items)
                rows[unknown] = num_items
                self.register_buffer("id_rows", rows, persistent=False)
        self.sid = SidEmbedding(codebook_sizes, config.sid_embedding_dim, config.init_std) if uses_sid else None
        for table in (self.user, self.item):
            if table is not None:
                nn.init.normal_(table.weight, std=config.init_std)
        input_dim = dim * (2 if self.item is not None else 1)
        input_dim += len(codebook_sizes) * config.sid_embedding_dim if uses_sid else 0
        prior_dim = dim * (2 if self.item is not None else 1)
        widths = (input_dim, *config.hidden_dims)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.gates = nn.ModuleList(
            nn.Sequential(nn.Linear(prior_dim + input_dim, config.gate_hidden_dim), nn.ReLU(),
                          nn.Linear(config.gate_hidden_dim, width)) for width in config.hidden_dims)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.hidden_dims[-1], 1)

    def forward(self, users: Tensor, items: Tensor, sid_indices: Tensor | None = None) -> Tensor:
        """Logits ``[n]``; ``sid_indices [n, L, K]`` required when the model uses SIDs."""
        user = self.user(users)
        priors = [user]
        features = [user]
        if self.item is not None:
            item = self.item(self.id_rows[items] if hasattr(self, "id_rows") else items)
            priors.append(item)
            features.append(item)
        if self.sid is not None:
            if sid_indices is None:
                raise ValueError("this PPNet uses SIDs: pass sid_indices [n, L, K]")
            features.append(self.sid(sid_indices).flatten(1))
        hidden = torch.cat(features, dim=1)
        gate_input = torch.cat([*priors, hidden.detach()], dim=1)  # ID priors + sg(DNN input), as PPNet
        for layer, gate in zip(self.layers, self.gates):
            hidden = self.dropout(torch.relu(layer(hidden)) * 2.0 * torch.sigmoid(gate(gate_input)))
        return self.output(hidden).squeeze(-1)
