"""Loss landscapes along random directions scaled to the weights (Park & Kim 2022, Sec. 2, Fig. 1a, Fig. 5).

The paper visualises ``L(w* + a d1 + b d2)`` on a 2-D grid around the trained weights ``w*``,
with ``d1, d2`` random Gaussian directions scaled to the weights, and plots the training loss as the
official code (``ops/loss_landscapes.py``, ``losslandscape.ipynb``) computes it: soft-target NLL on
augmented, Mixup/CutMix-ed training images with label smoothing 0.1, plus
``weight_decay * sum_k ||w_k||_2`` (not squared; 0.05) -- :mod:`hdvit_lib.analysis.objective`.

Two direction normalisations: the authors' ``normalize_filter`` (``norm="official"``, the
default) divides by norms over dim 0 -- across filters, one norm per input position -- while Li et
al. 2018 ("Visualizing the Loss Landscape of Neural Nets", ``norm="filter"``) use one norm per
output filter. Both zero the direction of 1-D tensors (biases, norm scales) and of tensors whose
name contains ``pos_embed`` or ``relative_position`` (the authors' ``kws``); the class token moves.

The grid is evaluated without copying the model: weights of several grid points are stacked and
run in one ``torch.func.vmap`` over ``functional_forward`` (chunked to bound memory), with a loop
over grid points as the fallback.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import vmap
from tqdm.auto import tqdm

from hdvit_lib.analysis.hessian import FlatParams, analysis_mode, functional_forward
from hdvit_lib.analysis.objective import (
    PENALTIES,
    hard_labels,
    l2_penalty,
    soft_cross_entropy,
)
from hdvit_lib.analysis.result import Result
from hdvit_lib.distributed import (
    gather,
    gather_shards,
    is_main,
    shard_indices,
    use_sharding,
    world_size,
)
from hdvit_lib.modes import amp_dtype

NORMS = ("filter", "official")
BACKENDS = ("auto", "vmap", "loop")
ZERO_KEYS = ("pos_embed", "relative_position")  # losslandscape.ipynb: kws=["pos_embed", "relative_position"]
Batch = tuple[torch.Tensor, torch.Tensor]


def random_direction(
    model: nn.Module,
    seed: int = 0,
    norm: str = "official",
    zero_keys: Sequence[str] = ZERO_KEYS,
) -> dict[str, torch.Tensor]:
    """A random direction in weight space, normalised to the scale of the weights.

    For every trainable tensor ``w`` a Gaussian ``d`` of the same shape, rescaled
    ``norm="official"`` (Park & Kim's ``normalize_filter``, the default):
    ``d <- d / (||d||_dim0 + 1e-7) * ||w||_dim0``, norms taken over dim 0 (across filters, one per
    input position; a (1, 1, C) class token is rescaled element by element);
    ``norm="filter"`` (Li et al. 2018): per output filter ``i`` (index 0),
    ``d_i <- d_i / ||d_i|| * ||w_i||``. Tensors with fewer than 2 dimensions (biases, norm scales)
    and tensors whose name contains one of ``zero_keys`` (positional embeddings, relative-position
    tables) get a zero direction. Buffers (BatchNorm statistics) are never moved (the authors' code
    zeroes their direction too).
    Returns ``{parameter name: direction}``.
    """
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not one of {NORMS}")
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, w in model.named_parameters():
        if not w.requires_grad:
            continue
        w = w.detach()
        d = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w.device)
        if w.dim() < 2 or any(k in name for k in zero_keys):
            out[name] = torch.zeros_like(w)
            continue
        if norm == "filter":
            dims = tuple(range(1, w.dim()))
            wn = torch.linalg.vector_norm(w.double(), dim=dims, keepdim=True)
            dn = torch.linalg.vector_norm(d, dim=dims, keepdim=True)
        else:
            wn = w.double().norm(dim=0, keepdim=True)
            dn = d.norm(dim=0, keepdim=True)
        out[name] = (d / (dn + 1e-7) * wn).to(w.dtype)
    return out


@dataclasses.dataclass
class Landscape(Result):
    """Loss on a 2-D grid ``w* + a d1 + b d2``; arrays are indexed ``[i_b, i_a]`` (rows: b)."""

    a: np.ndarray  # (n,) coordinates along d1
    b: np.ndarray  # (n,) coordinates along d2
    nll: np.ndarray  # (n, n) mean criterion (NLL) over the fixed images
    loss: np.ndarray  # (n, n) nll + weight_decay * l2_norms (what the paper plots)
    l2_norms: np.ndarray  # (n, n) the L2 term: sum of per-tensor L2 norms (penalty "authors")
    accuracy: np.ndarray  # (n, n) top-1 accuracy
    model: str = ""
    n_points: int = 21
    span: float = 1.0
    seed: int = 0
    weight_decay: float = 0.05
    norm: str = "official"
    penalty: str = "authors"
    n_images: int = 0
    backend: str = ""
    seconds: float = 0.0


def _grid_eval(
    model: nn.Module,
    flat: FlatParams,
    W: torch.Tensor,
    batches: Sequence[Batch],
    criterion: Callable,
    backend: str,
    amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over images of the criterion and of correct predictions, for each row of ``W`` (G, P);
    ``amp``: the forward passes in autocast (:func:`hdvit_lib.modes.amp_dtype`: bf16, or fp16 on
    GPUs without bf16), the criterion on float32 logits."""
    nll = torch.zeros(W.shape[0], dtype=torch.float64)
    correct = torch.zeros(W.shape[0], dtype=torch.float64)
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=amp_dtype(x.device), enabled=amp):
            if backend == "vmap":
                logits = vmap(lambda w, x=x: functional_forward(model, flat.unflatten(w), x))(W)
            else:
                logits = torch.stack([functional_forward(model, flat.unflatten(w), x) for w in W])
        logits = logits.float()
        losses = torch.stack([criterion(lg, y) for lg in logits])  # mean over the batch
        nll += losses.double().cpu() * len(y)
        correct += (logits.argmax(-1) == hard_labels(y)).sum(-1).double().cpu()
    return nll, correct


def loss_landscape(
    model: nn.Module,
    batches: Sequence[Batch],
    n_points: int = 21,
    span: float = 1.0,
    seed: int = 0,
    weight_decay: float = 0.05,
    norm: str = "official",
    criterion: Callable | None = None,
    chunk: int = 16,
    backend: str = "auto",
    zero_keys: Sequence[str] = ZERO_KEYS,
    name: str = "",
    progress: bool = True,
    distributed: bool | str = "auto",
    amp: bool = False,
    penalty: str = "authors",
) -> Landscape:
    """The loss surface around the current weights (Park & Kim 2022, Fig. 1a; Li et al. 2018).

    ``L(a, b) = NLL(w* + a d1 + b d2) + weight_decay * sum_k ||w_k + a d1_k + b d2_k||_2`` on the
    grid ``a, b in linspace(-span, span, n_points)``, over the fixed ``batches`` (all images
    averaged; targets: class indices or the soft targets of mixup, as the authors' batches carry),
    with ``d1, d2 = random_direction(model, seed, norm), random_direction(model, seed + 1, norm)``.
    ``penalty="squared"``: ``weight_decay / 2 * ||w||^2`` instead (:mod:`~hdvit_lib.analysis.objective`).
    The model runs in eval mode (:func:`~hdvit_lib.analysis.hessian.analysis_mode`; restored).

    backend: ``"vmap"`` evaluates ``chunk`` grid points in one vmapped call over stacked weights;
    ``"loop"`` one grid point at a time (still no copy of the model); ``"auto"``: the loop on a CPU
    (where vmap measured 1.4x slower than it), else vmap, falling back to the loop where vmap fails
    (e.g. data-dependent control flow).

    amp: run the forward passes in bf16 autocast (the criterion and the sums stay float32/64). It
    is what makes a paper-size grid fast on a GPU's tensor cores; it costs exactness (the NLL moves
    by ~1e-3 relative; ``benchmarks/gpu.py`` reports the difference it measured). The ``paper``
    preset turns it on (``landscape_amp``); off by default.

    distributed: ``"auto"`` (default): under ``torchrun`` (a process group with world > 1, see
    :func:`hdvit_lib.distributed.setup`) rank ``r`` of ``N`` evaluates grid points ``r, r + N, ...``
    (row-major) and every rank gets the whole grid; every rank must pass the same ``batches``.
    ``False``: no sharding. See :func:`hdvit_lib.distributed.use_sharding`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    if penalty not in PENALTIES:
        raise ValueError(f"penalty={penalty!r} is not one of {', '.join(PENALTIES)}")
    if n_points < 1 or chunk < 1:
        raise ValueError(f"n_points={n_points} and chunk={chunk} must be >= 1")
    sharded = use_sharding(distributed)
    criterion = soft_cross_entropy if criterion is None else criterion
    flat = FlatParams(model)
    dev = flat.w.device
    batches = [(x.to(dev), y.to(dev)) for x, y in batches]
    dirs = [random_direction(model, s, norm, zero_keys) for s in (seed, seed + 1)]
    D = torch.stack([torch.cat([d[n].reshape(-1) for n in flat.names]) for d in dirs])  # (2, P)
    coords = np.linspace(-span, span, n_points)
    B, A = np.meshgrid(coords, coords, indexing="ij")
    ab = torch.as_tensor(np.stack([A.ravel(), B.ravel()], 1), dtype=flat.w.dtype, device=dev)
    n_grid = len(ab)
    if sharded:  # this rank's grid points (strided); gathered back into grid order below
        ab = ab[torch.tensor(shard_indices(n_grid, "strided"), dtype=torch.long, device=dev)]
    nll = torch.zeros(len(ab), dtype=torch.float64)
    correct = torch.zeros(len(ab), dtype=torch.float64)
    l2 = torch.zeros(len(ab), dtype=torch.float64)
    # on a CPU the vmapped (grouped) convolutions measured slower than the loop (benchmarks/RESULTS.md)
    used = "loop" if backend == "loop" or (backend == "auto" and dev.type == "cpu") else None
    t0 = time.perf_counter()
    with analysis_mode(model), torch.no_grad():
        desc = f"loss landscape (rank 0 of {world_size()})" if sharded else "loss landscape"
        for s in tqdm(range(0, len(ab), chunk), desc=desc, disable=not progress or not is_main()):
            W = flat.w + ab[s : s + chunk] @ D  # (G, P)
            l2[s : s + chunk] = l2_penalty(W.split(flat.sizes, 1), penalty).double().cpu()
            if used is None:
                try:
                    nll[s : s + chunk], correct[s : s + chunk] = _grid_eval(model, flat, W, batches, criterion, "vmap", amp)
                    used = "vmap"
                    continue
                except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
                    if backend == "vmap":
                        raise
                    warnings.warn(f"loss_landscape: vmap failed ({type(e).__name__}: {e}); looping over points")
                    used = "loop"
            nll[s : s + chunk], correct[s : s + chunk] = _grid_eval(model, flat, W, batches, criterion, used, amp)
    if sharded:
        nll, correct, l2 = (gather_shards(t, n_grid, "strided") for t in (nll, correct, l2))
        used = ",".join(sorted({u for u in gather(used) if u})) or None
    n_images = sum(len(y) for _, y in batches)
    shape = (n_points, n_points)
    nll_g = (nll / n_images).numpy().reshape(shape)
    l2_g = l2.numpy().reshape(shape)
    return Landscape(
        a=coords,
        b=coords.copy(),
        nll=nll_g,
        loss=nll_g + weight_decay * l2_g,
        l2_norms=l2_g,
        accuracy=(correct / n_images).numpy().reshape(shape),
        model=name,
        n_points=n_points,
        span=float(span),
        seed=seed,
        weight_decay=float(weight_decay),
        norm=norm,
        penalty=penalty,
        n_images=n_images,
        backend=used or "",
        seconds=time.perf_counter() - t0,
    )


@dataclasses.dataclass
class Trajectory(Result):
    """Polar coordinates of an optimisation path relative to its end point ``w*``."""

    r: np.ndarray  # (T,) |w_t - w*| / |w_0 - w*|
    theta: np.ndarray  # (T,) angle between w_t - w* and w_0 - w*, radians
    keys: list[str] = dataclasses.field(default_factory=list)


def trajectory(
    snapshots: Sequence[Mapping[str, torch.Tensor]],
    final: Mapping[str, torch.Tensor],
    keys: Sequence[str] | None = None,
) -> Trajectory:
    """Optimisation trajectory in polar coordinates (Park & Kim 2022, first arXiv version, Fig. 1).

    ``r_t = |w_t - w*| / |w_0 - w*|`` and ``theta_t = angle(w_t - w*, w_0 - w*)`` for the snapshots
    ``w_0 = snapshots[0], ..., w_T`` of a run ending at ``w* = final`` (state dicts).
    Caveat: the panel is not in the paper's later versions (the authors gave no reason); it is
    kept for completeness, not as evidence.
    keys: state-dict entries to use; default: every floating-point entry of ``final`` except
    BatchNorm running statistics.
    """
    if not snapshots:
        raise ValueError("trajectory needs at least one snapshot (the initial weights)")
    if keys is None:
        keys = [
            k for k, v in final.items() if torch.is_floating_point(v) and not k.endswith(("running_mean", "running_var"))
        ]

    def vec(sd: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([sd[k].detach().double().cpu().reshape(-1) for k in keys])

    w_star = vec(final)
    u0 = vec(snapshots[0]) - w_star
    n0 = u0.norm()
    if n0 == 0:
        raise ValueError("the first snapshot equals the final weights: r is undefined")
    r, theta = [], []
    for sd in snapshots:
        u = vec(sd) - w_star
        nu = u.norm()
        r.append(float(nu / n0))
        cos = float((u @ u0) / (nu * n0)) if nu > 0 else 1.0
        theta.append(math.acos(max(-1.0, min(1.0, cos))))
    return Trajectory(r=np.asarray(r), theta=np.asarray(theta), keys=list(keys))


def landscape_curvature(ls: Landscape, z: str = "loss", radius: float = 0.5) -> float:
    """Mean curvature of the surface ``z`` around the centre: the least-squares quadratic
    ``c0 + c1 a + c2 b + c3 a^2 + c4 ab + c5 b^2`` over the grid points with
    ``max(|a|, |b|) <= radius * span`` (the centre's neighbourhood: far points of a sharp model can
    be orders of magnitude higher and would dominate the fit); returns the mean eigenvalue of its
    Hessian ``[[2 c3, c4], [c4, 2 c5]]``, i.e. ``c3 + c5`` (per unit of the normalised direction
    squared). Larger is sharper; negative means the centre is not a minimum on average. Falls back to
    the 3 x 3 points around the centre if fewer than 9 points are that close."""
    zz = np.asarray(getattr(ls, z), dtype=float)
    a_, b_ = np.asarray(ls.a, float), np.asarray(ls.b, float)
    B, A = np.meshgrid(b_, a_, indexing="ij")
    span = max(np.abs(a_).max(), np.abs(b_).max())
    near = np.maximum(np.abs(A), np.abs(B)) <= radius * span + 1e-12
    if near.sum() < 9:
        ia = np.argsort(np.abs(a_))[:3]
        ib = np.argsort(np.abs(b_))[:3]
        near = np.zeros_like(near)
        near[np.ix_(ib, ia)] = True
    ok = near & np.isfinite(zz)
    if ok.sum() < 6:
        return float("nan")
    a, b, y = A[ok], B[ok], zz[ok]
    X = np.stack([np.ones_like(a), a, b, a * a, a * b, b * b], 1)
    c = np.linalg.lstsq(X, y, rcond=None)[0]
    return float(c[3] + c[5])
