"""The capstone report (chapter 10): paired claims, the Markdown report, a matplotlib summary and the HTML page.

Inputs are the two tracks' results (:func:`baselines.serving.capstone.run_search_track`,
:func:`baselines.serving.capstone_beauty.run_beauty_track`) plus the served-recommendation A/B block the script
measures. Every claim line is a paired bootstrap interval over the same test events
(:func:`mmq.metrics.intervals.paired_bootstrap`) with its verdict: holds / fails / unresolved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmq import artifacts
from mmq.metrics.intervals import paired_bootstrap, verdict

SEARCH_LABELS = {"bm25": "BM25 (ch2)", "frozen_minilm": "frozen MiniLM (ch2)", "dense": "two-tower, dense Flat",
                 "multiphase": "two-tower, multiphase (RQ-KMeans SIDs)", "dense+lightgbm": "dense + LightGBM (ch4)",
                 "multiphase+lightgbm": "multiphase + LightGBM", "dense+lightgbm_ce": "dense + LightGBM+CE (ch4)",
                 "multiphase+lightgbm_ce": "multiphase + LightGBM+CE"}
BEAUTY_LABELS = {"dense_flat": "history query, dense Flat (ch1)", "two_tower": "user two-tower (ch2)",
                 "mmq_multiphase": "MMQ multiphase alone (ch6)", "generative_rq_kmeans": "generative RQ-KMeans (ch6)",
                 "capstone": "MMQ multiphase -> two-tower rerank"}


def claim(label: str, a: np.ndarray, b: np.ndarray, *, seed: int = 0) -> dict[str, Any]:
    """``a > b`` over the same events: difference, 95% interval, minimum detectable effect and verdict.

    When one row scored only the first events (the cross-encoder pipelines on a prefix of the test queries), both
    are compared on that prefix."""
    events = min(len(a), len(b))
    interval = paired_bootstrap(np.asarray(a)[None, :events], np.asarray(b)[None, :events], seed=seed)
    return {"claim": label, "difference": round(interval.difference, 6), "low": round(interval.low, 6),
            "high": round(interval.high, 6), "mde": round(interval.mde, 6), "events": interval.num_events,
            "verdict": verdict(interval)}


def search_claims(track: dict[str, Any]) -> list[dict[str, Any]]:
    per_query, full = track["per_query"], track["full_pipeline"]
    claims = []
    for other in ("dense", "dense+lightgbm", "frozen_minilm", "bm25"):
        if other in per_query and other != full:
            claims.append(claim(f"search: {full} > {other} (NDCG@10)", per_query[full], per_query[other]))
    claims.append(claim("search: multiphase retrieval > dense retrieval (NDCG@10)", per_query["multiphase"],
                        per_query["dense"]))
    claims.append(claim("search: multiphase recall@100 > dense recall@100", per_query["multiphase_recall@100"],
                        per_query["dense_recall@100"]))
    return claims


def beauty_claims(track: dict[str, Any]) -> list[dict[str, Any]]:
    per_user = track["per_user"]
    return [claim(f"recommend: capstone > {other} (NDCG@10)", per_user["capstone"]["ndcg@10"],
                  per_user[other]["ndcg@10"])
            for other in ("two_tower", "dense_flat", "mmq_multiphase", "generative_rq_kmeans") if other in per_user]


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def _claim_table(claims: list[dict[str, Any]]) -> list[str]:
    lines = ["| claim | difference | 95% interval | MDE | events | verdict |", "|---|---:|---|---:|---:|---|"]
    for row in claims:
        lines.append(f"| {row['claim']} | {row['difference']:+.4f} | [{row['low']:+.4f}, {row['high']:+.4f}] | "
                     f"{row['mde']:.4f} | {row['events']} | **{row['verdict']}** |")
    return lines


def _consistency(check: dict | None) -> str:
    if not check:
        return "Chapter 2's per-query results are absent, so the API's dense rows were not checked against them."
    return (f"Dense through the API against chapter 2's committed per-query NDCG@10: mean {check['mean_api']:.4f} vs "
            f"{check['mean_chapter2']:.4f}, {check['queries_differing']} of {check['queries']} queries differ (max "
            f"{check['max_abs_diff']:.3f}; presumably near-tied products swapping: the API encodes one query at a "
            "time, chapter 2 in batches).")


def render_markdown(report: dict[str, Any], command: str) -> str:
    search, beauty, served = report["search"], report["beauty"], report["served_recommend"]
    full = search["full_pipeline"]
    lines = [f"# Capstone (course chapter 10): the end-to-end system on the real data",
             "", f"Regenerate: `{command}` ({report['seconds'] / 60:.1f} min here; {report['machine']}; load average "
             f"before {report['load_before']} / after {report['load_after']}). The HTML version with interactive "
             "plots is `reports/capstone.html` (written by the same command; git-ignored, 4.8 MB of inlined "
             "plotly.js). Test is read once; every choice below was made on valid.", "",
             "## Search: chapter 2's Myntra test queries through the served API", "",
             f"{search['num_queries']['test']} generated test queries with graded labels over "
             f"{search['num_products']:,} products. Every query went through `POST /search` (FastAPI app in-process, "
             f"1 torch/faiss thread). Semantic IDs: {search['multiphase']}; multiphase setting chosen on valid "
             f"(NDCG@10 after LightGBM, ties to the faster): probe {search['chosen']['probe']}, min_candidates "
             f"{search['chosen']['min_candidates']}. Reranker chosen on {search['ce_valid_queries']} valid queries: "
             f"{search['rerank_choice_valid']} -> **{full}** (the cross-encoder must win by >= .005 to earn its "
             f"latency). {_consistency(search['dense_matches_chapter2_per_query_max_abs_diff'])}", "",
             "| system | NDCG@10 | recall@100 (grade 3) | p50 ms | p99 ms | embed p50 | retrieve p50 | rerank p50 | queries |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in search["test"].items():
        latency = row.get("latency_ms")
        cells = ([_fmt(latency["total"]["p50"], 2), _fmt(latency["total"]["p99"], 2), _fmt(latency["embed"]["p50"], 2),
                  _fmt(latency["retrieve"]["p50"], 2), _fmt(latency["rerank"]["p50"], 2)] if latency else ["-"] * 5)
        marker = " **(full system)**" if name == full else ""
        lines.append(f"| {SEARCH_LABELS.get(name, name)}{marker} | {_fmt(row['ndcg@10'])} | "
                     f"{_fmt(row['recall@100']) if 'recall@100' in row else '-'} | {' | '.join(cells)} | "
                     f"{row.get('queries', search['num_queries']['test'])} |")
    lines += ["", "Embed p50 is the query tower on the first (uncached) call of a query; the pipelines after the first "
              "reuse the query-embedding cache, so their embed time is ~0 and their total is retrieval + rerank + "
              "API overhead.", "", *_claim_table(search["claims"]), "",
              "## Recommendation: Beauty leave-one-out test users", "",
              f"{beauty['test_order']['num_users']:,} test users (history window 20, history excluded). The full "
              f"system: MMQ stage-1 semantic IDs (6 x 100, text + collaborative experts) -> multiphase retrieval "
              f"(probe {beauty['settings']['probe']}, chapter 6's valid choice) -> top "
              f"{beauty['settings']['candidates']} candidates (chosen on valid NDCG@10 over "
              f"{beauty['settings']['candidate_grid']}) -> reranked by the user two-tower's score.", "",
              "| system | NDCG@10 | Recall@10 |", "|---|---:|---:|"]
    for name, row in beauty["test"].items():
        lines.append(f"| {BEAUTY_LABELS.get(name, name)} | {_fmt(row['ndcg@10'])} | {_fmt(row['recall@10'])} |")
    stages = beauty["stages"]["test"]
    lines += ["", f"Per stage (test): the target is among MMQ multiphase's {beauty['settings']['candidates']} "
              f"candidates for {stages['candidate_recall']:.3f} of users (the two-tower's own top "
              f"{beauty['settings']['candidates']}: {stages['two_tower_candidate_recall']:.3f}); reranking lifts "
              f"NDCG@10 from {stages['before_rerank']['ndcg@10']:.4f} to {stages['after_rerank']['ndcg@10']:.4f}.",
              "", "Valid curve (candidates -> NDCG@10, candidate recall): " + ", ".join(
                  f"{row['candidates']}: {row['ndcg@10']:.4f} / {row['candidate_recall']:.3f}"
                  for row in beauty["valid_curve"]), "", *_claim_table(beauty["claims"]), "",
              "Single-user latency, 1 thread (first "
              f"{beauty['latency'].get('num_users', '?')} test users, ms):", "",
              "| system | stage | p50 | p95 | p99 |", "|---|---|---:|---:|---:|"]
    for system, stages_ms in beauty["latency"].items():
        if not isinstance(stages_ms, dict):
            continue
        for stage, values in stages_ms.items():
            if isinstance(values, dict) and "p50_ms" in values:
                lines.append(f"| {system} | {stage} | {_fmt(values['p50_ms'], 2)} | {_fmt(values['p95_ms'], 2)} | "
                             f"{_fmt(values['p99_ms'], 2)} |")
    served_users = served["ab"].get("served_users")
    lines += ["", "## A/B: the full system against the strongest single system, replayed through the API", "",
              "Search: every test query the full system answered went through `POST /search` with its query id as "
              "the unit; the API's hash assignment picked the arm, logged the exposure and timed it. Recommendation: "
              f"the first {served_users} test users through `POST /recommend` (the script picks the backend by the "
              "same hash assignment; 20 unlogged warm-up requests per backend first). The replay then scores every "
              "unit under both arms (paired), the A/B estimate uses each unit's own arm only.", ""]
    for name, block in (("search", search["ab"]), ("recommend", served["ab"])):
        comparison = block["comparisons"]["treatment"]
        guard = block["guardrail"]["treatment"]
        lines.append(f"- **{name}** (control = {block['arms']['control']}, treatment = {block['arms']['treatment']}; "
                     f"units per arm {block['units_per_arm']}): A/B estimate (each unit's own arm) "
                     f"{comparison['ab_difference']:+.4f} [{comparison['ab_interval'][0]:+.4f}, "
                     f"{comparison['ab_interval'][1]:+.4f}] ({comparison['ab_verdict']}, Welch p "
                     f"{comparison['ab_welch_p']:.3g}); paired replay over all units {comparison['paired_difference']:+.4f} "
                     f"[{comparison['paired_interval'][0]:+.4f}, {comparison['paired_interval'][1]:+.4f}] "
                     f"(**{comparison['paired_verdict']}**, paired t p {comparison['paired_t_p']:.3g}); latency "
                     f"guardrail (served p99 <= {block['guardrail_max_ratio']}x control): treatment p99 "
                     f"{guard['p99_ms']:.2f} ms vs control {block['guardrail']['control']['p99_ms']:.2f} ms -> "
                     f"**{'passes' if guard['passes'] else 'fails'}**.")
    lines += ["", "## What this says", "", *report["findings"], ""]
    return "\n".join(lines)


def summary_plot(report: dict[str, Any], path: Path) -> Path:
    """Four panels: NDCG@10 per system (both tracks), per-stage latency (search), the claims' intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search, beauty = report["search"], report["beauty"]
    figure, axes = plt.subplots(2, 2, figsize=(15, 10))
    names = list(search["test"])
    axes[0, 0].barh([SEARCH_LABELS.get(name, name) for name in names], [search["test"][n]["ndcg@10"] for n in names],
                    color=["#d62728" if n == search["full_pipeline"] else "#1f77b4" for n in names])
    axes[0, 0].set_xlabel("test NDCG@10")
    axes[0, 0].set_title("Search (Myntra, ch2 test queries)")
    names_b = list(beauty["test"])
    axes[0, 1].barh([BEAUTY_LABELS.get(name, name) for name in names_b],
                    [beauty["test"][n]["ndcg@10"] for n in names_b],
                    color=["#d62728" if n == "capstone" else "#1f77b4" for n in names_b])
    axes[0, 1].set_xlabel("test NDCG@10")
    axes[0, 1].set_title("Recommendation (Beauty leave-one-out)")
    served = [name for name in search["test"] if "latency_ms" in search["test"][name]]
    bottom = np.zeros(len(served))
    for stage, colour in (("embed", "#9467bd"), ("retrieve", "#2ca02c"), ("rerank", "#ff7f0e")):
        values = np.array([search["test"][name]["latency_ms"][stage]["mean"] for name in served])
        axes[1, 0].barh([SEARCH_LABELS.get(name, name) for name in served], values, left=bottom, color=colour,
                        label=stage)
        bottom += values
    axes[1, 0].set_xscale("symlog", linthresh=1.0)
    axes[1, 0].set_xlabel("mean ms per request (served API, 1 thread)")
    axes[1, 0].legend()
    axes[1, 0].set_title("Search latency by stage")
    claims = report["search"]["claims"] + report["beauty"]["claims"]
    for row, item in enumerate(claims):
        colour = {"holds": "#2ca02c", "fails": "#d62728"}.get(item["verdict"], "#7f7f7f")
        axes[1, 1].plot([item["low"], item["high"]], [row, row], color=colour, linewidth=3)
        axes[1, 1].plot(item["difference"], row, "o", color=colour)
    axes[1, 1].axvline(0, color="black", linewidth=0.8)
    axes[1, 1].set_yticks(range(len(claims)), [item["claim"] for item in claims], fontsize=7)
    axes[1, 1].set_xlabel("paired difference, 95% interval")
    axes[1, 1].set_title("Claims (green holds, red fails, grey unresolved)")
    figure.tight_layout()
    with artifacts.atomic_path(path) as staging:
        figure.savefig(staging, dpi=110, format="png")
    plt.close(figure)
    return path


def html_page(report: dict[str, Any], markdown: str) -> str:
    """The interactive version: plotly panels + the Markdown report's tables rendered as HTML."""
    import plotly.graph_objects as go

    from baselines.faiss_ann.dashboard import render_page

    search, beauty = report["search"], report["beauty"]
    sections = []
    quality = go.Figure()
    quality.add_trace(go.Bar(name="search NDCG@10", x=[SEARCH_LABELS.get(n, n) for n in search["test"]],
                             y=[row["ndcg@10"] for row in search["test"].values()]))
    quality.update_layout(template="plotly_white", height=420, yaxis_title="test NDCG@10")
    sections.append(("Search quality per system (Myntra)", quality))
    funnel = go.Figure()
    for name in ("dense", "multiphase"):
        row = search["test"][name]
        funnel.add_trace(go.Bar(name=f"{name}: recall@100", x=["retrieval recall@100"], y=[row["recall@100"]]))
    for name in ("dense", "multiphase", "dense+lightgbm", "multiphase+lightgbm", "multiphase+lightgbm_ce"):
        if name in search["test"]:
            funnel.add_trace(go.Bar(name=f"{name}: NDCG@10", x=["NDCG@10 after the stage"],
                                    y=[search["test"][name]["ndcg@10"]]))
    funnel.update_layout(template="plotly_white", height=420, barmode="group")
    sections.append(("Search: recall and NDCG per stage", funnel))
    latency = go.Figure()
    served = [name for name in search["test"] if "latency_ms" in search["test"][name]]
    for stage in ("embed", "retrieve", "rerank"):
        latency.add_trace(go.Bar(name=stage, y=[SEARCH_LABELS.get(n, n) for n in served], orientation="h",
                                 x=[search["test"][n]["latency_ms"][stage]["mean"] for n in served]))
    latency.update_layout(template="plotly_white", height=520, barmode="group", xaxis_type="log",
                          xaxis_title="mean ms per request and stage (served API, 1 thread; log scale)")
    sections.append(("Search latency breakdown", latency))
    beauty_quality = go.Figure()
    beauty_quality.add_trace(go.Bar(x=[BEAUTY_LABELS.get(n, n) for n in beauty["test"]],
                                    y=[row["ndcg@10"] for row in beauty["test"].values()], name="NDCG@10"))
    beauty_quality.add_trace(go.Bar(x=[BEAUTY_LABELS.get(n, n) for n in beauty["test"]],
                                    y=[row["recall@10"] for row in beauty["test"].values()], name="Recall@10"))
    beauty_quality.update_layout(template="plotly_white", height=420, barmode="group")
    sections.append(("Recommendation quality per system (Beauty)", beauty_quality))
    curve = go.Figure()
    points = beauty["valid_curve"]
    curve.add_trace(go.Scatter(x=[p["candidates"] for p in points], y=[p["candidate_recall"] for p in points],
                               name="MMQ multiphase candidate recall", mode="lines+markers"))
    curve.add_trace(go.Scatter(x=[p["candidates"] for p in points], y=[p["two_tower_candidate_recall"] for p in points],
                               name="two-tower top-N recall", mode="lines+markers"))
    curve.add_trace(go.Scatter(x=[p["candidates"] for p in points], y=[p["ndcg@10"] for p in points],
                               name="capstone NDCG@10", mode="lines+markers", yaxis="y2"))
    curve.update_layout(template="plotly_white", height=420, xaxis_type="log", xaxis_title="candidates (valid)",
                        yaxis={"title": "recall of the target"},
                        yaxis2={"title": "NDCG@10", "overlaying": "y", "side": "right"},
                        legend={"orientation": "h", "y": -0.25})
    sections.append(("Recommendation: candidates vs recall and NDCG (valid)", curve))
    claims = search["claims"] + beauty["claims"] + [
        {"claim": f"A/B {name} paired", "difference": block["comparisons"]["treatment"]["paired_difference"],
         "low": block["comparisons"]["treatment"]["paired_interval"][0],
         "high": block["comparisons"]["treatment"]["paired_interval"][1],
         "verdict": block["comparisons"]["treatment"]["paired_verdict"]}
        for name, block in (("search", search["ab"]), ("recommend", report["served_recommend"]["ab"]))]
    forest = go.Figure()
    for item in claims:
        colour = {"holds": "#2ca02c", "fails": "#d62728"}.get(item["verdict"], "#7f7f7f")
        forest.add_trace(go.Scatter(x=[item["low"], item["difference"], item["high"]], y=[item["claim"]] * 3,
                                    mode="lines+markers", line={"color": colour, "width": 3}, showlegend=False))
    forest.add_vline(x=0, line_color="black")
    forest.update_layout(template="plotly_white", height=60 + 32 * len(claims), xaxis_title="paired difference",
                         margin={"l": 420})
    sections.append(("Claims and A/B replays (paired 95% intervals)", forest))
    import markdown as markdown_module   # noqa: PLC0415 (optional pretty tables)

    sections.append(("The report", markdown_module.markdown(markdown, extensions=["tables"])))
    return render_page(sections, title="mmq capstone: the end-to-end search and recommendation system",
                       subtitle=f"{report['machine']}; generated by {report['command']}")


def readme_block(report: dict[str, Any]) -> str:
    """The README's capstone summary: both tracks' test rows and the claim verdicts (full report: capstone.md)."""
    search, beauty = report["search"], report["beauty"]
    full = search["full_pipeline"]
    lines = [f"Search (Myntra, {search['num_queries']['test']} test queries through `POST /search`; full system = "
             f"`{full}`, multiphase probe {search['chosen']['probe']} / N {search['chosen']['min_candidates']} chosen "
             "on valid):", "", "| system | NDCG@10 | recall@100 | p50 ms (served, 1 thread) | queries |",
             "|---|---:|---:|---:|---:|"]
    for name, row in search["test"].items():
        latency = row.get("latency_ms", {}).get("total", {}).get("p50")
        lines.append(f"| {SEARCH_LABELS.get(name, name)}{' **(full)**' if name == full else ''} | "
                     f"{row['ndcg@10']:.4f} | {row.get('recall@100', float('nan')):.4f} | "
                     f"{'-' if latency is None else f'{latency:.2f}'} | "
                     f"{row.get('queries', search['num_queries']['test'])} |".replace("| nan |", "| - |"))
    first = next(iter(search["test"].values()))
    lines += ["", f"Latency: the first row's p50 includes the query tower on an uncached query (embed p50 "
              f"{first['latency_ms']['embed']['p50']:.1f} ms); the other rows reuse the query-embedding cache. "
              f"Measured with load average {report['load_before']} (other jobs shared the 2 cores).",
              "", f"Recommendation (Beauty, {beauty['test_order']['num_users']:,} leave-one-out test users; full "
              f"system = MMQ multiphase top {beauty['settings']['candidates']} -> user two-tower rerank):", "",
              "| system | NDCG@10 | Recall@10 |", "|---|---:|---:|"]
    for name, row in beauty["test"].items():
        lines.append(f"| {BEAUTY_LABELS.get(name, name)}{' **(full)**' if name == 'capstone' else ''} | "
                     f"{row['ndcg@10']:.4f} | {row['recall@10']:.4f} |")
    lines += ["", "| claim (paired 95% interval over test events) | difference | interval | verdict |",
              "|---|---:|---|---|"]
    for row in search["claims"] + beauty["claims"]:
        lines.append(f"| {row['claim']} | {row['difference']:+.4f} | [{row['low']:+.4f}, {row['high']:+.4f}] | "
                     f"**{row['verdict']}** |")
    return "\n".join(lines)
