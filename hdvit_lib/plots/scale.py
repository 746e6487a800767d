"""Chapter 14: every claim metric against training epochs and against scale (one panel per metric)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hdvit_lib.analysis.claim_curves import METRICS, ClaimCurves

_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
_COLS = 2


def _ref(i: int) -> tuple[str, str]:
    """The x/y axis references of panel ``i`` (plotly names the first axis "x", then "x2", ...)."""
    s = "" if i == 0 else str(i + 1)
    return f"x{s}", f"y{s}"


def _panels(curves: ClaimCurves, title: str, categorical: bool) -> tuple[go.Figure, list[dict]]:
    names = list(METRICS)
    rows = math.ceil(len(names) / _COLS)
    fig = make_subplots(rows=rows, cols=_COLS, subplot_titles=[f"{k} ({METRICS[k][0]})" for k in names],
                        vertical_spacing=0.08, horizontal_spacing=0.1)
    shapes = []
    for i, k in enumerate(names):
        r, c = i // _COLS + 1, i % _COLS + 1
        for j, m in enumerate(curves.models):
            x = curves.x_labels[m] if categorical else curves.x[m]
            fig.add_trace(go.Scatter(x=x, y=curves.values[k][m], mode="lines+markers", name=m,
                                     legendgroup=m, showlegend=i == 0, line={"color": _COLORS[j % len(_COLORS)]},
                                     text=curves.x_labels[m],
                                     hovertemplate=f"{m}<br>%{{text}}<br>{k}: %{{y:.3g}}<extra></extra>"),
                          row=r, col=c)
        ref = METRICS[k][2]
        if ref is not None:
            xr, yr = _ref(i)
            shapes.append({"type": "line", "xref": f"{xr} domain", "yref": yr, "x0": 0, "x1": 1, "y0": ref,
                           "y1": ref, "line": {"color": "grey", "dash": "dash", "width": 1}})
        fig.update_yaxes(title_text=METRICS[k][1], title_font={"size": 9}, row=r, col=c)
        fig.update_xaxes(title_text=curves.axis, row=r, col=c)
    # the legend sits above the panels: below them it covered the snapshot slider's rail
    fig.update_layout(title=title, height=260 * rows, shapes=shapes,
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0, "xanchor": "right"},
                      margin={"t": 110})
    return fig, shapes


def plot_over_training(curves: ClaimCurves, title: str = "Claim metrics along training") -> go.Figure:
    """One panel per metric of ``METRICS`` against epochs, one line per model, the paper's
    reference value (the 1/2 threshold of a fraction, the zero line of a change) dashed, and a
    slider that marks one snapshot in every panel (its values in the hover text and the title)."""
    fig, shapes = _panels(curves, title, categorical=False)
    m0 = curves.models[0]
    xs = list(curves.x[m0])
    names = list(METRICS)
    first = len(fig.data)
    for i, k in enumerate(names):  # one open marker per panel: the chosen snapshot of the first model
        fig.add_trace(go.Scatter(x=[xs[0]], y=[curves.values[k][m0][0]], mode="markers", showlegend=False,
                                 marker={"symbol": "circle-open", "size": 13, "color": "black"}, hoverinfo="skip"),
                      row=i // _COLS + 1, col=i % _COLS + 1)
    marked = list(range(first, first + len(names)))
    steps = []
    for e, label in zip(curves.x[m0], curves.x_labels[m0]):
        marks = [{"type": "line", "xref": _ref(i)[0], "yref": f"{_ref(i)[1]} domain", "x0": float(e), "x1": float(e),
                  "y0": 0, "y1": 1, "line": {"color": "black", "width": 1}} for i in range(len(METRICS))]
        vals = "; ".join(f"{m} NEP {curves.values['NEP'][m][list(curves.x[m]).index(e)]:.2f}"
                         for m in curves.models if e in list(curves.x[m]))
        j = xs.index(e)
        steps.append({"label": label, "method": "update",
                      "args": [{"x": [[e]] * len(names), "y": [[curves.values[k][m0][j]] for k in names]},
                               {"shapes": shapes + marks, "title.text": f"{title}: epoch {label} ({vals})"}, marked]})
    fig.update_layout(sliders=[{"active": 0, "steps": steps, "currentvalue": {"prefix": "snapshot: "},
                                "pad": {"t": 40}}])
    return fig


def plot_over_scale(curves: ClaimCurves, title: str | None = None) -> go.Figure:
    """One panel per metric of ``METRICS`` against the scale points of ``curves`` (final weights),
    one line per model, the paper's reference value dashed."""
    fig, _ = _panels(curves, title or f"Claim metrics against {curves.axis} (final weights)", categorical=True)
    return fig
