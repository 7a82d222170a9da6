"""Batched beam search over semantic IDs, constrained by the SID trie (or not, for comparison).

The model is any object with ``next_code_logits(context, prefix) -> [N, K_l]``, where ``context``
is a tensor (or tuple of tensors) with one row per user and ``prefix`` ``[N, l]`` the codes chosen
so far. Constrained search masks every code that leaves the trie before taking the top beams, so
every returned ID is an item's SID; beams run for all users at once as ``[users, beams, K]`` tensors.
With ``excluded`` (bool ``[users, items]``, e.g. each user's full history) constrained search also masks
every prefix all of whose items are excluded, so each surviving beam still leads to an allowed item and a
beam of ``k`` returns ``k`` allowed items whenever the catalogue has that many.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from mmq.generative.sid_trie import SemanticIdTrie


class BeamSearchOutput(NamedTuple):
    """Items ``[users, beams]`` (``-1`` = no valid item) and their SID log-probabilities."""

    items: torch.Tensor
    scores: torch.Tensor
    codes: torch.Tensor          # [users, beams, code_length] generated SIDs


def repeat_context(context, repeats: int):
    """Repeat each user's context row ``repeats`` times along dim 0 (tensor or tuple of tensors)."""
    if isinstance(context, tuple):
        return tuple(repeat_context(part, repeats) for part in context)
    return context.repeat_interleave(repeats, dim=0)


def context_size(context) -> int:
    """Number of users in ``context``."""
    return context_size(context[0]) if isinstance(context, tuple) else int(context.shape[0])


@torch.no_grad()
def beam_search(model, context, trie: SemanticIdTrie, *, beam_size: int = 20, constrained: bool = True,
                excluded: torch.Tensor | None = None) -> BeamSearchOutput:
    """Top-``beam_size`` SIDs per user by summed log-probability, decoded level by level; items marked in
    ``excluded`` (bool ``[users, items]``) are never returned (constrained search only)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    num_users = context_size(context)
    device = trie.next_prefix[0].device
    if excluded is not None and not constrained:
        raise ValueError("excluded items need the constrained (trie) search")
    if excluded is not None and excluded.shape[0] != num_users:
        raise ValueError(f"excluded has {excluded.shape[0]} rows for {num_users} users")
    exhausted = trie.exhausted(excluded.to(device)) if excluded is not None else None
    scores = torch.zeros(num_users, 1, device=device)                        # [users, beams]
    prefix_rows = torch.zeros(num_users, 1, dtype=torch.long, device=device)  # trie row of each beam
    codes = torch.zeros(num_users, 1, 0, dtype=torch.long, device=device)     # [users, beams, level]
    for level, size in enumerate(trie.codebook_sizes):
        beams = codes.shape[1]
        logits = model.next_code_logits(repeat_context(context, beams), codes.reshape(num_users * beams, level))
        log_probs = F.log_softmax(logits.float(), dim=-1).view(num_users, beams, size)
        if constrained:
            next_rows = trie.next_prefix[level][prefix_rows]                  # [users, beams, K]
            blocked = next_rows < 0
            if exhausted is not None:
                flat_rows = next_rows.clamp_min(0).view(num_users, -1)
                blocked = blocked | exhausted[level].gather(1, flat_rows).view_as(next_rows)
            log_probs = log_probs.masked_fill(blocked, float("-inf"))
        total = (scores[..., None] + log_probs).view(num_users, beams * size)
        top_scores, top_index = total.topk(min(beam_size, beams * size), dim=1)  # [users, new beams]
        parent, code = top_index // size, top_index % size
        codes = torch.cat([codes.gather(1, parent[..., None].expand(-1, -1, level)), code[..., None]], dim=2)
        if constrained:
            prefix_rows = next_rows.view(num_users, beams * size).gather(1, top_index).clamp_min(0)
        scores = top_scores
    if constrained:
        items = torch.where(torch.isfinite(scores), prefix_rows, torch.full_like(prefix_rows, -1))
    else:  # unconstrained: look the generated IDs up afterwards; invalid ones become -1
        flat = codes.reshape(-1, trie.code_length).cpu().numpy()
        items = torch.from_numpy(trie.lookup(flat)).view(num_users, -1).to(device)
    return BeamSearchOutput(items=items, scores=scores, codes=codes)


@torch.no_grad()
def score_all_items(model, context, trie: SemanticIdTrie) -> torch.Tensor:
    """Reference scorer: log-probability of every item's SID for every user ``[users, items]``.

    Teacher-forces each item's full SID (cost users x items x levels); beam search with a beam as
    wide as the catalogue must rank items exactly like this.
    """
    num_users = context_size(context)
    semantic_ids = torch.as_tensor(trie.semantic_ids, device=trie.next_prefix[0].device)
    num_items = semantic_ids.shape[0]
    flat_context = repeat_context(context, num_items)
    total = torch.zeros(num_users * num_items, device=semantic_ids.device)
    all_codes = semantic_ids.repeat(num_users, 1)                              # [users * items, L]
    for level in range(trie.code_length):
        log_probs = F.log_softmax(model.next_code_logits(flat_context, all_codes[:, :level]).float(), dim=-1)
        total = total + log_probs.gather(1, all_codes[:, level:level + 1]).squeeze(1)
    return total.view(num_users, num_items)
