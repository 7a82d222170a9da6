"""Chapter 5 figures: how items spread over level-1 codes and their level-2 children.

``plot_hierarchy`` draws the most populated level-1 codes as bars split into their level-2
children, annotated with sample item titles; ``hierarchy_text`` dumps the same view as text;
``plot_codebook_usage`` shows the items-per-code histogram at every position.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mmq.artifacts import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def top_prefixes(codes: np.ndarray, num_top: int) -> list[tuple[int, int]]:
    """The ``num_top`` most populated level-1 codes as (code, count), largest first."""
    values, counts = np.unique(codes[:, 0], return_counts=True)
    order = np.lexsort((values, -counts))[:num_top]
    return [(int(values[index]), int(counts[index])) for index in order]


def hierarchy_text(codes: np.ndarray, titles: Sequence[str], *, num_top: int = 12, num_children: int = 4,
                   num_titles: int = 3) -> str:
    """Text dump: for the largest level-1 codes, their largest level-2 children with sample titles."""
    lines = [f"{len(codes)} items; level-1 codes used: {len(np.unique(codes[:, 0]))}"]
    for code, count in top_prefixes(codes, num_top):
        lines.append(f"\n[{code}] {count} items")
        members = np.flatnonzero(codes[:, 0] == code)
        if codes.shape[1] < 2:
            continue
        children, child_counts = np.unique(codes[members, 1], return_counts=True)
        for child in children[np.argsort(-child_counts, kind="stable")][:num_children]:
            child_members = members[codes[members, 1] == child]
            samples = "; ".join(str(titles[index])[:60] for index in child_members[:num_titles])
            lines.append(f"  [{code}, {child}] {len(child_members)} items: {samples}")
    return "\n".join(lines) + "\n"


def plot_hierarchy(codes: np.ndarray, titles: Sequence[str], path: Path, *, title: str, num_top: int = 10) -> None:
    """Stacked bars: items per level-1 code split by level-2 child, with one sample title per bar."""
    plt = _pyplot()
    prefixes = top_prefixes(codes, num_top)
    figure, axes = plt.subplots(figsize=(11, 0.6 * len(prefixes) + 1.5))
    for row, (code, count) in enumerate(prefixes):
        members = np.flatnonzero(codes[:, 0] == code)
        children = codes[members, 1] if codes.shape[1] > 1 else np.zeros(len(members), dtype=int)
        _, child_counts = np.unique(children, return_counts=True)
        left = 0
        for position, child_count in enumerate(sorted(child_counts, reverse=True)):
            axes.barh(row, child_count, left=left, color=plt.cm.tab20(position % 20), edgecolor="white", linewidth=0.3)
            left += child_count
        axes.text(count + 1, row, " | ".join(str(titles[index])[:38] for index in members[:2]), va="center", fontsize=7)
    axes.set_yticks(range(len(prefixes)), [f"code {code}" for code, _ in prefixes])
    axes.invert_yaxis()
    axes.set_xlabel("items (bar segments = level-2 children, largest first)")
    axes.set_title(f"{title}: {len(prefixes)} largest level-1 codes, sample titles")
    axes.set_xlim(0, max(count for _, count in prefixes) * 2.6)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)


def plot_codebook_usage(codes: np.ndarray, codebook_sizes: Sequence[int], path: Path, *, title: str) -> None:
    """Histogram of items per code at every position (a collapsed codebook shows as one tall bar)."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, codes.shape[1], figsize=(4 * codes.shape[1], 3), squeeze=False)
    for position, size in enumerate(codebook_sizes):
        counts = np.bincount(codes[:, position], minlength=size)
        axes[0, position].bar(np.arange(size), np.sort(counts)[::-1], width=1.0)
        axes[0, position].set_title(f"position {position}: {int((counts > 0).sum())}/{size} codes used", fontsize=9)
        axes[0, position].set_xlabel("code (sorted by size)")
    axes[0, 0].set_ylabel("items")
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
