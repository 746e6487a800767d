"""Hessian eigenvalues of the training loss (Park & Kim 2022, Sec. 2, Fig. 1b and Fig. 4).

The paper measures, for each of many mini-batches (batch 16, 10% of the training set), the top-5
eigenvalues of the Hessian ``H = d^2 L / dw^2`` of the training loss "NLL + L2" by deflated power
iteration (PyHessian, Yao et al. 2020), and plots their density: ViTs have many small and *negative*
eigenvalues (a non-convex landscape), ResNets large positive ones. The loss is the one the loss
landscape plots (:mod:`hdvit_lib.analysis.objective`, one definition for both):
``L(w) = CE(f(x; w), t) + weight_decay * sum_k ||w_k||_2`` with ``t`` the soft targets of the
authors' training pipeline (``experiments.landscape.training_batches``: augmented, Mixup/CutMix,
label smoothing 0.1). The paper states batch size, top-5, 10% of the training set and power
iteration; it leaves open whether the L2 term enters the Hessian and in which form, and which
batches (augmented or not): we use the landscape's loss and batches so that Figs. 1 and 4 measure
one function. A tensor whose norm is 0 at the point (zero-initialised biases at "init") adds no
curvature: ``||w_k||`` has no Hessian there.

Hessian-vector products ``Hv`` use ``torch.func`` (forward-over-reverse: ``jvp`` of ``grad``),
vmapped over several stacked mini-batches when the model allows it, or double backward
(``autograd.grad`` of ``g . v`` on a retained gradient graph), which is the fallback on a GPU and
the first choice on a CPU, where it measured faster (see :class:`HVPOperator`). Eigenvalues come from
deflated power iteration (the paper's method) or from our Lanczos with full re-orthogonalisation,
run in torch on the model's device (no host round-trip per HVP), usually 2-5x fewer HVPs.

Computation mode (:func:`analysis_mode`): every module in eval mode (BatchNorm uses its running
statistics, dropout and DropPath are off), timm's fused attention off and scaled-dot-product
attention forced to its math kernel (the fused kernels have no double backward/forward AD); the
modes are restored afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import grad, jvp, vmap
from tqdm.auto import tqdm

from hdvit_lib.analysis.objective import PENALTIES, l2_penalty, soft_cross_entropy
from hdvit_lib.analysis.result import Result
from hdvit_lib.claims import bootstrap_se
from hdvit_lib.distributed import (
    gather_shards,
    is_main,
    shard_indices,
    use_sharding,
    world_size,
)
from hdvit_lib.modes import eval_mode

METHODS = ("power", "lanczos")
BACKENDS = ("auto", "vmap", "func", "double_backward")
Batch = tuple[torch.Tensor, torch.Tensor]


@contextlib.contextmanager
def analysis_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in the mode used for curvature and landscape analyses; restore it afterwards.

    Every module is set to eval mode (BatchNorm uses running statistics; dropout and DropPath are
    off), modules with a boolean ``fused_attn`` attribute (timm attention) get ``False``, and
    ``F.scaled_dot_product_attention`` is forced to its math kernel, which supports double backward,
    forward-mode AD and vmap.
    """
    fused = [(m, m.fused_attn) for m in model.modules() if isinstance(getattr(m, "fused_attn", None), bool)]
    try:
        for m, _ in fused:
            m.fused_attn = False
        with eval_mode(model), _math_sdpa():
            yield model
    finally:
        for m, f in fused:
            m.fused_attn = f


def _math_sdpa() -> contextlib.AbstractContextManager:
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


class FlatParams:
    """The trainable parameters of a model as one flat vector, and the way back to a name->tensor dict."""

    def __init__(self, model: nn.Module) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters (requires_grad=True)")
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.w = torch.cat([p.detach().reshape(-1) for _, p in named])

    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, w.split(self.sizes), self.shapes)}


@contextlib.contextmanager
def _swapped(model: nn.Module, params: dict[str, torch.Tensor]) -> Iterator[None]:
    """Temporarily replace parameters by ``params`` (name -> tensor), walking ``_modules`` directly.

    Like ``torch.func.functional_call``, but it does not resolve submodules with ``getattr``: the zoo's
    models define a ``blocks()`` method that shadows timm's ``blocks`` submodule, which breaks
    ``functional_call``.
    """
    saved = []
    try:
        for name, t in params.items():
            *path, leaf = name.split(".")
            mod = model
            for p in path:
                mod = mod._modules[p]
            saved.append((mod, leaf, mod._parameters[leaf]))
            mod._parameters[leaf] = t
        yield
    finally:
        for mod, leaf, orig in reversed(saved):
            mod._parameters[leaf] = orig


def functional_forward(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` with its parameters replaced by ``params``; composes with torch.func transforms."""
    with _swapped(model, params):
        return model(x)


def _default_criterion(criterion: Callable | None) -> Callable:
    return soft_cross_entropy if criterion is None else criterion


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class HVPOperator:
    """``V -> [H_1 v_1, ..., H_m v_m]``: Hessian-vector products of ``m`` mini-batch losses at once.

    backend: ``"vmap"`` (jvp-of-grad, vmapped over the stacked mini-batches), ``"func"``
    (jvp-of-grad, one mini-batch at a time), ``"double_backward"`` (``autograd.grad`` twice on a
    retained gradient graph, one mini-batch at a time), or ``"auto"``: the first that works on the
    first call, trying vmap -> func -> double_backward on a GPU and double_backward first on a CPU
    (where it measured 1.3-1.5x faster per HVP than jvp-of-grad, and vmap did not pay). vmap fails
    e.g. on data-dependent control flow, forward AD on ops without a forward derivative.
    Use inside :func:`analysis_mode`.
    """

    def __init__(
        self,
        model: nn.Module,
        batches: Sequence[Batch],
        criterion: Callable | None = None,
        weight_decay: float = 0.0,
        backend: str = "auto",
        penalty: str = "authors",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
        if penalty not in PENALTIES:
            raise ValueError(f"penalty={penalty!r} is not one of {', '.join(PENALTIES)}")
        self.model = model
        self.flat = FlatParams(model)
        dev = self.flat.w.device
        self.batches = [(x.to(dev), y.to(dev)) for x, y in batches]
        self.criterion = _default_criterion(criterion)
        self.weight_decay = float(weight_decay)
        self.penalty = penalty
        # tensors with a nonzero norm here: ||w_k|| has no Hessian at w_k = 0 (authors' penalty)
        self._penalised = [penalty == "squared" or bool(t.norm() > 0) for t in self.flat.w.split(self.flat.sizes)]
        same = len({(tuple(x.shape), tuple(y.shape)) for x, y in self.batches}) == 1
        if backend == "auto":
            stacked = ["vmap"] if same and len(self.batches) > 1 else []
            if dev.type == "cpu":  # measured on 2 CPU cores: double backward 1.3-1.5x faster per HVP
                self._candidates = ["double_backward", *stacked, "func"]
            else:  # on a GPU, stacking mini-batches pays (DESIGN.md: 0.3x per image for ViT-Ti)
                self._candidates = [*stacked, "func", "double_backward"]
        else:
            if backend == "vmap" and not same:
                raise ValueError("backend='vmap' needs mini-batches of equal shape")
            self._candidates = [backend]
        self.backend: str | None = None if backend == "auto" else backend
        self.n_calls = 0
        self._graphs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def dim(self) -> int:
        return self.flat.w.numel()

    def loss(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss at flat weights ``w``: ``criterion(f(x; w), y) + weight_decay * l2_penalty(w, penalty)``
        (:func:`hdvit_lib.analysis.objective.training_loss`)."""
        out = functional_forward(self.model, self.flat.unflatten(w), x)
        loss = self.criterion(out, y)
        if self.weight_decay:
            tensors = [t for t, on in zip(w.split(self.flat.sizes), self._penalised) if on]
            loss = loss + self.weight_decay * l2_penalty(tensors, self.penalty)
        return loss

    def _hvp_func(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        g = grad(lambda w: self.loss(w, x, y))
        return jvp(g, (self.flat.w,), (v,))[1]

    def _run(self, backend: str, V: torch.Tensor, idx: list[int]) -> torch.Tensor:
        if backend == "vmap":
            X = torch.stack([self.batches[i][0] for i in idx])
            Y = torch.stack([self.batches[i][1] for i in idx])
            return vmap(self._hvp_func)(X, Y, V)
        if backend == "func":
            return torch.stack([self._hvp_func(*self.batches[i], v) for i, v in zip(idx, V)])
        out = []
        for i, v in zip(idx, V):
            if i not in self._graphs:
                w = self.flat.w.clone().requires_grad_(True)
                with torch.enable_grad():
                    (g,) = torch.autograd.grad(self.loss(w, *self.batches[i]), w, create_graph=True)
                self._graphs[i] = (w, g)
            w, g = self._graphs[i]
            (hv,) = torch.autograd.grad(g, w, grad_outputs=v, retain_graph=True)
            out.append(hv)
        return torch.stack(out)

    def __call__(self, V: torch.Tensor, idx: Sequence[int] | None = None) -> torch.Tensor:
        """``V``: (len(idx), dim) vectors, one per mini-batch ``idx`` (default: all)."""
        idx = list(range(len(self.batches))) if idx is None else list(idx)
        self.n_calls += 1
        if self.backend is not None:
            return self._run(self.backend, V, idx).detach()
        errors = []
        for b in self._candidates:
            try:
                out = self._run(b, V, idx).detach()
            except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
                errors.append(f"{b}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                continue
            if errors:
                warnings.warn("Hessian-vector products fell back to backend " + b + " (" + "; ".join(errors) + ")")
            self.backend = b
            return out
        raise RuntimeError("no HVP backend worked: " + "; ".join(errors))


def hvp(
    model: nn.Module,
    batch: Batch,
    v: torch.Tensor,
    criterion: Callable | None = None,
    weight_decay: float = 0.0,
    backend: str = "auto",
    penalty: str = "authors",
) -> torch.Tensor:
    """Hessian-vector product ``H v`` of the mini-batch training loss w.r.t. all trainable parameters.

    ``L(w) = criterion(model(x; w), y) + weight_decay * sum_k ||w_k||`` (Park & Kim 2022, Sec. 2:
    "NLL + L2"; ``penalty="squared"``: ``weight_decay / 2 * ||w||^2``); ``y``: class indices or soft
    targets (default criterion: soft-target cross-entropy); ``v`` and the result are flat vectors in the order of
    ``model.named_parameters()`` (trainable ones). Computed in :func:`analysis_mode` (BatchNorm in
    eval mode, dropout/DropPath off; restored afterwards). backend: see :class:`HVPOperator`.
    """
    with analysis_mode(model):
        op = HVPOperator(model, [batch], criterion, weight_decay, backend, penalty)
        return op(v.reshape(1, -1).to(op.flat.w))[0]


# ----------------------------------------------------------------------------- eigen-solvers
def _randn(gens: Sequence[torch.Generator], n: int, like: torch.Tensor) -> torch.Tensor:
    """One Gaussian row per mini-batch, each from that mini-batch's own generator: a mini-batch's
    start vectors do not depend on which other mini-batches are solved with it (or on which rank)."""
    return torch.stack([torch.randn(n, generator=g, dtype=like.dtype) for g in gens]).to(like.device)


def _top_by_magnitude(theta: torch.Tensor, k: int) -> torch.Tensor:
    return torch.argsort(theta.abs(), descending=True)[:k]


def _lanczos(op: HVPOperator, idx: list[int], k: int, tol: float, max_iter: int, gens: Sequence[torch.Generator]) -> dict:
    """Lanczos with full re-orthogonalisation on ``len(idx)`` independent Hessians in lockstep.

    A Ritz value ``theta_i`` (of the tridiagonal ``T_j``) is converged when its residual bound
    ``|beta_j s_{j,i}| <= tol * |theta_i|``; each Hessian stops once its ``k`` Ritz values of largest
    magnitude have converged (or the Krylov space is exhausted). Only unconverged Hessians get HVPs.
    """
    m, n, w0 = len(idx), op.dim, op.flat.w
    k = min(k, n)
    max_iter = min(max_iter, n)
    q = _randn(gens, n, w0)
    Q = [q / q.norm(dim=1, keepdim=True)]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    vals = np.full((m, k), np.nan)
    n_hvp = np.zeros(m, dtype=np.int64)
    converged = np.zeros(m, dtype=bool)
    active = torch.ones(m, dtype=torch.bool)
    for j in range(max_iter):
        act = active.nonzero().flatten().tolist()
        qa = Q[-1][act]
        W = torch.zeros_like(Q[-1])
        W[act] = op(qa, [idx[i] for i in act])
        n_hvp[act] += 1
        alpha = (W * Q[-1]).sum(1)
        # Full re-orthogonalisation (Gram-Schmidt, twice is enough), one basis vector at a time:
        # stacking the basis into one (m, j, n) tensor copied it each step, doubling the peak memory
        # (ResNet-50, 100 steps, one mini-batch: 2 x 9.4 GB).
        for _ in range(2):
            for v in Q:
                W.sub_(torch.linalg.vecdot(W, v)[:, None] * v)
        beta = W.norm(dim=1)
        alphas.append(alpha.double().cpu())
        betas.append(beta.double().cpu())
        T = torch.diag_embed(torch.stack(alphas, 1))
        if j > 0:
            off = torch.stack(betas[:-1], 1)
            T = T + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        theta, S = torch.linalg.eigh(T)
        scale = theta.abs().amax(1).clamp_min(1e-30)
        for i in act:
            top = _top_by_magnitude(theta[i], k)
            resid = betas[-1][i].abs() * S[i, -1, top].abs()
            exhausted = betas[-1][i] <= 1e-6 * scale[i] or j + 1 == n
            ok = len(top) == k and bool((resid <= tol * theta[i, top].abs()).all())
            if ok or exhausted or j + 1 == max_iter:
                vals[i] = theta[i, top].numpy()
                converged[i] = ok or exhausted
                active[i] = False
        if not active.any():
            break
        safe = torch.where(beta > 0, beta, torch.ones_like(beta))
        Q.append(W / safe[:, None])
    return {"eigenvalues": vals, "n_hvp": n_hvp, "converged": converged}


def _orthonormalise(v: torch.Tensor, E: list[torch.Tensor]) -> torch.Tensor:
    for e in E:
        v = v - (v * e).sum(1, keepdim=True) * e
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)


def _power(op: HVPOperator, idx: list[int], k: int, tol: float, max_iter: int, gens: Sequence[torch.Generator]) -> dict:
    """Deflated power iteration (PyHessian): for each of ``k`` eigenpairs, iterate ``v <- Hv/|Hv|`` with
    ``v`` kept orthogonal to the eigenvectors found so far, until the Rayleigh quotient changes by
    less than ``tol`` (relative). Finds eigenvalues of largest magnitude, with their sign."""
    m, n, w0 = len(idx), op.dim, op.flat.w
    k = min(k, n)
    vals = np.zeros((m, k))
    n_hvp = np.zeros(m, dtype=np.int64)
    converged = np.ones(m, dtype=bool)
    E: list[torch.Tensor] = []
    for c in range(k):
        v = _randn(gens, n, w0)
        v = _orthonormalise(v, E)
        prev = torch.full((m,), float("nan"), dtype=torch.float64)
        active = torch.ones(m, dtype=torch.bool)
        for it in range(max_iter):
            act = active.nonzero().flatten().tolist()
            v[act] = _orthonormalise(v[act], [e[act] for e in E])
            hv = op(v[act], [idx[i] for i in act])
            n_hvp[act] += 1
            eig = (hv * v[act]).sum(1).double().cpu()
            v[act] = hv / hv.norm(dim=1, keepdim=True).clamp_min(1e-30)
            for a, i in enumerate(act):
                done = not torch.isnan(prev[i]) and abs(eig[a] - prev[i]) / (abs(prev[i]) + 1e-6) < tol
                if done or it + 1 == max_iter:
                    vals[i, c] = float(eig[a])
                    converged[i] &= bool(done)
                    active[i] = False
                prev[i] = eig[a]
            if not active.any():
                break
        E.append(_orthonormalise(v, E))
    order = np.argsort(-np.abs(vals), axis=1, kind="stable")
    return {"eigenvalues": np.take_along_axis(vals, order, 1), "n_hvp": n_hvp, "converged": converged}


def _solve(op: HVPOperator, method: str, k: int, tol: float, max_iter: int, seeds: Sequence[int]) -> dict:
    """Solve the Hessians of all of ``op``'s mini-batches; mini-batch ``j`` draws its start vectors
    from a generator seeded ``seeds[j]``."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    idx = list(range(len(op.batches)))
    solver = _power if method == "power" else _lanczos
    return solver(op, idx, k, tol, max_iter, gens)


def top_eigenvalues(
    model: nn.Module,
    batch: Batch,
    k: int = 5,
    method: str = "power",
    criterion: Callable | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    weight_decay: float = 0.0,
    seed: int = 0,
    backend: str = "auto",
    return_info: bool = False,
    penalty: str = "authors",
) -> np.ndarray | tuple[np.ndarray, dict[str, Any]]:
    """The ``k`` Hessian eigenvalues of largest magnitude on one mini-batch (Park & Kim 2022, Fig. 4).

    Loss: ``criterion(model(x), y) + weight_decay * l2_penalty(w, penalty)`` (default criterion:
    soft-target cross-entropy; :mod:`~hdvit_lib.analysis.objective`),
    in :func:`analysis_mode` (BatchNorm eval, dropout off; restored). Negative eigenvalues keep their
    sign; the result is sorted by magnitude, largest first.

    method: ``"power"``: deflated power iteration as in PyHessian (the paper's tool); ``tol`` is the
    relative change of the Rayleigh quotient, ``max_iter`` per eigenvalue. ``"lanczos"``: Lanczos with
    full re-orthogonalisation; ``tol`` bounds the Ritz residual ``|beta_j s_ji| / |theta_i|``,
    ``max_iter`` is the Krylov dimension. (Lanczos from one start vector sees one copy of a repeated
    eigenvalue.) With ``return_info=True`` also returns ``{"n_hvp", "converged", "backend"}``.
    """
    with analysis_mode(model):
        op = HVPOperator(model, [batch], criterion, weight_decay, backend, penalty)
        res = _solve(op, method, k, tol, max_iter, [seed])
    vals = res["eigenvalues"][0]
    if return_info:
        return vals, {"n_hvp": int(res["n_hvp"][0]), "converged": bool(res["converged"][0]), "backend": op.backend}
    return vals


# ----------------------------------------------------------------------------- spectrum
@dataclasses.dataclass
class HessianSpectrum(Result):
    """Top-k Hessian eigenvalues per mini-batch (rows), with how they were computed."""

    eigenvalues: np.ndarray  # (n_batches, k), sorted by magnitude per row
    n_hvp: np.ndarray  # (n_batches,) HVPs spent on each mini-batch
    converged: np.ndarray  # (n_batches,) bool
    model: str = ""
    method: str = "lanczos"
    k: int = 5
    batch_size: int = 0
    n_batches: int = 0
    weight_decay: float = 0.0
    penalty: str = "authors"
    bn_mode: str = "eval"
    seed: int = 0
    tol: float = 1e-3
    backend: str = ""
    seconds: float = 0.0

    def values(self) -> np.ndarray:
        """All eigenvalues, flattened (what the paper's density plot shows)."""
        return np.asarray(self.eigenvalues, dtype=float).ravel()


def _take_batches(loader_or_batches: Iterable, n_batches: int) -> list[Batch]:
    out = []
    for b in loader_or_batches:
        if len(out) == n_batches:
            break
        out.append((b[0], b[1]))
    if len(out) < n_batches:
        raise ValueError(f"n_batches={n_batches} but the loader gave only {len(out)} mini-batches")
    return out


def spectrum(
    model: nn.Module,
    loader_or_batches: Iterable,
    n_batches: int,
    k: int = 5,
    method: str = "lanczos",
    criterion: Callable | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    weight_decay: float = 0.0,
    seed: int = 0,
    stack: int = 4,
    backend: str = "auto",
    name: str = "",
    progress: bool = True,
    distributed: bool | str = "auto",
    penalty: str = "authors",
) -> HessianSpectrum:
    """Top-``k`` Hessian eigenvalues on each of ``n_batches`` mini-batches (Park & Kim 2022, Fig. 1b, Fig. 4).

    The paper: top-5 per mini-batch of 16, over 10% of the training set, by power iteration; the
    loss: :func:`top_eigenvalues` (NLL + ``weight_decay * sum_k ||w_k||`` by default, the
    landscape's loss). ``stack`` mini-batches of equal shape are solved
    together: their HVPs run in one vmapped call (a block iteration over independent Hessians), falling
    back to a loop where vmap fails. Mini-batch ``i`` draws its start vectors from ``seed + i``, so
    its eigenvalues do not depend on ``stack`` or on the number of processes. BatchNorm in eval mode,
    dropout off (:func:`analysis_mode`). Method/tol/max_iter: see :func:`top_eigenvalues`.

    distributed: ``"auto"`` (default): under ``torchrun`` (a process group with world > 1, see
    :func:`hdvit_lib.distributed.setup`) rank ``r`` of ``N`` solves mini-batches ``r, r + N, ...``
    and every rank gets the whole spectrum, in mini-batch order; every rank must read the same
    mini-batches (a loader without shuffling, or with a seeded one). ``False``: no sharding.
    See :func:`hdvit_lib.distributed.use_sharding`.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    if stack < 1:
        raise ValueError(f"stack={stack} must be >= 1")
    sharded = use_sharding(distributed)
    batches = _take_batches(loader_or_batches, n_batches)
    stack = min(stack, stack_bound(model, max_iter, method))
    mine = shard_indices(n_batches, "strided") if sharded else list(range(n_batches))
    local: list[tuple[np.ndarray, int, bool, str]] = []  # per mini-batch of ``mine``
    t0 = time.perf_counter()
    desc = f"Hessian spectrum (rank 0 of {world_size()})" if sharded else "Hessian spectrum"
    bar = tqdm(total=len(mine), desc=desc, disable=not progress or not is_main())
    with analysis_mode(model), bar:
        j = 0
        while j < len(mine):
            group = [mine[j]]
            while (len(group) < stack and j + len(group) < len(mine)
                   and _same_shape(batches[mine[j + len(group)]], batches[group[0]])):
                group.append(mine[j + len(group)])
            op = HVPOperator(model, [batches[i] for i in group], criterion, weight_decay, backend, penalty)
            res = _solve(op, method, k, tol, max_iter, [seed + i for i in group])
            for r in range(len(group)):
                local.append((res["eigenvalues"][r], int(res["n_hvp"][r]), bool(res["converged"][r]), op.backend or ""))
            j += len(group)
            bar.update(len(group))
    rows = gather_shards(local, n_batches, "strided") if sharded else local
    return HessianSpectrum(
        eigenvalues=np.stack([r[0] for r in rows]),
        n_hvp=np.array([r[1] for r in rows], dtype=np.int64),
        converged=np.array([r[2] for r in rows], dtype=bool),
        model=name,
        method=method,
        k=k,
        batch_size=int(batches[0][0].shape[0]),
        n_batches=n_batches,
        weight_decay=float(weight_decay),
        penalty=penalty,
        bn_mode="eval",
        seed=seed,
        tol=tol,
        backend=",".join(sorted({r[3] for r in rows if r[3]})),
        seconds=time.perf_counter() - t0,
    )


def stack_bound(model: nn.Module, max_iter: int, method: str = "lanczos", budget_bytes: int | None = None) -> int:
    """How many mini-batches' eigen-solves fit in memory at once. Lanczos keeps a basis of up to
    ``max_iter`` vectors of the model's size per stacked mini-batch (power iteration: ``k``, bounded
    here by the same rule): ``budget // (max_iter * n_params * bytes)``, at least 1. ``budget_bytes``:
    default 2 GiB on a CPU, a quarter of the free memory on a GPU (ResNet-50 at 100 steps needs
    ~9.4 GB per mini-batch, so 20 stacked mini-batches would need ~190 GB)."""
    p = next(model.parameters())
    n = sum(q.numel() for q in model.parameters() if q.requires_grad)
    if budget_bytes is None:
        budget_bytes = torch.cuda.mem_get_info(p.device)[0] // 4 if p.device.type == "cuda" else 2 << 30
    per = max(1, max_iter) * n * p.element_size()
    return max(1, int(budget_bytes // per))


def _same_shape(a: Batch, b: Batch) -> bool:
    return a[0].shape == b[0].shape and a[1].shape == b[1].shape


# ----------------------------------------------------------------------------- summary: NEP and APE
def negative_eigenvalue_proportion(values: np.ndarray) -> float:
    """NEP (Park & Kim 2022, Sec. 2): ``NEP = int_{-inf}^0 p(lambda) d lambda``, the probability
    mass of the spectrum ``p`` below zero; on the computed eigenvalues (their empirical
    distribution) the share that is negative. Lower is better (less non-convex). NaNs are dropped;
    NaN if none is left."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    return float((v < 0).mean()) if len(v) else float("nan")


def average_positive_eigenvalue(values: np.ndarray) -> float:
    """APE (Park & Kim 2022, Sec. 2): ``APE = int_0^inf lambda p(lambda) d lambda /
    int_0^inf p(lambda) d lambda``, the mean of the positive part of the spectrum ``p``; on the
    computed eigenvalues the mean of the positive ones. Lower is better (flatter). NaN if none
    is positive."""
    v = np.asarray(values, dtype=float).ravel()
    pos = v[np.isfinite(v) & (v > 0)]
    return float(pos.mean()) if len(pos) else float("nan")


def spectrum_summary(spec: HessianSpectrum) -> dict[str, float]:
    """The numbers the claim checks read off a Hessian max-eigenvalue spectrum (all its computed
    eigenvalues, every mini-batch pooled; non-finite ones dropped):

    - ``"NEP"``: negative eigenvalue proportion (:func:`negative_eigenvalue_proportion`);
    - ``"APE"``: average of the positive eigenvalues (:func:`average_positive_eigenvalue`);
    - ``"median |negative|"``, ``"median positive"``: medians of the negative eigenvalues'
      magnitudes and of the positive eigenvalues;
    - ``"median max eigenvalue"``: the median over mini-batches of each batch's largest eigenvalue;
    - ``"NEP SE"``: the standard error of NEP by a bootstrap over mini-batches (the eigenvalues of one
      mini-batch are not independent; NaN with fewer than two mini-batches).
    """
    ev = np.asarray(spec.eigenvalues, dtype=float)
    v = ev[np.isfinite(ev)]
    neg, pos = -v[v < 0], v[v > 0]
    rows = [r[np.isfinite(r)] for r in np.atleast_2d(ev)]
    top = np.array([r.max() for r in rows if len(r)])
    nan = float("nan")
    return {
        "NEP": negative_eigenvalue_proportion(v),
        "APE": average_positive_eigenvalue(v),
        "median |negative|": float(np.median(neg)) if len(neg) else nan,
        "median positive": float(np.median(pos)) if len(pos) else nan,
        "median max eigenvalue": float(np.median(top)) if len(top) else nan,
        "NEP SE": bootstrap_se(rows, negative_eigenvalue_proportion, seed=int(spec.seed)),
    }
