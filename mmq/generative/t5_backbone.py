"""Second backbone: a TIGER-style T5 encoder-decoder trained from scratch (transformers' T5).

The encoder reads the flattened SIDs of the history (one token per code, per-level vocabulary
ranges), the decoder generates the next item's codes. One training sample per target (sliding
windows), as in TIGER: faithful but ~10x slower per epoch than the causal backbone on CPU, so it
is the ``gpu`` profile's backbone and a fidelity check. [choice] TIGER's hashed user token is left
out (our histories carry no user id).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmq.generative.causal import SequenceOutput

PAD_TOKEN = 0  # also T5's decoder start token


class T5SidRecommender(nn.Module):
    """History SIDs -> next item's SID with ``transformers.T5ForConditionalGeneration`` (random init)."""

    def __init__(self, *, codebook_sizes: tuple[int, ...], max_length: int = 20, dim: int = 128,
                 num_encoder_layers: int = 4, num_decoder_layers: int = 4, num_heads: int = 6,
                 head_dim: int = 64, ffn_dim: int = 1024, dropout: float = 0.1) -> None:
        super().__init__()
        from transformers import T5Config, T5ForConditionalGeneration

        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)
        self.max_length = max_length
        offsets = [1]                                             # token 0 = padding / decoder start
        for size in self.codebook_sizes:
            offsets.append(offsets[-1] + size)
        self.offsets = offsets[:-1]
        config = T5Config(vocab_size=offsets[-1], d_model=dim, d_kv=head_dim, d_ff=ffn_dim,
                          num_layers=num_encoder_layers, num_decoder_layers=num_decoder_layers,
                          num_heads=num_heads, dropout_rate=dropout, pad_token_id=PAD_TOKEN,
                          decoder_start_token_id=PAD_TOKEN, eos_token_id=PAD_TOKEN,
                          feed_forward_proj="relu", tie_word_embeddings=False)
        self.t5 = T5ForConditionalGeneration(config)

    def _tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-level token ids of ``codes`` ``[..., levels]`` (``-1`` -> padding)."""
        offsets = torch.as_tensor(self.offsets[:codes.shape[-1]], dtype=torch.long, device=codes.device)
        return torch.where(codes >= 0, codes + offsets, torch.full_like(codes, PAD_TOKEN))

    def user_context(self, history_codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states ``[batch, H * levels, dim]`` and attention mask for right-aligned histories."""
        tokens = self._tokens(history_codes).flatten(1)                           # [batch, H * levels]
        mask = (tokens != PAD_TOKEN).long()
        states = self.t5.get_encoder()(input_ids=tokens, attention_mask=mask).last_hidden_state
        return states, mask

    def next_code_logits(self, context: tuple[torch.Tensor, torch.Tensor], prefix: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, K_l]`` of the next code given encoder ``context`` and ``prefix`` ``[batch, l]``."""
        states, mask = context
        level = prefix.shape[-1]
        start = torch.full((prefix.shape[0], 1), PAD_TOKEN, dtype=torch.long, device=prefix.device)
        decoder_input = torch.cat([start, self._tokens(prefix)], dim=1)           # [batch, l + 1]
        logits = self.t5(encoder_outputs=(states,), attention_mask=mask, decoder_input_ids=decoder_input).logits
        first = self.offsets[level]
        return logits[:, -1, first:first + self.codebook_sizes[level]]

    def forward(self, history_codes: torch.Tensor, target_codes: torch.Tensor) -> SequenceOutput:
        """Teacher-forced loss: ``target_codes`` ``[batch, levels]`` is each sample's next item."""
        states, mask = self.user_context(history_codes)
        start = torch.full((target_codes.shape[0], 1), PAD_TOKEN, dtype=torch.long, device=target_codes.device)
        decoder_input = torch.cat([start, self._tokens(target_codes[:, :-1])], dim=1)
        all_logits = self.t5(encoder_outputs=(states,), attention_mask=mask, decoder_input_ids=decoder_input).logits
        logits, loss = [], all_logits.new_zeros(())
        for level, size in enumerate(self.codebook_sizes):
            first = self.offsets[level]
            level_logits = all_logits[:, level, first:first + size]
            logits.append(level_logits)
            loss = loss + F.cross_entropy(level_logits, target_codes[:, level])
        return SequenceOutput(logits=logits, loss=loss)
