"""hdvit_lib.experiments.representation: the chapter steps on untrained tiny models and the claim
checks on hand-made results whose verdicts are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hdvit_lib.analysis.cka import CKAResult, stage_similarity
from hdvit_lib.analysis.features import clear_cache, features_cache_dir
from hdvit_lib.analysis.fourier import FourierResult
from hdvit_lib.analysis.lesion import LesionResult, end_of_stage_lesion
from hdvit_lib.analysis.robustness import RobustnessResult, band_means, matched_rms
from hdvit_lib.analysis.variance import VarianceResult, pooled_fraction
from hdvit_lib.claims import proportion_se
from hdvit_lib.experiments import representation as rep
from hdvit_lib.models import get_model
from hdvit_lib.presets import get_preset
from hdvit_lib.widgets import model_picker

torch.set_num_threads(1)
CFG = {**get_preset("smoke"), "device": "cpu"}


@pytest.fixture()
def models_and_batches(tmp_path, monkeypatch):
    monkeypatch.setenv("HDVIT_CACHE", str(tmp_path))
    clear_cache()
    torch.manual_seed(0)
    models = {"resnet50": get_model("resnet50", tiny=True).eval(), "swin_ti": get_model("swin_ti", tiny=True).eval()}
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(2)]
    return models, batches


def test_features_shared_and_variance_matches_a_dense_computation(models_and_batches, tmp_path):
    models, batches = models_and_batches
    feats = rep.features_by_model(models, batches, CFG)
    assert rep.features_by_model(models, batches, CFG)["swin_ti"] is feats["swin_ti"]  # one pass per model
    assert list((tmp_path / "features").glob("features-*.pt"))  # cached on disk beside the models
    var = rep.variance_by_model(feats)
    # independent: run the blocks by hand, variance over H, W per (image, channel), averaged
    x = torch.cat([b[0] for b in batches])
    blocks = models["resnet50"].blocks()
    with torch.no_grad():
        for i, b in enumerate(blocks):
            x = b.module(x)
            if x.ndim == 4:
                a = x.double().numpy()
                ref = a.reshape(a.shape[0], a.shape[1], -1).var(axis=-1, ddof=1).mean()
                assert var["resnet50"].variance[i] == pytest.approx(ref, rel=1e-6)
    four = rep.fourier_by_model(feats)
    assert set(four) == {"resnet50", "swin_ti"} and four["swin_ti"].model == "swin_ti"
    cka = rep.cka_by_model(feats, batch_size=16)
    np.testing.assert_allclose(np.diag(cka["swin_ti"].matrix), 1.0, atol=1e-9)


def test_robustness_uses_the_same_noise_for_every_model(models_and_batches):
    models, batches = models_and_batches
    twin = {"a": models["swin_ti"], "b": models["swin_ti"]}
    r = rep.frequency_robustness_by_model(twin, batches, CFG, magnitude=0.5, seed=3)
    np.testing.assert_array_equal(r["a"].accuracy, r["b"].accuracy)
    np.testing.assert_array_equal(r["a"].loss, r["b"].loss)
    assert r["a"].magnitude == 0.5 and r["a"].n_images == 32
    assert rep.frequency_robustness_by_model({"a": models["swin_ti"]}, batches[:1], CFG)["a"].magnitude == CFG["analysis_noise_eps"]
    eq = rep.frequency_robustness_by_model({"a": models["swin_ti"]}, batches[:1], CFG, magnitude=2.0, construction="equal_power")["a"]
    size = tuple(batches[0][0].shape[-2:])
    assert eq.construction == "equal_power" and r["a"].construction == "authors"
    assert eq.magnitude == pytest.approx(matched_rms(size, rep.DEFAULT_F_CENTERS, 0.1, 2.0))
    np.testing.assert_allclose(eq.noise_rms, eq.magnitude, rtol=1e-5)
    # same noise energy over the sweep as the authors' construction with eps = 2
    a = rep.frequency_robustness_by_model({"a": models["swin_ti"]}, batches[:1], CFG, magnitude=2.0)["a"]
    assert np.sqrt(np.mean(a.noise_rms**2)) == pytest.approx(eq.magnitude, rel=0.05)


def test_pooled_fraction_counts_signs_and_skips_nan():
    frac, n = pooled_fraction([np.array([-1.0, 2.0, np.nan]), np.array([-0.5, -3.0])], "lower")
    assert (frac, n) == (0.75, 4)
    frac, n = pooled_fraction([np.array([-1.0, 2.0, np.nan]), np.array([-0.5, -3.0])], "raise")
    assert (frac, n) == (0.25, 4)
    assert math.isnan(pooled_fraction([np.array([np.nan])], "lower")[0])
    with pytest.raises(ValueError, match="'lower' or 'raise'"):
        pooled_fraction([], "down")


def _variance(name: str, kinds: list[str], delta: list[float]) -> VarianceResult:
    d = np.asarray(delta, dtype=float)
    k = np.array(kinds)
    msa, cm = d[k == "msa"], d[np.isin(k, ["conv", "mlp"])]
    return VarianceResult(
        model=name, names=[f"b{i}" for i in range(len(kinds))], kinds=kinds, depth=np.linspace(0, 1, len(kinds)),
        subsamples=[False] * len(kinds), variance=np.cumsum(d), delta=d, input_variance=0.0,
        msa_reduce_fraction=float((msa < 0).mean()) if msa.size else float("nan"),
        conv_mlp_increase_fraction=float((cm > 0).mean()) if cm.size else float("nan"), n_images=8,
    )


def test_claim_variance_verdicts():
    # a depth-12 ViT: every MSA lowers the variance, every MLP raises it; a CNN with one Conv of two
    vit = _variance("vit", ["embed"] + ["msa", "mlp"] * 12 + ["head"], [1] + [-1, 2] * 12 + [np.nan])
    cnn = _variance("cnn", ["embed", "conv", "conv", "head"], [1, 2, -1, np.nan])
    c = rep.claim_variance({"vit": vit, "cnn": cnn}, preset="smoke")
    # MSA: 12 of 12 lowered; Conv/MLP: 13 of 14 raised (pooled over models), both beyond 2 SE of 1/2
    assert c.holds is True
    assert c.measured["all models: MSA lowered"] == 1.0
    assert c.measured["all models: Conv/MLP raised"] == pytest.approx(13 / 14)
    assert c.measured["cnn: Conv/MLP raised"] == 0.5 and "cnn: MSA lowered" not in c.measured
    # SEs: binomial, with the p in {0, 1} bound; shown as "± SE"
    assert c.uncertainty["all models: MSA lowered"] == pytest.approx((0.25 / 12) ** 0.5)
    p = 13 / 14
    assert c.uncertainty["all models: Conv/MLP raised"] == pytest.approx((p * (1 - p) / 14) ** 0.5)
    assert "holds in this run" in c.verdict and "preset smoke" in str(c) and " ± " in str(c)

    vit_bad = _variance("vit", ["embed"] + ["msa", "mlp"] * 12, [1] + [1, 2] * 12)
    c = rep.claim_variance({"vit": vit_bad})
    assert c.holds is False and "in part" in c.verdict  # MSAs raised, MLPs raised
    c = rep.claim_variance({"vit": _variance("vit", ["embed"] + ["msa", "mlp"] * 12, [1] + [1, -1] * 12)})
    assert c.holds is False and "does not hold" in c.verdict
    # two MSA blocks of two: 100%, but within 2 SE of one half -- undecided at this power
    few = _variance("vit", ["embed", "msa", "mlp", "msa", "mlp"], [1, -1, 2, -1, 2])
    c = rep.claim_variance({"vit": few})
    assert c.holds is None and "undecided at this power" in c.verdict


def _fourier(name: str, kinds: list[str], high: list[float]) -> FourierResult:
    h = np.asarray(high, dtype=float)
    delta = np.concatenate([[np.nan], np.diff(h)])
    return FourierResult(
        model=name, names=[f"b{i}" for i in range(len(kinds))], kinds=kinds, depth=np.linspace(0, 1, len(kinds)),
        subsamples=[False] * len(kinds), curves=[np.array([0.0, x]) for x in h], freqs=[np.array([0.0, 1.0])] * len(h),
        high_frequency=h, high_frequency_delta=delta, msa_lower_fraction=float("nan"),
        conv_mlp_raise_fraction=float("nan"), include_nyquist=True, n_images=8,
    )


def _robust(name: str, delta: list[float], n_images: int = 1000) -> RobustnessResult:
    d = np.asarray(delta, dtype=float)
    f = np.round(np.arange(1, len(d) + 1) * 0.1, 1)
    return RobustnessResult(model=name, f_centers=f, bandwidth=0.1, magnitude=0.1, clean_accuracy=0.8,
                            clean_loss=1.0, accuracy=0.8 + d, loss=np.ones_like(d), delta_accuracy=d, n_images=n_images)


def test_claim_fourier_and_high_frequency():
    four = {"resnet": _fourier("resnet", ["embed", "conv", "conv"], [0.0, 0.5, 1.0]),
            "vit": _fourier("vit", ["embed", "msa", "mlp", "msa"], [0.0, -0.5, -0.2, -0.6])}
    rob = {"resnet": _robust("resnet", [-0.01, -0.01, -0.01, -0.01, -0.2, -0.3]),
           "vit": _robust("vit", [-0.1, -0.1, -0.1, -0.1, -0.02, -0.02])}
    assert band_means(rob["vit"]) == pytest.approx((-0.1, -0.02))
    c = rep.claim_fourier(four, rob, preset="cpu")
    assert c.holds is True
    # per-block changes: vit -0.5, +0.3, -0.4 (the embedding has none); resnet +0.5, +0.5
    assert c.measured["vit: mean change per block of Δlog amplitude at π"] == pytest.approx(-0.2)
    assert c.measured["resnet: mean change per block of Δlog amplitude at π"] == pytest.approx(0.5)
    assert c.measured["resnet: Δacc high bands"] == pytest.approx(-0.25)
    in1k = {f"{n}_in1k": r for n, r in four.items()}  # (a) on ImageNet models, (b) on CIFAR ones
    c = rep.claim_fourier(in1k, rob)
    assert c.holds is True and c.measured["resnet: Δacc high bands"] == pytest.approx(-0.25)
    assert "vit_in1k's blocks" in c.verdict and "vit's accuracy change minus resnet's: +0.230" in c.verdict
    # the same accuracies on 8 images: sqrt(2) x binomial SE (0.8, 8) = 0.2 per model -> (b) within noise
    few = {n: _robust(n, list(r.delta_accuracy), n_images=8) for n, r in rob.items()}
    c = rep.claim_fourier(four, few)
    assert c.holds is None and "within noise" in c.verdict
    assert c.uncertainty["vit: Δacc high bands"] == pytest.approx(2 ** 0.5 * (0.8 * 0.2 / 8) ** 0.5)
    # (a)'s SE is the standard error of the mean over blocks: vit's changes -0.5, +0.3, -0.4
    assert c.uncertainty["vit: mean change per block of Δlog amplitude at π"] == pytest.approx(
        np.std([-0.5, 0.3, -0.4], ddof=1) / 3 ** 0.5)
    rob_flip = {"resnet": rob["vit"], "vit": rob["resnet"]}
    c = rep.claim_fourier(four, rob_flip)
    assert c.holds is False and "in part" in c.verdict
    with pytest.raises(ValueError, match="Conv model and an MSA model"):
        rep.claim_fourier({"vit": four["vit"]}, {})
    hf = rep.claim_high_frequency(four)
    # deltas: resnet conv +0.5, +0.5; vit msa -0.5, -0.4, mlp +0.3: all as claimed, but 2 and 3 blocks
    assert hf.measured["all models: MSA lowered"] == 1.0 and hf.measured["all models: Conv/MLP raised"] == 1.0
    assert hf.holds is None and "undecided at this power" in hf.verdict
    deep = {"vit": _fourier("vit", ["embed"] + ["msa", "mlp"] * 12, [0.0] + [-1.0, 0.0] * 12)}
    hf = rep.claim_high_frequency(deep)  # 12 MSAs lower it, 12 MLPs raise it
    assert hf.holds is True


def test_stage_similarity_and_end_of_stage_lesion():
    kinds = ["embed", "msa", "mlp", "pool", "msa", "mlp", "head"]
    stages = [0, 0, 0, 1, 1, 1, 1]
    m = np.eye(7)
    m[1, 2] = m[2, 1] = 0.9  # within stage 0
    m[3, 4] = m[4, 3] = 0.7  # within stage 1
    m[3, 5] = m[5, 3] = m[4, 5] = m[5, 4] = 0.8
    m[0, 1] = m[1, 0] = 0.99  # embed: left out
    cka = CKAResult(model="s", names=[str(i) for i in range(7)], kinds=kinds, depth=np.linspace(0, 1, 7),
                    matrix=m, n_images=8, n_batches=1)
    within, across = stage_similarity(cka, stages)
    assert within == pytest.approx((0.9 + 0.7 + 0.8 + 0.8) / 4)
    assert across == pytest.approx(0.0)  # the six cross-stage pairs are all 0
    les = LesionResult(model="s", index=[1, 2, 4, 5], names=["1", "2", "4", "5"], kinds=["msa", "mlp", "msa", "msa"],
                       depth=np.linspace(0, 1, 4), accuracy=np.zeros(4), loss=np.zeros(4),
                       delta_accuracy=np.array([-0.1, -0.5, -0.05, -0.2]), delta_loss=np.zeros(4),
                       clean_accuracy=0.5, clean_loss=1.0, n_images=8)
    # stage 0 holds one MSA (skipped); stage 1: last MSA (-0.2) hurts more than the first (-0.05)
    assert end_of_stage_lesion(les, [0, 0, 0, 1, 1, 1, 1]) == (1.0, 1)


def test_claim_similarity_on_real_tiny_models(models_and_batches):
    models, batches = models_and_batches
    feats = rep.features_by_model(models, batches, CFG)
    cka = rep.cka_by_model(feats, batch_size=16)
    les = rep.lesion_by_model(models, batches, CFG)
    c = rep.claim_similarity(cka, les, feats, preset="smoke")
    w, x = stage_similarity(cka["swin_ti"], feats["swin_ti"].stages)
    assert c.measured["swin_ti: CKA within stage"] == w and c.measured["swin_ti: CKA across stages"] == x
    rw, _ = stage_similarity(cka["resnet50"], feats["resnet50"].stages)  # tiny ResNet: two blocks per stage
    assert math.isfinite(rw) and c.measured["resnet50: CKA within stage"] == rw
    frac, n = end_of_stage_lesion(les["swin_ti"], feats["swin_ti"].stages)
    assert n == 3 and c.measured["swin_ti: stages where last MSA lesion hurts more"] == frac
    # a majority of 3 stages is never beyond 2 SE of one half: (b) is undecided at this power
    assert c.uncertainty["swin_ti: stages where last MSA lesion hurts more"] == pytest.approx(proportion_se(frac, 3))
    assert c.holds is not True and "undecided at this power" in c.verdict and "Verdict" in str(c)


def test_chapter_models():
    assert rep.chapter_models("variance", get_preset("cpu")) == list(rep.MODELS)
    assert rep.chapter_models("variance", get_preset("smoke")) == list(rep.MODELS)
    assert rep.chapter_models("fourier", {"name": "smoke"}, ["vit_ti"]) == ["vit_ti"]
    assert rep.chapter_models("fourier", {"name": "smoke"}, "vit_ti") == ["vit_ti"]
    with pytest.raises(ValueError, match="choose one of fourier"):
        rep.chapter_models("hessian", get_preset("smoke"))


def test_paper_preset_keeps_float16_features_in_memory_only(models_and_batches, tmp_path):
    models, batches = models_and_batches
    one = {"swin_ti": models["swin_ti"]}
    half = rep.features_by_model(one, batches, {"name": "paper", "device": "cpu"})["swin_ti"]
    full = rep.features_by_model(one, batches, CFG)["swin_ti"]
    assert half.outputs[1].dtype == torch.float16 and features_cache_dir({"name": "paper"}) is None
    v16, v32 = rep.variance_by_model({"m": half})["m"], rep.variance_by_model({"m": full})["m"]
    np.testing.assert_allclose(v16.variance[:-1], v32.variance[:-1], rtol=2e-3)  # last block: logits, NaN
    assert not list((tmp_path / "features").glob("*float16.pt"))


def test_model_picker_computes_only_what_is_not_precomputed(models_and_batches, monkeypatch):
    """Building the picker runs nothing; a precomputed model is shown from the cache; another model
    is trained/loaded and analysed on demand, once, and gives the same numbers as the batch path."""
    models, batches = models_and_batches
    feats = rep.features_by_model({"resnet50": models["resnet50"]}, batches, CFG)
    pre = rep.variance_by_model(feats)
    trained_calls = []

    def fake_train(names, cfg, seed=0, progress=False):
        trained_calls.append(list(names))
        return {n: models[n] for n in names}

    monkeypatch.setattr(rep, "train_models", fake_train)
    shown = []
    picker = model_picker(rep.variance_by_model, lambda r: shown.append(dict(r)), CFG, batches, pre)
    assert picker.calls == 0 and trained_calls == []
    picker.control.value = "swin_ti"
    assert picker.calls == 1 and trained_calls == [["swin_ti"]]
    direct = rep.variance_by_model(rep.features_by_model({"swin_ti": models["swin_ti"]}, batches, CFG))["swin_ti"]
    np.testing.assert_allclose(shown[-1]["swin_ti"].variance, direct.variance)
    picker.control.value = "resnet50"  # precomputed: shown without computing
    picker.control.value = "swin_ti"  # computed before: from the picker's cache
    assert picker.calls == 1 and list(shown[-2]) == ["resnet50"]
