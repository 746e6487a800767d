"""AlterNet figures (Park & Kim 2022, Fig. 12): the build-up trace, accuracy vs robustness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hdvit_lib.analysis.buildup import PAPER_CIFAR100_BUILDUP, BuildUpTrace


def _label(p: list[int]) -> str:
    return "(" + ", ".join(str(m) for m in p) + ")"


def plot_buildup(
    trace: BuildUpTrace,
    reference: Mapping[str, Any] | None = PAPER_CIFAR100_BUILDUP,
    metric_name: str = "accuracy",
) -> go.Figure:
    """Fig. 12a: the metric against the number of MSAs along the build-up rule.

    Accepted placements are joined by a line; rejected candidates are open markers (hover:
    placement, stage, cost). ``reference`` (default: the CIFAR-100 values read from the authors'
    Fig. 12a, ResNet-50 82.48 -> AlterNet-50 84.02 %) is drawn on its own right-hand axis,
    since a small run's metric is on another scale; ``None`` leaves it out.
    """
    fig = make_subplots(specs=[[{"secondary_y": reference is not None}]])
    n = [sum(p) for p in trace.placements]
    hover = [f"MSAs per stage {_label(p)}<br>stage {s + 1 if s >= 0 else '-'} "
             f"(round {r})<br>{metric_name} {m:.4g}<br>{'cached' if c else f'{t:.1f} s'}"
             for p, s, r, m, c, t in zip(trace.placements, trace.stages, trace.rounds,
                                         trace.metrics, trace.cached, trace.costs)]
    acc = [i for i, a in enumerate(trace.accepted) if a]
    rej = [i for i, a in enumerate(trace.accepted) if not a]
    fig.add_trace(go.Scatter(
        x=[n[i] for i in acc], y=[trace.metrics[i] for i in acc], mode="lines+markers+text",
        name="accepted (this run)", text=[_label(trace.placements[i]) for i in acc],
        textposition="top center", hovertext=[hover[i] for i in acc], hoverinfo="text",
        marker={"size": 10, "color": "#1f77b4"}), secondary_y=False)
    fig.add_trace(go.Scatter(
        x=[n[i] for i in rej], y=[trace.metrics[i] for i in rej], mode="markers",
        name="rejected candidate", hovertext=[hover[i] for i in rej], hoverinfo="text",
        marker={"size": 9, "color": "#7f7f7f", "symbol": "circle-open"}), secondary_y=False)
    if reference is not None:
        fig.add_trace(go.Scatter(
            x=list(reference["n_msas"]), y=list(reference["accuracy"]), mode="lines+markers",
            name=f"paper: {reference.get('source', 'reference')}",
            text=list(reference.get("labels", [])), hoverinfo="text+y",
            line={"dash": "dash", "color": "#d62728"}, marker={"symbol": "diamond"}),
            secondary_y=True)
        fig.update_yaxes(title_text="paper CIFAR-100 accuracy (%)", secondary_y=True,
                         color="#d62728")
    fig.update_yaxes(title_text=f"{metric_name} (this run)", secondary_y=False)
    fig.update_xaxes(title_text="number of MSAs", dtick=1)
    best = _label(trace.best_placement)
    fig.update_layout(title=f"Build-up rule: best MSAs per stage {best} "
                            f"({trace.stop_reason})", template="plotly_white",
                      legend={"orientation": "h", "y": -0.2})
    return fig


def plot_accuracy_vs_robustness(
    results: Mapping[str, tuple[float, float]],
    highlight: str | None = "alternet",
) -> go.Figure:
    """Fig. 12b: clean accuracy (x) against corruption robustness (y, the mean accuracy over
    every corruption and severity) per model; ``results[name] = (accuracy, robustness)``.
    Models whose name contains ``highlight`` are drawn in red."""
    names = list(results)
    hl = [highlight is not None and highlight.lower() in k.lower() for k in names]
    fig = go.Figure(go.Scatter(
        x=[float(results[k][0]) for k in names], y=[float(results[k][1]) for k in names],
        mode="markers+text", text=names, textposition="top center",
        marker={"size": 12, "color": ["#d62728" if h else "#1f77b4" for h in hl]},
        hovertemplate="%{text}<br>accuracy %{x:.4g}<br>robustness %{y:.4g}<extra></extra>"))
    fig.update_layout(title="Accuracy vs corruption robustness", template="plotly_white",
                      xaxis_title="clean accuracy", yaxis_title="robustness (mean corrupted accuracy)")
    return fig
