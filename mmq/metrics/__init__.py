"""Evaluation metrics: top-K ranking, AUC/GAUC classification and semantic-ID quality."""

from mmq.metrics.classification import auc, gauc, per_group_auc
from mmq.metrics.ranking import (
    as_target_sets,
    hit_matrix,
    hit_rate_at_k,
    mrr,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    topk_from_scores,
)
from mmq.metrics.semantic_ids import (
    code_entropy,
    codebook_utilization,
    collision_rate,
    items_per_code,
    num_unique_ids,
    semantic_id_quality,
)

__all__ = [
    "as_target_sets",
    "auc",
    "code_entropy",
    "codebook_utilization",
    "collision_rate",
    "gauc",
    "hit_matrix",
    "hit_rate_at_k",
    "items_per_code",
    "mrr",
    "ndcg_at_k",
    "num_unique_ids",
    "per_group_auc",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "semantic_id_quality",
    "topk_from_scores",
]
