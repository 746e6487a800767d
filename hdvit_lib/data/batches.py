"""Fixed mini-batches of the training loss (Park & Kim 2022, Sec. 2: the landscape and the Hessian
are measured on augmented training data, with the authors' Mixup/CutMix and label smoothing)."""

from __future__ import annotations

import math
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
