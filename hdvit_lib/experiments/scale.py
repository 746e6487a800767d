"""Orchestration of chapter 14, "Claims over training and scale" (the book's own question, issue 13).

The paper shows each claim at one point: the end of 300 epochs on CIFAR-100. This chapter asks
*when* each claim shows: it measures every chapter's claim metric at each snapshot the zoo keeps
(init, end of warm-up, every ``snapshot_every`` epochs, final) for a Conv model (ResNet) and an MSA
model (ViT), and then on final weights along two scale axes: model size and training-set size,
and across the offline data sets (the generated ``synthetic`` set and the FractalDB-style
``fractal`` set, at the same budget: which one lets the claims show?).

Nothing here is a new analysis: each metric is the library's analysis function on a snapshot
(``hdvit_lib.analysis.claim_curves.claim_metrics``), with the preset's ``analysis_scale`` budget.
This module holds the runs along each axis and the claims read from the curves. CKA and the
lesion study (Fig. 10) are left out: see ``SKIPPED``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hdvit_lib.analysis.claim_curves import (
    METRICS,
    ClaimCurves,
    claim_curves,
    claim_metrics,
    first_holding,
    trend,
)
from hdvit_lib.data.batches import Batches, analysis_batches, training_batches
from hdvit_lib.experiments.common import run_spec, train_runs
from hdvit_lib.train.cache import model_at

#: The two models whose claims are compared (a Conv model and an MSA model, told apart by kinds).
MODELS = ("resnet50", "vit_ti")

#: What this chapter does not measure, and why (said in the chapter).
SKIPPED = ("CKA block structure and the lesion pattern (Fig. 10): a CKA matrix and one lesioned "
           "evaluation per block at every snapshot cost more than the rest of the chapter together; "
           "chapter 10 measures them on final weights")


# --------------------------------------------------------------------------- data and runs


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
    return claim_curves("epoch", points, lambda m: claim_metrics(m, data, cfg, seed), n)


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
    return claim_curves(axis, points, lambda m: claim_metrics(m, data, cfg, seed), n)


def over_datasets(models: Sequence[str], cfg: dict[str, Any], seed: int = 0,
                  progress: bool = False) -> ClaimCurves | None:
    """``claim_metrics`` of ``models`` trained with the preset's schedule on each data set of the
    preset's ``analysis_scale["datasets"]`` (None when it names none), each measured on its own
    data set's images and batches (``scale_data``). A data set's own classes (``fractal``: 100) set
    the model's head; the preset's data set is the run the other chapters train (one cache entry)."""
    names = list(budget(cfg).get("datasets") or [])
    if not names:
        return None
    points: dict[str, list] = {}
    measure_with: dict[int, tuple[dict[str, Batches], dict[str, Any]]] = {}
    n = 0
    for name in names:
        cfg_d = {**cfg, "dataset": name, "num_classes": None, "weights": "trained"}
        trained = train_runs({f"{m} | {name}": run_spec(m) for m in models}, cfg_d, seed, progress)
        data = scale_data(cfg_d, seed)
        n = sum(len(x) for x, _ in data["images"])
        for label, t in trained.items():
            model = label.split(" | ")[0]
            points.setdefault(model, []).append((float(len(points.get(model, []))), name, t.model,
                                                 float(t.history.final("test_acc"))))
            measure_with[id(t.model)] = (data, cfg_d)
    return claim_curves("data set", points, lambda m: claim_metrics(m, *measure_with[id(m)], seed), n)


def dataset_choice(c: ClaimCurves) -> str:
    """Which data set of ``c`` (``over_datasets``) puts more of the claims' margins in the paper's
    direction: per claim, the data set with the larger margin, tallied; ties and NaNs count for
    neither. The test accuracies are given beside it (the margins mean little where a model has
    learnt little)."""
    labels = c.x_labels[_pair(c)[0]]
    wins = dict.fromkeys(labels, 0)
    for m in margins(c).values():
        if np.isnan(m).any() or np.ptp(m) == 0:
            continue
        wins[labels[int(np.argmax(m))]] += 1
    best = max(wins.values())
    leaders = [k for k, v in wins.items() if v == best]
    acc = "; ".join(f"{k}: {', '.join(f'{name} {c.accuracy[name][i]:.3f}' for name in c.models)}"
                    for i, k in enumerate(labels))
    tally = ", ".join(f"{k} {v}" for k, v in wins.items())
    lead = leaders[0] if len(leaders) == 1 else "neither"
    return (f"claims with the larger margin in the paper's direction, of {len(CLAIMS)}: {tally} "
            f"(ahead: {lead}); test accuracy {acc}")


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


def _trend_words(curves: Mapping[str, ClaimCurves], claim: str, marg: Mapping[str, dict[str, np.ndarray]]) -> str:
    parts, signs = [], []
    for axis, m in ((c.axis, marg[a][claim]) for a, c in curves.items()):
        s = trend(m)
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


def describe(c: ClaimCurves) -> str:
    """One line per model: its positions and test accuracy at the last one."""
    out = []
    for m in c.models:
        acc = c.accuracy[m][-1]
        out.append(f"{m}: {len(c.x[m])} points along {c.axis} ({', '.join(c.x_labels[m])}); "
                   f"test accuracy at the last {acc:.3f}" if not math.isnan(acc) else
                   f"{m}: {len(c.x[m])} points along {c.axis} ({', '.join(c.x_labels[m])})")
    return "\n".join(out)
