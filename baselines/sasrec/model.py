"""SASRec (Kang & McAuley, 2018): an ID-based causal transformer over item sequences.

Items are indices ``0..num_items-1`` and ``-1`` is padding (``mmq.recommenders.sequences.PAD``).
Inputs are right-aligned windows of at most ``max_length`` items; column ``t`` of a width-``W``
input sits at position ``max_length - W + t``, so a shorter input is the right end of a full
window and extra left padding never changes the outputs. Scores are dot products with the *tied*
item embedding over the full catalogue, trained with full-softmax cross-entropy (SASRec-CE, as in
genrec / Klenitskiy & Vasilev 2023) instead of the original sampled binary loss.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class SASRecOutput(NamedTuple):
    """Sequence representations and which positions hold an item."""

    hidden: torch.Tensor   # [batch, length, hidden_size] state after reading items 0..t
    valid: torch.Tensor    # [batch, length] True where the input is an item, False for padding


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position ``t`` reads items ``<= t`` and never padding."""

    def __init__(self, *, hidden_size: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``[batch, length, dim]``, ``valid`` ``[batch, length]`` -> ``[batch, length, dim]``."""
        length = hidden.shape[1]
        query, key, value = rearrange(self.qkv(hidden), "b l (three h d) -> three b h l d",
                                      three=3, h=self.num_heads)
        causal = torch.ones(length, length, dtype=torch.bool, device=hidden.device).tril()   # [length, length]
        diagonal = torch.eye(length, dtype=torch.bool, device=hidden.device)
        # a key takes part when it is an item at or before the query; every query also sees itself so
        # that padded rows (which no loss reads) are not all-masked (NaN)
        allowed = causal & (valid[:, None, :] | diagonal)                                     # [batch, length, length]
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=allowed[:, None],
                                                  dropout_p=self.dropout if self.training else 0.0)
        return self.output(rearrange(attended, "b h l d -> b l (h d)"))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: causal attention then a position-wise feed-forward, both residual."""

    def __init__(self, *, hidden_size: int, num_heads: int, feedforward_size: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.attention = CausalSelfAttention(hidden_size=hidden_size, num_heads=num_heads, dropout=dropout)
        self.feedforward_norm = nn.LayerNorm(hidden_size)
        self.feedforward = nn.Sequential(
            nn.Linear(hidden_size, feedforward_size), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(feedforward_size, hidden_size),
        )
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """One block over ``[batch, length, dim]``."""
        hidden = hidden + self.residual_dropout(self.attention(self.attention_norm(hidden), valid))
        return hidden + self.residual_dropout(self.feedforward(self.feedforward_norm(hidden)))


class SASRec(nn.Module):
    """Item + learned position embeddings, ``num_layers`` causal blocks, tied full-catalogue scores."""

    def __init__(self, *, num_items: int, max_length: int = 20, hidden_size: int = 64, num_layers: int = 2,
                 num_heads: int = 1, feedforward_size: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        if num_items < 1 or max_length < 1 or num_layers < 0:
            raise ValueError(f"need num_items >= 1, max_length >= 1, num_layers >= 0; got {num_items}, "
                             f"{max_length}, {num_layers}")
        self.num_items = num_items
        self.max_length = max_length
        self.item_embedding = nn.Embedding(num_items + 1, hidden_size, padding_idx=num_items)  # last row = padding
        self.position_embedding = nn.Embedding(max_length, hidden_size)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size=hidden_size, num_heads=num_heads, feedforward_size=feedforward_size,
                             dropout=dropout)
            for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden_size)
        self.apply(_init_weights)

    def forward(self, items: torch.Tensor) -> SASRecOutput:
        """Right-aligned item indices ``[batch, width <= max_length]`` (``-1`` = padding) -> hidden states."""
        batch, width = items.shape
        if width > self.max_length:
            raise ValueError(f"input width {width} exceeds max_length {self.max_length}")
        valid = items >= 0                                                       # [batch, width]
        embedded = self.item_embedding(torch.where(valid, items, self.num_items))  # [batch, width, dim]
        positions = torch.arange(self.max_length - width, self.max_length, device=items.device)
        hidden = embedded * math.sqrt(embedded.shape[-1]) + self.position_embedding(positions)
        hidden = self.embedding_dropout(hidden) * valid[..., None]
        for block in self.blocks:
            hidden = block(hidden, valid) * valid[..., None]
        return SASRecOutput(hidden=self.final_norm(hidden), valid=valid)

    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Dot product with every catalogue item: ``[..., dim]`` -> ``[..., num_items]``."""
        return hidden @ self.item_embedding.weight[:self.num_items].T

    def score_histories(self, histories: torch.Tensor) -> torch.Tensor:
        """Next-item scores ``[users, num_items]`` from right-aligned histories ``[users, H]``."""
        return self.item_scores(self(histories).hidden[:, -1])


def next_item_loss(model: SASRec, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Full-softmax cross-entropy over all items at every position with a target (``targets >= 0``).

    SASRec-CE: ``-log softmax(h_t E^T)[target_t]`` averaged over non-padded positions.
    """
    has_target = targets >= 0                                    # [batch, length]
    logits = model.item_scores(hidden[has_target])               # [targets, num_items]
    return F.cross_entropy(logits, targets[has_target])


def _init_weights(module: nn.Module) -> None:
    """GPT-style init: normal(0, 0.02) weights, zero biases, zero padding row."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
