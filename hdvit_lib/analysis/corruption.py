"""Corruption robustness (Park & Kim 2022, Sec. 4, Fig. 12b; Hendrycks & Dietterich, ICLR 2019):
accuracy on CIFAR-C-style corrupted test images (``hdvit_lib.data.corruptions``), beside the
frequency-band robustness of Fig. 2b (:mod:`hdvit_lib.analysis.robustness`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hdvit_lib.analysis.result import Result
from hdvit_lib.data.corruptions import (
    CIFAR_C_NAMES,
    CORRUPTIONS,
    SEVERITIES,
    _check,
    cifar_c_dataset,
    corrupt,
)
from hdvit_lib.modes import eval_mode, model_device


@dataclass
class RobustnessCResult(Result):
    """Accuracy per corruption (rows, ``names``) and severity (columns, ``severities``)."""

    names: list[str] = field(default_factory=list)
    severities: list[int] = field(default_factory=list)
    accuracy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    mean_accuracy: float = float("nan")
    clean_accuracy: float = float("nan")
    n_images: int = 0
    source: str = "generated"
    seed: int = 0

    @property
    def per_corruption(self) -> dict[str, float]:
        """Mean accuracy over severities, per corruption."""
        return {n: float(a) for n, a in zip(self.names, self.accuracy.mean(axis=1))}


@torch.no_grad()
def _accuracy(model: torch.nn.Module, batches, normalize, device) -> tuple[int, int]:
    correct = total = 0
    mean = std = None
    if normalize is not None:
        mean = torch.tensor(normalize[0], device=device).view(1, -1, 1, 1)
        std = torch.tensor(normalize[1], device=device).view(1, -1, 1, 1)
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        if mean is not None:
            x = (x - mean) / std
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return correct, total


def corruption_robustness(
    model: torch.nn.Module,
    images: Tensor | None,
    labels: Tensor | None,
    names: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    batch_size: int = 256,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device | None = None,
    root: str | Path | None = None,
    variant: str = "CIFAR-100-C",
    n: int | None = None,
) -> RobustnessCResult:
    """Corruption robustness (Park & Kim 2022, Fig. 12b; Hendrycks & Dietterich 2019): the
    accuracy ``acc[c, s]`` on test images corrupted by ``c`` at severity ``s``, and the paper's
    robustness, the mean over all of them, ``mean_{c, s} acc[c, s]`` (in [0, 1]).

    The corrupted images are generated from ``images`` (float ``(N, 3, H, W)`` in [0, 1]) with
    ``data.corruptions.corrupt`` (batch ``b`` gets seed ``seed + b``), or, with ``root``, read from the
    released CIFAR-100-C files (``images``/``labels`` then only give the clean accuracy and may
    be ``None``). ``normalize=(mean, std)`` is applied after corrupting. The model is run in
    eval mode and its mode restored; ``n`` keeps the first ``n`` images.
    """
    from tqdm.auto import tqdm

    valid = CIFAR_C_NAMES if root is not None else CORRUPTIONS
    for nm in names:
        for s in severities:
            _check(nm, s, valid)
    if root is None and (images is None or labels is None):
        raise ValueError("give images and labels, or root= for the CIFAR-C files")
    if images is not None and n is not None:
        images, labels = images[:n], labels[:n]
    device = torch.device(device) if device is not None else model_device(model)
    with eval_mode(model):
        acc = np.zeros((len(names), len(severities)))
        clean, n_img = float("nan"), 0
        if images is not None:
            labels = torch.as_tensor(labels)
            chunks = [(images[i : i + batch_size], labels[i : i + batch_size])
                      for i in range(0, len(labels), batch_size)]
            c, t = _accuracy(model, chunks, normalize, device)
            clean, n_img = c / t, t
        for (i, nm), (j, s) in tqdm([(a, b) for a in enumerate(names) for b in enumerate(severities)],
                                    desc="corruptions", leave=False):
            if root is not None:
                ds = cifar_c_dataset(root, nm, s, variant=variant, n=n)
                batches = (ds.tensors(k, k + batch_size) for k in range(0, len(ds), batch_size))
            else:
                batches = ((corrupt(x, nm, s, seed=seed + b), y) for b, (x, y) in enumerate(chunks))
            c, t = _accuracy(model, batches, normalize, device)
            acc[i, j] = c / t
            n_img = t
    return RobustnessCResult(names=list(names), severities=[int(s) for s in severities],
                             accuracy=acc, mean_accuracy=float(acc.mean()), clean_accuracy=clean,
                             n_images=n_img, source=str(root) if root is not None else "generated",
                             seed=seed)
