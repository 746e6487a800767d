"""Loss landscape figures (Park & Kim 2022, Fig. 1a): 3-D surface and contour per model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hdvit_lib.analysis.fit import FitResult
from hdvit_lib.analysis.landscape import Landscape, Trajectory

ZS = ("loss", "nll", "accuracy")


def plot_landscape(
    landscapes: Mapping[str, Landscape],
    z: str = "loss",
    contours: int = 20,
) -> go.Figure:
    """Fig. 1a: each landscape as a 3-D surface (left) and a contour map (right), one row per model.

    z: ``"loss"`` (NLL + weight decay * sum of per-tensor L2 norms, as the paper plots it), ``"nll"``
    or ``"accuracy"``. Axes are the grid coordinates along the two random directions (scaled by ``Landscape.norm``).
    """
    if z not in ZS:
        raise ValueError(f"z={z!r} is not one of {ZS}")
    if not landscapes:
        raise ValueError("landscapes is empty: pass {name: Landscape}")
    n = len(landscapes)
    titles = [t for name in landscapes for t in (f"{name}: surface", f"{name}: contour")]
    fig = make_subplots(n, 2, specs=[[{"type": "surface"}, {"type": "xy"}]] * n, subplot_titles=titles,
                        horizontal_spacing=0.08, vertical_spacing=0.08 if n > 1 else 0.0)
    for i, (name, ls) in enumerate(landscapes.items(), 1):
        zz = getattr(ls, z)
        fig.add_trace(go.Surface(x=ls.a, y=ls.b, z=zz, colorscale="Viridis", showscale=False, name=name,
                                 hovertemplate="a=%{x:.2f}<br>b=%{y:.2f}<br>" + z + "=%{z:.4g}<extra></extra>"),
                      i, 1)
        fig.add_trace(go.Contour(x=ls.a, y=ls.b, z=zz, colorscale="Viridis", ncontours=contours, name=name,
                                 showscale=i == 1, colorbar={"title": z, "len": 1.0 / n, "y": 1 - (i - 0.5) / n}),
                      i, 2)
        fig.update_xaxes(title_text="direction 1", row=i, col=2)
        fig.update_yaxes(title_text="direction 2", row=i, col=2)
    fig.update_scenes(xaxis_title="direction 1", yaxis_title="direction 2", zaxis_title=z)
    fig.update_layout(title=f"Loss landscape ({z})", template="plotly_white", height=420 * n)
    return fig


def plot_trajectories(trajs: Mapping[str, Trajectory]) -> go.Figure:
    """Polar plot of each trajectory: radius ``r_t``, angle ``theta_t`` (degrees), one line per run."""
    colors = plotly.colors.qualitative.Plotly
    fig = go.Figure()
    for i, (label, tr) in enumerate(trajs.items()):
        fig.add_trace(go.Scatterpolar(r=tr.r, theta=np.degrees(tr.theta), mode="lines+markers", name=label,
                                      line={"color": colors[i % len(colors)]}))
    fig.update_layout(title="Optimisation trajectories in polar coordinates (first arXiv version only)",
                      template="plotly_white", height=420,
                      polar={"angularaxis": {"direction": "counterclockwise"}, "sector": [0, 180]})
    return fig


def plot_error_vs_nll(fit: FitResult, color_by: str = "models", title: str | None = None) -> go.Figure:
    """Test error against training NLL, one marker per run, grouped (coloured) by ``color_by``
    (``models``, ``labels``, ``data_fraction``, ``patch_size`` or ``window``); hover shows the run."""
    choices = ("models", "labels", "data_fraction", "patch_size", "window")
    if color_by not in choices:
        raise ValueError(f"color_by={color_by!r} is not one of {choices}")
    values = getattr(fit, color_by)
    groups = [str(g) for g in (values.tolist() if isinstance(values, np.ndarray) else values)]
    colors = plotly.colors.qualitative.Plotly
    fig = go.Figure()
    for i, g in enumerate(dict.fromkeys(groups)):
        idx = [j for j, x in enumerate(groups) if x == g]
        fig.add_trace(go.Scatter(
            x=fit.nll_train[idx], y=100 * fit.error_test[idx], mode="markers+text", name=g,
            text=[fit.labels[j] for j in idx], textposition="top center",
            marker={"size": 11, "color": colors[i % len(colors)]},
            hovertemplate="%{text}<br>NLL_train %{x:.3f}<br>error %{y:.1f}%<extra></extra>"))
    fig.update_layout(title=title or "Test error against training NLL", template="plotly_white", height=420,
                      xaxis_title="NLL on training images (eval mode)", yaxis_title="test error (%)",
                      legend_title=color_by)
    return fig
