"""Plotly figures of the report, one function per chart; each returns a ``go.Figure`` or None.

plotly.js itself is embedded once in the page (see html_report.py), so figures are rendered with
``include_plotlyjs=False``.
"""
from __future__ import annotations

import html
from typing import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .data_map import DataMap

BLUE, ORANGE, RED, GREEN, GREY = "#3b6fb6", "#e08a2c", "#c8372d", "#2f9e6e", "#8a8f98"
# A small template: plotly's default one adds ~10 kB of JSON to every figure.
TEMPLATE = go.layout.Template(layout=go.Layout(
    font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size=12, color="#24292f"),
    paper_bgcolor="white", plot_bgcolor="white",
    colorway=[BLUE, ORANGE, GREEN, RED, "#7b5ea7", "#4aa3b5", "#b5884a", GREY],
    xaxis=dict(gridcolor="#eceef1", linecolor="#c9ced6", zeroline=False, ticks="outside", tickcolor="#c9ced6",
               automargin=True),
    yaxis=dict(gridcolor="#eceef1", linecolor="#c9ced6", zeroline=False, ticks="outside", tickcolor="#c9ced6",
               automargin=True),
    margin=dict(l=60, r=20, t=40, b=50), hoverlabel=dict(font_size=12),
    legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
))
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}


def to_div(fig: go.Figure, div_id: str) -> str:
    """HTML of one figure (no plotly.js)."""
    fig.update_layout(template=TEMPLATE)
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, config=PLOT_CONFIG,
                       div_id=div_id, default_width="100%")


def _esc(values: Iterable) -> list[str]:
    # plotly renders hover text as (a subset of) HTML: escape the user's ids and labels
    return [html.escape(str(v)) for v in values]


def learning_curves(metrics: pd.DataFrame) -> go.Figure | None:
    """Loss, scores (accuracy, macro F1, AUC), learning rate and gradient norm per epoch."""
    if metrics is None or not len(metrics):
        return None
    m = metrics.apply(pd.to_numeric, errors="coerce")
    epoch = m["epoch"] if "epoch" in m and m["epoch"].notna().all() else pd.Series(np.arange(1, len(m) + 1))
    cols = [c for c in m.columns if c != "epoch" and m[c].notna().any()]
    panels = [
        ("Loss", [c for c in cols if "loss" in c]),
        ("Accuracy / F1 / AUC", [c for c in cols if any(k in c for k in ("acc", "f1", "auc"))]),
        ("Learning rate", [c for c in cols if c == "lr" or c.startswith("lr_")]),
        ("Gradient norm", [c for c in cols if "grad_norm" in c]),
    ]
    panels = [(t, cs) for t, cs in panels if cs]
    if not panels:
        return None
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.07)
    for j, (_, cs) in enumerate(panels, start=1):
        for c in cs:
            dash = "dot" if c.startswith("train") else "solid"
            fig.add_trace(go.Scatter(x=epoch, y=m[c], name=c, mode="lines+markers", marker_size=4,
                                     line=dict(dash=dash, width=2)), row=1, col=j)
        fig.update_xaxes(title_text="epoch", row=1, col=j)
    # legend under the panels: above them it collides with the subplot titles
    fig.update_layout(height=360, margin=dict(t=40, b=40), legend=dict(orientation="h", y=-0.3, x=0, yanchor="top"))
    return fig


def confusion_matrix(cm: list[list[float]], classes: list[str]) -> go.Figure | None:
    """Counts of true (rows) vs predicted (columns) class; colour is the row share so that small
    classes are as readable as big ones."""
    a = np.asarray(cm, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not a.size:
        return None
    names = list(classes) if len(classes) == len(a) else [str(i) for i in range(len(a))]
    rows = a.sum(1, keepdims=True)
    share = np.divide(a, rows, out=np.zeros_like(a), where=rows > 0)
    counts = [[f"{v:.0f}" for v in r] for r in a]
    fig = go.Figure(go.Heatmap(
        z=share, x=_esc(names), y=_esc(names), text=counts, texttemplate="%{text}",
        customdata=np.round(share * 100, 1), colorscale="Blues", zmin=0, zmax=1,
        colorbar=dict(title="row share", thickness=12),
        hovertemplate="true %{y}, predicted %{x}: %{text} (%{customdata}% of the row)<extra></extra>"))
    side = max(360, min(720, 60 + 36 * len(a)))
    fig.update_layout(height=side, width=side + 120, xaxis_title="predicted", yaxis_title="true",
                      yaxis_autorange="reversed", xaxis_type="category", yaxis_type="category")
    return fig


def data_map(dm: DataMap) -> go.Figure:
    """Every training sample a dot; flagged samples ringed in black."""
    p = dm.points
    scatter = go.Scattergl if len(p) > 2000 else go.Scatter
    hover = ("id %{customdata[0]}<br>given %{customdata[1]}<br>suggested %{customdata[2]}"
             "<br>issue %{customdata[3]}<br>confidence %{y:.3f}<br>variability %{x:.3f}<extra></extra>")
    fig = go.Figure()
    for name, mask, colour in (("agrees with given label", p["correct"].to_numpy(bool), BLUE),
                               ("disagrees with given label", ~p["correct"].to_numpy(bool), ORANGE)):
        q = p[mask]
        fig.add_trace(scatter(
            x=q["variability"], y=q["confidence"], mode="markers", name=f"{name} ({mask.sum():,})",
            marker=dict(color=colour, size=5, opacity=0.6),
            customdata=np.column_stack([_esc(q["id"]), _esc(q["given_label"]), _esc(q["suggested_label"]),
                                        _esc(q["issue"])]) if len(q) else None,
            hovertemplate=hover))
    f = p[p["flagged"].to_numpy(bool)]
    if len(f):
        fig.add_trace(scatter(
            x=f["variability"], y=f["confidence"], mode="markers", name=f"flagged ({len(f):,})",
            marker=dict(color="rgba(0,0,0,0)", size=10, line=dict(color="#111", width=1.5)),
            customdata=np.column_stack([_esc(f["id"]), _esc(f["given_label"]), _esc(f["suggested_label"]),
                                        _esc(f["issue"])]),
            hovertemplate=hover))
    fig.update_layout(height=480, xaxis_title="variability (std of p(given label) over epochs)",
                      yaxis_title="confidence (mean p(given label))", yaxis_range=[-0.03, 1.03])
    return fig


def bar(names: list[str], values: list[float], title: str, x_title: str = "", y_title: str = "",
        colour: str = BLUE, horizontal: bool = False, hover_fmt: str = "%{y}") -> go.Figure:
    names = _esc(names)
    trace = (go.Bar(y=names, x=values, orientation="h", marker_color=colour,
                    hovertemplate="%{y}: %{x}<extra></extra>") if horizontal else
             go.Bar(x=names, y=values, marker_color=colour, hovertemplate="%{x}: " + hover_fmt + "<extra></extra>"))
    fig = go.Figure(trace)
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title,
                      height=max(300, 26 * len(names) + 110) if horizontal else 320)
    if horizontal:
        fig.update_layout(yaxis_autorange="reversed")
    else:
        fig.update_xaxes(type="category")
    return fig


def layer_health(last: pd.DataFrame) -> go.Figure | None:
    """Dead-unit fraction and effective rank (vs width) per layer at the last epoch."""
    panels = [c for c in ("dead_fraction", "effective_rank") if c in last and last[c].notna().any()]
    if not panels:
        return None
    titles = {"dead_fraction": "Dead-unit fraction", "effective_rank": "Effective rank of features (bar) vs width"}
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[titles[c] for c in panels])
    names = _esc(last["layer"])
    for j, c in enumerate(panels, start=1):
        values = last[c].to_numpy(dtype=float)
        # labels keep an all-zero panel ("no dead units") from looking empty
        text = [f"{v:.0%}" if c == "dead_fraction" else f"{v:.1f}" for v in values]
        fig.add_trace(go.Bar(x=names, y=values, name=c, marker_color=RED if c == "dead_fraction" else BLUE,
                             text=text, textposition="outside", cliponaxis=False, showlegend=False), row=1, col=j)
        if c == "effective_rank" and "width" in last:
            fig.add_trace(go.Scatter(x=names, y=last["width"], mode="markers", name="width",
                                     marker=dict(symbol="line-ew-open", size=22, color="#111"),
                                     showlegend=False), row=1, col=j)
        fig.update_xaxes(type="category", row=1, col=j)
    if "dead_fraction" in panels:
        fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_layout(height=340)
    return fig


def per_layer_over_epochs(long: pd.DataFrame, column: str, title: str, log: bool = True) -> go.Figure | None:
    """One line per layer of ``column`` (e.g. grad_norm) over epochs."""
    if column not in long or not long[column].notna().any():
        return None
    fig = go.Figure()
    for layer, g in long.groupby("layer", sort=False):
        g = g.sort_values("epoch")
        fig.add_trace(go.Scatter(x=g["epoch"], y=g[column], mode="lines+markers", name=html.escape(str(layer)),
                                 marker_size=4))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title=column, height=340,
                      legend=dict(orientation="v", y=1, x=1.02, yanchor="top"))
    if log and (long[column] > 0).all():
        fig.update_yaxes(type="log")
    return fig


def before_after(repair: dict) -> go.Figure | None:
    """Held-out accuracy and macro F1 before and after repair."""
    rows = [(label, repair.get(f"{key}_before"), repair.get(f"{key}_after"))
            for key, label in (("accuracy", "accuracy"), ("macro_f1", "macro F1"))]
    rows = [r for r in rows if isinstance(r[1], (int, float)) and isinstance(r[2], (int, float))]
    if not rows:
        return None
    fig = go.Figure()
    for i, (name, colour) in enumerate((("before", GREY), ("after", GREEN)), start=1):
        fig.add_trace(go.Bar(x=[r[0] for r in rows], y=[r[i] for r in rows], name=name, marker_color=colour,
                             text=[f"{r[i]:.3f}" for r in rows], textposition="outside"))
    lo = min(min(r[1], r[2]) for r in rows)
    fig.update_layout(barmode="group", height=320, yaxis_range=[max(0, lo - 0.1), 1.04],
                      yaxis_title="held-out score")
    return fig


def tune_history(trials: pd.DataFrame, maximize: bool) -> go.Figure | None:
    """Each completed trial's value and the best so far."""
    t = trials.copy()
    if "value" not in t:
        return None
    t["value"] = pd.to_numeric(t["value"], errors="coerce")
    if "state" in t:
        t = t[t["state"].astype(str).str.upper().str.contains("COMPLETE")]
    t = t.dropna(subset=["value"])
    if not len(t):
        return None
    x = t["number"] if "number" in t else np.arange(len(t))
    best = t["value"].cummax() if maximize else t["value"].cummin()
    fig = go.Figure([go.Scatter(x=x, y=t["value"], mode="markers", name="trial", marker=dict(color=BLUE, size=7)),
                     go.Scatter(x=x, y=best, mode="lines", name="best so far", line=dict(color=RED, shape="hv"))])
    fig.update_layout(height=330, xaxis_title="trial", yaxis_title="objective value")
    return fig


def image_heatmap(heat: list[list[float]], title: str) -> go.Figure | None:
    """Importance of each image region (H × W), first row at the top like the image."""
    a = np.asarray(heat, dtype=float)
    if a.ndim != 2 or not a.size:
        return None
    fig = go.Figure(go.Heatmap(z=a, colorscale="Viridis", colorbar=dict(title=title, thickness=12),
                               hovertemplate="row %{y}, col %{x}: %{z:.4f}<extra></extra>"))
    side = 360
    fig.update_layout(height=side, width=side + 140, yaxis_autorange="reversed", xaxis_title="column",
                      yaxis_title="row", yaxis_scaleanchor="x")
    return fig
