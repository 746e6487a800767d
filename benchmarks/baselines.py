"""The paper's way of computing things, as the benchmarks' baselines (shared by every script here).

- :func:`pyhessian_power`: PyHessian's ``hessian(...).eigenvalues(top_n=k)`` (Yao et al. 2020), the
  method the paper's Hessian spectra follow: one gradient graph, Hessian-vector products by double
  backward, deflated power iteration, one mini-batch at a time.
- :func:`deepcopy_landscape`: the official landscape code's loop: for every grid point a deep copy of
  the model, its weights moved along two directions, a full pass over the images.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


def pyhessian_power(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, tol: float, max_iter: int,
                    seed: int = 0) -> tuple[np.ndarray, int]:
    """Top-``k`` Hessian eigenvalues of the cross-entropy on ``(x, y)`` by deflated power iteration.

    Returns the eigenvalues sorted by magnitude (largest first, sign kept) and the number of HVPs.
    The caller sets the model's mode (eval, no fused attention); see ``analysis_mode``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    loss = nn.functional.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator(device=x.device).manual_seed(seed)

    def dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
        return sum((u * v).sum() for u, v in zip(a, b, strict=True))

    def normalise(v: list[torch.Tensor]) -> list[torch.Tensor]:
        n = dot(v, v).sqrt() + 1e-6
        return [t / n for t in v]

    eigvals: list[float] = []
    eigvecs: list[list[torch.Tensor]] = []
    n_hvp = 0
    for _ in range(k):
        v = normalise([torch.randn(p.shape, device=p.device, generator=gen) for p in params])
        eig = None
        for _ in range(max_iter):
            for e in eigvecs:  # orthogonalise against the eigenvectors found so far (deflation)
                c = dot(v, e)
                v = [a - c * b for a, b in zip(v, e, strict=True)]
            v = normalise(v)
            hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
            n_hvp += 1
            new = float(dot(hv, v))
            v = normalise([t.detach() for t in hv])
            if eig is not None and abs(eig - new) / (abs(eig) + 1e-6) < tol:
                eig = new
                break
            eig = new
        eigvals.append(eig)
        eigvecs.append(v)
    vals = np.asarray(eigvals)
    return vals[np.argsort(-np.abs(vals), kind="stable")], n_hvp


def deepcopy_landscape(model: nn.Module, directions: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]],
                       coords: Sequence[tuple[float, float]], batches: Sequence[Batch]) -> list[float]:
    """Mean NLL at each grid point ``(a, b)``: deep-copy the model, add ``a*d1 + b*d2``, evaluate."""
    d1, d2 = directions
    n = sum(len(y) for _, y in batches)
    out = []
    for a, b in coords:
        m = copy.deepcopy(model).eval()
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name in d1:
                    p.add_(float(a) * d1[name] + float(b) * d2[name])
            nll = sum(float(nn.functional.cross_entropy(m(x), y, reduction="sum")) for x, y in batches)
        out.append(nll / n)
        del m
    return out
