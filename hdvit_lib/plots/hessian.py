"""Hessian eigenvalue spectra (Park & Kim 2022, Fig. 1b and Fig. 4): negative and positive panels."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hdvit_lib.analysis.hessian import HessianSpectrum

_TITLES = ("negative eigenvalues", "positive eigenvalues")


def _log_kde(mag: np.ndarray, grid: np.ndarray, bandwidth: float | None) -> np.ndarray:
    """Gaussian KDE of log10|lambda| on ``grid`` (log10 units); Scott's bandwidth by default."""
    z = np.log10(mag)
    if len(z) == 0:
        return np.zeros_like(grid)
    bw = bandwidth or max(1.06 * (z.std() if len(z) > 1 else 0.0) * len(z) ** -0.2, 0.05)
    d = (grid[:, None] - z[None, :]) / bw
    return np.exp(-0.5 * d**2).sum(1) / (len(z) * bw * np.sqrt(2 * np.pi))


def _grid(spectra: Mapping[object, HessianSpectrum], points: int) -> np.ndarray:
    mags = np.concatenate([np.abs(s.values()) for s in spectra.values()])
    mags = mags[mags > 0]
    if len(mags) == 0:
        return np.linspace(-3, 3, points)
    lo, hi = np.log10(mags.min()), np.log10(mags.max())
    return np.linspace(lo - 0.5, hi + 0.5, points)


def _traces(spec: HessianSpectrum, name: str, color: str, grid: np.ndarray, bandwidth: float | None) -> list[go.Scatter]:
    """Two density traces (negative, positive); each scaled by its share of all eigenvalues."""
    v = spec.values()
    v = v[np.isfinite(v) & (v != 0)]
    out = []
    for sign, col in ((-1, 1), (1, 2)):
        part = np.abs(v[np.sign(v) == sign])
        dens = _log_kde(part, grid, bandwidth) * (len(part) / max(len(v), 1))
        out.append(go.Scatter(
            x=10**grid, y=dens, mode="lines", name=name, legendgroup=name, showlegend=sign > 0,
            line={"color": color}, fill="tozeroy", opacity=0.6,
            hovertemplate=f"{name}<br>{'-' if sign < 0 else ''}|λ|=%{{x:.3g}}<br>density %{{y:.3g}}"
            f"<br>{len(part)} of {len(v)} eigenvalues<extra></extra>",
        ))
    return out


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_xaxes(type="log", title_text="|λ| (magnitude)")
    fig.update_xaxes(autorange="reversed", row=1, col=1)  # negative panel grows to the left
    fig.update_yaxes(title_text="density of log10|λ| (× share)", row=1, col=1)
    fig.update_layout(title=title, template="plotly_white", height=380)
    return fig


def plot_spectrum(
    spectra: Mapping[str, HessianSpectrum],
    bandwidth: float | None = None,
    points: int = 200,
    title: str = "Hessian max-eigenvalue spectra",
) -> go.Figure:
    """Fig. 4: density of the top-k Hessian eigenvalues of every mini-batch, one curve per model.

    Left panel: negative eigenvalues (magnitude axis reversed), right: positive ones; densities
    are Gaussian KDEs of ``log10|λ|``, scaled by the share of eigenvalues of that sign, so the two
    panels of one model add up to 1. The paper's reading: ViTs have many negative (non-convex)
    and small eigenvalues, ResNets large positive ones.
    """
    fig = make_subplots(1, 2, shared_yaxes=True, subplot_titles=_TITLES, horizontal_spacing=0.04)
    grid = _grid(spectra, points)
    colors = plotly.colors.qualitative.Plotly
    for i, (name, spec) in enumerate(spectra.items()):
        neg, pos = _traces(spec, name, colors[i % len(colors)], grid, bandwidth)
        fig.add_trace(neg, 1, 1)
        fig.add_trace(pos, 1, 2)
    return _layout(fig, title)


def plot_spectrum_sweep(
    results: Mapping[object, HessianSpectrum],
    label: str,
    bandwidth: float | None = None,
    points: int = 200,
) -> go.Figure:
    """A slider over precomputed spectra (e.g. patch size, window size): works on a static page.

    Each slider step shows the negative/positive densities of :func:`plot_spectrum` for one value.
    """
    if not results:
        raise ValueError("results is empty: pass {value: HessianSpectrum}")
    fig = make_subplots(1, 2, shared_yaxes=True, subplot_titles=_TITLES, horizontal_spacing=0.04)
    grid = _grid(results, points)
    n = len(results)
    for i, (value, spec) in enumerate(results.items()):
        for col, tr in enumerate(_traces(spec, f"{label}={value}", "#636EFA", grid, bandwidth), 1):
            tr.visible = i == 0
            fig.add_trace(tr, 1, col)
    steps = []
    for i, value in enumerate(results):
        visible = [j // 2 == i for j in range(2 * n)]
        steps.append({"method": "update", "label": str(value),
                      "args": [{"visible": visible}, {"title": f"Hessian spectrum, {label}={value}"}]})
    fig.update_layout(sliders=[{"active": 0, "currentvalue": {"prefix": f"{label}: "}, "steps": steps,
                                "pad": {"t": 50}}])
    first = next(iter(results))
    return _layout(fig, f"Hessian spectrum, {label}={first}")


def plot_spectra_over_training(per_tag: Mapping[str, Mapping[str, HessianSpectrum]]) -> go.Figure:
    """Fig. 1b with a slider over the snapshot (``init``, ``warmup``, ...): each step shows
    ``hdvit_lib.plots.hessian.plot_spectrum`` of every model at that snapshot, on one shared axis."""
    from hdvit_lib.plots.hessian import plot_spectrum

    if not per_tag:
        raise ValueError("per_tag is empty: pass {tag: {label: HessianSpectrum}}")
    pooled = {f"{tag}/{label}": s for tag, specs in per_tag.items() for label, s in specs.items()}
    fig = plot_spectrum(pooled)  # one grid for every snapshot: densities stay comparable
    n_models = len(next(iter(per_tag.values())))
    colors = plotly.colors.qualitative.Plotly
    # plot_spectrum adds (negative, positive) traces per entry of ``pooled``: tag-major, then model
    tag_of = [(t // 2) // n_models for t in range(len(fig.data))]
    for t, tr in enumerate(fig.data):
        label = tr.name.split("/", 1)[1]
        tr.update(name=label, legendgroup=label, visible=tag_of[t] == 0,
                  line={"color": colors[((t // 2) % n_models) % len(colors)]})
    tags = list(per_tag)
    fig.update_layout(
        title=f"Hessian max-eigenvalue spectra at {tags[0]}",
        sliders=[{"active": 0, "currentvalue": {"prefix": "snapshot: "}, "pad": {"t": 50},
                  "steps": [{"method": "update", "label": tag,
                             "args": [{"visible": [x == i for x in tag_of]},
                                      {"title": f"Hessian max-eigenvalue spectra at {tag}"}]}
                            for i, tag in enumerate(tags)]}])
    return fig


def live_spectrum_control(values: Sequence[Any], spectra_of: Callable[[Any], Mapping[str, HessianSpectrum]],
                          setting: str, precomputed: Mapping[Any, HessianSpectrum] | None = None,
                          tag: int | str = "final", kind: str = "slider") -> Any:
    """A live-kernel slider (``kind="dropdown"``: a dropdown) over ``values`` of a model setting
    (Park & Kim 2022, Figs. 5-7 and 6: the spectrum as the patch size, window or classifier
    changes): shows :func:`plot_spectrum` of ``precomputed[value]`` (labelled ``setting=value``) or
    of ``spectra_of(value)`` (``{label: spectrum}``, computed on demand), titled with snapshot ``tag``.
    The chapter's :func:`plot_spectrum_sweep` is its static-site twin."""
    from hdvit_lib.widgets import live_control

    def title(value: Any) -> str:
        return f"Hessian spectrum, {setting}={value}" + ("" if tag == "final" else f" at {tag}")

    figs = {v: plot_spectrum({f"{setting}={v}": s}, title=title(v)) for v, s in (precomputed or {}).items()}
    return live_control(values, lambda v: plot_spectrum(spectra_of(v), title=title(v)), description=setting,
                        precomputed=figs, kind=kind)
