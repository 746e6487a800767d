"""Orchestration of chapter 14, "Claims over training and scale" (the book's own question, issue 13).

The paper shows each claim at one point: the end of 300 epochs on CIFAR-100. This chapter asks
*when* each claim shows: it measures every chapter's claim metric at each snapshot the zoo keeps
(init, end of warm-up, every ``snapshot_every`` epochs, final) for a Conv model (ResNet) and an MSA
model (ViT), and then on final weights along two scale axes: model size and training-set size.

Nothing here is a new analysis: each metric is the library's analysis function on a snapshot
(``feature_map_variance``, ``fourier_analysis``, ``hessian_spectrum`` + ``spectrum_summary``,
``loss_landscape`` + ``landscape_curvature``, ``frequency_robustness`` + ``band_means``), with the
preset's ``analysis_scale`` budget (few images, a small landscape grid, few Hessian batches).
CKA and the lesion study (Fig. 10) are left out: see ``SKIPPED``.
"""

from __future__ import annotations

import hashlib
import json
import math
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
from hdvit_lib.data.batches import Batches, analysis_batches, training_batches
from hdvit_lib.experiments.common import run_spec, train_runs
from hdvit_lib.train.cache import model_at

#: The two models whose claims are compared (a Conv model and an MSA model, told apart by kinds).
MODELS = ("resnet50", "vit_ti")

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

#: What this chapter does not measure, and why (said in the chapter).
SKIPPED = ("CKA block structure and the lesion pattern (Fig. 10): a CKA matrix and one lesioned "
           "evaluation per block at every snapshot cost more than the rest of the chapter together; "
           "chapter 10 measures them on final weights")


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


# --------------------------------------------------------------------------- data and metrics


def budget(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's ``analysis_scale`` settings (images, landscape grid, Hessian batches, scale runs)."""
    return dict(cfg["analysis_scale"])


def scale_data(cfg: dict[str, Any], seed: int = 0) -> dict[str, Batches]:
    """The fixed data every metric reads: ``images`` (test images: features, band noise),
    ``hessian`` and ``landscape`` (augmented, mixed training batches: the training loss)."""
    b = budget(cfg)
    return {
        "images": analysis_batches(cfg, seed, n_images=b["images"]),
        "hessian": training_batches(cfg, b["hessian_batches"], int(cfg["hessian_batch_size"]), seed),
        "landscape": training_batches(cfg, 1, b["landscape_images"], seed),
    }


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
    """Every metric of ``METRICS`` for one model (one snapshot), each from the library's analysis;
    measured once per weights, data, settings and seed in a process (``_MEASURED``)."""
    key = _fingerprint(model, data, cfg, seed)
    if key not in _MEASURED:
        _MEASURED[key] = _measure(model, data, cfg, seed)
    return dict(_MEASURED[key])


def _measure(model: nn.Module, data: Mapping[str, Batches], cfg: dict[str, Any], seed: int) -> dict[str, float]:
    b = budget(cfg)
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


def _curves(axis: str, points: Mapping[str, Sequence[tuple[float, str, nn.Module, float]]],
            metric: Callable[[nn.Module], dict[str, float]], n_images: int) -> ClaimCurves:
    """``points[model]``: (x, label, model, accuracy) per position; ``metric`` measures one model."""
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


def _epoch_label(epoch: int, cfg: Mapping[str, Any]) -> str:
    if epoch == 0:
        return "0 (init)"
    return f"{epoch} (end of warm-up)" if epoch == int(cfg["warmup_epochs"]) else str(epoch)


def _test_acc(trained: Any, epoch: int) -> float:
    h = trained.history
    at = [a for e, a in zip(h.epoch, h.test_acc) if int(e) == int(epoch)]
    return float(at[-1]) if at and at[-1] is not None else float("nan")


def over_training(trained: Mapping[str, Any], cfg: dict[str, Any], data: Mapping[str, Batches],
                  seed: int = 0) -> ClaimCurves:
    """``claim_metrics`` of every run in ``trained`` (``{label: Trained}``) at each of its snapshots."""
    points = {}
    for name, t in trained.items():
        if not t.snapshots():
            raise ValueError(f"{name}: no snapshots along training (the authors' checkpoints hold final "
                             "weights only); train it here: setup(..., weights=\"trained\") or "
                             "hdvit_lib.experiments.common.with_snapshots")
        points[name] = [(float(e), _epoch_label(e, cfg), model_at(t, e), _test_acc(t, e)) for e in t.snapshots()]
    n = sum(len(x) for x, _ in data["images"])
    return _curves("epoch", points, lambda m: claim_metrics(m, data, cfg, seed), n)


def scale_runs(cfg: Mapping[str, Any], models: Sequence[str] = MODELS) -> dict[str, dict[str, dict[str, Any]]]:
    """``{axis: {f"{model} | {point}": run_spec}}`` for the two scale axes of the preset's
    ``analysis_scale``: ``"model size"`` (each size's model settings, all of the data) and
    ``"data fraction"`` (default size)."""
    b = budget(cfg)
    sizes = {m: b["sizes"][m] for m in models}
    out: dict[str, dict[str, dict[str, Any]]] = {"model size": {}, "data fraction": {}}
    for m in models:
        for label, model_cfg in sizes[m].items():
            out["model size"][f"{m} | {label}"] = run_spec(m, 1.0, **model_cfg)
        for f in b["data_fractions"]:
            out["data fraction"][f"{m} | {f:g}"] = run_spec(m, f)
    return out


def over_scale(runs: Mapping[str, Mapping[str, Any]], axis: str, cfg: dict[str, Any], data: Mapping[str, Batches],
               seed: int = 0, progress: bool = False) -> ClaimCurves:
    """``claim_metrics`` of the final weights of each run of ``runs`` (labels ``"model | point"``,
    as ``scale_runs`` makes them), trained or loaded through the zoo cache. Every point is trained
    here with the preset's schedule (never the authors' checkpoint), so that the axis varies one
    thing."""
    trained = train_runs(runs, {**cfg, "weights": "trained"}, seed, progress)
    points: dict[str, list] = {}
    for label, t in trained.items():
        model, point = label.split(" | ")
        points.setdefault(model, []).append((float(len(points.get(model, []))), point, t.model,
                                             float(t.history.final("test_acc"))))
    n = sum(len(x) for x, _ in data["images"])
    return _curves(axis, points, lambda m: claim_metrics(m, data, cfg, seed), n)


# --------------------------------------------------------------------------- claims along an axis


def _pair(c: ClaimCurves) -> tuple[str, str]:
    conv = next((m for m in c.models if not c.msa[m]), None)
    msa = next((m for m in c.models if c.msa[m]), None)
    if conv is None or msa is None:
        raise ValueError(f"the claims compare a Conv model with an MSA model; got msa={c.msa}")
    return conv, msa


#: Claim -> (paper figure and direction, margin(values of the Conv model, of the MSA model)):
#: the claim holds at a point where its margin is > 0 (the paper's direction).
CLAIMS: dict[str, tuple[str, Callable[[dict, dict], np.ndarray]]] = {
    "MSAs lower variance, Convs/MLPs raise it (Fig. 9)": (
        "MSA model: > 1/2 of MSA blocks lower it; Conv model: > 1/2 of Conv/MLP blocks raise it",
        lambda c, v: np.minimum(v["variance: MSA lowered"] - 0.5, c["variance: Conv/MLP raised"] - 0.5)),
    "MSAs low-pass, Convs high-pass (Fig. 8)": (
        "MSA blocks lower the high-frequency amplitude (< 0), Conv blocks raise it (> 0)",
        lambda c, v: np.minimum(-v["high freq: MSA change"], c["high freq: Conv/MLP change"])),
    "ViT has more negative eigenvalues (Fig. 4)": (
        "NEP of the MSA model > NEP of the Conv model",
        lambda c, v: v["NEP"] - c["NEP"]),
    "ViT has smaller positive eigenvalues (Fig. 4)": (
        "APE of the MSA model < APE of the Conv model",
        lambda c, v: c["APE"] - v["APE"]),
    "ViT's landscape is flatter (Fig. 1)": (
        "curvature of the MSA model < curvature of the Conv model",
        lambda c, v: c["curvature"] - v["curvature"]),
    "ViT is robust to high-frequency noise (Fig. 2b)": (
        "high-minus-low band accuracy change: MSA model > Conv model",
        lambda c, v: v["robustness: high - low"] - c["robustness: high - low"]),
}


def margins(c: ClaimCurves) -> dict[str, np.ndarray]:
    """Per claim of ``CLAIMS``: its margin at each position (> 0: the paper's direction; NaN: undecided)."""
    conv, msa = _pair(c)
    n = min(len(c.x[conv]), len(c.x[msa]))
    cv = {k: np.asarray(c.values[k][conv], dtype=float)[:n] for k in METRICS}
    mv = {k: np.asarray(c.values[k][msa], dtype=float)[:n] for k in METRICS}
    return {claim: np.asarray(rule(cv, mv), dtype=float) for claim, (_, rule) in CLAIMS.items()}


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


def _trend(m: np.ndarray) -> int:
    m = np.asarray(m, dtype=float)
    m = m[~np.isnan(m)]
    if m.size < 2 or m[-1] == m[0]:
        return 0
    return 1 if m[-1] > m[0] else -1


def _trend_words(curves: Mapping[str, ClaimCurves], claim: str, marg: Mapping[str, dict[str, np.ndarray]]) -> str:
    parts, signs = [], []
    for axis, m in ((c.axis, marg[a][claim]) for a, c in curves.items()):
        s = _trend(m)
        signs.append(s)
        ok = m[~np.isnan(m)]
        span = f"{ok[0]:+.3g} → {ok[-1]:+.3g}" if ok.size else "n/a"
        parts.append(f"{axis}: margin {span}")
    if signs and all(s > 0 for s in signs):
        head = "towards the paper along every axis: consistent with holding at paper scale"
    elif signs and all(s < 0 for s in signs):
        head = "away from the paper along every axis: no support from this run for the paper-scale claim"
    elif any(s > 0 for s in signs):
        head = "mixed: towards the paper along " + ", ".join(
            c.axis for c, s in zip(curves.values(), signs) if s > 0)
    else:
        head = "flat or undecided"
    return f"{head} ({'; '.join(parts)})"


def claims_table(curves: Mapping[str, ClaimCurves]) -> str:
    """A markdown table: claim | the first epoch / scale point where it holds, per axis of
    ``curves`` (``{name: ClaimCurves}``, e.g. training, model size, data fraction) | the trend of
    its margin along each axis (> 0 = the paper's direction) and what it suggests."""
    marg = {a: margins(c) for a, c in curves.items()}
    labels = {a: c.x_labels[_pair(c)[0]] for a, c in curves.items()}
    head = "| claim | " + " | ".join(f"holds from ({c.axis})" for c in curves.values()) + " | trend |"
    rows = [head, "|" + "---|" * (len(curves) + 2)]
    for claim in CLAIMS:
        cells = [first_holding(marg[a][claim], labels[a]) for a in curves]
        rows.append(f"| {claim} | " + " | ".join(cells) + f" | {_trend_words(curves, claim, marg)} |")
    return "\n".join(rows)


def holds_everywhere(margin: np.ndarray) -> bool | None:
    """True when the margin is > 0 at every position, None when any is NaN."""
    m = np.asarray(margin, dtype=float)
    return None if np.isnan(m).any() else bool((m > 0).all())


def describe(c: ClaimCurves) -> str:
    """One line per model: its positions and test accuracy at the last one."""
    out = []
    for m in c.models:
        acc = c.accuracy[m][-1]
        out.append(f"{m}: {len(c.x[m])} points along {c.axis} ({', '.join(c.x_labels[m])}); "
                   f"test accuracy at the last {acc:.3f}" if not math.isnan(acc) else
                   f"{m}: {len(c.x[m])} points along {c.axis} ({', '.join(c.x_labels[m])})")
    return "\n".join(out)
