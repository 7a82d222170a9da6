"""Default backbone: a causal transformer over history items + a per-position SID decoder.

Every history item enters as the sum of its per-position code embeddings (its semantic ID, de-dup
digit included) plus a learned position embedding; causal self-attention gives a state ``h_t``
after each item. From ``h_t`` a small autoregressive decoder predicts the *next* item's codes:
``s_0 = h_t``, ``s_l = s_{l-1} + E'_l[c_l]``, ``logits_{l+1} = MLP_{l+1}(s_l)``. Training reads all
positions of a sequence in one pass (teacher forcing on the next item's codes), as SASRec and the
paper's HeterRec do, which is what makes an epoch on Beauty take seconds instead of hours.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class SequenceOutput(NamedTuple):
    """Per-level logits ``[batch, length, K_l]`` and the summed cross-entropy loss."""

    logits: list[torch.Tensor]
    loss: torch.Tensor


class CausalBlock(nn.Module):
    """Pre-LN transformer block with a boolean attention mask (True = may attend)."""

    def __init__(self, *, dim: int, num_heads: int, ffn_multiplier: int, dropout: float,
                 attention_dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_multiplier * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_multiplier * dim, dim))
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = attention_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.num_heads, dim // self.num_heads
                                                       ).permute(2, 0, 3, 1, 4)  # 3 x [batch, heads, length, head_dim]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                  dropout_p=self.attention_dropout if self.training else 0.0)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class CausalSidRecommender(nn.Module):
    """History of SIDs -> next item's SID distribution at every position."""

    def __init__(self, *, codebook_sizes: tuple[int, ...], max_length: int = 20, dim: int = 128,
                 num_layers: int = 2, num_heads: int = 2, ffn_multiplier: int = 4, dropout: float = 0.2,
                 attention_dropout: float = 0.0, decoder_hidden: int = 256) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)
        self.max_length = max_length
        self.code_embeddings = nn.ModuleList(nn.Embedding(size, dim) for size in self.codebook_sizes)
        self.position_embedding = nn.Embedding(max_length, dim)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(CausalBlock(dim=dim, num_heads=num_heads, ffn_multiplier=ffn_multiplier,
                                                dropout=dropout, attention_dropout=attention_dropout)
                                    for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim)
        # decoder: embeddings of already-generated codes (all but the last level) and one head per level
        self.prefix_embeddings = nn.ModuleList(nn.Embedding(size, dim) for size in self.codebook_sizes[:-1])
        self.heads = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, decoder_hidden), nn.GELU(), nn.Dropout(dropout),
                          nn.Linear(decoder_hidden, size))
            for size in self.codebook_sizes)

    def embed_codes(self, history_codes: torch.Tensor) -> torch.Tensor:
        """Item vectors ``[..., dim]``: the sum of the per-position code embeddings (``-1`` rows -> 0s)."""
        safe = history_codes.clamp_min(0)
        x = sum(embedding(safe[..., level]) for level, embedding in enumerate(self.code_embeddings))
        return x * (history_codes[..., :1] >= 0)

    def embed_soft(self, indices: torch.Tensor, dedup: torch.Tensor) -> torch.Tensor:
        """Item vectors ``[n, dim]`` from soft indices ``[n, L, K]`` of the semantic positions
        (``ind @ E`` per position, stage 2) and hard de-dup digits ``[n]`` (the last position)."""
        sizes = self.codebook_sizes[:-1]
        if indices.ndim != 3 or indices.shape[1] != len(sizes) or indices.shape[2] < max(sizes):
            raise ValueError(f"indices must be [n, {len(sizes)}, >={max(sizes)}], got {tuple(indices.shape)}")
        x = sum(indices[:, level, :size] @ self.code_embeddings[level].weight for level, size in enumerate(sizes))
        return x + self.code_embeddings[-1](dedup)

    def encode(self, history_codes: torch.Tensor) -> torch.Tensor:
        """States ``[batch, length, dim]`` after each item of right-aligned ``history_codes``
        ``[batch, length, code_length]`` (rows of ``-1`` = padding)."""
        return self.encode_vectors(self.embed_codes(history_codes), history_codes[..., 0] >= 0)

    def encode_vectors(self, item_vectors: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """States ``[batch, length, dim]`` from item vectors ``[batch, length, dim]`` (``valid`` False = pad)."""
        batch, length, _ = item_vectors.shape
        if length > self.max_length:
            raise ValueError(f"history length {length} exceeds max_length {self.max_length}")
        x = item_vectors + self.position_embedding.weight[self.max_length - length:][None]  # right-aligned
        x = self.input_dropout(x * valid[..., None])
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        mask = causal[None] & valid[:, None, :]                                  # [batch, query, key]
        mask = mask | torch.eye(length, dtype=torch.bool, device=x.device)[None]  # pads attend to themselves
        mask = mask[:, None]                                                      # [batch, 1, query, key]
        for block in self.blocks:
            x = block(x, mask)
        return self.final_norm(x)

    def next_code_logits(self, states: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., K_l]`` of code ``l = prefix.shape[-1]`` given states ``[..., dim]`` and the
        already-chosen codes ``prefix`` ``[..., l]``."""
        level = prefix.shape[-1]
        decoder_state = states
        for position in range(level):
            decoder_state = decoder_state + self.prefix_embeddings[position](prefix[..., position])
        return self.heads[level](decoder_state)

    def forward(self, history_codes: torch.Tensor, target_codes: torch.Tensor) -> SequenceOutput:
        """Teacher-forced loss over every position with a target (``target_codes`` rows ``-1`` = none)."""
        states = self.encode(history_codes)                                       # [batch, length, dim]
        has_target = target_codes[..., 0] >= 0                                    # [batch, length]
        states, targets = states[has_target], target_codes[has_target]            # [targets, dim], [targets, L]
        logits, loss = [], states.new_zeros(())
        for level in range(len(self.codebook_sizes)):
            level_logits = self.next_code_logits(states, targets[:, :level])
            logits.append(level_logits)
            loss = loss + F.cross_entropy(level_logits, targets[:, level])
        return SequenceOutput(logits=logits, loss=loss)

    def soft_loss(self, states: torch.Tensor, indices: torch.Tensor, dedup: torch.Tensor, *,
                  soft_targets: bool = False) -> torch.Tensor:
        """Stage-2 counterpart of :meth:`forward`'s loss for target states ``[n, dim]``: the teacher-forced
        prefix enters as ``ind @ E'`` (soft indices ``[n, L, K]`` of the semantic positions, hard de-dup
        digits ``[n]``), so its value equals the hard loss while gradients reach the tokenizer. Targets are
        the hard codes, unless ``soft_targets``: then the cross-entropy ``-sum(ind * log p)`` also passes
        gradient to the target item's indices."""
        decoder_state, loss = states, states.new_zeros(())
        for level, size in enumerate(self.codebook_sizes[:-1]):
            logits, target = self.heads[level](decoder_state), indices[:, level, :size]
            if soft_targets:
                loss = loss - (target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
            else:
                loss = loss + F.cross_entropy(logits, target.detach().argmax(dim=-1))
            decoder_state = decoder_state + target @ self.prefix_embeddings[level].weight
        return loss + F.cross_entropy(self.heads[-1](decoder_state), dedup)

    def user_context(self, history_codes: torch.Tensor) -> torch.Tensor:
        """Beam-search context: the state after the last (most recent) history item ``[batch, dim]``."""
        return self.encode(history_codes)[:, -1]
