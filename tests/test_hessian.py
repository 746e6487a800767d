"""Hessian eigenvalues against dense Hessians (float64, torch.autograd.functional.hessian) and closed forms."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from hdvit_lib.analysis.hessian import (
    HessianSpectrum,
    average_positive_eigenvalue,
    hvp,
    negative_eigenvalue_proportion,
    spectrum,
    spectrum_summary,
    top_eigenvalues,
)

torch.set_num_threads(1)


class TinyAttention(nn.Module):
    """111 parameters; nn.MultiheadAttention with need_weights=False takes the SDPA path."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Linear(3, 4)
        self.mha = nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        a, _ = self.mha(h, h, h, need_weights=False)
        return self.head((h + a).mean(1))


class TinyConv(nn.Module):
    """99 parameters, with BatchNorm and dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x))).mean((2, 3))))


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))  # 51 parameters


def make(name: str, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    if name == "mlp":
        return tiny_mlp(), (torch.randn(8, 4), torch.randint(0, 3, (8,)))
    if name == "conv":
        m = TinyConv()
        with torch.no_grad():  # non-trivial running statistics
            m.bn.running_mean.uniform_(-0.5, 0.5)
            m.bn.running_var.uniform_(0.5, 2.0)
        return m, (torch.randn(6, 2, 6, 6), torch.randint(0, 3, (6,)))
    return TinyAttention(), (torch.randn(5, 4, 3), torch.randint(0, 3, (5,)))


def dense_hessian(model: nn.Module, batch, weight_decay: float = 0.0, penalty: str = "authors") -> np.ndarray:
    """Reference: float64 copy in eval mode, standard functional_call, dense Hessian. The L2 term:
    ``penalty="authors"``: ``weight_decay * sum over tensors of sqrt(sum w^2)`` (ops/norm.py l2),
    ``"squared"``: ``weight_decay / 2 * w.w``; ``y``: labels or soft targets (B, C)."""
    m = copy.deepcopy(model).double().eval()
    names = [n for n, _ in m.named_parameters()]
    shapes = [p.shape for _, p in m.named_parameters()]
    w = torch.cat([p.detach().reshape(-1) for p in m.parameters()])
    x, y = batch[0].double(), batch[1]
    y = y.double() if y.ndim == 2 else y
    zero = {n for n, p in m.named_parameters() if not p.detach().any()}

    def loss(w: torch.Tensor) -> torch.Tensor:
        d, i = {}, 0
        for n, s in zip(names, shapes):
            d[n] = w[i : i + s.numel()].view(s)
            i += s.numel()
        out = functional_call(m, d, (x,))
        nll = -(y * out.log_softmax(-1)).sum(-1).mean() if y.ndim == 2 else nn.functional.cross_entropy(out, y)
        if penalty == "squared":
            return nll + 0.5 * weight_decay * (w * w).sum()
        # ||w_k|| has no Hessian at w_k = 0 (zero-initialised biases): those tensors add no curvature
        return nll + weight_decay * sum(torch.sqrt((t * t).sum()) for n, t in d.items() if n not in zero)

    with sdpa_kernel([SDPBackend.MATH]):  # the fused CPU kernel has no double backward
        return torch.autograd.functional.hessian(loss, w).numpy()


def dense_eigenvalues(model: nn.Module, batch, weight_decay: float = 0.0, penalty: str = "authors") -> np.ndarray:
    """Eigenvalues of the dense reference Hessian, sorted by magnitude."""
    ev = np.linalg.eigvalsh(dense_hessian(model, batch, weight_decay, penalty))
    return ev[np.argsort(-np.abs(ev))]


def assert_close_rel(got: np.ndarray, want: np.ndarray, rel: float = 1e-3) -> None:
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= rel * np.abs(want)), (got, want)


@pytest.mark.parametrize("name", ["mlp", "conv", "attention"])
@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalues_match_dense_hessian(name: str, method: str) -> None:
    model, batch = make(name)
    assert sum(p.numel() for p in model.parameters()) < 300
    ref = dense_eigenvalues(model, batch, weight_decay=0.01)
    k = 4 if method == "lanczos" else 3
    tol = 1e-6 if method == "lanczos" else 1e-10
    vals, info = top_eigenvalues(
        model, batch, k=k, method=method, tol=tol, max_iter=2000, weight_decay=0.01, return_info=True
    )
    assert_close_rel(vals, ref[:k])
    assert info["converged"] and info["n_hvp"] > k


def test_negative_curvature_is_kept() -> None:
    model, batch = make("mlp")
    ref = dense_eigenvalues(model, batch)
    assert (ref[:5] < 0).any()  # this net has negative curvature among its top-5 by magnitude
    vals = top_eigenvalues(model, batch, k=5, method="lanczos", tol=1e-7, max_iter=200)
    assert_close_rel(vals, ref[:5])
    assert (vals < 0).sum() == (ref[:5] < 0).sum()


class Quadratic(nn.Module):
    """loss = 0.5 w^T A w, with A = Q diag(lam) Q^T of known spectrum."""

    def __init__(self, lam: np.ndarray, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=g, dtype=torch.float64))
        self.register_buffer("A", (q * torch.as_tensor(lam)) @ q.T)
        self.w = nn.Parameter(torch.randn(len(lam), generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.w @ self.A @ self.w + 0 * x.sum()


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_quadratic_known_spectrum(method: str) -> None:
    lam = np.array([-10.0, 6.0, -4.0, 3.0, 2.5, 1.0, 0.7, -0.5, 0.3, 0.1, 0.05, -0.01])
    model = Quadratic(lam)
    batch = (torch.zeros(1, dtype=torch.float64), torch.zeros(1))
    crit = lambda out, y: out
    tol = 1e-10 if method == "power" else 1e-8
    vals = top_eigenvalues(model, batch, k=5, method=method, criterion=crit, tol=tol, max_iter=5000)
    np.testing.assert_allclose(vals, [-10.0, 6.0, -4.0, 3.0, 2.5], rtol=1e-6)
    # the squared L2 term adds weight_decay * I
    vals = top_eigenvalues(model, batch, k=3, method=method, criterion=crit, tol=tol, max_iter=5000, weight_decay=0.2,
                           penalty="squared")
    np.testing.assert_allclose(vals, [-9.8, 6.2, -3.8], rtol=1e-6)
    # the authors' L2 term, weight_decay * ||w||, adds weight_decay * (I - u u^T) / ||w||, u = w / ||w||
    w = model.w.detach()
    u = w / w.norm()
    ref = model.A + 0.2 * (torch.eye(len(w), dtype=w.dtype) - torch.outer(u, u)) / w.norm()
    ev = np.linalg.eigvalsh(ref.numpy())
    vals = top_eigenvalues(model, batch, k=3, method=method, criterion=crit, tol=tol, max_iter=5000, weight_decay=0.2)
    np.testing.assert_allclose(vals, ev[np.argsort(-np.abs(ev))][:3], rtol=1e-6)


def test_soft_targets_and_the_authors_penalty_match_a_dense_hessian() -> None:
    """The landscape's loss (soft-target NLL + weight_decay * sum_k ||w_k||) on a mixed batch."""
    model, (x, y) = make("attention")
    lam = 0.7
    t = nn.functional.one_hot(y, 3).double() * 0.9 + 0.1 / 3  # label smoothing 0.1
    soft = lam * t + (1 - lam) * t.flip(0)
    mixed = (lam * x + (1 - lam) * x.flip(0), soft.float())
    ref = dense_eigenvalues(model, (mixed[0], soft), weight_decay=0.05)
    vals = top_eigenvalues(model, mixed, k=3, method="lanczos", tol=1e-7, max_iter=200, weight_decay=0.05)
    assert_close_rel(vals, ref[:3])
    squared = top_eigenvalues(model, mixed, k=3, method="lanczos", tol=1e-7, max_iter=200, weight_decay=0.05,
                              penalty="squared")
    assert_close_rel(squared, dense_eigenvalues(model, (mixed[0], soft), 0.05, "squared")[:3])
    assert not np.allclose(vals, squared, rtol=1e-4)


def test_hvp_matches_dense_and_backends_agree() -> None:
    model, batch = make("attention")
    n = sum(p.numel() for p in model.parameters())
    v = torch.randn(n)
    ref = torch.as_tensor(dense_hessian(model, batch) @ v.double().numpy(), dtype=torch.float32)
    for backend in ("func", "double_backward"):
        torch.testing.assert_close(hvp(model, batch, v, backend=backend), ref, rtol=1e-4, atol=1e-5)


def test_modes_restored_and_deterministic_with_dropout_and_bn() -> None:
    model, batch = make("conv")
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    a = top_eigenvalues(model, batch, k=2, method="lanczos", tol=1e-6)
    b = top_eigenvalues(model, batch, k=2, method="lanczos", tol=1e-6)
    np.testing.assert_array_equal(a, b)  # dropout off
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, stats[k], rtol=0, atol=0)  # BN running stats untouched
    assert_close_rel(a, dense_eigenvalues(model, batch)[:2])  # eval-mode BN (running statistics)


def test_spectrum_stacked_matches_single_and_round_trips(tmp_path) -> None:
    model, _ = make("mlp")
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(5)]
    spec = spectrum(model, iter(batches), n_batches=5, k=3, tol=1e-7, max_iter=200, stack=3, backend="vmap",
                    weight_decay=0.01, name="mlp", progress=False)
    assert spec.eigenvalues.shape == (5, 3) and spec.converged.all()
    for row, b in zip(spec.eigenvalues, batches):
        assert_close_rel(row, dense_eigenvalues(model, b, weight_decay=0.01)[:3])
    assert spec.backend == "vmap" and spec.batch_size == 8 and spec.model == "mlp"
    power = spectrum(model, batches, n_batches=2, k=3, method="power", tol=1e-9, max_iter=3000, progress=False)
    assert power.n_hvp.min() > spec.n_hvp.max()  # Lanczos needs fewer HVPs
    spec.save(tmp_path / "s.json")
    back = HessianSpectrum.load(tmp_path / "s.json")
    np.testing.assert_array_equal(back.eigenvalues, spec.eigenvalues)
    np.testing.assert_array_equal(back.converged, spec.converged)
    assert back.to_dict() == spec.to_dict()
    with pytest.raises(ValueError, match="power"):
        spectrum(model, batches, n_batches=1, method="arnoldi")
    with pytest.raises(ValueError, match="gave only 5"):
        spectrum(model, batches, n_batches=6)


def test_plots_spectrum_densities_and_slider() -> None:
    from hdvit_lib.plots.hessian import plot_spectrum, plot_spectrum_sweep

    rng = np.random.default_rng(0)
    vals = np.concatenate([-np.exp(rng.normal(0, 1, 30)), np.exp(rng.normal(2, 1, 90))])
    spec = HessianSpectrum(eigenvalues=vals.reshape(24, 5), n_hvp=np.ones(24), converged=np.ones(24, bool))
    fig = plot_spectrum({"a": spec}, points=400)
    neg, pos = fig.data
    for tr, share in ((neg, 0.25), (pos, 0.75)):  # each panel integrates (over log10|x|) to its share
        assert np.trapezoid(tr.y, np.log10(tr.x)) == pytest.approx(share, rel=1e-2)
    assert np.log10(pos.x[np.argmax(pos.y)]) == pytest.approx(2 / np.log(10), abs=0.3)  # mode of log10 e^N(2,1)
    sweep = plot_spectrum_sweep({2: spec, 4: spec, 8: spec}, "patch size")
    steps = sweep.layout.sliders[0].steps
    assert [s.label for s in steps] == ["2", "4", "8"] and len(sweep.data) == 6
    assert steps[1].args[0]["visible"] == [False, False, True, True, False, False]


# ----------------------------------------------------------------------------- NEP and APE


def test_nep_ape_closed_form() -> None:
    """-3..6: 3 of 10 negative (0 is neither); positive ones 1..6 average 3.5."""
    v = np.arange(-3.0, 7.0)
    assert negative_eigenvalue_proportion(v) == pytest.approx(0.3)
    assert average_positive_eigenvalue(v) == pytest.approx(3.5)
    assert np.isnan(average_positive_eigenvalue(-v[v > 0]))
    assert np.isnan(negative_eigenvalue_proportion(np.array([np.nan])))


def test_nep_ape_against_a_loop_and_the_integrals() -> None:
    """NEP and APE of random 'spectra' equal a plain loop over the values, and the paper's integrals
    over the empirical density (a histogram with a bin edge at 0, integrated bin by bin)."""
    rng = np.random.default_rng(3)
    ev = np.concatenate([-rng.exponential(2.0, (20, 5)), rng.exponential(30.0, (20, 5))], axis=0)
    ev[0, 0] = np.nan  # dropped
    finite = [float(x) for x in ev.ravel() if not math.isnan(x)]
    n_neg = sum(1 for x in finite if x < 0)
    pos = [x for x in finite if x > 0]
    s = spectrum_summary(HessianSpectrum(eigenvalues=ev, n_hvp=np.ones(40, int), converged=np.ones(40, bool)))
    assert s["NEP"] == pytest.approx(n_neg / len(finite))
    assert s["APE"] == pytest.approx(sum(pos) / len(pos))
    # integrals of the density p on a fine grid with 0 as an edge: int_{-inf}^0 p, int_0^inf l p / int_0^inf p
    edges = np.concatenate([np.linspace(min(finite) - 1, 0, 20001), np.linspace(0, max(finite) + 1, 200001)[1:]])
    p, _ = np.histogram(finite, bins=edges, density=True)
    width, mid = np.diff(edges), (edges[:-1] + edges[1:]) / 2
    right = mid > 0
    assert s["NEP"] == pytest.approx(float((p * width)[~right].sum()), abs=1e-9)
    ape = float((mid * p * width)[right].sum() / (p * width)[right].sum())
    assert s["APE"] == pytest.approx(ape, rel=1e-4)
    assert s["median max eigenvalue"] == pytest.approx(float(np.median(np.nanmax(ev, axis=1))))


def test_lanczos_never_copies_its_basis(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Krylov basis (steps x parameters per mini-batch: 9.4 GB for ResNet-50 at 100 steps) is
    kept once: no tensor as large as two basis vectors is stacked (it was copied whole each step,
    found running chapter 01 at paper size). Same eigenvalues as before."""
    model, batch = make("conv")
    n = sum(p.numel() for p in model.parameters())
    biggest = []
    stack = torch.stack

    def watched(tensors, *a, **k):
        out = stack(tensors, *a, **k)
        biggest.append(out.numel())
        return out

    monkeypatch.setattr(torch, "stack", watched)
    vals = top_eigenvalues(model, batch, k=2, method="lanczos", tol=1e-9, max_iter=30)
    monkeypatch.setattr(torch, "stack", stack)
    assert max(biggest) < 2 * n
    np.testing.assert_allclose(vals, top_eigenvalues(model, batch, k=2, method="lanczos", tol=1e-9, max_iter=30))


def test_stack_bound_keeps_the_lanczos_bases_in_memory() -> None:
    from hdvit_lib.analysis.hessian import stack_bound

    model = nn.Linear(1000, 1000)  # 1,001,000 float32 parameters: 4,004,000 bytes per basis vector
    assert stack_bound(model, 100, budget_bytes=4_004_000 * 100 * 3) == 3
    assert stack_bound(model, 100, budget_bytes=10) == 1  # always at least one
    assert stack_bound(tiny_mlp(), 30) > 1000  # tiny models: everything stacks
