"""The matched-recall comparison: each multiphase point against the cheapest IVF setting that reaches its recall."""

from __future__ import annotations

from typing import Any, Sequence


def matched_recall(multiphase: Sequence[dict], ivf: Sequence[dict], *, k: int = 10,
                   latency: str = "p50_ms") -> list[dict[str, Any]]:
    """Per multiphase point: the lowest-latency IVF point with recall >= its recall, and the latency ratio.

    ``ratio`` = multiphase latency / IVF latency (<= 1: multiphase reaches IVF's recall at equal or lower
    latency). ``ivf_nprobe`` is None when no IVF setting reaches the point's recall.
    """
    key = f"recall@{k}"
    rows = []
    for point in multiphase:
        reaching = [entry for entry in ivf if entry[key] >= point[key]]
        best = min(reaching, key=lambda entry: entry[latency]) if reaching else None
        row = {"probe": point["probe"], "min_candidates": point["min_candidates"], key: point[key],
               "multiphase_ms": point.get(latency), "ivf_nprobe": None, "ivf_recall": None, "ivf_ms": None,
               "ratio": None}
        if best is not None and point.get(latency) is not None:
            row.update(ivf_nprobe=best["nprobe"], ivf_recall=best[key], ivf_ms=best[latency],
                       ratio=round(point[latency] / max(best[latency], 1e-9), 3))
        rows.append(row)
    return rows


def verdict(matched: Sequence[dict], *, k: int = 10) -> str:
    """One sentence: does any multiphase point reach IVF's recall at equal or lower latency, else the gap."""
    compared = [row for row in matched if row["ratio"] is not None]
    if not compared:
        return "no multiphase point has a comparable IVF setting (IVF never reaches its recall)"
    wins = [row for row in compared if row["ratio"] <= 1.0]
    if wins:
        best = max(wins, key=lambda row: row[f"recall@{k}"])
        return (f"reaches IVF's recall at equal or lower latency up to recall@{k} {best[f'recall@{k}']:.3f} "
                f"(probe {best['probe']}, N {best['min_candidates']}: {best['multiphase_ms']:.3f} ms vs IVF nprobe "
                f"{best['ivf_nprobe']} {best['ivf_ms']:.3f} ms)")
    closest = min(compared, key=lambda row: row["ratio"])
    return (f"never reaches IVF's recall at equal latency: closest is probe {closest['probe']}, "
            f"N {closest['min_candidates']} (recall@{k} {closest[f'recall@{k}']:.3f}) at {closest['ratio']:.2f}x "
            f"IVF nprobe {closest['ivf_nprobe']}'s p50 latency")
