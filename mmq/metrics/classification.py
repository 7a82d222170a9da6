"""Binary classification metrics: AUC and group (per-user) AUC."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def _validate_binary(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check labels are 0/1, scores are finite-comparable, and both are 1-D of equal non-zero length."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {labels.shape} and {scores.shape}")
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores lengths differ: {labels.shape[0]} vs {scores.shape[0]}")
    if labels.size == 0:
        raise ValueError("labels and scores are empty")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN values")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be binary (0/1 or bool)")
    return labels.astype(np.int64), scores


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve for binary labels (0/1) and real-valued scores."""
    labels, scores = _validate_binary(labels, scores)
    if labels.min() == labels.max():
        raise ValueError(f"AUC needs both classes, but every label is {labels[0]}")
    return float(roc_auc_score(labels, scores))


def per_group_auc(
    group_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (unique group ids, per-group AUC with NaN for one-class groups, per-group sample counts)."""
    labels, scores = _validate_binary(labels, scores)
    group_ids = np.asarray(group_ids)
    if group_ids.shape != labels.shape:
        raise ValueError(f"group ids and labels lengths differ: {group_ids.shape} vs {labels.shape}")
    unique_groups, group_index = np.unique(group_ids, return_inverse=True)
    group_index = group_index.ravel()
    num_groups = len(unique_groups)

    # Sort by (group, score) and give tied scores within a group their average within-group rank.
    order = np.lexsort((scores, group_index))
    sorted_group = group_index[order]
    sorted_score = scores[order]
    group_sizes = np.bincount(group_index, minlength=num_groups)
    group_starts = np.concatenate([[0], np.cumsum(group_sizes)[:-1]])
    position = np.arange(len(order))
    run_starts_mask = np.ones(len(order), dtype=bool)
    run_starts_mask[1:] = (sorted_group[1:] != sorted_group[:-1]) | (sorted_score[1:] != sorted_score[:-1])
    run_id = np.cumsum(run_starts_mask) - 1
    run_first = position[run_starts_mask]
    run_last = np.concatenate([run_first[1:], [len(order)]]) - 1
    average_position = (run_first[run_id] + run_last[run_id]) / 2.0
    within_group_rank = average_position - group_starts[sorted_group] + 1.0

    sorted_labels = labels[order]
    num_positive = np.bincount(sorted_group, weights=sorted_labels, minlength=num_groups)
    num_negative = group_sizes - num_positive
    positive_rank_sum = np.bincount(sorted_group, weights=within_group_rank * sorted_labels, minlength=num_groups)
    has_both = (num_positive > 0) & (num_negative > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Mann-Whitney U statistic normalised by n_pos * n_neg equals the ROC AUC.
        group_auc = (positive_rank_sum - num_positive * (num_positive + 1) / 2.0) / (num_positive * num_negative)
    group_auc = np.where(has_both, group_auc, np.nan)
    return unique_groups, group_auc, group_sizes


def gauc(user_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, float | int]:
    """Per-user AUC weighted by each user's sample count, over users that have both classes."""
    _, user_auc, user_sizes = per_group_auc(user_ids, labels, scores)
    used = ~np.isnan(user_auc)
    if not used.any():
        raise ValueError("GAUC undefined: no user has both positive and negative labels")
    weights = user_sizes[used].astype(np.float64)
    return {
        "gauc": float(np.sum(user_auc[used] * weights) / weights.sum()),
        "num_users_used": int(used.sum()),
        "num_users_skipped": int((~used).sum()),
        "num_samples_used": int(weights.sum()),
    }
