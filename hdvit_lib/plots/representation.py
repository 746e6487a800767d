"""Figures of the representation analyses (Park & Kim 2022, Figs. 2a, 2b, 8, 9, 10a, 10b).

Every figure that compares models takes ``{model name: result}`` (a single result works too) and
carries a plotly dropdown to pick the model, so a reader of the static site can explore without
a kernel. MSA blocks are shaded grey and subsampling blocks blue, as in the paper: the span
``[depth - step, depth]`` that leads into the block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.colors as pc
import plotly.graph_objects as go

from hdvit_lib.analysis.cka import CKAResult
from hdvit_lib.analysis.fourier import FourierResult
from hdvit_lib.analysis.lesion import LesionResult
from hdvit_lib.analysis.robustness import RobustnessResult
from hdvit_lib.analysis.variance import VarianceResult
from hdvit_lib.plots.style import KIND_COLORS

MSA_SHADE = "rgba(128, 128, 128, 0.18)"
POOL_SHADE = "rgba(31, 119, 180, 0.15)"
PALETTE = pc.qualitative.Plotly


def _as_dict(results: Any, cls: type) -> dict[str, Any]:
    if isinstance(results, cls):
        return {results.model or "model": results}
    if isinstance(results, Mapping) and results and all(isinstance(r, cls) for r in results.values()):
        return dict(results)
    raise TypeError(f"expected a {cls.__name__} or a non-empty dict of model name -> {cls.__name__}")


def _shapes(depth: np.ndarray, kinds: Sequence[str], subsamples: Sequence[bool]) -> list[dict]:
    """Grey spans before MSA blocks, blue spans before subsampling blocks (paper Figs. 8, 9)."""
    d = np.asarray(depth, dtype=float)
    step = float(np.min(np.diff(d))) if len(d) > 1 else 1.0
    out = []
    for x, k, s in zip(d, kinds, subsamples):
        color = MSA_SHADE if k == "msa" else POOL_SHADE if s else None
        if color:
            out.append({"type": "rect", "xref": "x", "yref": "paper", "x0": x - step, "x1": x,
                        "y0": 0, "y1": 1, "fillcolor": color, "line": {"width": 0}, "layer": "below"})
    return out


def _menu(
    fig: go.Figure,
    groups: list[tuple[str, list[int], list[dict]]],
    all_label: str | None = "all",
    show_all: bool = False,
) -> None:
    """A dropdown that shows one group of traces (and its shapes) at a time, plus (``all_label``)
    every trace without shading. Shown first: the first group, or everything if ``show_all``."""
    n = len(fig.data)
    buttons = []
    if all_label and len(groups) > 1:
        buttons.append({"label": all_label, "method": "update",
                        "args": [{"visible": [True] * n}, {"shapes": []}]})
    for label, idx, shapes in groups:
        vis = [i in idx for i in range(n)]
        buttons.append({"label": label, "method": "update", "args": [{"visible": vis}, {"shapes": shapes}]})
    show_all = show_all and bool(all_label) and len(groups) > 1
    first = groups[0]
    for i, tr in enumerate(fig.data):
        tr.visible = show_all or i in first[1]
    fig.update_layout(shapes=[] if show_all else first[2])
    if len(buttons) > 1:
        active = 0 if show_all or not (all_label and len(groups) > 1) else 1
        fig.update_layout(updatemenus=[{"buttons": buttons, "direction": "down", "x": 1.0, "xanchor": "right",
                                        "y": 1.15, "yanchor": "top", "active": active}])


def _per_block_figure(results: dict[str, Any], y: str, ytitle: str, title: str) -> go.Figure:
    fig = go.Figure()
    groups = []
    for m, (name, r) in enumerate(results.items()):
        vals = np.asarray(getattr(r, y), dtype=float)
        hover = [f"{b} ({k})" for b, k in zip(r.names, r.kinds)]
        fig.add_trace(go.Scatter(x=r.depth, y=vals, mode="lines+markers", name=name, text=hover,
                                 hovertemplate="%{text}<br>depth %{x:.2f}<br>%{y:.4g}<extra>" + name + "</extra>",
                                 line={"color": PALETTE[m % len(PALETTE)]},
                                 marker={"color": [KIND_COLORS.get(k, "#000") for k in r.kinds], "size": 8}))
        groups.append((name, [m], _shapes(r.depth, r.kinds, r.subsamples)))
    _menu(fig, groups)
    fig.update_layout(title=title, template="plotly_white", xaxis={"title": "normalized depth", "range": [0, 1]},
                      yaxis={"title": ytitle})
    return fig


def plot_variance(results: Mapping[str, VarianceResult] | VarianceResult) -> go.Figure:
    """Fig. 9: feature map variance against normalized depth; MSA blocks grey, subsampling blue.

    Markers are coloured by block kind; "vector" blocks (no spatial variance) are gaps.
    """
    res = _as_dict(results, VarianceResult)
    return _per_block_figure(res, "variance", "feature map variance", "Feature map variance (Fig. 9)")


def plot_high_frequency(results: Mapping[str, FourierResult] | FourierResult) -> go.Figure:
    """Fig. 8: relative log amplitude at the highest frequency against normalized depth."""
    res = _as_dict(results, FourierResult)
    return _per_block_figure(res, "high_frequency", "Δ log amplitude at the highest frequency",
                             "High-frequency amplitude of feature maps (Fig. 8)")


def plot_fourier(result: FourierResult | Mapping[str, FourierResult]) -> go.Figure:
    """Fig. 2a: relative log amplitude against frequency (units of pi), one curve per block,
    coloured from early (dark) to late (bright) blocks by normalized depth (plasma)."""
    res = _as_dict(result, FourierResult)
    fig = go.Figure()
    groups = []
    for name, r in res.items():
        start = len(fig.data)
        for b, k, d, f, c in zip(r.names, r.kinds, r.depth, r.freqs, r.curves):
            color = pc.sample_colorscale("Plasma", [float(d) * 0.9])[0]
            fig.add_trace(go.Scatter(x=f, y=c, mode="lines", line={"color": color}, name=f"{name}: {b}",
                                     showlegend=False,
                                     hovertemplate=f"{b} ({k}), depth {d:.2f}<br>%{{x:.2f}}π: %{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                                 marker={"colorscale": "Plasma", "cmin": 0, "cmax": 1 / 0.9, "color": [0],
                                         "colorbar": {"title": "depth", "tickvals": [0, 0.5, 1]}}))
        groups.append((name, list(range(start, len(fig.data))), []))
    _menu(fig, groups, all_label=None)
    fig.update_layout(title="Relative log amplitude of Fourier-transformed feature maps (Fig. 2a)",
                      template="plotly_white", xaxis={"title": "frequency (× π)", "range": [0, 1]},
                      yaxis={"title": "Δ log amplitude"})
    return fig


def plot_robustness(results: Mapping[str, RobustnessResult] | RobustnessResult) -> go.Figure:
    """Fig. 2b: accuracy change (percentage points) against the noise's centre frequency; the title
    names the noise construction (``RobustnessResult.construction``)."""
    res = _as_dict(results, RobustnessResult)
    fig = go.Figure()
    groups = []
    for m, (name, r) in enumerate(res.items()):
        fig.add_trace(go.Scatter(x=r.f_centers, y=100 * np.asarray(r.delta_accuracy), mode="lines+markers",
                                 name=name, line={"color": PALETTE[m % len(PALETTE)]},
                                 hovertemplate="%{x:.1f}π: %{y:.2f} pp<extra>" + name + "</extra>"))
        groups.append((name, [m], []))
    _menu(fig, groups, show_all=True)
    r0 = next(iter(res.values()))
    noise = (f"±{r0.magnitude:.3g} sign noise filtered to the band, authors' FreqAttack"
             if r0.construction == "authors" else f"equal RMS {r0.magnitude:.3g} per band")
    fig.update_layout(title=f"Robustness to frequency-band noise (Fig. 2b; {noise}, band {r0.bandwidth:g}π)",
                      template="plotly_white",
                      xaxis={"title": "noise frequency (× π)", "range": [0, 1]},
                      yaxis={"title": "Δ accuracy (percentage points)"})
    return fig


def plot_cka(result: CKAResult | Mapping[str, CKAResult]) -> go.Figure:
    """Fig. 10a: heat map of minibatch linear CKA between every pair of blocks."""
    res = _as_dict(result, CKAResult)
    fig = go.Figure()
    groups = []
    for m, (name, r) in enumerate(res.items()):
        labels = [f"{i}: {b} ({k})" for i, (b, k) in enumerate(zip(r.names, r.kinds))]
        fig.add_trace(go.Heatmap(z=r.matrix, x=labels, y=labels, zmin=0, zmax=1, colorscale="Viridis",
                                 colorbar={"title": "CKA"}, name=name,
                                 hovertemplate="%{y}<br>%{x}<br>CKA %{z:.3f}<extra>" + name + "</extra>"))
        groups.append((name, [m], []))
    _menu(fig, groups, all_label=None)
    fig.update_layout(title="Representation similarity, minibatch linear CKA (Fig. 10a)", template="plotly_white",
                      xaxis={"showticklabels": False, "title": "block"},
                      yaxis={"showticklabels": False, "title": "block", "autorange": "reversed"})
    return fig


def plot_lesion(results: Mapping[str, LesionResult] | LesionResult) -> go.Figure:
    """Fig. 10b: accuracy change (percentage points) after removing each residual block's branch,
    against normalized depth; bars coloured by block kind."""
    res = _as_dict(results, LesionResult)
    fig = go.Figure()
    groups = []
    for m, (name, r) in enumerate(res.items()):
        width = 0.8 * (float(np.min(np.diff(r.depth))) if len(r.depth) > 1 else 0.05)
        fig.add_trace(go.Bar(x=r.depth, y=100 * np.asarray(r.delta_accuracy), width=width, name=name,
                             marker={"color": [KIND_COLORS.get(k, "#000") for k in r.kinds]},
                             text=[f"{b} ({k})" for b, k in zip(r.names, r.kinds)],
                             hovertemplate="%{text}<br>depth %{x:.2f}<br>%{y:.2f} pp<extra>" + name + "</extra>"))
        groups.append((name, [m], []))
    _menu(fig, groups, all_label=None)
    fig.update_layout(title="Lesion study: accuracy change when a block is lesioned (Fig. 10b)",
                      template="plotly_white", xaxis={"title": "normalized depth", "range": [0, 1.02]},
                      yaxis={"title": "Δ accuracy (percentage points)"}, showlegend=False)
    return fig
