"""MMQ stage 2 on the generative task: the tokenizer trains jointly with the causal generator.

The paper fine-tunes one tokenizer per downstream task (docs/method.md §4.6). Here the generator reads
history items as ``ind @ E`` (soft indices of the live tokenizer, hard in the forward pass), its
teacher-forced decoder prefix likewise, and the loss is the shared stage-2 objective
(:mod:`mmq.finetune.objective`): ``L_gen + 0.5 L_recon + 0.5 L_aux`` on the batch's unique items.

Choices where the paper is silent:
- Targets are the current hard codes (labels carry no gradient) unless ``soft_targets``, where the
  cross-entropy ``-sum(ind * log p)`` also moves the target item's codes toward what the model predicts.
- The de-dup digit is not learned: it is recomputed from all items' current codes at the start of
  every epoch and at every validation (so ``dedup_capacity`` bounds the last position's size).
- The generator starts from the run named by ``init_from`` (the same seed's generator trained on the
  stage-1 SIDs), not from scratch: trained jointly from a random generator, 93% of MovieLens items
  changed SID within 2 epochs and validation NDCG@10 was .0046 against .0134 on frozen SIDs (seed 0).
  Rows of the code embeddings / heads that stage 1 never used (e.g. de-dup slots) keep their init.
- Validation re-derives every item's SID, rebuilds the trie and beam-searches with them; the epoch
  with the best validation NDCG@10 keeps both the generator and the tokenizer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from mmq.finetune.objective import BehaviorFinetuneConfig, Stage2Loss, stage2_loss, tokenizer_parameter_group
from mmq.generative.sid_trie import SemanticIdTrie
from mmq.semantic_ids.dedup import dedup_digits, stable_dedup_digits


@dataclasses.dataclass(frozen=True)
class GenerativeFinetuneConfig(BehaviorFinetuneConfig):
    """Stage-2 settings on the generative task: the shared ones plus the generator's own [choice]."""

    soft_targets: bool = False           # gradient through the target item's indices too
    dedup_capacity: int | None = None    # size of the de-dup position; None: 2 x stage 1's + 4
    # the stage-2 study's options (docs/method.md §4.6; all off = the stage 2 of the committed runs)
    stability_weight: float = 0.0        # (b) x CE of each soft index vs the item's stage-1 code
    stage1_terms_weight: float = 0.0     # (b) x (codebook + commitment + gate balance), stage 1's anchors
    stable_dedup: bool = False           # (c) de-dup digits change only for items whose codes changed
    freeze_codebooks: bool = False       # (d) codebooks fixed; experts and gates train
    contrastive_weight: float = 0.0      # (e) x in-batch InfoNCE of next item vs previous item on code vectors
    contrastive_temperature: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dedup_capacity is not None and self.dedup_capacity < 1:
            raise ValueError(f"dedup_capacity must be >= 1, got {self.dedup_capacity}")
        if min(self.stability_weight, self.stage1_terms_weight, self.contrastive_weight) < 0 \
                or self.contrastive_temperature <= 0:
            raise ValueError("stability_weight, stage1_terms_weight and contrastive_weight must be >= 0 and "
                             f"contrastive_temperature > 0, got {self}")

    @property
    def study_options(self) -> bool:
        """Whether any stage-2 study option is on (they need a source with ``configure_stage2``)."""
        return bool(self.stability_weight or self.stage1_terms_weight or self.freeze_codebooks
                    or self.contrastive_weight)


def default_dedup_capacity(stage1_slots: int) -> int:
    """The de-dup position's size in stage 2 when the config sets none: twice stage 1's slots + 4 [choice]."""
    return 2 * int(stage1_slots) + 4


class JointTokenizer:
    """A live SID source (``mmq.finetune.sources``) trained inside the generator's loop."""

    def __init__(self, source, config: GenerativeFinetuneConfig, dedup_capacity: int,
                 anchor_codes: np.ndarray | None = None) -> None:
        if not source.trainable:
            raise ValueError("generative fine-tuning needs a trainable source (MMQ or MA-RQ-VAE)")
        self.source = source
        self.config = config
        self.dedup_capacity = int(dedup_capacity)
        self.dedup = torch.zeros(source.num_items, dtype=torch.long)
        if config.study_options:
            if not hasattr(source, "configure_stage2"):
                raise ValueError(f"the stage-2 study options need a source with configure_stage2 (MMQ); "
                                 f"{type(source).__name__} has none")
            if config.stability_weight and anchor_codes is None:
                raise ValueError("stability_weight needs the stage-1 codes (anchor_codes)")
            source.configure_stage2(anchor_codes=anchor_codes if config.stability_weight else None,
                                    stage1_terms=config.stage1_terms_weight > 0,
                                    freeze_codebooks=config.freeze_codebooks)
        self.previous: np.ndarray | None = None   # the last table (stable de-dup digits start from it)
        if config.stable_dedup:  # kept in the tokenizer's checkpoint so a resumed run continues the same digits
            source.register_buffer("stable_table", torch.full((source.num_items, len(source.codebook_sizes) + 1), -1,
                                                               dtype=torch.long))
        self.refresh()

    @property
    def codebook_sizes(self) -> tuple[int, ...]:
        """Sizes of every generated position: the tokenizer's codebooks + the de-dup digit."""
        return (*self.source.codebook_sizes, self.dedup_capacity)

    def parameter_group(self, learning_rate: float) -> dict[str, Any]:
        """The tokenizer's optimiser group (no weight decay)."""
        return tokenizer_parameter_group(self.source, learning_rate, self.config, weight_decay=0.0)

    def table(self) -> np.ndarray:
        """Current SID table ``[items, L + 1]`` (codes + de-dup digit)."""
        codes = self.source.codes()
        previous = self.source.stable_table.cpu().numpy() if self.config.stable_dedup else None
        if previous is not None and (previous >= 0).all():
            digits = stable_dedup_digits(codes, previous[:, :-1], previous[:, -1])
        else:
            digits = dedup_digits(codes)
        if digits.max() >= self.dedup_capacity:
            raise RuntimeError(f"fine-tuned SIDs need a de-dup digit up to {int(digits.max())} but the generator "
                               f"has {self.dedup_capacity} slots; raise finetuning: dedup_capacity in the YAML")
        return np.concatenate([codes, digits[:, None]], axis=1)

    def refresh(self) -> np.ndarray:
        """Recompute the de-dup digits from the current codes; returns the current table."""
        table = self.table()
        self.dedup = torch.from_numpy(table[:, -1].copy()).to(self.dedup.device)
        if self.config.stable_dedup:
            self.source.stable_table.copy_(torch.from_numpy(table))
        return table

    def trie(self, table: np.ndarray) -> SemanticIdTrie:
        return SemanticIdTrie(table, self.codebook_sizes)

    def to(self, device: torch.device) -> "JointTokenizer":
        self.source.to(device)
        self.dedup = self.dedup.to(device)
        return self

    def loss(self, model, history_items: torch.Tensor, target_items: torch.Tensor) -> Stage2Loss:
        """Joint loss of a batch of right-aligned item windows (``-1`` = padding / no target)."""
        valid, has_target = history_items >= 0, target_items >= 0
        items = torch.cat([history_items[valid], target_items[has_target]])
        unique, inverse = torch.unique(items, return_inverse=True)
        output, dedup = self.source(unique, with_losses=True), self.dedup[unique]
        vectors = model.embed_soft(output.indices, dedup)                             # [unique, dim]
        history_inverse, target_inverse = inverse.split([int(valid.sum()), int(has_target.sum())])
        item_vectors = vectors.new_zeros(*history_items.shape, vectors.shape[-1])
        item_vectors[valid] = vectors[history_inverse]
        states = model.encode_vectors(item_vectors, valid)[has_target]
        generation = model.soft_loss(states, output.indices[target_inverse], dedup[target_inverse],
                                     soft_targets=self.config.soft_targets)
        loss = stage2_loss("generation", generation, output.losses, self.config)
        return self._study_terms(loss, output, inverse, valid, has_target, history_items, target_items)

    def _study_terms(self, loss: Stage2Loss, output, inverse: torch.Tensor, valid: torch.Tensor,
                     has_target: torch.Tensor, history_items: torch.Tensor, target_items: torch.Tensor) -> Stage2Loss:
        """Add the stage-2 study's weighted terms (none by default) to ``loss``."""
        config, total, terms = self.config, loss.total, dict(loss.terms)
        if config.stability_weight:
            total = total + config.stability_weight * terms["stability"]
        if config.stage1_terms_weight:
            total = total + config.stage1_terms_weight * (terms["codebook"] + terms["commitment"]
                                                          + terms["gate_balance"])
        if config.contrastive_weight:
            vectors = self.source.item_vectors(output.indices)                      # [unique, D]
            position = torch.full(history_items.shape, -1, dtype=torch.long, device=history_items.device)
            position[valid] = inverse[:int(valid.sum())]
            target_position = torch.full_like(position, -1)
            target_position[has_target] = inverse[int(valid.sum()):]
            pairs = (position >= 0) & (target_position >= 0)                       # (item, next item) pairs
            anchors, positives = position[pairs], target_position[pairs]
            candidates, labels = torch.unique(positives, return_inverse=True)
            logits = vectors[anchors] @ vectors[candidates].T / config.contrastive_temperature
            terms["contrastive"] = torch.nn.functional.cross_entropy(logits, labels)
            total = total + config.contrastive_weight * terms["contrastive"]
        return Stage2Loss(total, terms)


def load_resized(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` into ``model`` where a tensor may be shorter along dim 0 (a smaller codebook /
    de-dup position in the run it comes from): its rows fill the leading rows. Returns the resized names."""
    own = model.state_dict()
    if set(own) != set(state):
        raise ValueError(f"init_from weights do not fit this model: missing {sorted(set(own) - set(state))}, "
                         f"unexpected {sorted(set(state) - set(own))}")
    resized = []
    with torch.no_grad():
        for name, tensor in state.items():
            target = own[name]
            if tensor.shape == target.shape:
                target.copy_(tensor)
            elif tensor.ndim == target.ndim and tensor.shape[1:] == target.shape[1:] and tensor.shape[0] <= target.shape[0]:
                target[:tensor.shape[0]].copy_(tensor)
                resized.append(name)
            else:
                raise ValueError(f"init_from weight {name} has shape {tuple(tensor.shape)}, model needs "
                                 f"{tuple(target.shape)}")
    return resized
