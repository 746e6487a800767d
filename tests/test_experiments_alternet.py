"""hdvit_lib.experiments.alternet: block layouts, Fig. 11 numbers, build-up/robustness/Hessian plumbing
and the claim checks, against hand-computed references (no training: the zoo is stubbed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import FakeTrained
from torch import nn

from hdvit_lib.analysis.buildup import buildup_step
from hdvit_lib.analysis.corruption import RobustnessCResult
from hdvit_lib.analysis.fit import DataFractionResult
from hdvit_lib.analysis.hessian import HessianSpectrum, spectrum_summary
from hdvit_lib.analysis.layout import (
    PAPER_LABEL,
    BlockLayout,
    alternet_layouts,
    block_layout,
    block_layouts,
    repeating_pattern,
    stage_table,
)
from hdvit_lib.claims import WHERE_DECIDED, binomial_se, difference_part
from hdvit_lib.data.batches import corruption_images
from hdvit_lib.experiments import alternet as alt
from hdvit_lib.models import count_params, get_model
from hdvit_lib.plots.alternet import (
    plot_accuracy_vs_data,
    plot_alternet,
    plot_block_strips,
    robustness_points,
)
from hdvit_lib.plots.style import KIND_COLORS
from hdvit_lib.presets import get_preset


def _layout(kinds, stages, name="m") -> BlockLayout:
    n = len(kinds)
    return BlockLayout(model=name, names=[f"b{i}" for i in range(n)], kinds=list(kinds), stages=list(stages),
                           params=[1] * n, heads=[2 if k == "msa" else 0 for k in kinds], windows=[0] * n, n_params=n)


def _spec(ev, name="") -> HessianSpectrum:
    ev = np.asarray(ev, dtype=float)
    return HessianSpectrum(eigenvalues=ev, n_hvp=np.ones(len(ev)), converged=np.ones(len(ev), bool), model=name)


# --------------------------------------------------------------------------- Fig. 3


@pytest.mark.parametrize("name", ["resnet50", "vit_ti", "pit_ti", "swin_ti", "alternet50", "vit_local"])
def test_block_params_add_up_to_the_model(name):
    model = get_model(name, num_classes=100, tiny=True)
    lay = block_layout(model, name)
    assert lay.n_params == count_params(model)
    assert sum(lay.params) == count_params(model)  # the blocks cover every parameter exactly once
    assert lay.kinds == [b.kind for b in model.blocks()]


def test_repeating_pattern_by_hand():
    cnn = repeating_pattern(_layout(["embed", "conv", "conv", "conv", "head"], [0, 0, 1, 1, 1]))
    assert cnn["pattern"].startswith("CNN") and cnn["n_conv"] == 3 and cnn["n_stages"] == 2
    vit = repeating_pattern(_layout(["embed", "msa", "mlp", "msa", "conv", "head"], [0] * 6))
    assert vit["pattern"].startswith("alternating")  # one conv makes it hybrid
    assert vit["msa_then_mlp"] == 0.5
    tr = repeating_pattern(_layout(["embed", "msa", "mlp", "pool", "msa", "mlp", "head"], [0, 0, 0, 1, 1, 1, 1]))
    assert tr["pattern"].startswith("canonical") and tr["msa_then_mlp"] == 1.0
    # stages: 0 = C M (ends in MSA), 1 = M C (does not), 2 = C C (no MSA: not counted)
    alt_ = repeating_pattern(_layout(["conv", "msa", "msa", "conv", "conv", "conv"], [0, 0, 1, 1, 2, 2]))
    assert alt_["msa_stage_end"] == 0.5 and alt_["n_stages"] == 3


def test_claim_patterns_on_the_zoo_and_a_broken_alternet():
    layouts = block_layouts(["resnet50", "vit_ti", "alternet50"], tiny=True)
    claim = alt.claim_patterns(layouts, preset="smoke")
    assert claim.holds is True
    assert claim.measured["alternet50 share of MSA stages ending in MSA"] == 1.0
    assert claim.measured["resnet50 MSAs"] == 0
    # MSAs at the *start* of stages (block 0): the alternating claim must fail
    bad = get_model("alternet50", num_classes=100, tiny=True, msa_positions=[[], [0], [0], [0]])
    layouts["alternet50"] = block_layout(bad, "alternet50")
    claim = alt.claim_patterns(layouts)
    assert claim.holds is False
    assert claim.measured["alternet50 share of MSA stages ending in MSA"] == 0.0


def test_block_strip_figure_encodes_the_kinds():
    layouts = block_layouts(["resnet50", "alternet50"], tiny=True)
    fig = plot_block_strips(layouts)
    z = fig.data[0].z
    lay = layouts["alternet50"]
    assert [list(KIND_COLORS)[int(v)] for v in z[1][: len(lay.kinds)]] == lay.kinds
    changes = sum(sum(a != b for a, b in zip(x.stages, x.stages[1:])) for x in layouts.values())
    assert len(fig.layout.shapes) == changes
    assert "CNN" in fig.data[0].y[0] and "alternating" in fig.data[0].y[1]


# --------------------------------------------------------------------------- Fig. 11


def test_alternet50_matches_fig11():
    layouts = alternet_layouts({PAPER_LABEL: (0, 1, 1, 2), "official": (0, 1, 3, 2)})
    rows = stage_table(layouts[PAPER_LABEL])
    assert [r["pattern"] for r in rows] == ["C C C", "C C C M", "C C C C C M", "C M C M"]
    assert [r["heads"] for r in rows] == [[], [6], [12], [24]]
    assert [r["window"] for r in rows] == [[], [4], [4], [4]]
    assert math.isclose(sum(r["params_M"] for r in rows), sum(layouts[PAPER_LABEL].params[1:-1]) / 1e6, abs_tol=4e-3)
    claim = alt.claim_params(layouts[PAPER_LABEL])
    assert claim.holds is True and abs(claim.measured["parameters (M)"] - 33.0) < 0.05
    # the official default placement has two more MSAs in stage 3: another parameter count
    other = alt.claim_params(layouts["official"])
    assert other.measured["MSAs"] == 6
    assert other.measured["parameters (M)"] != claim.measured["parameters (M)"]
    fig = plot_alternet(layouts)
    assert len(fig.data) == 2 and [t.visible for t in fig.data] == [True, False]
    assert "33.01M" in fig.layout.title.text


# --------------------------------------------------------------------------- numbers and verdicts


def test_binomial_se_and_noise_verdicts():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(1.0, 100) == 0.0
    assert math.isnan(binomial_se(0.5, 0))
    assert difference_part(0.05, 0.03, "d")[0] is None  # 0.05 <= 2 * 0.03
    assert difference_part(0.07, 0.03, "d")[0] is True
    assert difference_part(-0.07, 0.03, "d")[0] is False


def test_run_buildup_with_a_stub_evaluator(monkeypatch):
    calls = []

    def fake(placement, preset, *, model, seed, device, train_overrides, progress):
        calls.append((placement, preset, train_overrides))
        return 0.5 + 0.01 * placement[-1] - 0.02 * placement[-2]  # the last stage helps, stage 3 hurts

    monkeypatch.setattr(alt, "evaluate_placement", fake)
    cfg = get_preset("smoke")
    trace = alt.run_buildup(cfg)
    assert trace.blocks_per_stage == [1, 2, 2, 2]  # the tiny AlterNet, read from the model
    assert trace.placements == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1]]  # max_evals = 3
    assert trace.accepted == [True, True, False]
    assert trace.best_placement == [0, 0, 0, 1] and trace.best_metric == pytest.approx(0.51)
    assert all(c[1] == "smoke" and c[2] == {"epochs": 1, "warmup_epochs": 0} for c in calls)
    assert buildup_step(trace) == ([0, 0, 0, 0], [0, 0, 0, 1])
    claim = alt.claim_buildup(trace, n_test=500)
    assert claim.holds is None  # +0.01 on 500 images is noise
    assert claim.measured["MSAs accepted"] == 1
    assert claim.uncertainty["best accuracy"] == pytest.approx((0.51 * 0.49 / 500) ** 0.5)  # binomial SE
    assert "1 epoch(s)" in alt.describe_buildup_budget(cfg)


def test_hessian_spectra_use_the_snapshot_and_match_a_dense_hessian():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    warm = {k: v + 0.5 for k, v in model.state_dict().items()}  # other weights than .model's
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    cfg = get_preset("cpu", hessian_k=3)  # 30 Lanczos steps > 15 parameters: exact
    spec = alt.hessian_spectra({"lin": FakeTrained(model, {"warmup": warm})}, [(x, y)], cfg)["lin"]

    wd = cfg["weight_decay"]
    shapes = [warm["weight"].shape, warm["bias"].shape]

    def loss(flat):
        w, b = flat[:12].reshape(shapes[0]), flat[12:]
        # the landscape's loss: NLL + wd * sum of the per-tensor (unsquared) L2 norms
        return nn.functional.cross_entropy(x.double() @ w.T + b, y) + wd * (w.norm() + b.norm())

    flat = torch.cat([warm["weight"].ravel(), warm["bias"]]).double()
    ev = torch.linalg.eigvalsh(torch.func.hessian(loss)(flat)).numpy()
    top = ev[np.argsort(-np.abs(ev))][:3]
    np.testing.assert_allclose(spec.eigenvalues[0], top, rtol=1e-3, atol=1e-5)


def test_hessian_at_warmup_trains_what_the_checkpoints_cannot_give(monkeypatch, capsys):
    """An official entry (final weights only) is replaced by the model trained here for a warm-up
    spectrum; at ``final`` it is used as it is; trained entries are never replaced."""
    from pathlib import Path

    from hdvit_lib import zoo
    from hdvit_lib.train.history import History

    torch.manual_seed(0)
    official = zoo.Trained(nn.Linear(4, 3), History(epoch=[300], test_acc=[0.5]),
                           {"source": "official", "model": "vit_ti", "asset": "vit_ti_x.pth.tar"}, Path("."))
    here_model = nn.Linear(4, 3)
    here_warm = {k: v + 1.0 for k, v in here_model.state_dict().items()}
    asked = []

    class _Entry(FakeTrained):
        history = History(epoch=[1], test_acc=[0.1])

    def fake_load_or_train(name, **kw):
        asked.append(name)
        return _Entry(here_model, {"warmup": here_warm})

    monkeypatch.setattr(zoo, "load_or_train", fake_load_or_train)
    other = FakeTrained(nn.Linear(4, 3), {"warmup": {k: v * 0 for k, v in here_model.state_dict().items()}})
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    cfg = get_preset("cpu", hessian_k=2)
    warm = alt.hessian_spectra({"vit_ti": official, "other": other}, [(x, y)], cfg)
    assert asked == ["vit_ti"] and list(warm) == ["vit_ti", "other"]
    assert "trained here instead" in capsys.readouterr().out
    ref = alt.hessian_spectra({"vit_ti": FakeTrained(here_model, {"warmup": here_warm})}, [(x, y)], cfg)
    np.testing.assert_allclose(warm["vit_ti"].eigenvalues, ref["vit_ti"].eigenvalues)
    asked.clear()
    alt.hessian_spectra({"vit_ti": official}, [(x, y)], cfg, tag="final")
    assert asked == []


class _Constant(nn.Module):
    """Always predicts class ``c`` (a model whose accuracy is the share of class ``c``)."""

    def __init__(self, c: int, classes: int = 10) -> None:
        super().__init__()
        self.c, self.classes, self.w = c, classes, nn.Parameter(torch.zeros(1))

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.classes)
        out[:, self.c] = 1.0
        return out + 0 * self.w


def test_robustness_of_constant_models_is_their_class_share():
    cfg = get_preset("smoke")
    _, y = corruption_images(cfg, get_preset("smoke")["analysis_corruptions"]["n_images"])
    res = alt.corruption_robustness_by_model({"zero": _Constant(0), "three": FakeTrained(_Constant(3), {})}, cfg)
    for name, c in (("zero", 0), ("three", 3)):
        share = float((y == c).float().mean())
        assert res[name].clean_accuracy == pytest.approx(share)
        np.testing.assert_allclose(res[name].accuracy, share)  # corruption cannot change a constant
        assert res[name].accuracy.shape == (3, 3) and res[name].n_images == 128
    assert robustness_points(res)["zero"] == (res["zero"].clean_accuracy, res["zero"].mean_accuracy)


def _rob(acc, rob, n=1000):
    return RobustnessCResult(names=["a"], severities=[1], accuracy=np.array([[rob]]), mean_accuracy=rob,
                             clean_accuracy=acc, n_images=n)


def test_claim_robustness_ranks_and_noise():
    res = {"resnet50": _rob(0.60, 0.40), "vit_ti": _rob(0.50, 0.35), "alternet50": _rob(0.65, 0.50)}
    c = alt.claim_robustness(res)
    assert c.holds is True and "ranks 1 of 3 in clean accuracy and 1" in c.verdict
    assert c.uncertainty["resnet50 acc"] == pytest.approx((0.6 * 0.4 / 1000) ** 0.5)
    assert c.uncertainty["alternet50 robustness"] == pytest.approx((0.5 * 0.5 / 1000) ** 0.5)  # 1 x 1 corruption
    res["alternet50"] = _rob(0.65, 0.41)  # lead of 0.01 on 1000 images: noise
    assert alt.claim_robustness(res).holds is None
    res["alternet50"] = _rob(0.55, 0.30)
    c = alt.claim_robustness(res)
    assert c.holds is False and "ranks 2 of 3" in c.verdict
    with pytest.raises(ValueError, match="alternet"):
        alt.claim_robustness({"resnet50": _rob(0.6, 0.4)})


def test_spectrum_summary_and_hessian_claims():
    s = spectrum_summary(_spec([[5.0, -1.0], [3.0, 2.0], [-4.0, 1.0]]))
    assert s["median max eigenvalue"] == 3.0  # median of the row maxima 5, 3, 1
    assert s["NEP"] == pytest.approx(2 / 6)
    assert s["APE"] == pytest.approx((5 + 3 + 2 + 1) / 4)
    spectra = {"resnet50": _spec([[50.0, 20.0]]), "vit_ti": _spec([[5.0, -3.0]]), "alternet50": _spec([[10.0, 2.0]])}
    assert alt.claim_hessian(spectra).holds is True
    spectra["alternet50"] = _spec([[60.0, -2.0]])
    assert alt.claim_hessian(spectra).holds is False
    # NEPs within 2 SE (bootstrap over mini-batches): the NEP part is undecided, not "fewer"
    spectra = {"resnet50": _spec([[50.0, 20.0]] * 3), "vit_ti": _spec([[5.0, -3.0], [4.0, 1.0], [6.0, 2.0]]),
               "alternet50": _spec([[10.0, -1.0], [8.0, 1.0], [9.0, 2.0]])}
    c = alt.claim_hessian(spectra)
    assert c.holds is None and "undecided at this power" in c.verdict and c.uncertainty["vit_ti NEP"] > 0
    c = alt.claim_flattening(_spec([[8.0, 1.0]], "before"), _spec([[4.0, -1.0]], "after"))
    assert c.holds is True and c.measured["NEP after"] == 0.5 and c.measured["APE before"] == 4.5


def test_accuracy_vs_data_and_its_claims(monkeypatch):
    table = {("resnet50", 0.25): 0.40, ("resnet50", 1.0): 0.60, ("vit_ti", 0.25): 0.20, ("vit_ti", 1.0): 0.45,
             ("alternet50", 0.25): 0.42, ("alternet50", 1.0): 0.66, ("vit_local", 0.25): 0.35, ("vit_local", 1.0): 0.47}

    class _H:
        def __init__(self, a):
            self.a = a

        def final(self, key):
            return self.a

    class _T:
        def __init__(self, a):
            self.history = _H(a)

    monkeypatch.setattr(alt, "trained", lambda name, cfg, seed, data_fraction: _T(table[(name, data_fraction)]))
    cfg = get_preset("smoke", n_train=2000)
    data = alt.accuracy_vs_data(["resnet50", "vit_ti", "alternet50"], (0.25, 1.0), cfg)
    np.testing.assert_allclose(data.accuracy, [[0.40, 0.60], [0.20, 0.45], [0.42, 0.66]])
    assert data.n_train == [500, 2000] and data.n_test == 500
    assert DataFractionResult.from_json(data.to_json()).accuracy.tolist() == data.accuracy.tolist()
    c = alt.claim_small_data(data)
    # +0.02 over ResNet on 500 images is noise (undecided), +0.22 over ViT is beyond noise: the one
    # verdict rule (claims.verdict) makes the claim undecided where one part is within noise
    assert c.holds is None and "within noise" in c.verdict and c.verdict.startswith(WHERE_DECIDED)
    local = alt.accuracy_vs_data(["vit_ti", "vit_local"], (0.25, 1.0), cfg)
    c = alt.claim_local_global(local)
    assert c.holds is True  # +0.15 at the small fraction
    assert c.measured["gap at fraction 1"] == pytest.approx(0.02) and "shrinks" in c.verdict
    fig = plot_accuracy_vs_data(data)
    assert len(fig.data) == 3
    assert fig.data[0].error_y.array[0] == pytest.approx(binomial_se(0.40, 500))


def test_layout_round_trips_through_json():
    lay = block_layout(get_model("alternet50", tiny=True), "alternet50")
    assert BlockLayout.from_json(lay.to_json()) == lay


def test_unknown_preset_budget_names_the_choices():
    with pytest.raises(ValueError, match="smoke, cpu, gpu, paper"):
        alt.describe_buildup_budget({"name": "huge", "epochs": 1})
