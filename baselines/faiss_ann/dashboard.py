"""Static HTML latency dashboard of the chapter-3 benchmark (plotly, offline: the plotly.js bundle is inlined).

Panels: the recall@10 vs queries/s Pareto curves per corpus, single-query latency histograms at each family's
operating point, batch size vs throughput, and the table of operating points. ``live_panel`` is an optional
extra figure (the serving issue adds live request latency to the same page). Element ids are fixed so the
same report gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmq import artifacts

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def _figures(metrics: dict[str, Any]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    corpora = metrics["corpora"]
    names = list(dict.fromkeys(f["family"] for result in corpora.values() for f in result["families"]))
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    pareto = make_subplots(rows=1, cols=len(corpora), subplot_titles=[
        f"{corpus}: {result['num_vectors']:,} vectors" for corpus, result in corpora.items()])
    latency = make_subplots(rows=1, cols=len(corpora), subplot_titles=[
        f"{corpus}: 1-query latency at the operating point (1 thread)" for corpus in corpora])
    batching = make_subplots(rows=1, cols=len(corpora), subplot_titles=[
        f"{corpus}: batch size vs queries/s" for corpus in corpora])
    for col, (corpus, result) in enumerate(corpora.items(), start=1):
        for family in result["families"]:
            name, first = family["family"], col == 1
            points = sorted(family["points"], key=lambda p: p["recall"])
            frontier = [p for p in points if p["setting"] in family["pareto"]]
            pareto.add_trace(go.Scatter(
                x=[p["recall"] for p in frontier], y=[p["qps"] for p in frontier], mode="lines+markers", name=name,
                legendgroup=name, showlegend=first, line={"color": colour[name]},
                text=[p["setting"] for p in frontier],
                hovertemplate="%{text}<br>recall %{x:.4f}<br>%{y:,.0f} q/s<extra>" + name + "</extra>"), 1, col)
            pareto.add_trace(go.Scatter(
                x=[p["recall"] for p in points], y=[p["qps"] for p in points], mode="markers", legendgroup=name,
                showlegend=False, marker={"color": colour[name], "opacity": 0.3}, text=[p["setting"] for p in points],
                hovertemplate="%{text}<br>recall %{x:.4f}<br>%{y:,.0f} q/s<extra>" + name + "</extra>"), 1, col)
            histogram = family["latency"]["histogram_log10_ms"]
            edges = np.asarray(histogram["edges"])
            latency.add_trace(go.Bar(
                x=10 ** ((edges[:-1] + edges[1:]) / 2), y=histogram["counts"], name=name, legendgroup=name,
                showlegend=False, marker={"color": colour[name]}, opacity=0.6,
                hovertemplate="~%{x:.3f} ms: %{y} queries<extra>" + name + "</extra>"), 1, col)
            batching.add_trace(go.Scatter(
                x=[r["batch_size"] for r in family["batching"]], y=[r["qps"] for r in family["batching"]],
                mode="lines+markers", name=name, legendgroup=name, showlegend=False, line={"color": colour[name]}),
                1, col)
        pareto.add_hline(y=result["flat"]["qps"], line_dash="dot", row=1, col=col)
    pareto.update_yaxes(type="log", title_text="queries/s (batched)")
    pareto.update_xaxes(title_text="recall@10 vs exact")
    latency.update_xaxes(type="log", title_text="ms")
    latency.update_layout(barmode="overlay")
    batching.update_xaxes(type="log", title_text="batch size")
    batching.update_yaxes(type="log", title_text="queries/s")
    rows = [(corpus, f["family"], f["operating_point"]["setting"], f"{f['operating_point']['recall']:.4f}",
             f"{f['operating_point']['qps']:,.0f}", f"{f['latency']['p50_ms']:.3f}", f"{f['latency']['p99_ms']:.3f}",
             f"{f['bytes_per_vector']:.1f}", f"{f['build_s']:.1f}")
            for corpus, result in corpora.items() for f in result["families"]]
    header = ["corpus", "family", "operating point", "recall@10", "q/s", "p50 ms", "p99 ms", "bytes/vector", "build s"]
    table = go.Figure(go.Table(header={"values": header}, cells={"values": [list(c) for c in zip(*rows)]}))
    for figure, height in ((pareto, 460), (latency, 360), (batching, 360), (table, 60 + 28 * len(rows))):
        figure.update_layout(height=height, margin={"l": 50, "r": 20, "t": 50, "b": 40}, template="plotly_white")
    return [("Recall@10 vs queries/s (Pareto frontier: lines; every swept setting: dots; Flat: dotted)", pareto),
            ("Single-query latency", latency), ("Batch size vs throughput", batching), ("Operating points", table)]


def render_page(sections, *, title: str, subtitle: str, notes: str = "") -> str:
    """One self-contained HTML page (plotly.js inlined once, no CDN, fixed element ids) of ``[(heading, figure)]``;
    a heading's figure may also be an HTML string (a table)."""
    import plotly.io as pio

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
             "<style>body{font-family:sans-serif;margin:20px;max-width:1400px}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>"
             "</head><body>", f"<h1>{title}</h1><p>{subtitle}</p>{notes}"]
    first_figure = True
    for number, (heading, figure) in enumerate(sections):
        if isinstance(figure, str):
            parts.append(f"<h2>{heading}</h2>{figure}")
            continue
        html = pio.to_html(figure, full_html=False, include_plotlyjs=first_figure, div_id=f"panel-{number}",
                           config={"displaylogo": False})
        first_figure = False
        parts.append(f"<h2>{heading}</h2>{html}")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_dashboard(metrics: dict[str, Any], *, title: str, subtitle: str, live_panel=None) -> str:
    """The dashboard as one self-contained HTML string (no CDN, works offline); ``live_panel`` is appended last."""
    sections = _figures(metrics)
    if live_panel is not None:
        sections.append(("Live request latency (served API)", live_panel))
    return render_page(sections, title=title, subtitle=subtitle)


def write_dashboard(metrics: dict[str, Any], path: Path, *, title: str, subtitle: str,
                    live_panel=None) -> Path:
    """Write the dashboard HTML atomically."""
    artifacts.write_text(path, render_dashboard(metrics, title=title, subtitle=subtitle, live_panel=live_panel))
    return path
