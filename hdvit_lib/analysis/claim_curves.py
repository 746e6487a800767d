"""Claim metrics of a model measured along an axis: training snapshots, model size, data fraction.

Chapter 14 measures every chapter's claim metric at each point of an axis. Nothing here is a new
analysis: each metric is the library's analysis function on one model (``feature_map_variance``,
``fourier_analysis``, ``hessian_spectrum`` + ``spectrum_summary``, ``loss_landscape`` +
``landscape_curvature``, ``frequency_robustness`` + ``band_means``), with the preset's
``analysis_scale`` budget (few images, a small landscape grid, few Hessian batches). A claim's
*margin* along an axis (> 0: the paper's direction) is read by :func:`first_holding` and
:func:`trend`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hdvit_lib.analysis.features import extract_features
from hdvit_lib.analysis.fourier import fourier_analysis
from hdvit_lib.analysis.hessian import spectrum_summary
from hdvit_lib.analysis.landscape import landscape_curvature, loss_landscape
from hdvit_lib.analysis.result import Result
from hdvit_lib.analysis.robustness import band_means, frequency_robustness
from hdvit_lib.analysis.spectra import hessian_spectrum
from hdvit_lib.analysis.variance import feature_map_variance
from hdvit_lib.data.batches import Batches

#: Metric name -> (paper figure, y-axis title, the paper's reference value or None).
METRICS: dict[str, tuple[str, str, float | None]] = {
    "variance: MSA lowered": ("Fig. 9", "fraction of MSA blocks lowering variance", 0.5),
    "variance: Conv/MLP raised": ("Fig. 9", "fraction of Conv/MLP blocks raising variance", 0.5),
    "high freq: MSA change": ("Fig. 8", "mean Δ log amplitude at π per MSA block", 0.0),
    "high freq: Conv/MLP change": ("Fig. 8", "mean Δ log amplitude at π per Conv/MLP block", 0.0),
    "NEP": ("Fig. 4", "negative eigenvalue proportion", None),
    "APE": ("Fig. 4", "average positive eigenvalue", None),
    "curvature": ("Fig. 1", "landscape curvature near the centre", None),
    "robustness: high - low": ("Fig. 2b", "Δacc(high bands) - Δacc(low bands)", 0.0),
}


@dataclass
class ClaimCurves(Result):
    """Claim metrics of each model along one axis (training epochs, model size or data fraction).

    ``x[model]``: the positions (epochs, or the index of a scale point), ``x_labels[model]`` their
    names; ``values[metric][model]``: one value per position (NaN where a model has no such block);
    ``msa[model]``: whether the model has MSA blocks (the claims compare the MSA model with the
    Conv model); ``accuracy[model]``: test accuracy of the run at each position (NaN where unknown).
    """

    axis: str
    models: list[str]
    msa: dict[str, bool]
    x: dict[str, np.ndarray]
    x_labels: dict[str, list[str]]
    values: dict[str, dict[str, np.ndarray]]
    accuracy: dict[str, np.ndarray]
    n_images: int


# --------------------------------------------------------------------------- metrics of one model


def _mean_change(delta: np.ndarray, kinds: Sequence[str], want: Sequence[str]) -> float:
    d = np.asarray(delta, dtype=float)[np.isin(list(kinds), list(want))]
    d = d[~np.isnan(d)]
    return float(d.mean()) if d.size else float("nan")


#: ``claim_metrics`` already measured in this process, by :func:`_fingerprint`: a scale axis's
#: default point (the preset's model on all of the data) is the training curve's final weights.
_MEASURED: dict[str, dict[str, float]] = {}


def _fingerprint(model: nn.Module, data: Mapping[str, Batches], cfg: Mapping[str, Any], seed: int) -> str:
    """SHA-256 of the weights, the images and labels, the settings and the seed."""
    h = hashlib.sha256(f"{type(model).__name__} {seed} {json.dumps(cfg, sort_keys=True, default=str)}".encode())
    tensors = [*model.state_dict().values(), *(t for k in sorted(data) for pair in data[k] for t in pair)]
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def claim_metrics(model: nn.Module, data: Mapping[str, Batches], cfg: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Every metric of ``METRICS`` for one model (one snapshot), each from the library's analysis,
    on ``data`` (``images``: test images; ``hessian``, ``landscape``: training batches) with the
    preset ``cfg``'s ``analysis_scale`` budget; measured once per weights, data, settings and seed
    in a process (``_MEASURED``)."""
    key = _fingerprint(model, data, cfg, seed)
    if key not in _MEASURED:
        _MEASURED[key] = _measure(model, data, cfg, seed)
    return dict(_MEASURED[key])


def _measure(model: nn.Module, data: Mapping[str, Batches], cfg: dict[str, Any], seed: int) -> dict[str, float]:
    b = cfg["analysis_scale"]
    f = extract_features(model, data["images"], device=cfg.get("device"), use_cache=False)
    var, fou = feature_map_variance(f), fourier_analysis(f)
    spec = spectrum_summary(hessian_spectrum(model, data["hessian"], cfg, seed))
    land = loss_landscape(model, data["landscape"], n_points=int(b["landscape_points"]), seed=seed,
                          weight_decay=float(cfg["weight_decay"]), progress=False)
    low, high = band_means(frequency_robustness(model, data["images"], magnitude=float(cfg["analysis_noise_eps"]),
                                                seed=seed, device=cfg.get("device")))
    return {
        "variance: MSA lowered": var.msa_reduce_fraction,
        "variance: Conv/MLP raised": var.conv_mlp_increase_fraction,
        "high freq: MSA change": _mean_change(fou.high_frequency_delta, fou.kinds, ["msa"]),
        "high freq: Conv/MLP change": _mean_change(fou.high_frequency_delta, fou.kinds, ["conv", "mlp"]),
        "NEP": spec["NEP"],
        "APE": spec["APE"],
        "curvature": landscape_curvature(land),
        "robustness: high - low": high - low,
    }


def _has_msa(model: nn.Module) -> bool:
    return any(b.kind == "msa" for b in model.blocks())


def claim_curves(axis: str, points: Mapping[str, Sequence[tuple[float, str, nn.Module, float]]],
                 metric: Callable[[nn.Module], dict[str, float]], n_images: int) -> ClaimCurves:
    """The :class:`ClaimCurves` of ``points[model]``: (x, label, model, accuracy) per position;
    ``metric`` measures one model (e.g. :func:`claim_metrics` with the data and preset bound)."""
    values: dict[str, dict[str, np.ndarray]] = {k: {} for k in METRICS}
    x, labels, acc, msa = {}, {}, {}, {}
    for name, pts in points.items():
        rows = [metric(m) for _, _, m, _ in pts]
        for k in METRICS:
            values[k][name] = np.array([r[k] for r in rows], dtype=float)
        x[name] = np.array([p[0] for p in pts], dtype=float)
        labels[name] = [p[1] for p in pts]
        acc[name] = np.array([p[3] for p in pts], dtype=float)
        msa[name] = _has_msa(pts[0][2])
    return ClaimCurves(axis, list(points), msa, x, labels, values, acc, n_images)


# --------------------------------------------------------------------------- reading a margin


def first_holding(margin: np.ndarray, labels: Sequence[str]) -> str:
    """The first position from which the claim holds (margin > 0) at every later one; if it held
    only at some positions, says so; else "not within this budget"."""
    m = np.asarray(margin, dtype=float)
    ok = np.where(np.isnan(m), False, m > 0)
    if ok.size and ok[-1]:
        i = len(ok) - 1
        while i > 0 and ok[i - 1]:
            i -= 1
        return str(labels[i])
    if ok.any():
        return "held at " + ", ".join(str(labels[i]) for i in np.flatnonzero(ok)) + ", not at the last"
    return "not within this budget"


def trend(margin: np.ndarray) -> int:
    """The direction of a margin from its first to its last measured (non-NaN) position: 1 up,
    -1 down, 0 flat or fewer than two positions measured."""
    m = np.asarray(margin, dtype=float)
    m = m[~np.isnan(m)]
    if m.size < 2 or m[-1] == m[0]:
        return 0
    return 1 if m[-1] > m[0] else -1

