"""MMQ stage 2, behavior-aware fine-tuning: the one objective every downstream task trains with.

``L_ft = L_task + reconstruction_weight * L_recon + auxiliary_weight * L_aux`` (docs/method.md §4.3):
``L_task`` is the downstream loss (ranking BCE, generative cross-entropy), ``L_recon`` / ``L_aux`` the
tokenizer's own stage-1 terms on the batch's unique items, returned by a trainable SID source
(:mod:`mmq.finetune.sources`). The tokenizer trains at ``tokenizer_lr_ratio`` x the task model's lr.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

from torch import Tensor, nn


@dataclasses.dataclass(frozen=True)
class BehaviorFinetuneConfig:
    """Stage-2 settings shared by every task ([paper] where stated, else our [choice])."""

    tau: float = 0.1                     # soft-index temperature [choice]
    tokenizer_lr_ratio: float = 0.1      # tokenizer lr = ratio x the task model's lr [choice]
    reconstruction_weight: float = 0.5   # weight of L_recon [paper]
    auxiliary_weight: float = 0.5        # weight of L_aux [paper]

    def __post_init__(self) -> None:
        if self.tau <= 0 or self.tokenizer_lr_ratio < 0:
            raise ValueError(f"tau must be > 0 and tokenizer_lr_ratio >= 0, got {self.tau}, {self.tokenizer_lr_ratio}")


class Stage2Loss(NamedTuple):
    """The weighted total to back-propagate and every named term (unweighted) to log."""

    total: Tensor
    terms: dict[str, Tensor]


def stage2_loss(task: str, task_loss: Tensor, source_losses: Mapping[str, Tensor],
                config: BehaviorFinetuneConfig) -> Stage2Loss:
    """``L_task`` plus the weighted tokenizer terms when the source is trainable (else ``L_task`` alone)."""
    terms = {task: task_loss, **source_losses}
    if not source_losses:  # frozen SIDs or no SIDs: nothing to regularise
        return Stage2Loss(task_loss, terms)
    total = (task_loss + config.reconstruction_weight * source_losses["reconstruction"]
             + config.auxiliary_weight * source_losses["auxiliary"])
    return Stage2Loss(total, terms)


def tokenizer_parameter_group(source: nn.Module, learning_rate: float, config: BehaviorFinetuneConfig,
                              **options: Any) -> dict[str, Any]:
    """The optimiser group of a trainable source's parameters at ``tokenizer_lr_ratio`` x ``learning_rate``."""
    return {"params": [parameter for parameter in source.parameters() if parameter.requires_grad],
            "lr": learning_rate * config.tokenizer_lr_ratio, **options}
