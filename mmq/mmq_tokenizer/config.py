"""Stage-1 MMQ tokenizer hyper-parameters (docs/method.md §2): one frozen dataclass, ablations as fields.

Defaults are the paper's main setting where it states one ([paper]) and our documented choice
where it is silent ([choice]). Every ablation of the paper is a field, never a code fork:

- ``lookup: l2``               "w/o cosine quantizer"
- ``auxiliary_weight: 0``      "w/o L_aux"
- ``orthogonality_weight: 0``  "w/o L_ortho"
- ``num_shared_experts: 0``    specific-only (4-10 experts)
- more experts per group       SID length 6 / 9 / 12 / 15 / 18

``expert_type`` names the expert architecture in :data:`~mmq.mmq_tokenizer.experts.EXPERT_TYPES`
(``"mlp"``, the paper's setting); ``modalities`` may name any number of inputs, each with its own
count of specific experts.
"""

from __future__ import annotations

import dataclasses

from mmq.mmq_tokenizer.experts import expert_type_class

ORTHOGONALITY_SCOPES = ("within_group", "cross_group")  # MMQConfig.orthogonality_scope values (docs §2.6.3)


@dataclasses.dataclass(frozen=True)
class MMQConfig:
    """Architecture, objective and optimisation of the stage-1 shared-specific tokenizer."""

    # --- experts and codebooks -------------------------------------------------------------
    modalities: tuple[str, ...] = ("text", "image")  # input dict keys, in SID order [paper: text, image]
    num_shared_experts: int = 2                       # N_s, experts on the concatenation [paper]
    num_specific_experts: tuple[int, ...] = (2, 2)    # N_t, N_v, ... one count per modality [paper]
    codebook_size: int = 100                          # K per expert [paper: 100 on Beauty]
    code_dim: int = 256                               # d, expert output width [choice; paper treats W_i as d x d]
    expert_type: str = "mlp"                          # key of experts.EXPERT_TYPES [choice: MLP ending in d x d]
    expert_hidden_dims: tuple[int, ...] = ()          # extra hidden layers before the final d x d linear [choice]
    gate_hidden_dim: int = 64                         # MLP_t / MLP_v hidden width of the softmax gates [choice]
    decoder_hidden_dims: tuple[int, ...] = (512,)     # Dec and Dec_m hidden widths [choice]
    normalise_inputs: bool = True                     # L2-normalise each modality first [choice, spec §2]
    lookup: str = "cosine"                            # "cosine" [paper] | "l2" (ablation)
    # --- objective (MMQ eq. L_stage1 = 12 L_recon + 10 L_aux + 0.005 L_ortho) -------------
    reconstruction_weight: float = 12.0               # [paper]
    auxiliary_weight: float = 10.0                    # [paper]; 0 = "w/o L_aux"
    orthogonality_weight: float = 0.005               # [paper]; 0 = "w/o L_ortho"
    orthogonality_scope: str = "within_group"         # "within_group" [paper] | "cross_group": one Gram over all experts [ours]
    codebook_update: str = "loss"                     # "loss" (VQ codebook term) | "ema" | "none" [choice]
    codebook_weight: float = 1.0                      # ||sg(z_i) - q_i||^2 weight [choice]
    commitment_weight: float = 0.25                   # beta * ||z_i - sg(q_i)||^2 [choice, VQ-VAE default]
    gate_balance_weight: float = 1.0                  # CV^2 gate-importance term; 0 = paper objective [choice]
    ema_decay: float = 0.99                           # EMA codebook decay (codebook_update: ema) [choice]
    kmeans_init: bool = True                          # faiss k-means init of each codebook [choice]
    kmeans_iterations: int = 20                       # [choice]
    dead_code_restarts: bool = True                   # re-seed unused codes from batch latents [choice]
    restart_every: int = 50                           # steps between dead-code checks [choice]
    restart_until: float = 0.95                       # no restarts in the last 5% of training [choice]
    # --- optimisation [choice: the paper gives none] -----------------------------------------
    num_steps: int = 800                              # ~1.5-4 min on 1 shared CPU thread (<= 5 min target)
    batch_size: int = 256
    learning_rate: float = 1e-3                       # Adam, cosine decay to min_learning_rate_ratio
    min_learning_rate_ratio: float = 0.1
    weight_decay: float = 0.0
    num_threads: int = 1                              # torch threads (2 shared cores)
    progress: bool = True                             # tqdm bar during fit

    def __post_init__(self) -> None:
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be distinct and non-empty, got {self.modalities}")
        if len(self.num_specific_experts) != len(self.modalities):
            raise ValueError(f"num_specific_experts {self.num_specific_experts} needs one count per modality "
                             f"{self.modalities}")
        if self.num_shared_experts < 0 or min(self.num_specific_experts) < 0 or self.num_experts < 1:
            raise ValueError("expert counts must be >= 0 with at least one expert in total")
        expert_type_class(self.expert_type)  # unknown names: ValueError listing the valid ones
        if self.lookup not in ("cosine", "l2"):
            raise ValueError(f"lookup must be 'cosine' or 'l2', got {self.lookup!r}")
        if self.orthogonality_scope not in ORTHOGONALITY_SCOPES:
            raise ValueError(f"unknown orthogonality_scope {self.orthogonality_scope!r}; "
                             f"valid scopes: {list(ORTHOGONALITY_SCOPES)}")
        if self.codebook_update not in ("loss", "ema", "none"):
            raise ValueError(f"codebook_update must be 'loss', 'ema' or 'none', got {self.codebook_update!r}")
        if self.codebook_size < 2 or self.code_dim < 1 or self.num_steps < 1 or self.batch_size < 1:
            raise ValueError("codebook_size >= 2, code_dim >= 1, num_steps >= 1 and batch_size >= 1 required")

    @property
    def num_experts(self) -> int:
        """Total experts = SID length."""
        return self.num_shared_experts + sum(self.num_specific_experts)

    def expert_names(self) -> tuple[str, ...]:
        """SID order: ``shared_0.., <modality>_0.., ...`` (shared first, then modalities in order)."""
        names = [f"shared_{index}" for index in range(self.num_shared_experts)]
        for modality, count in zip(self.modalities, self.num_specific_experts):
            names += [f"{modality}_{index}" for index in range(count)]
        return tuple(names)
