"""Paired bootstrap intervals over test events: is row ``a`` better than row ``b`` on the same events?

Both rows score the same test events with every seed. Each row is first averaged over its seeds, then the
test events (next-item retrieval: one event per user) or the users (ranking AUC / GAUC: a user's samples
are one cluster) are resampled with replacement; the interval is the percentile interval of the resampled
difference ``a - b``. :func:`verdict` turns it into holds / fails / unresolved for the claim "a > b".

Minimum detectable effect: ``mde = (z_{1 - alpha/2} + z_{power}) * se``, with ``se`` the standard deviation
of the bootstrap differences, ``alpha = 1 - confidence``; at 95% confidence and 80% power that is
``(1.960 + 0.842) * se = 2.80 * se``, the smallest true difference a two-sided test at this sample size
detects four times out of five.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Iterator, NamedTuple

import numpy as np

HOLDS, FAILS, UNRESOLVED = "holds", "fails", "unresolved"
MAX_BLOCK_ELEMENTS = 1 << 22  # bounds the temporary [resamples, events] arrays


class Interval(NamedTuple):
    """A paired interval of the difference ``a - b`` of a metric over the same test events."""

    difference: float       # observed a - b on every event (each row averaged over its seeds)
    low: float              # percentile bootstrap bounds of a - b
    high: float
    num_events: int         # test events both rows scored
    num_seeds_a: int
    num_seeds_b: int
    mde: float              # minimum detectable effect at this sample size (module docstring)
    confidence: float = 0.95
    num_clusters: int | None = None  # users resampled (AUC, GAUC); None: the events themselves


def verdict(interval: Interval) -> str:
    """The claim "a > b": ``holds`` if the interval lies above 0, ``fails`` if below, else ``unresolved``."""
    if interval.low > 0:
        return HOLDS
    if interval.high < 0:
        return FAILS
    return UNRESOLVED


# --- per-event metrics from ranks ------------------------------------------------------------

def _checked_ranks(ranks: np.ndarray, k: int) -> np.ndarray:
    """Ranks as int64 (1-based, 0 = not in the list), checked non-negative; ``k`` positive."""
    ranks = np.asarray(ranks)
    if not np.issubdtype(ranks.dtype, np.integer):
        raise ValueError(f"ranks must be integers (1-based, 0 = not in the list), got dtype {ranks.dtype}")
    if (ranks < 0).any():
        raise ValueError("ranks must be >= 0 (1-based rank, 0 = not in the list)")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    return ranks.astype(np.int64)


def ndcg_at_k_per_event(ranks: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k of each event with one relevant item: ``1 / log2(rank + 1)`` if ``1 <= rank <= k``, else 0."""
    ranks = _checked_ranks(ranks, k)
    hit = (ranks >= 1) & (ranks <= k)
    return np.where(hit, 1.0 / np.log2(np.maximum(ranks, 1) + 1.0), 0.0)


def recall_at_k_per_event(ranks: np.ndarray, k: int) -> np.ndarray:
    """Recall@k of each event with one relevant item (= hit rate): 1 if ``1 <= rank <= k``, else 0."""
    ranks = _checked_ranks(ranks, k)
    return ((ranks >= 1) & (ranks <= k)).astype(np.float64)


# --- resampling ------------------------------------------------------------------------------

def _seed_rows(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as float64 ``[seeds, events]`` (a 1-D array is one seed); empty or NaN is an error."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise ValueError(f"{name} must be [seeds, events], got shape {values.shape}")
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {values.shape}): no seeds or no events")
    if np.isnan(values).any():
        raise ValueError(f"{name} contains NaN values")
    return values


def _resample_counts(num_units: int, num_resamples: int, seed: int, width: int) -> Iterator[np.ndarray]:
    """Blocks of ``[resamples, num_units]`` counts: how often each unit is drawn when ``num_units`` units are
    drawn with replacement, ``num_resamples`` times in all (blocks sized so ``resamples * width`` stays bounded)."""
    if num_resamples <= 1:
        raise ValueError(f"num_resamples must be > 1, got {num_resamples}")
    rng = np.random.default_rng(seed)
    block = max(1, MAX_BLOCK_ELEMENTS // max(num_units, width))
    for start in range(0, num_resamples, block):
        size = min(block, num_resamples - start)
        drawn = rng.integers(0, num_units, size=(size, num_units))  # [resamples, units]
        offsets = np.arange(size)[:, None] * num_units
        yield np.bincount((drawn + offsets).ravel(), minlength=size * num_units).reshape(size, num_units)


def _summarise(observed: float, differences: np.ndarray, *, confidence: float, power: float, num_events: int,
               num_seeds: tuple[int, int], num_clusters: int | None = None) -> Interval:
    """The percentile interval and the minimum detectable effect of the bootstrap ``differences``."""
    differences = differences[~np.isnan(differences)]
    if differences.size < 2:
        raise ValueError("fewer than two resamples gave a defined difference (every resample lacked a class?)")
    alpha = 1.0 - confidence
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return Interval(difference=float(observed), low=float(low), high=float(high), num_events=num_events,
                    num_seeds_a=num_seeds[0], num_seeds_b=num_seeds[1], mde=float(z * differences.std(ddof=1)),
                    confidence=confidence, num_clusters=num_clusters)


def _check_levels(confidence: float, power: float) -> None:
    if not 0 < confidence < 1 or not 0 < power < 1:
        raise ValueError(f"confidence and power must lie in (0, 1), got {confidence} and {power}")


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, num_resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95, power: float = 0.8, clusters: np.ndarray | None = None) -> Interval:
    """Interval of ``mean(a) - mean(b)`` over events; ``a`` ``[seeds_a, events]``, ``b`` ``[seeds_b, events]``
    hold a per-event metric of the same events (in the same order).

    Each row is averaged over its seeds per event, then events are resampled with replacement; with
    ``clusters`` (``[events]``, e.g. each event's user when users have several test events) whole clusters
    are resampled instead, since a user's events are not independent.
    """
    _check_levels(confidence, power)
    a, b = _seed_rows(a, "a"), _seed_rows(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must score the same events: {a.shape[1]} vs {b.shape[1]} events")
    difference = a.mean(axis=0) - b.mean(axis=0)  # [events]
    num_events = difference.size
    if clusters is not None:
        clusters = np.asarray(clusters)
        if clusters.shape != (num_events,):
            raise ValueError(f"clusters must give one cluster per event ({num_events}), got shape {clusters.shape}")
        _, index = np.unique(clusters, return_inverse=True)
        sums, sizes = np.bincount(index, weights=difference), np.bincount(index).astype(np.float64)
        resampled = np.concatenate([(counts @ sums) / (counts @ sizes)
                                    for counts in _resample_counts(len(sums), num_resamples, seed, num_events)])
        return _summarise(difference.mean(), resampled, confidence=confidence, power=power, num_events=num_events,
                          num_seeds=(a.shape[0], b.shape[0]), num_clusters=len(sums))
    resampled = np.concatenate([counts @ difference / num_events
                                for counts in _resample_counts(num_events, num_resamples, seed, num_events)])
    return _summarise(difference.mean(), resampled, confidence=confidence, power=power, num_events=num_events,
                      num_seeds=(a.shape[0], b.shape[0]))


# --- AUC and GAUC, resampling users ------------------------------------------------------------

def _labels_and_users(labels: np.ndarray, users: np.ndarray, num_events: int) -> tuple[np.ndarray, np.ndarray, int]:
    """0/1 labels, each event's user index into the sorted unique users, and the number of users."""
    labels, users = np.asarray(labels), np.asarray(users)
    if labels.shape != (num_events,) or users.shape != (num_events,):
        raise ValueError(f"labels {labels.shape} and users {users.shape} must both be ({num_events},), "
                         "one per scored event")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be binary (0/1)")
    if labels.min() == labels.max():
        raise ValueError(f"AUC needs both classes, but every label is {labels[0]}")
    unique_users, user_index = np.unique(users, return_inverse=True)
    return labels.astype(np.float64), user_index.ravel(), len(unique_users)


def _paired_scores(scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores_a, scores_b = _seed_rows(scores_a, "scores_a"), _seed_rows(scores_b, "scores_b")
    if scores_a.shape[1] != scores_b.shape[1]:
        raise ValueError(f"scores_a and scores_b must score the same events: {scores_a.shape[1]} vs "
                         f"{scores_b.shape[1]} events")
    return scores_a, scores_b


def weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of ``scores`` ``[events]`` for each row of event ``weights`` ``[resamples, events]`` (how often each
    event was drawn); ties count one half, as in scikit-learn. NaN where a row weighs only one class."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    sorted_weights = weights[:, order]  # [resamples, events]
    starts = np.flatnonzero(np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1]]))  # tie groups
    positive = np.add.reduceat(sorted_weights * sorted_labels, starts, axis=1)  # [resamples, groups]
    negative = np.add.reduceat(sorted_weights * (1.0 - sorted_labels), starts, axis=1)
    below = np.cumsum(negative, axis=1) - negative  # negatives strictly below each tie group
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, (positive * (below + 0.5 * negative)).sum(axis=1) / pairs, np.nan)


def _row_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean over seeds of each seed's AUC, per row of ``weights``: ``[resamples]``."""
    return np.mean([weighted_auc(seed_scores, labels, weights) for seed_scores in scores], axis=0)


def paired_bootstrap_auc(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray, users: np.ndarray, *,
                         num_resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                         power: float = 0.8) -> Interval:
    """Interval of ``AUC(a) - AUC(b)``, resampling users (a user's samples are one cluster) with replacement.

    ``scores_*`` ``[seeds, events]``: each row's AUC is the mean of its seeds' AUCs on each resample (as the
    table's mean over seeds; averaging the seeds' scores first would measure an ensemble instead).
    """
    _check_levels(confidence, power)
    scores_a, scores_b = _paired_scores(scores_a, scores_b)
    num_events = scores_a.shape[1]
    labels, user_index, num_users = _labels_and_users(labels, users, num_events)
    everything = np.ones((1, num_events))
    observed = _row_auc(scores_a, labels, everything)[0] - _row_auc(scores_b, labels, everything)[0]
    differences = []
    for counts in _resample_counts(num_users, num_resamples, seed, num_events):
        weights = counts[:, user_index].astype(np.float64)  # [resamples, events]
        differences.append(_row_auc(scores_a, labels, weights) - _row_auc(scores_b, labels, weights))
    return _summarise(observed, np.concatenate(differences), confidence=confidence, power=power,
                      num_events=num_events, num_seeds=(scores_a.shape[0], scores_b.shape[0]),
                      num_clusters=num_users)


def _per_user_auc(scores: np.ndarray, labels: np.ndarray, user_index: np.ndarray, num_users: int) -> np.ndarray:
    """``[seeds, users]`` per-user AUC (NaN for a user with one class), users in sorted order."""
    from mmq.metrics.classification import per_group_auc

    rows = []
    for seed_scores in scores:
        groups, user_auc, _ = per_group_auc(user_index, labels, seed_scores)
        full = np.full(num_users, np.nan)
        full[groups] = user_auc
        rows.append(full)
    return np.stack(rows)


def paired_bootstrap_gauc(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray, users: np.ndarray, *,
                          num_resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
                          power: float = 0.8) -> Interval:
    """Interval of ``GAUC(a) - GAUC(b)`` (per-user AUC weighted by the user's samples, users with both labels),
    resampling users with replacement; each row's GAUC is the mean of its seeds' GAUCs."""
    _check_levels(confidence, power)
    scores_a, scores_b = _paired_scores(scores_a, scores_b)
    num_events = scores_a.shape[1]
    labels, user_index, num_users = _labels_and_users(labels, users, num_events)
    sizes = np.bincount(user_index, minlength=num_users).astype(np.float64)
    auc_a = _per_user_auc(scores_a, labels, user_index, num_users)  # [seeds_a, users]
    auc_b = _per_user_auc(scores_b, labels, user_index, num_users)
    used = ~np.isnan(auc_a[0])  # users with both labels (the labels are shared, so the same for every row)
    if not used.any():
        raise ValueError("GAUC undefined: no user has both positive and negative labels")
    weights = np.where(used, sizes, 0.0)
    # GAUC per seed, the difference of the rows' seed means, as one linear statistic of user weights
    per_user = weights * (np.nan_to_num(auc_a).mean(axis=0) - np.nan_to_num(auc_b).mean(axis=0))  # [users]
    observed = per_user.sum() / weights.sum()
    differences = []
    for counts in _resample_counts(num_users, num_resamples, seed, num_users):
        total = counts @ weights
        with np.errstate(divide="ignore", invalid="ignore"):
            differences.append(np.where(total > 0, (counts @ per_user) / total, np.nan))
    return _summarise(observed, np.concatenate(differences), confidence=confidence, power=power,
                      num_events=num_events, num_seeds=(scores_a.shape[0], scores_b.shape[0]),
                      num_clusters=num_users)
