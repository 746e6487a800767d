"""hdvit_lib.experiments.landscape and hdvit_lib.widgets: numbers against closed forms and dense references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FakeTrained
from torch import nn

from hdvit_lib.analysis.fit import FitResult, fit_points, spearman, train_nll
from hdvit_lib.analysis.hessian import HessianSpectrum, spectrum_summary
from hdvit_lib.analysis.landscape import Landscape, landscape_curvature
from hdvit_lib.analysis.spectra import hessian_spectrum
from hdvit_lib.data.batches import training_batches
from hdvit_lib.experiments import landscape as L
from hdvit_lib.plots.hessian import plot_spectra_over_training
from hdvit_lib.plots.landscape import plot_error_vs_nll, plot_trajectories
from hdvit_lib.presets import get_preset
from hdvit_lib.train.cache import model_at, training_overrides
from hdvit_lib.widgets import live_control, live_sweep_control

torch.set_num_threads(1)


def spec(values, name: str = "") -> HessianSpectrum:
    ev = np.asarray(values, dtype=float)
    return HessianSpectrum(eigenvalues=ev, n_hvp=np.ones(len(ev), int), converged=np.ones(len(ev), bool), model=name,
                           k=ev.shape[1])


def quad_landscape(c3: float, c5: float, c4: float = 0.5, n: int = 7) -> Landscape:
    a = np.linspace(-1, 1, n)
    B, A = np.meshgrid(a, a, indexing="ij")
    z = 1.0 + 0.3 * A - 0.2 * B + c3 * A**2 + c4 * A * B + c5 * B**2
    return Landscape(a=a, b=a.copy(), nll=z, loss=z, l2_norms=np.zeros_like(z), accuracy=np.zeros_like(z),
                     n_points=n)


# --------------------------------------------------------------------------- landscapes


def test_curvature_recovers_a_quadratic_exactly() -> None:
    assert landscape_curvature(quad_landscape(2.0, 3.0)) == pytest.approx(5.0, abs=1e-10)
    assert landscape_curvature(quad_landscape(-1.0, 0.25)) == pytest.approx(-0.75, abs=1e-10)
    # the mean eigenvalue of the fitted Hessian [[2c3, c4], [c4, 2c5]] (trace / 2)
    h = np.array([[4.0, 0.5], [0.5, 6.0]])
    assert landscape_curvature(quad_landscape(2.0, 3.0)) == pytest.approx(np.linalg.eigvalsh(h).mean())


def test_curvature_is_local_to_the_centre() -> None:
    """Quartic walls far from the centre do not enter the fit: the quadratic near 0 is recovered."""
    a = np.linspace(-1, 1, 9)
    B, A = np.meshgrid(a, a, indexing="ij")
    z = A**2 + 2 * B**2 + 1e4 * np.maximum(np.abs(A) - 0.5, 0) ** 4 + 1e4 * np.maximum(np.abs(B) - 0.5, 0) ** 4
    ls = Landscape(a=a, b=a.copy(), nll=z, loss=z, l2_norms=z * 0, accuracy=z * 0, n_points=9)
    assert landscape_curvature(ls) == pytest.approx(3.0, abs=1e-9)
    assert landscape_curvature(ls, radius=1.0) > 100  # the whole grid sees the walls
    small = quad_landscape(2.0, 3.0, n=3)  # 3 x 3 grid: all points used
    assert landscape_curvature(small) == pytest.approx(5.0)


def test_curvature_of_a_real_landscape_matches_finite_differences() -> None:
    """Rows index b, columns a: a landscape with curvature only along a must not be read along b."""
    a = np.linspace(-1, 1, 5)
    _, A = np.meshgrid(a, a, indexing="ij")
    z = 4.0 * A**2  # second derivative 8 along a, 0 along b -> mean 4
    ls = Landscape(a=a, b=a.copy(), nll=z, loss=z, l2_norms=z * 0, accuracy=z * 0, n_points=5)
    fd = (z[2, 3] - 2 * z[2, 2] + z[2, 1]) / (a[1] - a[0]) ** 2
    assert landscape_curvature(ls) == pytest.approx(fd / 2)


def test_landscape_of_a_tiny_model_is_a_bowl_for_a_linear_model() -> None:
    """Softmax regression: convex, so the loss surface along any plane has curvature >= 0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    batches = [(torch.randn(32, 3, 2, 2), torch.randint(0, 3, (32,)))]
    cfg = get_preset("smoke")
    ls = L.landscapes({"lin": model}, batches, cfg)["lin"]
    assert ls.nll.shape == (cfg["landscape_points"],) * 2
    assert landscape_curvature(ls, z="nll") > 0
    centre = ls.nll[2, 2]
    ref = nn.functional.cross_entropy(model(batches[0][0]), batches[0][1]).item()
    assert centre == pytest.approx(ref, rel=1e-5)


# --------------------------------------------------------------------------- Hessian spectra


def test_hessian_spectrum_matches_a_dense_hessian_with_weight_decay() -> None:
    """The chapter's spectrum: soft targets, NLL + weight_decay * sum of per-tensor L2 norms."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))  # 43 parameters
    x = torch.randn(16, 4)
    y = torch.softmax(torch.randn(16, 3), -1)  # soft targets, as mixup makes them
    cfg = get_preset("cpu")  # 30 Lanczos steps: exhausts nothing, converges on 43 parameters
    s = hessian_spectrum(model, [(x, y)], cfg)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()

    def loss(w: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n, sh in zip(names, shapes):
            parts[n] = w[i:i + sh.numel()].view(sh)
            i += sh.numel()
        out = torch.func.functional_call(model.double(), parts, (x.double(),))
        nll = -(y.double() * out.log_softmax(-1)).sum(-1).mean()
        return nll + cfg["weight_decay"] * sum(t.pow(2).sum().sqrt() for t in parts.values())

    ev = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, w0)).numpy()
    model.float()
    top = ev[np.argsort(-np.abs(ev))[: cfg["hessian_k"]]]
    np.testing.assert_allclose(s.eigenvalues[0], top, rtol=1e-3)
    assert s.weight_decay == cfg["weight_decay"] and s.k == cfg["hessian_k"]


def test_spectrum_summary_by_hand() -> None:
    s = spectrum_summary(spec([[5.0, -1.0], [3.0, 2.0], [-4.0, 1.0]]))
    assert s["NEP"] == pytest.approx(2 / 6)
    assert s["APE"] == pytest.approx(11 / 4)  # mean of 5, 3, 2, 1
    assert s["median |negative|"] == pytest.approx(2.5)
    assert s["median positive"] == pytest.approx(2.5)  # 5, 3, 2, 1
    assert s["median max eigenvalue"] == pytest.approx(3.0)  # row maxima 5, 3, 1


def test_spectra_over_training_slider_shows_one_snapshot_per_step() -> None:
    per_tag = {tag: {"resnet": spec([[1.0 + i, 0.5]]), "vit": spec([[-2.0, 0.1 * (i + 1)]])}
               for i, tag in enumerate(["init", "warmup", "final"])}
    fig = plot_spectra_over_training(per_tag)
    assert len(fig.data) == 3 * 2 * 2
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["init", "warmup", "final"]
    for i, st in enumerate(steps):
        vis = st.args[0]["visible"]
        assert sum(vis) == 4 and all(vis[4 * i: 4 * i + 4])
    # a model keeps its colour across snapshots; the two models differ
    col = {(tr.name, j // 4) for j, tr in enumerate(fig.data)}
    assert len(col) == 6
    colors = {tr.name: set() for tr in fig.data}
    for tr in fig.data:
        colors[tr.name].add(tr.line.color)
    assert all(len(c) == 1 for c in colors.values()) and colors["resnet"] != colors["vit"]


# --------------------------------------------------------------------------- claims


def test_claim_negative_eigenvalues_reads_the_numbers() -> None:
    # 20 mini-batches each: enough that the NEP differences lie beyond 2 bootstrap SE
    specs = {"resnet": spec([[50.0, 30.0], [40.0, 20.0]] * 10),
             "vit": spec([[5.0, -2.0], [4.0, 3.0]] * 10),
             "vit (6%)": spec([[-8.0, -6.0], [3.0, -5.0]] * 10)}
    c = L.claim_negative_eigenvalues(specs, "resnet", "vit", "vit (6%)", preset="smoke")
    assert c.holds is True
    assert 0.02 < c.uncertainty["vit: NEP"] < 0.1 and c.uncertainty["resnet: NEP"] == 0.0
    assert c.measured["vit: NEP"] == pytest.approx(0.25)
    assert c.measured["vit (6%): NEP"] == pytest.approx(0.75)
    assert c.measured["resnet: median positive"] == pytest.approx(35.0)
    assert c.measured["resnet: APE"] == pytest.approx(35.0)
    assert c.measured["vit: APE"] == pytest.approx(4.0)  # mean of 5, 4, 3
    assert "holds in this run" in c.verdict
    specs["resnet"] = spec([[-50.0, -30.0], [-40.0, 20.0]] * 10)  # ResNet now the more non-convex one
    c = L.claim_negative_eigenvalues(specs, "resnet", "vit", "vit (6%)")
    assert c.holds is False and "(a) no" in c.verdict and "(c) yes" in c.verdict
    # two mini-batches per model cannot tell 25% from 0%: (a) and (c) undecided at this power
    few = {k: spec(np.asarray(v.eigenvalues)[:2]) for k, v in specs.items()}
    few["resnet"] = spec([[50.0, 30.0], [40.0, 20.0]])
    c = L.claim_negative_eigenvalues(few, "resnet", "vit", "vit (6%)")
    assert c.holds is None and "(a) n/a" in c.verdict


def test_claim_landscape_parts() -> None:
    lands = {"resnet": quad_landscape(3.0, 3.0), "vit": quad_landscape(1.0, 0.5)}
    per_tag = {"init": {"resnet": spec([[10.0, 2.0]]), "vit": spec([[-3.0, 1.0]])},
               "warmup": {"resnet": spec([[20.0, 4.0]]), "vit": spec([[-2.0, 1.0]])},
               "final": {"resnet": spec([[30.0, 5.0]]), "vit": spec([[2.0, 1.0]])}}
    c = L.claim_landscape(lands, per_tag, "resnet", "vit", preset="smoke")
    assert c.holds is True
    assert c.measured["vit: landscape curvature"] == pytest.approx(1.5)
    assert c.measured["resnet @ final: median max eigenvalue"] == pytest.approx(30.0)
    assert c.measured["vit @ warmup: NEP"] == pytest.approx(0.5)
    assert c.measured["resnet @ final: APE"] == pytest.approx(17.5)
    lands = {"resnet": quad_landscape(0.1, 0.1), "vit": quad_landscape(1.0, 0.5)}
    c = L.claim_landscape(lands, per_tag, "resnet", "vit")
    assert c.holds is False and "only in part" in c.verdict


def test_claim_gap_classifier_reads_nep() -> None:
    specs = {"CLS token": spec([[6.0, -2.0], [4.0, -3.0], [2.0, 1.0]] * 16),  # NEP 2/6
             "GAP": spec([[3.0, 1.0], [5.0, -1.0], [2.0, 2.0]] * 16)}  # NEP 1/6
    c = L.claim_gap_classifier(specs, "CLS token", "GAP", preset="smoke")
    assert c.holds is True and "holds in this run" in c.verdict
    assert L.claim_gap_classifier({k: spec(np.asarray(v.eigenvalues)[:3]) for k, v in specs.items()},
                                  "CLS token", "GAP").holds is None  # 3 mini-batches: within noise
    assert c.measured["CLS token: NEP"] == pytest.approx(2 / 6)
    assert c.measured["GAP: NEP"] == pytest.approx(1 / 6)
    assert c.measured["CLS token: APE"] == pytest.approx((6 + 4 + 2 + 1) / 4)
    assert c.measured["GAP: APE"] == pytest.approx((3 + 1 + 5 + 2 + 2) / 5)
    assert c.measured["CLS token: median |negative|"] == pytest.approx(2.5)
    # the other way round: reported, not hidden
    c = L.claim_gap_classifier(specs, "GAP", "CLS token")
    assert c.holds is False and "does not hold" in c.verdict and "0.333" in c.verdict and "0.167" in c.verdict
    c = L.claim_gap_classifier({"a": spec([[np.nan]]), "b": spec([[1.0]])}, "a", "b")
    assert c.holds is None


def fit(labels, models, fr, nll, err, msa, patch=None, window=None) -> FitResult:
    n = len(labels)
    return FitResult(labels=labels, models=models, data_fraction=np.asarray(fr, float),
                       patch_size=np.asarray(patch if patch is not None else [np.nan] * n, float),
                       window=np.asarray(window if window is not None else [np.nan] * n, float),
                       nll_train=np.asarray(nll, float), error_test=np.asarray(err, float), has_msa=msa, n_images=8)


def test_spearman_against_ranks() -> None:
    x = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    y = np.array([1.0, 3.0, 2.5, 2.0, 4.0])
    rx, ry = x.argsort().argsort(), y.argsort().argsort()
    assert spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1])
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [3, 4]))


def test_claim_error_vs_nll_detects_overfitting() -> None:
    good = fit(["resnet", "vit", "vit (10%)", "pit"], ["resnet50", "vit_ti", "vit_ti", "pit_ti"],
               [1, 1, 0.1, 1], [0.2, 0.6, 1.2, 0.4], [0.1, 0.3, 0.5, 0.2], [False, True, True, True],
               patch=[np.nan, 4, 4, 4])
    c = L.claim_error_vs_nll(good, preset="smoke")
    assert c.holds is True and c.measured["Spearman rho (NLL_train, error)"] == pytest.approx(1.0)
    assert c.measured["vit_ti: NLL_train at 10% data"] == pytest.approx(1.2)
    overfit = fit(good.labels, good.models, [1, 1, 0.1, 1], [0.2, 0.6, 0.05, 0.4], [0.1, 0.3, 0.5, 0.2],
                  good.has_msa, patch=[np.nan, 4, 4, 4])
    c = L.claim_error_vs_nll(overfit)
    assert c.holds is False and "not every" in c.verdict



def test_claim_error_vs_nll_rho_is_decided_beyond_two_standard_errors() -> None:
    """SE of Spearman's rho: (1 - rho^2) sqrt(1.06 / (n - 3)) (Fieller et al.); rho = 0.657 over 6
    runs has SE 0.34, within 2 SE of 0.5 -> undecided; rho near 1 over 40 runs -> decided."""
    labels = [f"r{i}" for i in range(6)]
    nll = np.arange(6.0)
    err = np.array([2, 0, 1, 5, 3, 4], float) / 10  # rank differences 2 -1 -1 2 -1 -1: sum d^2 = 12
    f = fit(labels, ["resnet50"] * 6, [1] * 6, nll, err, [False] * 6)
    c = L.claim_error_vs_nll(f)
    rho = 1 - 6 * 12 / (6 * 35)
    assert c.measured["Spearman rho (NLL_train, error)"] == pytest.approx(rho)
    assert c.uncertainty["Spearman rho (NLL_train, error)"] == pytest.approx((1 - rho ** 2) * (1.06 / 3) ** 0.5)
    assert c.holds is None and "undecided at this power" in c.verdict  # 0.657 - 0.5 < 2 x 0.337
    n = 40
    perm = np.arange(n, dtype=float)
    perm[::4], perm[1::4] = perm[1::4].copy(), perm[::4].copy()  # swap neighbours: rho close to 1
    f = fit([f"r{i}" for i in range(n)], ["resnet50"] * n, [1] * n, np.arange(n, dtype=float), perm, [False] * n)
    c = L.claim_error_vs_nll(f)
    assert "above 0.5 beyond 2 SE" in c.verdict  # (b) not measured: no model on two data fractions


def test_claim_local_msa() -> None:
    f = fit(["window 3", "window 5", "global"], ["vit_local"] * 2 + ["vit_ti"], [1, 1, 1],
            [0.5, 0.6, 0.8], [0.2, 0.25, 0.3], [True] * 3, window=[3, 5, np.nan])
    specs = {"window 3": spec([[2.0, 1.0]]), "window 5": spec([[2.0, -1.0]]), "global": spec([[-2.0, -1.0]])}
    c = L.claim_local_msa(f, specs, preset="smoke")  # errors 20% vs 30% on 8 images: within 2 SE
    assert c.holds is None and "within 2 SE: undecided at this power" in c.verdict
    f.n_images = 200  # an error of p on n images has the binomial SE sqrt(p (1 - p) / n)
    c = L.claim_local_msa(f, specs)
    assert c.holds is True and c.measured["global: NEP"] == pytest.approx(1.0)
    assert "window 3" in c.verdict
    assert c.uncertainty["global: error"] == pytest.approx((0.3 * 0.7 / 200) ** 0.5)
    assert "global: error = 0.3 ± 0.0324" in str(c)
    f.error_test = np.array([0.4, 0.5, 0.3])
    assert L.claim_local_msa(f, specs).holds is False
    with pytest.raises(ValueError, match="global_label"):
        L.claim_local_msa(f, specs, global_label="none")


def test_plot_error_vs_nll_groups_runs() -> None:
    f = fit(["a", "b", "c"], ["m1", "m2", "m1"], [1, 1, 0.5], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [True] * 3)
    fig = plot_error_vs_nll(f)
    assert [tr.name for tr in fig.data] == ["m1", "m2"]
    np.testing.assert_allclose(fig.data[0].y, [10.0, 30.0])
    assert len(plot_error_vs_nll(f, color_by="data_fraction").data) == 2
    with pytest.raises(ValueError, match="color_by"):
        plot_error_vs_nll(f, color_by="colour")


def test_fit_result_round_trips_json() -> None:
    f = fit(["a", "b", "c"], ["m1", "m2", "m1"], [1, 1, 0.5], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [True] * 3)
    g = FitResult.from_json(f.to_json())
    np.testing.assert_array_equal(g.nll_train, f.nll_train)
    assert g.labels == f.labels and np.isnan(g.patch_size).all()


# --------------------------------------------------------------------------- runs, snapshots, data


def test_runs_and_sweeps() -> None:
    assert L.fraction_runs(["vit_ti"], [0.06, 1.0]) == {
        "vit_ti (6%)": L.run_spec("vit_ti", 0.06), "vit_ti": L.run_spec("vit_ti")}
    assert L.patch_runs("vit_ti", [2])["vit_ti p2"]["model_cfg"] == {"patch_size": 2}
    w = L.window_runs([3, 5])
    assert list(w) == ["window 3", "window 5", "global"] and w["global"]["model"] == "vit_ti"
    cfg = get_preset("smoke")
    assert L.sweep(cfg, "windows") == get_preset("smoke")["analysis_sweeps"]["windows"] and L.sweep(cfg, "windows", (7,)) == [7]
    with pytest.raises(ValueError, match="patch_sizes"):
        L.sweep(cfg, "patch")


def test_model_at_and_trajectories_use_the_snapshots() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    w_star = {k: v.clone() for k, v in model.state_dict().items()}
    d = {k: torch.randn_like(v) for k, v in w_star.items()}
    snaps = {0: {k: w_star[k] + d[k] for k in d}, 1: {k: w_star[k] + 0.5 * d[k] for k in d}, 2: w_star}
    t = FakeTrained(model, snaps)
    m0 = model_at(t, "init")
    assert torch.equal(m0.weight, snaps[0]["weight"]) and torch.equal(model.weight, w_star["weight"])
    tr = L.trajectories({"lin": t})["lin"]
    np.testing.assert_allclose(tr.r, [1.0, 0.5, 0.0], atol=1e-12)  # straight path: r halves, angle 0
    np.testing.assert_allclose(tr.theta[:2], [0.0, 0.0], atol=1e-6)
    fig = plot_trajectories({"lin": tr})
    np.testing.assert_allclose(fig.data[0].r, [1.0, 0.5, 0.0])


def test_train_nll_is_eval_mode_cross_entropy_and_restores_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 3))
    model[1].running_mean.uniform_(-1, 1)
    batches = [(torch.randn(8, 3, 6, 6), torch.randint(0, 3, (8,))) for _ in range(2)]
    model.train()
    got = train_nll(model, batches)
    assert model.training
    model.eval()
    with torch.no_grad():
        ref = sum(nn.functional.cross_entropy(model(x), y, reduction="sum").item() for x, y in batches) / 16
    assert got == pytest.approx(ref, rel=1e-6)


def test_training_batches_are_fixed_augmented_and_seeded() -> None:
    cfg = get_preset("smoke", n_train=48, n_test=16)
    a = training_batches(cfg, 2, 16, seed=0)
    b = training_batches(cfg, 2, 16, seed=0)
    c = training_batches(cfg, 2, 16, seed=1)
    assert [x.shape for x, _ in a] == [torch.Size([16, 3, 32, 32])] * 2
    assert all(torch.equal(x, y) and torch.equal(s, t) for (x, s), (y, t) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    # the authors' protocol: soft targets from mixup/cutmix with label smoothing, rows summing to 1
    t = a[0][1]
    assert t.shape == (16, 10) and torch.allclose(t.sum(1), torch.ones(16))
    assert float(t.min()) >= 0.1 / 10 - 1e-6 and float(t.max()) < 1.0
    clean = training_batches(cfg, 2, 16, seed=0, mix=False)
    assert clean[0][1].dtype == torch.long and clean[0][1].shape == (16,)
    # a mixed batch is lam * x + (1 - lam) * x.flip(0) (mixup) or a pasted box (cutmix) of the clean one
    for (x0, y0), (xm, tm) in zip(clean, a):
        i = int(torch.nonzero(y0 != y0.flip(0))[0])  # an image whose partner has another label
        lam = (float(tm[i, y0[i]]) - 0.01) / 0.9  # t = lam * (0.91 on y_i) + (1 - lam) * (0.01 on y_i)
        mixup = lam * x0 + (1 - lam) * x0.flip(0)
        pasted = ~torch.isclose(xm, x0) & torch.isclose(xm, x0.flip(0))
        if torch.allclose(xm, mixup, atol=1e-5):
            continue
        assert torch.all(torch.isclose(xm, x0) | pasted)  # cutmix: every pixel from the image or its partner
        assert float(pasted[:, 0].float().mean()) == pytest.approx(1 - lam, abs=0.02)
    assert len(training_batches(cfg, 10, 16, seed=0)) == 3  # only 48 images
    from hdvit_lib.data import get_loaders

    n_half = len(get_loaders(cfg, data_fraction=0.5).train.dataset)  # class-balanced: about 24
    small = training_batches(cfg, 5, 8, seed=0, data_fraction=0.5)
    assert n_half < 48 and len(small) == n_half // 8  # full batches only


# --------------------------------------------------------------------------- widgets


def test_live_control_computes_on_demand_and_caches() -> None:
    calls = []
    ctl = live_control([1, 2, 4], compute=lambda v: calls.append(v) or v * 10, render=str,
                       description="patch", precomputed={2: 20})
    assert ctl.calls == 0 and ctl.control.value == 1  # building runs nothing
    ctl.control.value = 2
    assert ctl.calls == 0 and ctl.cache[2] == 20  # precomputed
    ctl.control.value = 4
    ctl.control.value = 1
    ctl.control.value = 4
    assert calls == [4, 1] and ctl.cache == {1: 10, 2: 20, 4: 40}
    assert "from the cache" in ctl.status.value
    with pytest.raises(ValueError, match="choices"):
        live_control([1, 2], compute=str, value=3)
    with pytest.raises(ValueError, match="kind"):
        live_control([1], compute=str, kind="knob")
    dd = live_control(["a"], compute=str, kind="dropdown").control
    assert dd.value == "a" and dd.label == "a"


def test_fit_points_reads_settings_from_the_cache_config() -> None:
    """Entries as the zoo stores them (every setting spelled out: ``window`` None for a global
    ViT): window NaN for global attention, the number for local; NLL against a direct pass."""
    from hdvit_lib.models import get_model, model_settings
    from hdvit_lib.train.cache import Trained
    from hdvit_lib.train.history import History

    cfg = get_preset("smoke")
    runs = {}
    for label, name, acc in (("global", "vit_ti", 0.6), ("window 3", "vit_local", 0.7)):
        torch.manual_seed(0)
        model = get_model(name, tiny=True).eval()
        config = {"model": name, "model_cfg": model_settings(name, True), "data_fraction": 1.0}
        runs[label] = Trained(model, History(epoch=[1], test_acc=[acc]), config, Path("."))
    assert runs["global"].config["model_cfg"]["window"] is None
    fit = fit_points(runs, cfg, n_images=32)
    assert np.isnan(fit.window[0]) and fit.window[1] == 3.0
    np.testing.assert_allclose(fit.error_test, [0.4, 0.3])
    np.testing.assert_array_equal(fit.patch_size, [4.0, 4.0])
    batches = training_batches(cfg, 1, 32, 0, mix=False)  # the labels, as fit_points reads them
    assert fit.nll_train[0] == pytest.approx(train_nll(runs["global"].model, batches), rel=1e-6)


def test_classifier_runs_and_the_live_control_switch_global_pool() -> None:
    runs = L.classifier_runs("vit_ti")
    assert list(runs) == ["vit_ti (CLS token)", "vit_ti (GAP)"]
    assert [r["model_cfg"] for r in runs.values()] == [{"global_pool": "token"}, {"global_pool": "avg"}]
    with pytest.raises(ValueError, match="'token', 'avg'"):
        L.classifier_runs("vit_ti", ["max"])
    pre = {"token": spec([[3.0, -1.0]]), "avg": spec([[2.0, 1.0]])}
    ctl = live_sweep_control({"name": "smoke"}, "vit_ti", "global_pool", list(L.CLASSIFIERS), [],
                               precomputed=pre, tag="warmup", kind="dropdown")
    assert ctl.kind == "dropdown" and ctl.calls == 0
    fig = ctl.result("avg")  # precomputed: no training, no Hessian
    assert ctl.calls == 0 and "at warmup" in fig.layout.title.text


def test_a_chapter_config_with_overrides_trains_what_it_says(monkeypatch) -> None:
    """train_runs passes a config's changed training settings (and data set) to the cache, so
    get_preset("smoke", epochs=5, dataset="fractal") is not silently the smoke preset's run."""
    from hdvit_lib.experiments import common

    seen = []

    class _T:
        history = type("H", (), {"final": staticmethod(lambda k: 0.5), "epochs_done": 1})()

    def fake(model, **kw):
        seen.append(kw)
        return _T()

    monkeypatch.setattr("hdvit_lib.zoo.load_or_train", fake)
    cfg = get_preset("smoke", epochs=5, dataset="fractal", hessian_k=3)
    common.train_runs({"v": common.run_spec("vit_ti")}, cfg)
    assert seen[0]["dataset"] == "fractal" and seen[0]["train_overrides"] == {"epochs": 5}
    common.train_runs({"v": common.run_spec("vit_ti")}, get_preset("smoke"))
    assert seen[1]["dataset"] is None and seen[1]["train_overrides"] is None
    assert training_overrides(get_preset("cpu", weights="trained", download=True)) == (None, {})


class FakeOfficial(FakeTrained):
    """An entry of the authors' checkpoints: final weights only (``Trained.official``)."""

    official = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, {})
        self.config = {"model": "lin"}

    def snapshot(self, tag):
        if tag != "final":
            raise ValueError("the authors' checkpoint holds only the final weights")
        return self.model.state_dict()


def test_snapshot_analyses_train_the_official_models_here(monkeypatch, capsys) -> None:
    """Found by the paper-size chapter test: chapter 01 with weights="official" (the gpu/paper
    default) crashed at the spectra over training (the checkpoints have no init/warm-up snapshot).
    The spectra and the trajectories now use the same model trained here, and say so."""
    from hdvit_lib.experiments import common

    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    snaps = {e: {k: v + e for k, v in model.state_dict().items()} for e in (0, 1, 2)}
    here = FakeTrained(nn.Linear(3, 2), snaps)
    here.config = {"model": "lin", "data_fraction": 1.0}
    asked = []

    def fake_train_runs(runs, cfg, seed=0, progress=False):
        asked.append((dict(runs), cfg["weights"]))
        return {label: here for label in runs}

    monkeypatch.setattr(common, "train_runs", fake_train_runs)
    monkeypatch.setattr(L, "spectra", lambda models, batches, cfg, seed=0: {k: m.weight.detach().sum().item() for k, m in models.items()})
    cfg = {"weights": "official"}
    per_tag = L.spectra_over_training({"vit": FakeOfficial(model)}, [], cfg)
    assert asked == [({"vit": common.run_spec("lin")}, "trained")]
    assert per_tag["init"]["vit"] == pytest.approx(float((model.weight + 0).sum().detach()))
    assert per_tag["final"]["vit"] == pytest.approx(float((model.weight + 2).sum().detach()))
    assert "trained here instead" in capsys.readouterr().out
    assert set(L.trajectories({"vit": FakeOfficial(model)}, cfg)) == {"vit"}
    monkeypatch.setattr(L, "hessian_batches", lambda cfg, seed, data_fraction=1.0: [])
    own = L.own_data_spectra({"vit": FakeOfficial(model)}, cfg, tag="warmup")  # chapters 04 and 06
    assert own["vit"] == pytest.approx(float((model.weight + 1).sum().detach()))
    with pytest.raises(ValueError, match="no snapshots.*trajectories\\(trained, cfg\\)"):
        L.trajectories({"vit": FakeOfficial(model)})


def test_conv_and_msa_tell_models_apart_by_their_blocks() -> None:
    """A Conv model has conv blocks and no MSA; an MSA model has MSA blocks (AlterNet too); the
    first of each in order, None where there is none."""
    from hdvit_lib.analysis.layout import conv_and_msa

    kinds = {"mlp_only": ["embed", "mlp"], "alt": ["conv", "msa"], "res": ["conv", "pool"], "res2": ["conv"]}
    assert conv_and_msa(kinds) == ("res", "alt")
    assert conv_and_msa({"res": ["conv"]}) == ("res", None)


def test_default_setting_reads_the_model_the_preset_builds() -> None:
    """The plain run's patch size (chapter 05 shares it with the other chapters): the tiny ViT-Ti
    cuts 4x4 patches, the paper-size one 2x2; a model without a patch embedding has none."""
    from hdvit_lib.analysis.fit import default_setting

    assert default_setting("vit_ti", "patch_size", {"tiny": True}) == 4
    assert default_setting("vit_ti", "patch_size", {"tiny": False}) == 2
    assert default_setting("resnet50", "patch_size", {"tiny": True}) is None
