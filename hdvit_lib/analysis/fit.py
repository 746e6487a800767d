"""Training NLL against test error (Park & Kim 2022, Sec. 2, Fig. 5 and App. Fig. C.2): "the lower
the training NLL, the lower the test error" -- a weak inductive bias underfits, it does not overfit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from hdvit_lib.analysis.hessian import analysis_mode
from hdvit_lib.analysis.result import Result
from hdvit_lib.data.batches import Batches


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
