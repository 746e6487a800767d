"""Fixed batches the analyses read: mini-batches of the training loss (Park & Kim 2022, Sec. 2: the
landscape and the Hessian are measured on augmented training data, with the authors' Mixup/CutMix
and label smoothing), test images for the per-block analyses, and pixel images for corruptions."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def training_batches(cfg: dict[str, Any], n_batches: int, batch_size: int, seed: int = 0,
                     data_fraction: float = 1.0, mix: bool = True) -> Batches:
    """``n_batches`` fixed mini-batches of ``batch_size`` *augmented* training images, normalised as in
    training: the data of the training loss that the paper's landscape and Hessian measure.

    ``mix=True`` (the authors' protocol, ``losslandscape.ipynb``): each batch is passed through the
    authors' Mixup/CutMix with label smoothing (:func:`hdvit_lib.data.transforms.authors_mixup`), so
    the targets are soft (B, C); mixing is drawn from ``seed`` (numpy's generator, restored after),
    so every grid point and every model sees the same mixed batches. ``mix=False``: class indices.
    The same ``seed`` gives the same images and augmentations. Fewer batches if the training set is
    smaller."""
    from hdvit_lib.data import get_loaders
    from hdvit_lib.data.transforms import authors_mixup

    loaders = get_loaders({**cfg, "batch_size": int(batch_size)}, seed=seed, data_fraction=data_fraction)
    mixer = authors_mixup(loaders.num_classes, float(cfg.get("label_smoothing", 0.1))) if mix else None
    if mixer is not None and batch_size % 2:
        raise ValueError(f"mixup pairs images within a batch: batch_size={batch_size} must be even")
    out: Batches = []
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            for x, y in loaders.train:
                if len(out) == n_batches:
                    break
                if len(out) and x.shape[0] != out[0][0].shape[0]:
                    break  # a short last batch: keep equal shapes (Hessians are stacked)
                x, y = x.cpu(), torch.as_tensor(y).cpu()
                if mixer is not None:
                    x, y = mixer(x.clone(), y)
                out.append((x, y))
        finally:
            np.random.set_state(np_state)
    if not out:
        raise ValueError(f"the training set holds fewer than batch_size={batch_size} images")
    return out


def hessian_batches(cfg: dict[str, Any], seed: int = 0, data_fraction: float = 1.0) -> Batches:
    """The preset's Hessian mini-batches (``hessian_batches`` of ``hessian_batch_size``)."""
    return training_batches(cfg, cfg["hessian_batches"], cfg["hessian_batch_size"], seed, data_fraction)


def landscape_batches(cfg: dict[str, Any], seed: int = 0, batch_size: int = 128) -> Batches:
    """``landscape_images`` augmented training images in batches of ``batch_size``."""
    n = int(cfg["landscape_images"])
    bs = min(batch_size, n)
    return training_batches(cfg, math.ceil(n / bs), bs, seed)


def analysis_batches(cfg: dict[str, Any], seed: int = 0, n_images: int | None = None) -> Batches:
    """The first ``n_images`` (default ``cfg["analysis_images"]``) test images of the preset's
    data set, normalised as in training, as ``[(images, labels), ...]`` on the CPU: the images of
    the per-block analyses (Park & Kim 2022, Secs. 3-4, Figs. 2, 8-10).

    A fixed list, so every analysis (and the features cache) sees the same images."""
    from hdvit_lib.data import get_loaders

    n = int(n_images if n_images is not None else cfg["analysis_images"])
    loaders = get_loaders(cfg, seed=seed)
    out: Batches = []
    seen = 0
    for x, y in loaders.test:
        take = min(n - seen, x.shape[0])
        out.append((x[:take].cpu(), torch.as_tensor(y[:take]).cpu()))
        seen += take
        if seen >= n:
            break
    if seen < n:
        print(f"the test split holds only {seen} images (asked for {n})")
    return out


def image_size(batches: Iterable | torch.Tensor) -> tuple[int, int]:
    """(height, width) of the images of ``batches``: a tensor, or batches of tensors or of
    ``(images, labels)`` pairs (the first batch is read)."""
    x = batches if isinstance(batches, torch.Tensor) else next(iter(batches))
    x = x[0] if isinstance(x, (tuple, list)) else x
    return int(x.shape[-2]), int(x.shape[-1])


def corruption_images(cfg: Mapping[str, Any], n: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images in [0, 1] (not normalised: corruptions act on pixels) and labels
    (Park & Kim 2022, Fig. 12b: the images ``corruption_robustness`` corrupts)."""
    from hdvit_lib.data import get_dataset

    ds = get_dataset(cfg["dataset"], "test", seed=seed, n=cfg.get("n_test"), num_classes=cfg.get("num_classes"))
    k = len(ds) if n is None else min(int(n), len(ds))
    xs, ys = zip(*(ds[i] for i in range(k)))
    return torch.stack(xs), torch.as_tensor(ys)
