"""AlterNet figures (Park & Kim 2022, Fig. 12): the build-up trace, accuracy vs robustness."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hdvit_lib.analysis.buildup import PAPER_CIFAR100_BUILDUP, BuildUpTrace
from hdvit_lib.analysis.corruption import RobustnessCResult
from hdvit_lib.analysis.fit import DataFractionResult
from hdvit_lib.analysis.layout import (
    PAPER_PARAMS_M,
    BlockLayout,
    repeating_pattern,
    stage_table,
)
from hdvit_lib.claims import binomial_se
from hdvit_lib.plots.style import KIND_COLORS

_KIND_ORDER = tuple(KIND_COLORS)


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


def robustness_points(results: Mapping[str, RobustnessCResult]) -> dict[str, tuple[float, float]]:
    """``{model: (clean accuracy, robustness)}`` of ``corruption_robustness`` results (Park & Kim
    2022, Fig. 12b), what :func:`plot_accuracy_vs_robustness` draws."""
    return {k: (r.clean_accuracy, r.mean_accuracy) for k, r in results.items()}


def _strip_rows(layouts: Mapping[str, BlockLayout]) -> tuple[list[list[float | None]], list[list[str]]]:
    width = max(len(lay.kinds) for lay in layouts.values())
    z, text = [], []
    for lay in layouts.values():
        row: list[float | None] = [_KIND_ORDER.index(k) + 0.5 for k in lay.kinds] + [None] * (width - len(lay.kinds))
        hov = [f"{nm}<br>kind {k}, stage {s + 1}<br>{p / 1e6:.3g}M params"
               + (f"<br>{h} heads, {'window ' + str(w) if w else 'global'}" if k == "msa" else "")
               for nm, k, s, p, h, w in zip(lay.names, lay.kinds, lay.stages, lay.params, lay.heads, lay.windows)]
        z.append(row)
        text.append(hov + [""] * (width - len(hov)))
    return z, text


def _kind_colorscale() -> list[list[Any]]:
    n = len(_KIND_ORDER)
    scale: list[list[Any]] = []
    for i, k in enumerate(_KIND_ORDER):
        scale += [[i / n, KIND_COLORS[k]], [(i + 1) / n, KIND_COLORS[k]]]
    return scale


def plot_block_strips(layouts: Mapping[str, BlockLayout], title: str = "Repeating patterns, from model.blocks()") -> go.Figure:
    """Fig. 3, generated: one row of cells per model, one cell per block coloured by kind
    (embed, conv, msa, mlp, pool, head); white lines mark stage changes (subsampling). The row
    label names the pattern :func:`repeating_pattern` finds; hover shows each block."""
    if not layouts:
        raise ValueError("layouts is empty: pass {model name: BlockLayout}")
    z, text = _strip_rows(layouts)
    labels = [f"{name}<br><sub>{repeating_pattern(lay)['pattern'].split(':')[0]}</sub>" for name, lay in layouts.items()]
    n = len(_KIND_ORDER)
    fig = go.Figure(go.Heatmap(
        z=z, text=text, hoverinfo="text", y=labels, colorscale=_kind_colorscale(), zmin=0, zmax=n,
        showscale=False, xgap=2, ygap=8))
    for k in _KIND_ORDER:  # legend entries
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=k,
                                 marker={"size": 12, "symbol": "square", "color": KIND_COLORS[k]}))
    for row, lay in enumerate(layouts.values()):
        for i in range(1, len(lay.stages)):
            if lay.stages[i] != lay.stages[i - 1]:
                fig.add_shape(type="line", x0=i - 0.5, x1=i - 0.5, y0=row - 0.45, y1=row + 0.45,
                              line={"color": "black", "width": 3})
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="block (in forward order); black bars: a new stage (subsampling)", showgrid=False)
    fig.update_layout(title=title, template="plotly_white", height=140 + 90 * len(layouts),
                      legend={"orientation": "h", "y": -0.35}, plot_bgcolor="white")
    return fig


def plot_stage_table(layout: BlockLayout, title: str = "") -> go.Figure:
    """:func:`stage_table` as a plotly table (C: Conv block, M: MSA block)."""
    rows = stage_table(layout)
    cols = ["stage", "blocks", "pattern", "msa_blocks", "heads", "window", "params_M"]
    header = ["stage", "blocks", "pattern (C Conv, M MSA)", "MSA block index", "heads", "window", "params (M)"]
    cells = [[", ".join(map(str, r[c])) if isinstance(r[c], list) else r[c] for r in rows] for c in cols]
    fig = go.Figure(go.Table(header={"values": header}, cells={"values": cells}))
    fig.update_layout(title=title or f"{layout.model}: {layout.n_params / 1e6:.2f}M parameters",
                      height=120 + 40 * len(rows), margin={"t": 50, "b": 10})
    return fig


def plot_alternet(layouts: Mapping[str, BlockLayout], paper_params_m: float | None = PAPER_PARAMS_M) -> go.Figure:
    """Fig. 11 from the model object: parameters per block (bars coloured by kind, hover: heads,
    window), stage changes marked; a dropdown switches between MSAs-per-stage placements, and
    the title gives the total against the paper's 33.0M."""
    if not layouts:
        raise ValueError("layouts is empty: pass {label: BlockLayout}")
    fig = go.Figure()
    buttons = []
    labels = list(layouts)
    for i, (label, lay) in enumerate(layouts.items()):
        hover = [f"{nm}<br>{k}, stage {s + 1}<br>{p / 1e6:.3g}M params"
                 + (f"<br>{h} heads, window {w}x{w}" if k == "msa" else "")
                 for nm, k, s, p, h, w in zip(lay.names, lay.kinds, lay.stages, lay.params, lay.heads, lay.windows)]
        fig.add_trace(go.Bar(
            x=lay.names, y=[p / 1e6 for p in lay.params], marker_color=[KIND_COLORS[k] for k in lay.kinds],
            hovertext=hover, hoverinfo="text", name=label, visible=i == 0,
            text=[f"{h}h" if k == "msa" else "" for k, h in zip(lay.kinds, lay.heads)], textposition="outside"))
        ref = f" (paper: {paper_params_m}M)" if paper_params_m else ""
        buttons.append({"label": label, "method": "update",
                        "args": [{"visible": [j == i for j in range(len(labels))]},
                                 {"title": f"AlterNet-50, MSAs per stage {tuple(lay.config.get('msa_per_stage', []))}: "
                                           f"{lay.n_params / 1e6:.2f}M parameters{ref}"}]})
    first = layouts[labels[0]]
    fig.update_layout(
        title=buttons[0]["args"][1]["title"], template="plotly_white", height=460, showlegend=False,
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 1.0, "xanchor": "right", "y": 1.18}],
        yaxis_title="parameters per block (M)", xaxis_title="block (red: MSA, blue: Conv; label: heads)")
    for i in range(1, len(first.stages)):
        if first.stages[i] != first.stages[i - 1]:
            fig.add_vline(x=i - 0.5, line={"color": "black", "dash": "dot"})
    return fig


def plot_accuracy_vs_data(result: DataFractionResult, title: str = "Accuracy vs training-set size") -> go.Figure:
    """Test accuracy against the fraction of the training set, one line per model, with
    binomial error bars (one SE on the test set)."""
    fig = go.Figure()
    for i, name in enumerate(result.models):
        a = result.accuracy[i]
        fig.add_trace(go.Scatter(
            x=result.fractions, y=a, mode="lines+markers", name=name,
            error_y={"type": "data", "array": [binomial_se(float(v), result.n_test) for v in a]},
            hovertemplate=f"{name}<br>fraction %{{x}}<br>accuracy %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(type="log", title_text="fraction of the training set", tickvals=result.fractions)
    fig.update_yaxes(title_text="test accuracy")
    fig.update_layout(title=f"{title} ({result.preset} preset; error bars: 1 SE)", template="plotly_white")
    return fig
