"""Representation similarity by linear CKA (Park & Kim 2022, Sec. 4, Fig. 10a).

Centered kernel alignment (Kornblith et al. 2019) of every pair of block outputs. Over many
images it is estimated by minibatch CKA with the unbiased HSIC (Nguyen, Raghu & Kornblith 2021,
"Do wide and deep networks learn the same things?"): with the biased HSIC the minibatch
estimate of independent features is far from 0 (0.89 at 64 samples, see DESIGN pitfalls).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hdvit_lib.analysis.features import (
    Features,
    collect_batches,
    eval_mode,
    get_blocks,
    model_device,
)
from hdvit_lib.analysis.result import Result
from hdvit_lib.models.blocks import as_feature_map


def linear_cka(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Full-batch linear CKA of two (n, d) representations of the same n examples.

    ``CKA = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)`` with column-centred X_c, Y_c
    (Kornblith et al. 2019, Eq. 5; the biased HSIC). Extra dims are flattened per example.
    """
    x, y = _flat64(x), _flat64(y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same examples: {x.shape[0]} != {y.shape[0]}")
    x, y = x - x.mean(0), y - y.mean(0)
    xy = (y.T @ x).pow(2).sum() if x.shape[1] * y.shape[1] <= x.shape[0] ** 2 else _gram_dot(x, y)
    xx = (x.T @ x).pow(2).sum() if x.shape[1] <= x.shape[0] else _gram_dot(x, x)
    yy = (y.T @ y).pow(2).sum() if y.shape[1] <= y.shape[0] else _gram_dot(y, y)
    return float(xy / (xx.sqrt() * yy.sqrt()))


def hsic_unbiased(k: torch.Tensor, ell: torch.Tensor) -> float:
    """Unbiased HSIC of two (n, n) Gram matrices (Song et al. 2012; Nguyen et al. 2021, Eq. 3), n >= 4:

    ``[tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3))``,
    with K~, L~ the Gram matrices with their diagonals set to 0.
    """
    n = k.shape[0]
    k = k.double() - torch.diag(torch.diag(k.double()))
    ell = ell.double() - torch.diag(torch.diag(ell.double()))
    one = torch.ones(n, 1, dtype=torch.float64)
    t = torch.trace(k @ ell) + (one.T @ k @ one) * (one.T @ ell @ one) / ((n - 1) * (n - 2))
    t = t - 2.0 / (n - 2) * (one.T @ k @ ell @ one)
    return float(t / (n * (n - 3)))


@dataclass
class CKAResult(Result):
    """matrix[i, j]: minibatch linear CKA between the outputs of blocks i and j (Fig. 10a)."""

    model: str
    names: list[str]
    kinds: list[str]
    depth: np.ndarray
    matrix: np.ndarray
    n_images: int
    n_batches: int


class HSICAccumulator:
    """Sums the unbiased HSIC of every pair of representations over minibatches.

    ``update(reps)`` takes one minibatch: a list of L representations (n, ...) of the same n
    examples. All L x L pairs cost one Gram matrix per representation and three (L x n^2)
    products, not one computation per pair.
    """

    def __init__(self) -> None:
        self.hsic: torch.Tensor | None = None
        self.n_images = 0
        self.n_batches = 0

    def update(self, reps: list[torch.Tensor]) -> None:
        n = reps[0].shape[0]
        if n < 4:
            raise ValueError(f"the unbiased HSIC needs minibatches of at least 4 examples, got {n}")
        grams = torch.stack([_gram(r) for r in reps])  # (L, n, n), diagonals zeroed
        flat = grams.reshape(len(reps), n * n)
        sums = flat.sum(1)
        rows = grams.sum(2)  # K~ 1
        h = flat @ flat.T + torch.outer(sums, sums) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (rows @ rows.T)
        h = h / (n * (n - 3))
        self.hsic = h if self.hsic is None else self.hsic + h
        self.n_images += n
        self.n_batches += 1

    def cka(self) -> np.ndarray:
        if self.hsic is None:
            raise ValueError("no minibatch was accumulated")
        d = torch.diag(self.hsic).clamp_min(0).sqrt()
        return (self.hsic / torch.outer(d, d)).numpy()


def cka_matrix(
    model_or_features: nn.Module | Features,
    loader_or_batches: Iterable | torch.Tensor | None = None,
    n_images: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    model_name: str = "",
) -> CKAResult:
    """Minibatch linear CKA between every pair of blocks (Park & Kim 2022, Fig. 10a).

    ``CKA(i, j) = sum_b HSIC_1(K_i^b, K_j^b) / sqrt(sum_b HSIC_1(K_i^b, K_i^b) sum_b HSIC_1(K_j^b, K_j^b))``
    with ``K_i^b = X_i^b X_i^b^T`` the linear Gram matrix of block i's flattened output on
    minibatch b and ``HSIC_1`` the unbiased HSIC (``hsic_unbiased``; Nguyen et al. 2021).
    Outputs are viewed as in ``extract_features`` (class tokens dropped).

    With a model: one pass over ``loader_or_batches`` (its own minibatches), every pair updated
    from the same forward; nothing is stored but the L x L sums. With ``Features``: their
    images in minibatches of ``batch_size`` (a last minibatch under 4 images is dropped).
    Eval mode, restored afterwards.
    """
    acc = HSICAccumulator()
    if isinstance(model_or_features, Features):
        f = model_or_features
        names, kinds, n_blocks = f.names, f.kinds, len(f)
        for s in range(0, f.n_images, batch_size):
            if min(batch_size, f.n_images - s) >= 4:
                acc.update([o[s : s + batch_size] for o in f.outputs])
    else:
        if loader_or_batches is None:
            raise ValueError("give either Features, or a model together with loader_or_batches")
        model = model_or_features
        blocks = get_blocks(model)
        names, kinds, n_blocks = [b.name for b in blocks], [b.kind for b in blocks], len(blocks)
        dev = torch.device(device) if device is not None else model_device(model)
        with eval_mode(model, blocks), torch.no_grad():
            for x, _ in tqdm(collect_batches(loader_or_batches, n_images), desc="CKA", leave=False):
                if x.shape[0] < 4:
                    continue
                x, reps = x.to(dev), []
                for b in blocks:
                    x = b.module(x)
                    fmap = as_feature_map(x, b)
                    reps.append(fmap if fmap is not None else x)
                acc.update(reps)
    return CKAResult(
        model=model_name,
        names=list(names),
        kinds=list(kinds),
        depth=np.arange(n_blocks) / max(n_blocks - 1, 1),
        matrix=acc.cka(),
        n_images=acc.n_images,
        n_batches=acc.n_batches,
    )


def _flat64(a: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(a)
    return t.reshape(t.shape[0], -1).double().cpu()


def _gram(r: torch.Tensor) -> torch.Tensor:
    x = r.reshape(r.shape[0], -1).double()  # the Gram is formed where r lives, then moved
    g = (x @ x.T).cpu()
    return g - torch.diag(torch.diag(g))


def _gram_dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """<X X^T, Y Y^T>_F = ||Y^T X||_F^2, computed through the (n, n) Gram matrices (d > n)."""
    return ((x @ x.T) * (y @ y.T)).sum()


def stage_similarity(cka: CKAResult, stages: Sequence[int]) -> tuple[float, float]:
    """Mean CKA of block pairs within a stage and across stages (off-diagonal, Conv/MSA/MLP/pool
    blocks only: the embedding and the head are left out). NaN where there is no such pair."""
    keep = [i for i, k in enumerate(cka.kinds) if k in ("conv", "msa", "mlp", "pool")]
    within, across = [], []
    for a in keep:
        for b in keep:
            if a < b:
                (within if stages[a] == stages[b] else across).append(float(cka.matrix[a, b]))
    return (float(np.mean(within)) if within else float("nan"), float(np.mean(across)) if across else float("nan"))
