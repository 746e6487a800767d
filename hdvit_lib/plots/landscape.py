"""Loss landscape figures (Park & Kim 2022, Fig. 1a): 3-D surface and contour per model."""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hdvit_lib.analysis.landscape import Landscape

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
