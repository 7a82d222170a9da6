"""Where a downstream model gets each item's SID indices: frozen stage-1 codes or a live tokenizer.

Every source maps item indices ``[n]`` to SID indices ``[n, L, K]`` (one-hot in the forward pass)
and, when it is trainable, to the tokenizer's stage-2 regularisers (unweighted L_recon, L_aux).

- :class:`NoCodes`: no SIDs (item-ID-only models).
- :class:`FrozenCodes`: a stage-1 SID table (no gradient), the "w/o behavior fine-tuning" rows.
- :class:`MMQCodes`: MMQ stage 1 weights, indices from per-expert cosine logits through the soft
  straight-through estimator; L_recon and L_aux from the MMQ network itself.
- :class:`LiveTokenizerSource`: the base of trainable sources; a tokenizer that supports stage 2
  returns one from ``stage2_source(embeddings, tau)`` (MMQ: :class:`MMQCodes`; the MA-RQ-VAE
  baseline: ``baselines.sid_tokenizers.stage2.RQVAECodes``).

Content encoders (MiniLM, the image tower) stay frozen: sources hold their cached outputs.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from mmq.finetune.soft_index import one_hot_codes, soft_straight_through


class SourceOutput(NamedTuple):
    """Indices ``[n, L, K]`` and the named stage-2 regularisers (empty for frozen codes)."""

    indices: Tensor
    losses: dict[str, Tensor]


class NoCodes(nn.Module):
    """No SIDs at all (the item-ID-only model): a source that yields nothing and never trains."""

    trainable = False

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = int(num_items)

    def forward(self, items: Tensor, *, with_losses: bool = False) -> SourceOutput:
        return SourceOutput(None, {})


class FrozenCodes(nn.Module):
    """A fixed SID table ``[num_items, L]``; indices are one-hot codes, nothing trains."""

    trainable = False

    def __init__(self, codes: np.ndarray, codebook_sizes: tuple[int, ...]) -> None:
        super().__init__()
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != len(codebook_sizes):
            raise ValueError(f"codes must be [items, {len(codebook_sizes)}], got {codes.shape}")
        if codes.min() < 0 or (codes >= np.asarray(codebook_sizes)[None, :]).any():
            raise ValueError(f"codes outside the codebooks {codebook_sizes}")
        self.codebook_sizes = tuple(int(size) for size in codebook_sizes)
        self.register_buffer("table", torch.from_numpy(codes.astype(np.int64)))

    def forward(self, items: Tensor, *, with_losses: bool = False) -> SourceOutput:
        return SourceOutput(one_hot_codes(self.table[items], max(self.codebook_sizes)), {})

    @property
    def num_items(self) -> int:
        return self.table.shape[0]

    def codes(self) -> np.ndarray:
        """The SID table (unchanged)."""
        return self.table.numpy().copy()


class LiveTokenizerSource(nn.Module):
    """Base of trainable sources: cached item inputs as buffers, ``tau``, hard codes (subclass: ``forward``)."""

    trainable = True

    def __init__(self, inputs: Mapping[str, np.ndarray], tau: float) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = float(tau)
        self.input_names = tuple(inputs)
        for name, array in inputs.items():
            self.register_buffer(f"input_{name}", torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)),
                                 persistent=False)  # cached content features: not part of checkpoints

    def batch(self, items: Tensor) -> dict[str, Tensor]:
        return {name: getattr(self, f"input_{name}")[items] for name in self.input_names}

    @property
    def num_items(self) -> int:
        return getattr(self, f"input_{self.input_names[0]}").shape[0]

    def input_device(self) -> torch.device:
        return getattr(self, f"input_{self.input_names[0]}").device

    def set_anchor(self, anchor_codes: np.ndarray) -> None:
        """Keep each item's stage-1 codes ``[items, L]`` (the ``anchor`` buffer the code-stability term reads)."""
        anchor = torch.as_tensor(np.asarray(anchor_codes, dtype=np.int64))
        if tuple(anchor.shape) != (self.num_items, len(self.codebook_sizes)):
            raise ValueError(f"anchor codes must be [{self.num_items}, {len(self.codebook_sizes)}], got "
                             f"{tuple(anchor.shape)}")
        self.anchor = anchor.to(self.input_device())

    @torch.no_grad()
    def codes(self, chunk: int = 4096) -> np.ndarray:
        """Current hard codes of every item ``[num_items, L]`` (re-derived SIDs)."""
        was_training = self.training
        self.eval()
        rows = [self(torch.arange(start, min(start + chunk, self.num_items))).indices.argmax(dim=-1)
                for start in range(0, self.num_items, chunk)]
        self.train(was_training)
        return torch.cat(rows).cpu().numpy().astype(np.int64)


class MMQCodes(LiveTokenizerSource):
    """MMQ stage-1 network fine-tuned through soft indices (cosine logits per expert)."""

    def __init__(self, model: nn.Module, inputs: Mapping[str, np.ndarray], tau: float) -> None:
        super().__init__(inputs, tau)
        self.model = model
        self.codebook_sizes = (model.config.codebook_size,) * model.config.num_experts
        self.register_buffer("anchor", None, persistent=False)   # stage-1 codes [items, E] (code-stability term)
        self.stage1_terms = False            # also return stage 1's codebook / commitment / gate-balance terms

    def configure_stage2(self, *, anchor_codes: np.ndarray | None = None, stage1_terms: bool = False,
                         freeze_codebooks: bool = False) -> None:
        """Opt-in regularisers of the stage-2 study (docs/method.md §4.6): ``stability`` = cross-entropy of each
        expert's soft index against the item's ``anchor_codes`` (its stage-1 code), the stage-1 ``codebook`` /
        ``commitment`` / ``gate_balance`` terms, and codebooks that stay fixed (experts and gates still train)."""
        if anchor_codes is not None:
            self.set_anchor(anchor_codes)
        self.stage1_terms = bool(stage1_terms)
        if freeze_codebooks:
            self.model.quantizer.codebooks.requires_grad_(False)

    def item_vectors(self, indices: Tensor) -> Tensor:
        """Each item's selected code vectors ``indices @ codebooks``, concatenated over experts and L2-normalised
        ``[n, E * d]``: an item embedding that only the tokenizer moves (the study's contrastive objective)."""
        vectors = torch.einsum("nek,ekd->ned", indices, self.model.quantizer.code_vectors())
        return torch.nn.functional.normalize(vectors.flatten(1), dim=-1)

    def forward(self, items: Tensor, *, with_losses: bool = False) -> SourceOutput:
        batch = self.batch(items)
        if not with_losses:
            return SourceOutput(soft_straight_through(self.model.expert_logits(batch), self.tau), {})
        output = self.model(batch, with_logits=True)
        losses = {"reconstruction": output.losses["reconstruction"], "auxiliary": output.losses["auxiliary"]}
        if self.stage1_terms:
            losses.update({name: output.losses[name] for name in ("codebook", "commitment", "gate_balance")})
        if self.anchor is not None:
            logits = output.logits / self.tau                                           # [n, E, K]
            losses["stability"] = torch.nn.functional.cross_entropy(logits.flatten(0, 1), self.anchor[items].flatten())
        return SourceOutput(soft_straight_through(output.logits, self.tau), losses)  # [n, E, K]
