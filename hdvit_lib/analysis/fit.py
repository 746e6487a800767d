"""Training NLL against test error (Park & Kim 2022, Sec. 2, Fig. 5 and App. Fig. C.2): "the lower
the training NLL, the lower the test error" -- a weak inductive bias underfits, it does not overfit."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from hdvit_lib.analysis.hessian import analysis_mode
from hdvit_lib.analysis.result import Result
from hdvit_lib.data.batches import Batches, training_batches


@dataclass
class FitResult(Result):
    """One point per run: training NLL and test error (Figs. 5-7, C.2), with the run's settings."""

    labels: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    data_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0))
    patch_size: np.ndarray = field(default_factory=lambda: np.zeros(0))  # NaN: no patch embedding
    window: np.ndarray = field(default_factory=lambda: np.zeros(0))  # NaN: global attention / none
    nll_train: np.ndarray = field(default_factory=lambda: np.zeros(0))
    error_test: np.ndarray = field(default_factory=lambda: np.zeros(0))
    has_msa: list[bool] = field(default_factory=list)
    n_images: int = 0


def train_nll(model: nn.Module, batches: Batches) -> float:
    """Mean cross-entropy (no label smoothing) of ``model`` in eval mode over ``batches``."""
    total, n = 0.0, 0
    dev = next(model.parameters()).device
    with analysis_mode(model), torch.no_grad():
        for x, y in batches:
            total += float(nn.functional.cross_entropy(model(x.to(dev)), y.to(dev), reduction="sum"))
            n += len(y)
    return total / n


def patch_size_of(model: nn.Module) -> float:
    """The patch size of a model with a patch embedding (timm's ``patch_embed.patch_size``), else NaN."""
    pe = getattr(model, "patch_embed", None)
    ps = getattr(pe, "patch_size", None)
    if ps is None:
        return float("nan")
    return float(ps[0] if isinstance(ps, (tuple, list)) else ps)


def default_setting(model: str, setting: str, cfg: dict[str, Any]) -> Any:
    """The value of ``setting`` (e.g. ``patch_size``) that ``model`` gets by default in preset ``cfg``
    (tiny or paper size), or None if it has no such attribute."""
    from hdvit_lib.models import get_model

    m = get_model(model, tiny=bool(cfg["tiny"]))
    if setting == "patch_size":
        ps = patch_size_of(m)
        return None if math.isnan(ps) else int(ps)
    return getattr(m, setting, None)


def fit_points(trained: Mapping[str, Any], cfg: dict[str, Any], seed: int = 0,
               n_images: int | None = None) -> FitResult:
    """Training NLL and test error of every zoo run ``{label: Trained}`` (Park & Kim 2022, Sec. 2,
    Figs. 5-7, C.2: "the lower the training NLL, the lower the test error"). NLL: mean cross-entropy
    in eval mode on ``n_images`` (default ``analysis_images``) fixed augmented images of the run's
    *own* training set (its data fraction), against their labels (no mixup: the paper does not say
    how its training NLL was taken); error: ``1 - test accuracy`` after the last epoch."""
    n = int(n_images if n_images is not None else cfg["analysis_images"])
    bs = min(64, n)
    res = FitResult(n_images=n)
    fr, ps, win, nll, err = [], [], [], [], []
    for label, t in trained.items():
        f = float(t.config.get("data_fraction", 1.0))
        batches = training_batches(cfg, math.ceil(n / bs), bs, seed, data_fraction=f, mix=False)
        res.labels.append(label)
        res.models.append(t.config["model"])
        res.has_msa.append(any(b.kind == "msa" for b in t.model.blocks()))
        fr.append(f)
        ps.append(patch_size_of(t.model))
        window = t.config.get("model_cfg", {}).get("window")  # None: global attention
        win.append(float("nan") if window is None else float(window))
        nll.append(train_nll(t.model, batches))
        err.append(1.0 - t.history.final("test_acc"))
    res.data_fraction, res.patch_size, res.window = np.asarray(fr), np.asarray(ps), np.asarray(win)
    res.nll_train, res.error_test = np.asarray(nll), np.asarray(err)
    return res


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 points or constant data."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


@dataclass
class DataFractionResult(Result):
    """Test accuracy (``accuracy[model, fraction]``) of models trained on fractions of the training set."""

    models: list[str] = field(default_factory=list)
    fractions: list[float] = field(default_factory=list)
    accuracy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    n_train: list[int] = field(default_factory=list)
    n_test: int = 0
    preset: str = ""
